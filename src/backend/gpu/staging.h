// Weight upload at load: host data (mmap'd safetensors, repacked weights) reaches device memory
// through two page-locked staging buffers, double-buffered with events so the host memcpy of chunk
// i+1 overlaps the DMA of chunk i, with a progress bar on stderr for large loads.
//
// Usage (GpuBackend::prepare_weight):
//   WeightUploader up(rt, {.total_bytes = all_weight_bytes});   // total 0: unknown, no percentage
//   DS_RETURN_IF_ERROR(up.upload(dst_device, src_host, bytes));  // any number of times, any sizes
//   DS_RETURN_IF_ERROR(up.finish());  // waits for the last DMA, prints "loaded ... GiB/s"
// `src` may be reused as soon as upload() returns (it was copied into staging); `dst` is written
// when finish() returns, and for any later operation on the runtime's stream (stream order). So a
// backend can keep one uploader over all prepare_weight calls and finish() it at allocate_cache,
// giving one progress bar and one summary line per load. Not thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "deltaserve/core/status.h"
#include "src/backend/gpu/runtime.h"

namespace ds::backend::gpu {

struct UploadOptions {
  size_t total_bytes = 0;                // for the progress bar; 0 = unknown
  size_t chunk_bytes = size_t{64} << 20;  // each of the two staging buffers
  std::string label = "weights";
  // Progress on stderr: one line rewritten in place on a terminal, a line every ~5 s otherwise, and
  // a final summary; nothing for loads under `quiet_below_bytes` (test fixtures).
  bool progress = true;
  size_t quiet_below_bytes = size_t{1} << 30;
};

class WeightUploader {
 public:
  explicit WeightUploader(Runtime& rt, UploadOptions options = {});
  ~WeightUploader();  // finish() (errors dropped: call finish() to see them) and free the staging
  WeightUploader(const WeightUploader&) = delete;
  WeightUploader& operator=(const WeightUploader&) = delete;

  Status upload(void* dst, const void* src, size_t bytes);
  Status finish();
  size_t bytes_done() const { return done_; }

 private:
  Status ensure_staging();
  Status wait_slot(int i);
  void report(bool final_line);

  Runtime& rt_;
  UploadOptions opt_;
  void* buf_[2] = {nullptr, nullptr};
  void* event_[2] = {nullptr, nullptr};  // last DMA out of buf_[i]
  size_t chunk_ = 0;                      // staging size actually allocated (0: direct copies)
  bool staging_tried_ = false, tty_ = false;
  int next_ = 0;
  size_t done_ = 0, final_reported_ = 0;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace ds::backend::gpu
