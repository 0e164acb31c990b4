// TimedCommunicator (include/deltaserve/dist/timed_comm.h).
#include "deltaserve/dist/timed_comm.h"

#include <chrono>

namespace ds::dist {

namespace {

template <typename F>
Status timed(std::atomic<int64_t>* ns, std::atomic<int64_t>* calls, F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  Status s = f();
  *ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  ++*calls;
  return s;
}

}  // namespace

Status TimedCommunicator::all_reduce_sum(backend::Backend& be, backend::Act x) {
  return timed(&ns_, &calls_, [&] { return inner_->all_reduce_sum(be, x); });
}

Status TimedCommunicator::all_gather_cols(backend::Backend& be, backend::Act local, backend::Act out) {
  return timed(&ns_, &calls_, [&] { return inner_->all_gather_cols(be, local, out); });
}

}  // namespace ds::dist
