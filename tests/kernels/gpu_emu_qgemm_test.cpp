// The Marlin-style quantized GEMM's pieces under emulation: the matrix-instruction layouts against
// tables written from the PTX ISA and the CDNA MFMA calculator (not from mma.h's formulas), the
// instruction itself against a plain matmul, the bit-trick dequantisers and lop3/prmt exhaustively,
// and the GEMM (repack + kernel) against an fp64 reference: random data within a stated bound, and
// exact data (integer activations, power-of-two scales) where every result must match bit for bit;
// INT4/INT8, sym/asym, GPTQ v1/v2 zeros, group sizes 32/64/128/-1, act-order, odd M/N/K, split-K
// with grids larger than the resident limit; warp 32 (mma.sync layout) and 64 (MFMA layout), each
// under three schedules that must give identical bytes.
#define DS_EMU 1
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/emu/emu.h"
#include "kernels/gpu/dequant.h"
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_qgemm.h"

namespace ds::gpu {
namespace {

float val(f16 v) { return to_f32(v); }
float val(bf16 v) { return to_f32(v); }

// ---- layouts: independent tables -------------------------------------------------------------
// PTX ISA "Matrix Fragments for mma.m16n8k16" (f16/bf16): groupID g = lane / 4, t = lane % 4.
struct RowCol {
  int row, col;
};
RowCol ptx_a(int lane, int i) {
  const int g = lane / 4, t = lane % 4;
  const int row = (i == 0 || i == 1 || i == 4 || i == 5) ? g : g + 8;
  const int col = (i < 4) ? t * 2 + (i & 1) : t * 2 + (i & 1) + 8;
  return {row, col};
}
RowCol ptx_b(int lane, int i) {
  const int g = lane / 4, t = lane % 4;
  return {(i < 2) ? t * 2 + (i & 1) : t * 2 + (i & 1) + 8, g};
}
RowCol ptx_c(int lane, int i) {
  const int g = lane / 4, t = lane % 4;
  return {(i < 2) ? g : g + 8, t * 2 + (i & 1)};
}
// AMD matrix instruction calculator, v_mfma_f32_16x16x16f16: A[i][k] in lane i + 16 * (k / 4),
// element k % 4; B[k][j] in lane j + 16 * (k / 4), element k % 4; D[i][j] in lane j + 16 * (i / 4),
// element i % 4.
RowCol cdna_a(int lane, int e) { return {lane % 16, 4 * (lane / 16) + e}; }
RowCol cdna_b(int lane, int e) { return {4 * (lane / 16) + e, lane % 16}; }
RowCol cdna_c(int lane, int e) { return {4 * (lane / 16) + e, lane % 16}; }

TEST(QgemmLayout, MmaNvMatchesPtxTables) {
  for (int l = 0; l < 32; ++l) {
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(MmaNv::a_row(l, i), ptx_a(l, i).row) << l << " " << i;
      EXPECT_EQ(MmaNv::a_col(l, i), ptx_a(l, i).col) << l << " " << i;
    }
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(MmaNv::b_row(l, i), ptx_b(l, i).row);
      EXPECT_EQ(MmaNv::b_col(l, i), ptx_b(l, i).col);
      EXPECT_EQ(MmaNv::c_row(l, i), ptx_c(l, i).row);
      EXPECT_EQ(MmaNv::c_col(l, i), ptx_c(l, i).col);
    }
  }
}

TEST(QgemmLayout, MmaCdnaMatchesCalculator) {
  for (int l = 0; l < 64; ++l)
    for (int e = 0; e < 4; ++e) {
      EXPECT_EQ(MmaCdna::a_row(l, e), cdna_a(l, e).row);
      EXPECT_EQ(MmaCdna::a_col(l, e), cdna_a(l, e).col);
      EXPECT_EQ(MmaCdna::b_row(l, e), cdna_b(l, e).row);
      EXPECT_EQ(MmaCdna::b_col(l, e), cdna_b(l, e).col);
      EXPECT_EQ(MmaCdna::c_row(l, e), cdna_c(l, e).row);
      EXPECT_EQ(MmaCdna::c_col(l, e), cdna_c(l, e).col);
    }
}

