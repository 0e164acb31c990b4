// What the host-staged communicators (threads, MPI) share: host staging sized at reserve, an Act's
// rows to and from packed host memory, the rank-ordered fp32 sum, the column interleave of a gather
// and the argument checks every implementation makes.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "deltaserve/core/status.h"

namespace ds::dist {

// Host memory the collectives copy through. reserve() sizes it once at load; a later call asking for
// more fails (a step must not allocate). Without reserve() it grows on demand (tests, benches).
class HostStaging {
 public:
  void reserve(size_t bytes);
  Result<unsigned char*> get(size_t bytes, const char* what);

 private:
  std::vector<unsigned char> buf_;
  bool reserved_ = false;
};

size_t packed_bytes(const backend::Act& a);  // rows * cols elements, no padding
// a's rows <-> packed host rows, one copy when a is contiguous.
void download_act(backend::Backend& be, const backend::Act& a, void* host);
void upload_act(backend::Backend& be, const void* host, const backend::Act& a);

// out[i] = round_to(dt, ((p[0][i] + p[1][i]) + p[2][i]) + ...) in fp32: the same order on every rank,
// so every rank writes the same bits. parts and out hold n packed elements of dt (f32, bf16, f16).
void sum_in_rank_order(const void* const* parts, int nparts, DType dt, size_t n, void* out);

// out [rows][nparts * row_bytes] <- parts[r] [rows][row_bytes] at byte column r * row_bytes.
void interleave_cols(const void* const* parts, int nparts, size_t rows, size_t row_bytes, void* out);

// The argument checks of every implementation ("<name> all_reduce_sum: ..." on failure).
Status check_reducible(const std::string& comm, const backend::Act& x);
Status check_gather(const std::string& comm, int size, const backend::Act& local, const backend::Act& out);

}  // namespace ds::dist
