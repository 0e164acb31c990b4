// kernels/emu itself: shuffle semantics against CUDA's formulas (computed here independently),
// barriers, poisoned shared memory, schedules (a racy kernel must differ between them, a correct
// one must not), and the errors it reports instead of hanging: deadlock, divergent barriers,
// shuffles from exited lanes, too much shared memory. Warp sizes 32 and 64.
#define DS_EMU 1
#include <gtest/gtest.h>

#include <vector>

#include "kernels/gpu/device.h"
#include "kernels/gpu/launch.h"
#include "deltaserve/core/dtype.h"

namespace ds {
namespace {

using emu::Schedule;

emu::Options opts(Schedule s, int warp = 32, uint64_t seed = 7) {
  emu::Options o;
  o.schedule = s;
  o.warp_size = warp;
  o.seed = seed;
  return o;
}
const Schedule kSchedules[] = {Schedule::kInOrder, Schedule::kReverse, Schedule::kRandom};

__global__ void shuffle_kernel(int op, int arg, int width, const int* in, int* out) {
  const int v = in[blockIdx.x * blockDim.x + threadIdx.x];
  int r = 0;
  switch (op) {
    case 0: r = gpu::shfl_xor(v, arg, width); break;
    case 1: r = gpu::shfl_down(v, arg, width); break;
    case 2: r = gpu::shfl_up(v, arg, width); break;
    default: r = gpu::shfl_idx(v, arg, width); break;
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = r;
}

// CUDA's shfl.sync rule (gpu-emulation.md §1.8), generalised to a 64-lane wavefront as HIP does.
int expected_source(int op, int lane, int arg, int width, int ws) {
  const int seg = lane & ~(width - 1), end = seg + width;
  int j = lane;
  bool ok = true;
  switch (op) {
    case 0: j = lane ^ (arg % ws); ok = j < end; break;
    case 1: j = lane + (arg % ws); ok = j < end; break;
    case 2: j = lane - (arg % ws); ok = j >= seg; break;
    default: j = seg + (arg % width); break;
  }
  return ok ? j : lane;
}

TEST(Emu, ShufflesFollowCudaRules) {
  for (int ws : {32, 64}) {
    emu::ScopedOptions so(opts(Schedule::kRandom, ws));
    const int threads = 2 * ws;
    std::vector<int> in(static_cast<size_t>(threads)), out(in.size());
    for (int i = 0; i < threads; ++i) in[static_cast<size_t>(i)] = 1000 + i * 7;
    for (int op = 0; op < 4; ++op)
      for (int width = 1; width <= ws; width *= 2)
        for (int arg : {0, 1, 3, 5, 16, 31, 33}) {
          DS_LAUNCH(shuffle_kernel, 1, threads, 0, nullptr, op, arg, width, in.data(), out.data());
          for (int t = 0; t < threads; ++t) {
            const int lane = t % ws, base = t - lane;
            const int src = base + expected_source(op, lane, arg, width, ws);
            ASSERT_EQ(out[static_cast<size_t>(t)], in[static_cast<size_t>(src)])
                << "op " << op << " width " << width << " arg " << arg << " lane " << lane << " warp " << ws;
          }
        }
  }
}

__global__ void ballot_kernel(uint64_t* out) {
  const uint64_t b = gpu::ballot(threadIdx.x % 3 == 0);
  if (gpu::lane_id() == 0) out[threadIdx.x / gpu::warp_size()] = b;
}

TEST(Emu, Ballot) {
  for (int ws : {32, 64}) {
    emu::ScopedOptions so(opts(Schedule::kReverse, ws));
    std::vector<uint64_t> out(2);
    DS_LAUNCH(ballot_kernel, 1, 2 * ws, 0, nullptr, out.data());
    for (int w = 0; w < 2; ++w) {
      uint64_t want = 0;
      for (int l = 0; l < ws; ++l)
        if ((w * ws + l) % 3 == 0) want |= uint64_t{1} << l;
      EXPECT_EQ(out[static_cast<size_t>(w)], want) << "warp " << w << " size " << ws;
    }
  }
}

// A block sum over shared memory: correct under every schedule and warp size, the same bytes.
__global__ void block_sum_kernel(const float* in, float* out, int n) {
  float* scratch = gpu::smem<float>();
  float v = 0.0f;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) v += in[blockIdx.x * n + i];
  const float s = gpu::block_sum(v, scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

TEST(Emu, BlockSumIsScheduleIndependent) {
  const int n = 1000, blocks = 5;
  std::vector<float> in(static_cast<size_t>(n * blocks));
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(static_cast<int>(i % 17) - 8);
  for (int ws : {32, 64}) {
    std::vector<float> first;
    for (Schedule s : kSchedules) {
      emu::ScopedOptions so(opts(s, ws));
      std::vector<float> out(blocks);
      DS_LAUNCH(block_sum_kernel, blocks, 256, gpu::kMaxWarp * sizeof(float), nullptr, in.data(), out.data(), n);
      for (int b = 0; b < blocks; ++b) {
        double want = 0;
        for (int i = 0; i < n; ++i) want += in[static_cast<size_t>(b * n + i)];
        EXPECT_EQ(out[static_cast<size_t>(b)], static_cast<float>(want));
      }
      if (first.empty()) first = out;
      EXPECT_EQ(0, std::memcmp(first.data(), out.data(), first.size() * sizeof(float))) << emu::schedule_name(s);
    }
  }
}

// Reads a neighbour's shared-memory slot without a barrier: the schedules must expose the race.
__global__ void racy_kernel(int* out) {
  int* s = gpu::smem<int>();
  s[threadIdx.x] = static_cast<int>(threadIdx.x);
  const int v = gpu::atomic_add(&out[blockDim.x], 0);  // a scheduling point, as any memory op could be
  (void)v;
  out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

TEST(Emu, MissingBarrierShowsAcrossSchedules) {
  std::vector<std::vector<int>> results;
  for (Schedule s : kSchedules) {
    emu::ScopedOptions so(opts(s));
    std::vector<int> out(65, 0);
    DS_LAUNCH(racy_kernel, 1, 64, 64 * sizeof(int), nullptr, out.data());
    results.push_back(out);
  }
  EXPECT_NE(results[0], results[1]);
}

__global__ void poison_kernel(uint32_t* out) { out[threadIdx.x] = gpu::smem<uint32_t>()[threadIdx.x]; }

TEST(Emu, SharedMemoryIsPoisoned) {
  std::vector<uint32_t> out(32);
  DS_LAUNCH(poison_kernel, 1, 32, 32 * sizeof(uint32_t), nullptr, out.data());
  for (uint32_t v : out) EXPECT_EQ(v, 0xFFFFFFFFu);
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void warp_deadlock_kernel(int* out) {
  if (threadIdx.x == 0) {
    __syncthreads();  // lane 0 waits at the block barrier, the other lanes at a shuffle
  } else {
    out[threadIdx.x] = gpu::shfl_xor(static_cast<int>(threadIdx.x), 1);
  }
}

__global__ void exited_lane_kernel(int* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = gpu::shfl_idx(static_cast<int>(threadIdx.x), 5);
}

TEST(Emu, ReportsErrorsInsteadOfHanging) {
  std::vector<int> out(64);
  for (Schedule s : kSchedules) {
    emu::ScopedOptions so(opts(s));
    EXPECT_THROW(DS_LAUNCH(divergent_barrier_kernel, 1, 32, 0, nullptr, out.data()), emu::EmuError);
    try {
      DS_LAUNCH(warp_deadlock_kernel, 2, 32, 0, nullptr, out.data());
      ADD_FAILURE() << "no deadlock reported";
    } catch (const emu::EmuError& e) {
      EXPECT_NE(std::string(e.what()).find("deadlock"), std::string::npos) << e.what();
    }
    EXPECT_THROW(DS_LAUNCH(exited_lane_kernel, 1, 32, 0, nullptr, out.data()), emu::EmuError);
    EXPECT_THROW(DS_LAUNCH(poison_kernel, 1, 32, 300 * 1024, nullptr, reinterpret_cast<uint32_t*>(out.data())),
                 emu::EmuError);
  }
  // The emulator is usable after an aborted launch.
  std::vector<float> in(256, 1.0f), sum(1);
  DS_LAUNCH(block_sum_kernel, 1, 128, gpu::kMaxWarp * sizeof(float), nullptr, in.data(), sum.data(), 256);
  EXPECT_EQ(sum[0], 256.0f);
}

__global__ void count_kernel(int* counter, float* fsum) {
  gpu::atomic_add(counter, 1);
  gpu::atomic_add(fsum, 0.5f);
}

TEST(Emu, AtomicsAcrossBlocks) {
  for (Schedule s : kSchedules) {
    emu::ScopedOptions so(opts(s));
    int counter = 0;
    float fsum = 0.0f;
    DS_LAUNCH(count_kernel, dim3(3, 2), 96, 0, nullptr, &counter, &fsum);
    EXPECT_EQ(counter, 3 * 2 * 96);
    EXPECT_EQ(fsum, 0.5f * 3 * 2 * 96);
  }
}

TEST(Emu, Fp16AndBf16ConversionsRoundToNearestEven) {
  // Every finite half converts to float and back exactly; every float rounds to the nearest half
  // (ties to even), checked against the two neighbouring halves on a sample of float bit patterns.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    const float f = gpu::to_f32(gpu::f16{static_cast<uint16_t>(h)});
    EXPECT_EQ(gpu::from_f32<gpu::f16>(f).bits, h == 0x8000 ? 0x8000 : h);
  }
  std::mt19937 rng(3);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t u = rng() & 0xc7ffffffu;  // |x| < 2^17: normal and subnormal halves, and overflow
    const float x = gpu::bits_to_f32(u);
    const uint16_t h = gpu::from_f32<gpu::f16>(x).bits;
    if ((h & 0x7c00) == 0x7c00) {
      EXPECT_GE(std::fabs(x), 65520.0f);
      continue;
    }
    const double got = gpu::to_f32(gpu::f16{h});
    const double up = gpu::to_f32(gpu::f16{static_cast<uint16_t>(h + 1)});
    const double dn = (h & 0x7fff) ? gpu::to_f32(gpu::f16{static_cast<uint16_t>(h - 1)}) : -got;
    const double err = std::fabs(got - x);
    ASSERT_LE(err, std::fabs(up - x)) << x;
    if ((h & 0x7fff) != 0) {
      ASSERT_LE(err, std::fabs(dn - x)) << x;
    }
    const uint16_t b = gpu::from_f32<gpu::bf16>(x).bits;
    EXPECT_EQ(b, f32_to_bf16(x));
  }
}

}  // namespace
}  // namespace ds
