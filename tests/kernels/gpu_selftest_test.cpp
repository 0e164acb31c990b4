// `deltaserve selftest`'s cases at small shapes on the emulated GPU backend, in fp32, bf16 and fp16
// activations: every case must agree with the CPU backend within its tolerance (so the selftest a
// GPU machine runs is itself tested, and the 16-bit kernel paths run in CI).
#include <gtest/gtest.h>

#include "kernels/emu/emu.h"
#include "src/backend/gpu/selftest.h"

namespace ds {
namespace {

TEST(GpuSelftest, EveryCasePassesUnderEmulation) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    emu::Options o;
    o.schedule = emu::Schedule::kRandom;
    o.seed = 3;
    emu::ScopedOptions so(o);
    auto be = backend::gpu::make_gpu_backend(0, {dt});
    ASSERT_TRUE(be.is_ok()) << be.status().message();
    backend::gpu::SelftestOptions opt;
    opt.small = true;
    const auto rows = backend::gpu::run_selftest(static_cast<backend::gpu::GpuBackend&>(**be), opt);
    EXPECT_GE(rows.size(), 20u);
    std::printf("selftest under emulation, %s activations:\n", dtype_name(dt));
    EXPECT_EQ(backend::gpu::print_selftest(rows, stdout), 0);
    for (const auto& r : rows) EXPECT_TRUE(r.ok) << r.op << " " << r.shape << " err " << r.max_err << " tol " << r.tol;
  }
}

}  // namespace
}  // namespace ds
