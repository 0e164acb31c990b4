// The plain scalar reference kernels (the oracle) and the run-time ISA dispatch.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "deltaserve/core/dtype.h"
#include "deltaserve/kernels/cpu.h"

namespace ds::kernels {

namespace avx2 {
extern const CpuKernels kTable;
}
namespace avx512 {
extern const CpuKernels kTable;
}

namespace {

float dense_weight(const PackedLinear& w, int64_t n, int64_t k) {
  const int64_t i = n * w.k + k;
  switch (w.format) {
    case PackedFormat::kF32: return static_cast<const float*>(w.data)[i];
    case PackedFormat::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case PackedFormat::kF16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    default: return 0.0f;
  }
}

uint32_t packed_code(const PackedLinear& w, int64_t n, int64_t k) {
  const int64_t rb = n / kRowBlock, r = n % kRowBlock;
  const auto* p = static_cast<const uint8_t*>(w.data);
  if (w.format == PackedFormat::kQ8) return p[(rb * w.k + k) * 16 + r];
  const uint8_t byte = p[(rb * w.k + k) * 8 + (r % 8)];
  return r < 8 ? (byte & 0xFu) : (byte >> 4);
}

void linear_rows_scalar(const PackedLinear& w, const float* x, const float* xsum, int64_t m, float* y,
                        int64_t ldy, int64_t rb_begin, int64_t rb_end) {
  const int64_t n_end = std::min(w.n, rb_end * kRowBlock);
  const float sym_zero = w.format == PackedFormat::kQ8 ? 128.0f : 8.0f;
  for (int64_t t = 0; t < m; ++t) {
    const float* xt = x + t * w.k;
    for (int64_t n = rb_begin * kRowBlock; n < n_end; ++n) {
      float acc = 0.0f;
      if (!is_quantized(w.format)) {
        for (int64_t k = 0; k < w.k; ++k) acc += dense_weight(w, n, k) * xt[k];
      } else {
        for (int64_t g = 0; g < w.groups; ++g) {
          float qx = 0.0f;
          for (int64_t k = w.group_start[g]; k < w.group_start[g + 1]; ++k)
            qx += static_cast<float>(packed_code(w, n, k)) * xt[k];
          const float s = f16_to_f32(w.scales[group_param_index(w.groups, g, n)]);
          const float z = w.zeros ? static_cast<float>(w.zeros[group_param_index(w.groups, g, n)]) : sym_zero;
          acc += s * (qx - z * xsum[t * w.groups + g]);
        }
      }
      y[t * ldy + n] = acc + (w.bias ? w.bias[n] : 0.0f);
    }
  }
}

void gdn_recurrent_scalar(float* S, int dk, int dv, int64_t T, const float* q, const float* k,
                          int64_t qk_stride, const float* v, int64_t v_stride, const float* g,
                          const float* beta, int64_t gb_stride, float* o, int64_t o_stride) {
  for (int64_t t = 0; t < T; ++t) {
    const float* qt = q + t * qk_stride;
    const float* kt = k + t * qk_stride;
    const float* vt = v + t * v_stride;
    const float alpha = std::exp(g[t * gb_stride]);
    const float b = beta[t * gb_stride];
    float* ot = o + t * o_stride;
    for (int j = 0; j < dv; ++j) {
      float* row = S + static_cast<int64_t>(j) * dk;
      float sk = 0.0f;
      for (int i = 0; i < dk; ++i) sk += (row[i] *= alpha) * kt[i];  // S <- alpha S;  S^T k
      const float u = b * (vt[j] - sk);
      float so = 0.0f;
      for (int i = 0; i < dk; ++i) so += (row[i] += kt[i] * u) * qt[i];  // S += k u^T;  S^T q
      ot[j] = so;
    }
  }
}

void attention_head_scalar(const float* q, const float* k_cache, const float* v_cache,
                           const int32_t* block_table, int block_size, int64_t block_stride,
                           int64_t row_stride, int kv_head, int hd, int64_t n_ctx, float scale,
                           float* scores, float* out) {
  auto row = [&](const float* base, int64_t p) {
    return base + block_table[p / block_size] * block_stride + (p % block_size) * row_stride +
           static_cast<int64_t>(kv_head) * hd;
  };
  float mx = -INFINITY;
  for (int64_t p = 0; p < n_ctx; ++p) {
    const float* kp = row(k_cache, p);
    float d = 0.0f;
    for (int i = 0; i < hd; ++i) d += q[i] * kp[i];
    scores[p] = d * scale;
    mx = std::max(mx, scores[p]);
  }
  float sum = 0.0f;
  for (int64_t p = 0; p < n_ctx; ++p) sum += (scores[p] = std::exp(scores[p] - mx));
  for (int i = 0; i < hd; ++i) out[i] = 0.0f;
  for (int64_t p = 0; p < n_ctx; ++p) {
    const float* vp = row(v_cache, p);
    const float wgt = scores[p] / sum;
    for (int i = 0; i < hd; ++i) out[i] += wgt * vp[i];
  }
}

const CpuKernels kScalarTable = {CpuIsa::kScalar, linear_rows_scalar, gdn_recurrent_scalar,
                                 attention_head_scalar};

}  // namespace

bool cpu_isa_supported(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return true;
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case CpuIsa::kAvx512:
      return cpu_isa_supported(CpuIsa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx512bf16");
  }
  return false;
}

CpuIsa detect_cpu_isa() {
  CpuIsa cap = CpuIsa::kAvx512;
  if (const char* env = std::getenv("DS_CPU_ISA")) {
    if (!std::strcmp(env, "scalar")) cap = CpuIsa::kScalar;
    else if (!std::strcmp(env, "avx2")) cap = CpuIsa::kAvx2;
  }
  for (CpuIsa isa : {CpuIsa::kAvx512, CpuIsa::kAvx2})
    if (static_cast<int>(isa) <= static_cast<int>(cap) && cpu_isa_supported(isa)) return isa;
  return CpuIsa::kScalar;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return "scalar";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
  }
  return "?";
}

const CpuKernels& cpu_kernels(CpuIsa isa) {
  if (isa == CpuIsa::kAvx512 && cpu_isa_supported(isa)) return avx512::kTable;
  if (isa != CpuIsa::kScalar && cpu_isa_supported(CpuIsa::kAvx2)) return avx2::kTable;
  return kScalarTable;
}

}  // namespace ds::kernels
