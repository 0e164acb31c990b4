// Collectives between the tensor-parallel ranks of one model (DESIGN.md §3 "Tensor parallelism").
// The model calls all_reduce_sum where a row-parallel layer's partial outputs end (attention
// o_proj, GDN out_proj, MLP down, the MoE block) and asks rank()/size() to pick its weight shards.
// SingleRankCommunicator is the size-1 case; MPI (CPU) and NCCL/RCCL (GPU) implement the same.
#pragma once

#include <memory>

#include "deltaserve/backend/backend.h"
#include "deltaserve/core/status.h"

namespace ds::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // x <- sum of x over every rank, in place, on the backend's stream.
  virtual Status all_reduce_sum(backend::Backend& be, backend::Act x) = 0;
};

class SingleRankCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Status all_reduce_sum(backend::Backend&, backend::Act) override { return Status::ok(); }
};

std::shared_ptr<Communicator> single_rank();

}  // namespace ds::dist