// One warp: D = C + A B from row-major host matrices through the lane fragments.
template <class Mma, typename T>
__global__ void mma_kernel(const float* A, const float* B, const float* C, float* D) {
  const int l = lane_id();
  h2 a[Mma::kARegs], b[2];
  float c[4];
  for (int r = 0; r < Mma::kARegs; ++r)
    a[r] = h2_pack(from_f32<T>(A[Mma::a_row(l, 2 * r) * 16 + Mma::a_col(l, 2 * r)]),
                   from_f32<T>(A[Mma::a_row(l, 2 * r + 1) * 16 + Mma::a_col(l, 2 * r + 1)]));
  for (int r = 0; r < 2; ++r)
    b[r] = h2_pack(from_f32<T>(B[Mma::b_row(l, 2 * r) * Mma::kN + Mma::b_col(l, 2 * r)]),
                   from_f32<T>(B[Mma::b_row(l, 2 * r + 1) * Mma::kN + Mma::b_col(l, 2 * r + 1)]));
  for (int e = 0; e < 4; ++e) c[e] = C[Mma::c_row(l, e) * Mma::kN + Mma::c_col(l, e)];
  mma<Mma, T>(c, a, b);
  for (int e = 0; e < 4; ++e) D[Mma::c_row(l, e) * Mma::kN + Mma::c_col(l, e)] = c[e];
}

template <class Mma, typename T>
void check_mma() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> d(-16, 16);
  std::vector<float> A(256), B(16 * Mma::kN), C(16 * Mma::kN), D(16 * Mma::kN);
  for (auto* v : {&A, &B, &C})
    for (auto& x : *v) x = static_cast<float>(d(rng));
  emu::Options o;
  o.warp_size = Mma::kLanes;
  emu::ScopedOptions scoped(o);
  auto k = mma_kernel<Mma, T>;
  DS_LAUNCH(k, 1, Mma::kLanes, 0, nullptr, A.data(), B.data(), C.data(), D.data());
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < Mma::kN; ++j) {
      float want = C[i * Mma::kN + j];
      for (int q = 0; q < 16; ++q) want += A[i * 16 + q] * B[q * Mma::kN + j];
      EXPECT_EQ(D[i * Mma::kN + j], want) << i << "," << j;
    }
}

TEST(QgemmLayout, EmulatedMmaIsAMatmul) {
  check_mma<MmaNv, f16>();
  check_mma<MmaNv, bf16>();
  check_mma<MmaCdna, f16>();
  check_mma<MmaCdna, bf16>();
}

TEST(QgemmLayout, MmaOnTheWrongWarpSizeFails) {
  emu::Options o;
  o.warp_size = 64;
  emu::ScopedOptions scoped(o);
  std::vector<float> m(256, 0.0f);
  auto k = mma_kernel<MmaNv, f16>;
  EXPECT_THROW(DS_LAUNCH(k, 1, 64, 0, nullptr, m.data(), m.data(), m.data(), m.data()), emu::EmuError);
}

// ---- bit tricks -------------------------------------------------------------------------------
TEST(QgemmDequant, Lop3EveryTruthTable) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 8; ++trial) {
    const uint32_t a = rng(), b = rng(), c = rng();
    auto check = [&](auto lut_c) {
      constexpr int kLut = decltype(lut_c)::value;
      const uint32_t got = lop3<kLut>(a, b, c);
      for (int bit = 0; bit < 32; ++bit) {
        const int idx = (((a >> bit) & 1) << 2) | (((b >> bit) & 1) << 1) | ((c >> bit) & 1);
        ASSERT_EQ((got >> bit) & 1, static_cast<uint32_t>((kLut >> idx) & 1)) << "lut " << kLut;
      }
    };
    [&]<int... L>(std::integer_sequence<int, L...>) {
      (check(std::integral_constant<int, L>{}), ...);
    }(std::make_integer_sequence<int, 256>{});
  }
}

