// The host-staged communicators' shared pieces (comm_util.h).
#include "src/dist/comm_util.h"

#include <cstring>

namespace ds::dist {

void HostStaging::reserve(size_t bytes) {
  if (bytes > buf_.size()) buf_.resize(bytes);
  reserved_ = true;
}

Result<unsigned char*> HostStaging::get(size_t bytes, const char* what) {
  if (bytes > buf_.size()) {
    if (reserved_)
      return resource_exhausted(std::string(what) + ": " + std::to_string(bytes) + " bytes exceed the " +
                                std::to_string(buf_.size()) + " reserved at load");
    buf_.resize(bytes);
  }
  return buf_.data();
}

size_t packed_bytes(const backend::Act& a) {
  return static_cast<size_t>(a.rows) * static_cast<size_t>(a.cols) * dtype_size(a.dtype);
}

void download_act(backend::Backend& be, const backend::Act& a, void* host) {
  const size_t row = static_cast<size_t>(a.cols) * dtype_size(a.dtype);
  if (a.contiguous() || a.rows <= 1) {
    be.download(host, a.data, row * static_cast<size_t>(a.rows));
    return;
  }
  for (int64_t r = 0; r < a.rows; ++r)
    be.download(static_cast<char*>(host) + r * row, a.rows_view(r, 1).data, row);
}

void upload_act(backend::Backend& be, const void* host, const backend::Act& a) {
  const size_t row = static_cast<size_t>(a.cols) * dtype_size(a.dtype);
  if (a.contiguous() || a.rows <= 1) {
    be.upload(a.data, host, row * static_cast<size_t>(a.rows));
    return;
  }
  for (int64_t r = 0; r < a.rows; ++r)
    be.upload(a.rows_view(r, 1).data, static_cast<const char*>(host) + r * row, row);
}

namespace {

template <typename T, typename Load, typename Store>
void sum_typed(const void* const* parts, int nparts, size_t n, void* out, Load load, Store store) {
  for (size_t i = 0; i < n; ++i) {
    float acc = load(static_cast<const T*>(parts[0])[i]);
    for (int r = 1; r < nparts; ++r) acc += load(static_cast<const T*>(parts[r])[i]);
    static_cast<T*>(out)[i] = store(acc);
  }
}

}  // namespace

void sum_in_rank_order(const void* const* parts, int nparts, DType dt, size_t n, void* out) {
  auto same = [](float v) { return v; };
  if (dt == DType::kF32)
    sum_typed<float>(parts, nparts, n, out, same, same);
  else if (dt == DType::kBF16)
    sum_typed<uint16_t>(parts, nparts, n, out, bf16_to_f32, f32_to_bf16);
  else
    sum_typed<uint16_t>(parts, nparts, n, out, f16_to_f32, f32_to_f16);
}

void interleave_cols(const void* const* parts, int nparts, size_t rows, size_t row_bytes, void* out) {
  for (size_t i = 0; i < rows; ++i)
    for (int r = 0; r < nparts; ++r)
      std::memcpy(static_cast<char*>(out) + (i * nparts + r) * row_bytes,
                  static_cast<const char*>(parts[r]) + i * row_bytes, row_bytes);
}

namespace {

std::string shape(const backend::Act& a) {
  return std::to_string(a.rows) + "x" + std::to_string(a.cols) + " (ld " + std::to_string(a.ld) + ", " +
         dtype_name(a.dtype) + ")";
}

bool well_formed(const backend::Act& a) {
  return a.rows >= 0 && a.cols >= 0 && a.ld >= a.cols;
}

}  // namespace

Status check_reducible(const std::string& comm, const backend::Act& x) {
  if (x.dtype != DType::kF32 && x.dtype != DType::kBF16 && x.dtype != DType::kF16)
    return unsupported(comm + " all_reduce_sum: " + shape(x) + ": only f32, bf16 and f16 are summed");
  if (!well_formed(x)) return invalid_argument(comm + " all_reduce_sum: malformed view " + shape(x));
  return Status::ok();
}

Status check_gather(const std::string& comm, int size, const backend::Act& local, const backend::Act& out) {
  if (!well_formed(local) || !well_formed(out) || local.dtype != out.dtype || local.rows != out.rows ||
      out.cols != local.cols * size)
    return invalid_argument(comm + " all_gather_cols: local " + shape(local) + " and out " + shape(out) +
                            " do not match " + std::to_string(size) + " ranks");
  return Status::ok();
}

}  // namespace ds::dist
