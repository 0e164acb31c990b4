// A Communicator that times another: wall seconds spent inside the step's collectives
// (all_reduce_sum, all_gather_cols), and how many ran. Rank 0 reports the share of step time they
// take (bench figures; the step-time split the tensor-parallel issue asks for). On a GPU the time is
// the host's enqueue time unless the stream is synchronised, so the share is meaningful on CPU ranks.
#pragma once

#include <atomic>
#include <memory>

#include "deltaserve/dist/communicator.h"

namespace ds::dist {

class TimedCommunicator : public Communicator {
 public:
  explicit TimedCommunicator(std::shared_ptr<Communicator> inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string name() const override { return inner_->name(); }
  Status reserve(backend::Backend& be, size_t bytes) override { return inner_->reserve(be, bytes); }
  Status all_reduce_sum(backend::Backend& be, backend::Act x) override;
  Status all_gather_cols(backend::Backend& be, backend::Act local, backend::Act out) override;
  Status broadcast_host(void* data, size_t bytes, int root) override { return inner_->broadcast_host(data, bytes, root); }
  Status all_gather_host(const void* mine, size_t bytes, void* all) override {
    return inner_->all_gather_host(mine, bytes, all);
  }
  Status barrier() override { return inner_->barrier(); }
  void abort(const std::string& why) override { inner_->abort(why); }

  double seconds() const { return static_cast<double>(ns_.load()) * 1e-9; }
  int64_t calls() const { return calls_.load(); }

 private:
  std::shared_ptr<Communicator> inner_;
  std::atomic<int64_t> ns_{0}, calls_{0};
};

}  // namespace ds::dist