TEST(QgemmDequant, BytePermEverySelector) {
  std::mt19937 rng(5);
  const uint32_t a = rng(), b = rng();
  uint8_t bytes[8];
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<uint8_t>(a >> (8 * i)), bytes[4 + i] = static_cast<uint8_t>(b >> (8 * i));
  for (uint32_t sel = 0; sel < 0x10000; ++sel) {
    uint32_t want = 0;
    for (int i = 0; i < 4; ++i) want |= static_cast<uint32_t>(bytes[(sel >> (4 * i)) & 7]) << (8 * i);
    ASSERT_EQ(byte_perm(a, b, sel), want) << std::hex << sel;
  }
}

// Every value of each 16-bit half of the word (each output half depends on one half only).
template <typename T, int kBits>
void check_codes() {
  const float magic = code_magic<T, kBits>();
  for (uint32_t lo = 0; lo < 0x10000; ++lo) {
    const uint32_t w = lo | (((lo * 40503u + 7u) & 0xffffu) << 16);  // the high half: a bijection of lo
    if constexpr (kBits == 4) {
      h2 out[4];
      codes_int4<T>(w, out);
      for (int j = 0; j < 4; ++j) {
        ASSERT_EQ(val(h2_lo<T>(out[j])), magic + static_cast<float>((w >> (4 * j)) & 15)) << std::hex << w;
        ASSERT_EQ(val(h2_hi<T>(out[j])), magic + static_cast<float>((w >> (4 * (j + 4))) & 15)) << std::hex << w;
      }
    } else {
      h2 out[2];
      codes_int8<T>(w, out);
      for (int j = 0; j < 2; ++j) {
        ASSERT_EQ(val(h2_lo<T>(out[j])), magic + static_cast<float>((w >> (8 * j)) & 255)) << std::hex << w;
        ASSERT_EQ(val(h2_hi<T>(out[j])), magic + static_cast<float>((w >> (8 * (j + 2))) & 255)) << std::hex << w;
      }
    }
  }
}

TEST(QgemmDequant, CodesExhaustive) {
  check_codes<f16, 4>();
  check_codes<bf16, 4>();
  check_codes<f16, 8>();
  check_codes<bf16, 8>();
}

// The kernel's weight arithmetic: (M + q) - (M + z) exactly, times the scale rounded once.
TEST(QgemmDequant, SubtractThenScaleRoundsOnce) {
  for (int q = 0; q < 256; ++q)
    for (int z : {0, 1, 8, 128, 255}) {
      for (float s : {0.0123f, 3.5e-4f, 1.0f / 64}) {
        const h2 code = h2_splat(from_f32<f16>(1024.0f + static_cast<float>(q)));
        const h2 zero = h2_splat(from_f32<f16>(1024.0f + static_cast<float>(z)));
        const f16 sc = from_f32<f16>(s);
        const h2 w = h2_mul<f16>(h2_sub<f16>(code, zero), h2_splat(sc));
        const float want = to_f32(from_f32<f16>(static_cast<float>(q - z) * to_f32(sc)));
        ASSERT_EQ(to_f32(h2_lo<f16>(w)), want) << q << " " << z << " " << s;
      }
    }
}

// ---- the GEMM ----------------------------------------------------------------------------------
struct Case {
  int bits = 4;
  int64_t m = 1, n = 64, k = 128;
  int group_size = 32;
  bool sym = true, zeros_v2 = false, act_order = false;
  DType act = DType::kBF16;
  bool f32_out = false;
  bool exact = false;        // integer activations, power-of-two scales
  int target_blocks = 0;     // > 0: split K when the grid has fewer blocks
};

std::string describe(const Case& c) {
  return "int" + std::to_string(c.bits) + " m" + std::to_string(c.m) + " n" + std::to_string(c.n) + " k" +
         std::to_string(c.k) + " g" + std::to_string(c.group_size) + (c.sym ? " sym" : c.zeros_v2 ? " asym-v2" : " asym-v1") +
         (c.act_order ? " act-order" : "") + " " + dtype_name(c.act) + (c.exact ? " exact" : "");
}

uint16_t to16(DType dt, float v) { return dt == DType::kF16 ? from_f32<f16>(v).bits : from_f32<bf16>(v).bits; }
float from16(DType dt, uint16_t b) { return dt == DType::kF16 ? to_f32(f16{b}) : to_f32(bf16{b}); }

