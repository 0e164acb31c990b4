// Collectives between the tensor-parallel ranks of one model (DESIGN.md §3 "Tensor parallelism",
// research/tensor-parallel.md). The model calls all_reduce_sum where a row-parallel layer's partial
// outputs end (attention o_proj, GDN out_proj, MLP down, the MoE block, the vocab-parallel
// embedding) and all_gather_cols for the vocab-parallel logits; the step runner broadcasts each
// step's plan with broadcast_host. Every rank issues the same collectives in the same order.
//
// Implementations: SingleRankCommunicator (size 1), threads in one process (tests), MPI (CPU ranks,
// and the bootstrap of NCCL/RCCL), NCCL (CUDA) and RCCL (ROCm) loaded at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "deltaserve/core/status.h"

namespace ds::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "single", "threads", "mpi", "nccl", "rccl"

  // Sizes the device scratch the collectives use (at most `bytes` per call), allocated on `be` once
  // at load: collectives themselves neither allocate nor synchronise (graph capture).
  virtual Status reserve(backend::Backend& be, size_t bytes) { return Status::ok(); }
  // x <- sum of x over every rank, in place, on the backend's stream. Every rank ends with the same
  // bits (the ranks' partial sums are added in one fixed order), so replicated layers that follow
  // (router, norms) decide identically everywhere.
  virtual Status all_reduce_sum(backend::Backend& be, backend::Act x) = 0;
  // out [rows][size * local.cols] <- every rank's local [rows][cols], rank r's at columns
  // [r * local.cols, (r + 1) * local.cols). Same dtype; out may not alias local.
  virtual Status all_gather_cols(backend::Backend& be, backend::Act local, backend::Act out) = 0;

  // Host memory, blocking; for step plans, start-up agreement and the NCCL id.
  virtual Status broadcast_host(void* data, size_t bytes, int root) = 0;
  // all [size][bytes] <- every rank's `bytes` bytes of mine, rank r's at offset r * bytes.
  virtual Status all_gather_host(const void* mine, size_t bytes, void* all) = 0;
  virtual Status barrier() = 0;
  // Any thread, best effort: a collective blocked now or called later fails instead of waiting for a
  // peer that is gone (the watchdog calls it when a rank dies or a step passes its deadline).
  virtual void abort(const std::string& why) = 0;
};

class SingleRankCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single"; }
  Status all_reduce_sum(backend::Backend&, backend::Act) override { return Status::ok(); }
  Status all_gather_cols(backend::Backend& be, backend::Act local, backend::Act out) override;
  Status broadcast_host(void*, size_t, int) override { return Status::ok(); }
  Status all_gather_host(const void* mine, size_t bytes, void* all) override;
  Status barrier() override { return Status::ok(); }
  void abort(const std::string&) override {}
};

std::shared_ptr<Communicator> single_rank();

}  // namespace ds::dist
