// Driving tensor-parallel ranks step by step (DESIGN.md §3 "Tensor parallelism"): rank 0 runs the
// engine and wraps its model in TpLeaderModel, whose forward() broadcasts the step plan before
// running it; every other rank runs follow_tp_steps(), which receives each plan and runs the same
// step, so all ranks issue the same collectives in the same order. Only rank 0 samples; the plan
// carries whether a sequence samples, not its sampling parameters (the followers compute the same
// logits rows and take part in the gathers, and discard the results).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "deltaserve/dist/communicator.h"
#include "deltaserve/dist/timed_comm.h"
#include "deltaserve/model/step_plan.h"

namespace ds::model {

// The plan as bytes and back (what crosses between ranks each step; a sampling sequence's
// SamplingRow is not sent: the decoded plan has a default one).
std::vector<uint8_t> encode_step_plan(const StepPlan& plan);
Result<StepPlan> decode_step_plan(const uint8_t* data, size_t size);

// With a step deadline (> 0), a watchdog thread fails the model when a step runs longer (a rank
// hung or died inside a collective): healthy() turns false, the reason is logged, and after a grace
// second for /health to answer 503 the communicator is aborted (under MPI the job ends non-zero).
class TpLeaderModel : public Model {
 public:
  TpLeaderModel(Model* model, std::shared_ptr<dist::Communicator> comm,
                std::chrono::milliseconds step_deadline = std::chrono::milliseconds(0));
  // Owns the model it drives.
  TpLeaderModel(std::unique_ptr<Model> model, std::shared_ptr<dist::Communicator> comm,
                std::chrono::milliseconds step_deadline);
  ~TpLeaderModel() override;
  const CacheConfig& cache_config() const override { return model_->cache_config(); }
  int64_t vocab_size() const override { return model_->vocab_size(); }
  Result<StepOutput> forward(const StepPlan& plan) override;
  bool healthy() const override { return !failed_.load(); }
  // Tells the followers to return (once; the destructor sends it when not sent yet).
  Status stop();
  // The model's collectives, timed: every 10 s with steps, the log gives the share of step time
  // they took (like vLLM's periodic throughput line).
  void report_collectives(std::shared_ptr<dist::TimedCommunicator> timed) { timed_ = std::move(timed); }

 private:
  void maybe_report(double step_seconds);
  void watch();

  std::unique_ptr<Model> owned_;
  Model* model_;
  std::shared_ptr<dist::Communicator> comm_;
  std::vector<uint8_t> bytes_;
  bool stopped_ = false;
  std::atomic<bool> failed_{false};
  // The watchdog: when the step in flight began (0: none), and how long one may take.
  std::chrono::milliseconds deadline_;
  std::atomic<int64_t> step_began_ms_{0};
  std::atomic<int64_t> steps_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;
  std::thread watchdog_;
  std::shared_ptr<dist::TimedCommunicator> timed_;
  struct Window {
    int64_t steps = 0, began_ms = 0;
    double step_s = 0, coll_s = 0;
    int64_t coll_calls = 0;
  } window_;
};

// A follower's loop: runs every plan rank 0 broadcasts until it sends the stop. A step that fails
// here fails on rank 0 as well (same plan, same checks); the loop logs it and goes on. Returns an
// error only when the communicator fails (a rank is gone).
Status follow_tp_steps(Model& model, dist::Communicator& comm);

}  // namespace ds::model