// A checkpoint's GPTQ tensors and what the kernel should compute from them.
struct Problem {
  std::vector<int32_t> qweight, qzeros, g_idx, perm;
  std::vector<uint16_t> scales;  // fp16, as checkpoints store them
  std::vector<uint16_t> x;       // [m][k] of act
  int64_t groups = 1;
  std::vector<double> ref;       // [m][n]
  std::vector<double> mag;       // [m][n] sum |x w|: the error scale
};

Problem make_problem(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p;
  const int pf = 32 / c.bits, maxq = (1 << c.bits) - 1;
  const int gs = c.group_size > 0 ? c.group_size : static_cast<int>(c.k);
  p.groups = (c.k + gs - 1) / gs;
  std::vector<int> code(static_cast<size_t>(c.k * c.n));
  for (auto& v : code) v = static_cast<int>(rng() % (maxq + 1));
  p.qweight.assign(static_cast<size_t>(c.k / pf * c.n), 0);
  for (int64_t k = 0; k < c.k; ++k)
    for (int64_t n = 0; n < c.n; ++n)
      p.qweight[static_cast<size_t>(k / pf * c.n + n)] |= code[static_cast<size_t>(k * c.n + n)] << ((k % pf) * c.bits);
  // g_idx: act-order permutes which rows form a group (GPTQModel's un-permuted layout).
  p.g_idx.resize(static_cast<size_t>(c.k));
  std::vector<int32_t> order(static_cast<size_t>(c.k));
  std::iota(order.begin(), order.end(), 0);
  if (c.act_order) std::shuffle(order.begin(), order.end(), rng);
  for (int64_t i = 0; i < c.k; ++i) p.g_idx[static_cast<size_t>(order[static_cast<size_t>(i)])] = static_cast<int32_t>(i / gs);
  if (c.act_order) {
    p.perm.resize(static_cast<size_t>(c.k));
    std::iota(p.perm.begin(), p.perm.end(), 0);
    std::stable_sort(p.perm.begin(), p.perm.end(), [&](int a, int b) { return p.g_idx[static_cast<size_t>(a)] < p.g_idx[static_cast<size_t>(b)]; });
  }
  // zeros: true zero z in [0, maxq]; stored z (v2) or z - 1 wrapped to the field (v1).
  std::vector<int> zero(static_cast<size_t>(p.groups * c.n), 1 << (c.bits - 1));
  const int64_t zw = (c.n + pf - 1) / pf;
  p.qzeros.assign(static_cast<size_t>(p.groups * zw), 0);
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t n = 0; n < c.n; ++n) {
      int z = c.sym ? (1 << (c.bits - 1)) : static_cast<int>(rng() % (maxq + 1));
      if (!c.sym && n == 0) z = 0;  // the v1 wrap: stored as maxq
      zero[static_cast<size_t>(g * c.n + n)] = z;
      const uint32_t stored = static_cast<uint32_t>(c.zeros_v2 ? z : z - 1) & static_cast<uint32_t>(maxq);
      p.qzeros[static_cast<size_t>(g * zw + n / pf)] |= static_cast<int32_t>(stored << ((n % pf) * c.bits));
    }
  p.scales.resize(static_cast<size_t>(p.groups * c.n));
  std::uniform_real_distribution<float> us(0.002f, 0.05f);
  for (auto& s : p.scales) s = c.exact ? from_f32<f16>(std::ldexp(1.0f, -static_cast<int>(rng() % 4))).bits : from_f32<f16>(us(rng)).bits;
  p.x.resize(static_cast<size_t>(c.m * c.k));
  std::normal_distribution<float> nx(0.0f, 1.0f);
  for (auto& v : p.x) v = to16(c.act, c.exact ? static_cast<float>(static_cast<int>(rng() % 9) - 4) : nx(rng));
  p.ref.assign(static_cast<size_t>(c.m * c.n), 0.0);
  p.mag.assign(static_cast<size_t>(c.m * c.n), 0.0);
  for (int64_t m = 0; m < c.m; ++m)
    for (int64_t n = 0; n < c.n; ++n) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < c.k; ++k) {
        const int64_t g = p.g_idx[static_cast<size_t>(k)];
        // the scale as the kernel holds it: rounded to the activation type
        const double sc = from16(c.act, to16(c.act, to_f32(f16{p.scales[static_cast<size_t>(g * c.n + n)]})));
        const double w = sc * (code[static_cast<size_t>(k * c.n + n)] - zero[static_cast<size_t>(g * c.n + n)]);
        const double xv = from16(c.act, p.x[static_cast<size_t>(m * c.k + k)]);
        s += xv * w;
        a += std::fabs(xv * w);
      }
      p.ref[static_cast<size_t>(m * c.n + n)] = s;
      p.mag[static_cast<size_t>(m * c.n + n)] = a;
    }
  return p;
}

