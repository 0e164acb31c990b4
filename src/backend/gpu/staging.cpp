#include "src/backend/gpu/staging.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace ds::backend::gpu {

WeightUploader::WeightUploader(Runtime& rt, UploadOptions options)
    : rt_(rt), opt_(std::move(options)), tty_(isatty(STDERR_FILENO) != 0) {
  start_ = last_print_ = std::chrono::steady_clock::now();
}

WeightUploader::~WeightUploader() {
  (void)finish();
  for (void* b : buf_) rt_.host_free(b);
}

// Page-locked memory is what lets the DMA run while the host fills the other buffer. When even a
// small pinned buffer cannot be had (locked-memory limits in containers), copies go direct from
// pageable memory: slower, still correct.
Status WeightUploader::ensure_staging() {
  if (staging_tried_) return Status::ok();
  staging_tried_ = true;
  for (size_t size = std::max<size_t>(opt_.chunk_bytes, 4096); size >= 4096; size /= 16) {
    auto a = rt_.host_alloc(size);
    if (!a) continue;
    auto b = rt_.host_alloc(size);
    if (!b) {
      rt_.host_free(*a);
      continue;
    }
    buf_[0] = *a;
    buf_[1] = *b;
    chunk_ = size;
    return Status::ok();
  }
  return Status::ok();
}

Status WeightUploader::wait_slot(int i) {
  if (!event_[i]) return Status::ok();
  Status s = rt_.event_synchronize(event_[i]);
  rt_.event_destroy(event_[i]);
  event_[i] = nullptr;
  return s;
}

Status WeightUploader::upload(void* dst, const void* src, size_t bytes) {
  DS_RETURN_IF_ERROR(ensure_staging());
  if (chunk_ == 0) {  // no pinned memory: a synchronous pageable copy
    DS_RETURN_IF_ERROR(rt_.copy_h2d(dst, src, bytes));
    DS_RETURN_IF_ERROR(rt_.synchronize());
    done_ += bytes;
    report(false);
    return Status::ok();
  }
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  for (size_t off = 0; off < bytes;) {
    const size_t n = std::min(chunk_, bytes - off);
    const int i = next_;
    next_ ^= 1;
    DS_RETURN_IF_ERROR(wait_slot(i));  // the DMA that last read buf_[i] is done
    std::memcpy(buf_[i], s + off, n);
    DS_RETURN_IF_ERROR(rt_.copy_h2d(d + off, buf_[i], n));
    DS_ASSIGN_OR_RETURN(event_[i], rt_.event_record());
    off += n;
    done_ += n;
    report(false);
  }
  return Status::ok();
}

Status WeightUploader::finish() {
  Status s0 = wait_slot(0), s1 = wait_slot(1);
  DS_RETURN_IF_ERROR(s0);
  DS_RETURN_IF_ERROR(s1);
  report(true);
  return Status::ok();
}

void WeightUploader::report(bool final_line) {
  if (!opt_.progress || std::max(opt_.total_bytes, done_) < opt_.quiet_below_bytes) return;
  if (final_line && done_ == final_reported_) return;  // a second finish() prints nothing new
  const auto now = std::chrono::steady_clock::now();
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  if (!final_line && since_print < (tty_ ? 0.1 : 5.0)) return;
  last_print_ = now;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double g = 1073741824.0;
  const double rate = secs > 0 ? done_ / g / secs : 0;
  char line[192];
  if (final_line)
    std::snprintf(line, sizeof line, "uploaded %.2f GiB of %s to %s in %.1f s (%.2f GiB/s)", done_ / g,
                  opt_.label.c_str(), rt_.info().name.c_str(), secs, rate);
  else if (opt_.total_bytes)
    std::snprintf(line, sizeof line, "uploading %s: %.2f / %.2f GiB (%3.0f%%) %.2f GiB/s", opt_.label.c_str(),
                  done_ / g, opt_.total_bytes / g, 100.0 * done_ / opt_.total_bytes, rate);
  else
    std::snprintf(line, sizeof line, "uploading %s: %.2f GiB %.2f GiB/s", opt_.label.c_str(), done_ / g, rate);
  if (tty_) std::fprintf(stderr, "\r\033[K%s%s", line, final_line ? "\n" : "");
  else std::fprintf(stderr, "%s\n", line);
  if (final_line) final_reported_ = done_;
}

}  // namespace ds::backend::gpu
