// nccl_one_rank: the NCCL/RCCL communicator on one GPU, one rank (tools/device_check.sh): loads the
// library, joins a one-rank communicator through the single-rank bootstrap, all-reduces contiguous
// and strided activations (f32, bf16) and all-gathers a strided block, checking every value and that
// the padding between rows is untouched. One line on success; exit 1 with the reason otherwise.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/gpu/bench_util.h"
#include "deltaserve/dist/nccl_comm.h"
#include "src/backend/gpu/gpu_backend.h"

using namespace ds;
using ds::bench::fail;
using ds::bench::must;

namespace {

constexpr float kPad = -7.0f;

// rows x ld elements of dt: value(i, j) in the first cols columns, kPad after; exact in bf16.
std::vector<unsigned char> make(DType dt, int64_t rows, int64_t cols, int64_t ld, int salt) {
  const size_t esz = dtype_size(dt);
  std::vector<unsigned char> h(rows * ld * esz);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < ld; ++j) {
      const float v = j < cols ? static_cast<float>(salt + i * 16 + j) : kPad;
      unsigned char* p = &h[(i * ld + j) * esz];
      if (dt == DType::kF32)
        std::memcpy(p, &v, 4);
      else {
        const uint16_t b = f32_to_bf16(v);
        std::memcpy(p, &b, 2);
      }
    }
  return h;
}

struct DeviceAct {
  std::unique_ptr<backend::DeviceBuffer> buf;
  backend::Act act;
};

DeviceAct put(backend::Backend& be, const std::vector<unsigned char>& host, DType dt, int64_t rows,
              int64_t cols, int64_t ld) {
  auto buf = must(be.alloc(host.size(), "nccl_one_rank"), "alloc");
  be.upload(buf->data(), host.data(), host.size());
  backend::Act a{buf->data(), dt, rows, cols, ld};
  return {std::move(buf), a};
}

void expect(backend::Backend& be, const DeviceAct& d, const std::vector<unsigned char>& want,
            const std::string& what) {
  std::vector<unsigned char> got(want.size());
  be.synchronize();
  be.download(got.data(), d.buf->data(), got.size());
  if (got != want) fail(what, internal_error("wrong values after the collective"));
}

}  // namespace

int main() {
  std::shared_ptr<backend::Backend> be =
      must(backend::gpu::make_gpu_backend(0, {DType::kBF16}), "GPU backend");
  auto comm = must(dist::nccl_communicator(dist::single_rank(), 0, *be), "NCCL communicator");
  if (Status s = comm->reserve(*be, 1 << 16); !s.is_ok()) fail("reserve", s);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const std::string name = dtype_name(dt);
    for (int64_t ld : {int64_t{37}, int64_t{40}}) {  // contiguous, then strided (through scratch)
      const auto host = make(dt, 3, 37, ld, 1);
      DeviceAct x = put(*be, host, dt, 3, 37, ld);
      if (Status s = comm->all_reduce_sum(*be, x.act); !s.is_ok()) fail("all_reduce_sum " + name, s);
      expect(*be, x, host, "all_reduce_sum " + name + " ld " + std::to_string(ld));  // one rank: the identity
    }
    DeviceAct local = put(*be, make(dt, 3, 11, 13, 100), dt, 3, 11, 13);
    DeviceAct out = put(*be, make(dt, 3, 11, 12, 0), dt, 3, 11, 12);
    if (Status s = comm->all_gather_cols(*be, local.act, out.act); !s.is_ok())
      fail("all_gather_cols " + name, s);
    expect(*be, out, make(dt, 3, 11, 12, 100), "all_gather_cols " + name);
  }
  if (Status s = comm->barrier(); !s.is_ok()) fail("barrier", s);
  std::printf(
      "nccl_one_rank: %s on %s: all_reduce_sum (contiguous, strided) and all_gather_cols, f32 and bf16: ok\n",
      comm->name().c_str(), be->name().c_str());
  return 0;
}