// Repack + GEMM on the emulated device; the output as floats.
std::vector<float> run_qgemm(const Case& c, const Problem& p, int lanes, int* splits_out) {
  const QLayout l = make_qlayout(lanes, c.bits, c.act, c.n, c.k, c.group_size, p.groups);
  std::vector<uint32_t> packed(qlayout_packed_bytes(l) / 4, 0xdeadbeef);
  std::vector<uint16_t> sc(qlayout_scale_bytes(l) / 2, 0xffff), zs(qlayout_scale_bytes(l) / 2, 0xffff);
  qgemm_repack(l, p.qweight.data(), c.act_order ? p.perm.data() : nullptr, packed.data(), nullptr);
  qgemm_repack_scales(l, p.scales.data(), DType::kF16, p.qzeros.data(), c.sym, c.zeros_v2, sc.data(), zs.data(), nullptr);
  std::vector<uint16_t> xg;
  const void* x = p.x.data();
  int64_t ldx = c.k;
  if (c.act_order) {
    xg.assign(static_cast<size_t>(c.m * l.k_pad), 0xffff);
    qgemm_gather_columns(p.x.data(), c.k, c.act, p.perm.data(), c.m, c.k, xg.data(), l.k_pad, nullptr);
    x = xg.data();
    ldx = l.k_pad;
  }
  QGemmCall call;
  call.layout = l;
  call.w = {packed.data(), sc.data(), c.sym ? nullptr : zs.data()};
  call.x = x;
  call.ldx = ldx;
  call.m = c.m;
  const int64_t ldy = c.n + 3;  // a strided output
  std::vector<float> yf(static_cast<size_t>(c.m * ldy), NAN);
  std::vector<uint16_t> yh(static_cast<size_t>(c.m * ldy), 0xffff);
  call.y_type = c.f32_out ? DType::kF32 : c.act;
  call.y = c.f32_out ? static_cast<void*>(yf.data()) : static_cast<void*>(yh.data());
  call.ldy = ldy;
  std::vector<float> ws(1 << 20, NAN);
  std::vector<int32_t> counters(4096, 0);
  if (c.target_blocks > 0) {
    call.workspace = ws.data();
    call.workspace_bytes = ws.size() * sizeof(float);
    call.counters = counters.data();
    call.num_counters = static_cast<int>(counters.size());
    call.target_blocks = c.target_blocks;
  }
  *splits_out = qgemm_splits(call);
  qgemm(call, nullptr);
  for (int32_t v : counters) EXPECT_EQ(v, 0) << "arrival counters must be left at zero";
  std::vector<float> out(static_cast<size_t>(c.m * c.n));
  for (int64_t m = 0; m < c.m; ++m)
    for (int64_t n = 0; n < c.n; ++n) {
      const size_t i = static_cast<size_t>(m * ldy + n);
      out[static_cast<size_t>(m * c.n + n)] = c.f32_out ? yf[i] : from16(c.act, yh[i]);
    }
  return out;
}

