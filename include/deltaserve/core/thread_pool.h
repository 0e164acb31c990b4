// A fixed pool of worker threads for data-parallel loops (kernels split rows or heads over cores).
// parallel_for blocks until every chunk has run; the calling thread takes part in the work. Callers
// may be several threads: while one caller's job runs on the workers, another runs its own inline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ds {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);  // num_threads <= 0: hardware concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Calls fn(begin, end) over [0, n) split into about size() contiguous ranges.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  static ThreadPool& global();  // sized by DS_NUM_THREADS or the core count

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // held by the caller whose job the workers run
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace ds