void check_case(const Case& c, uint32_t seed = 11) {
  const Problem p = make_problem(c, seed);
  // bound: the weight rounded to the activation type (one rounding per product), fp32 sums, the
  // output rounding
  const double u = c.act == DType::kF16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
  for (int lanes : {32, 64}) {
    std::vector<float> first;
    for (auto sched : {emu::Schedule::kInOrder, emu::Schedule::kReverse, emu::Schedule::kRandom}) {
      emu::Options o;
      o.warp_size = lanes;
      o.schedule = sched;
      o.seed = seed;
      o.max_resident_blocks = 3;
      emu::ScopedOptions scoped(o);
      int splits = 0;
      const std::vector<float> got = run_qgemm(c, p, lanes, &splits);
      const std::string where = describe(c) + " lanes " + std::to_string(lanes) + " " + emu::schedule_name(sched) +
                                " splits " + std::to_string(splits);
      if (c.target_blocks > 0) {
        EXPECT_GT(splits, 1) << where;
      }
      size_t bad = 0;
      double worst = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double want = c.f32_out ? static_cast<double>(static_cast<float>(p.ref[i])) : from16(c.act, to16(c.act, static_cast<float>(p.ref[i])));
        const double err = std::fabs(got[i] - want);
        const double tol = c.exact ? 0.0 : (u + 1e-5) * p.mag[i] + (c.f32_out ? 0.0 : u * std::fabs(p.ref[i])) + 1e-6;
        worst = std::max(worst, err / (p.mag[i] + 1e-30));
        if (!(err <= tol)) {
          if (bad < 3) ADD_FAILURE() << where << ": element " << i << " got " << got[i] << " want " << want << " (tol " << tol << ")";
          ++bad;
        }
      }
      EXPECT_EQ(bad, 0u) << where << ", worst error / sum|xw| " << worst;
      if (first.empty()) first = got;
      else EXPECT_EQ(0, std::memcmp(first.data(), got.data(), got.size() * 4)) << where << " changed the bytes";
    }
  }
}

TEST(Qgemm, Int4SymDecode) {
  Case c;
  c.m = 1;
  c.n = 128;
  c.k = 256;
  check_case(c);
  c.act = DType::kF16;
  check_case(c);
}

TEST(Qgemm, Int4OddShapesAndGroups) {
  for (int gs : {32, 64, 128, -1}) {
    Case c;
    c.m = 5;
    c.n = 72;    // a partial 64-column block
    c.k = 200;   // a partial k-tile; groups cross tiles
    c.group_size = gs;
    check_case(c);
  }
}

TEST(Qgemm, Int8AsymV1AndV2) {
  Case c;
  c.bits = 8;
  c.m = 17;
  c.n = 68;  // qzeros pack N / 4 words per row: N is a multiple of 4
  c.k = 100;
  c.sym = false;
  c.group_size = 32;
  check_case(c);
  c.zeros_v2 = true;
  c.act = DType::kF16;
  check_case(c);
}

TEST(Qgemm, Int4AsymFp32Output) {
  Case c;
  c.m = 33;
  c.n = 64;
  c.k = 128;
  c.sym = false;
  c.f32_out = true;
  check_case(c);
}

TEST(Qgemm, ActOrder) {
  Case c;
  c.m = 3;
  c.n = 64;
  c.k = 128;
  c.act_order = true;
  check_case(c);
  c.bits = 8;
  c.act = DType::kF16;
  check_case(c);
}

TEST(Qgemm, PrefillRowsBeyondOneTile) {
  Case c;
  c.m = 70;  // two 64-row tiles
  c.n = 64;
  c.k = 64;
  check_case(c);
}

TEST(Qgemm, ExactDataMatchesBitForBit) {
  for (int bits : {4, 8})
    for (DType act : {DType::kBF16, DType::kF16}) {
      Case c;
      c.bits = bits;
      c.act = act;
      c.m = 20;
      c.n = 80;
      c.k = 160;
      c.sym = bits == 4;
      c.exact = true;
      c.f32_out = true;
      check_case(c);
    }
}

TEST(Qgemm, SplitKLastBlockReduces) {
  Case c;
  c.m = 2;
  c.n = 130;
  c.k = 512;
  c.target_blocks = 24;  // 3 n-blocks -> 8 splits: 24 blocks over 3 resident
  check_case(c);
  c.exact = true;
  c.f32_out = true;
  check_case(c);
}

}  // namespace
}  // namespace ds::gpu
