// prepare_weight for the CPU: GPTQ / AutoRound int4/int8 (sym/asym, v1/v2 zeros, act-order) are
// repacked once into 16-row interleaved blocks with fp16 scales and uint8 zeros; act-order columns
// are sorted by group (Marlin's argsort(g_idx)) so groups are contiguous and the activation is
// gathered once per call. Dense weights are used in place.
#include <algorithm>
#include <numeric>

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/core/thread_pool.h"
#include "kernels/common/gptq.h"

namespace ds::backend {

using kernels::kRowBlock;
using kernels::PackedFormat;

static Status convert_bias(const WeightSource& src, CpuWeight* w) {
  if (!src.bias) return Status::ok();
  w->bias.resize(static_cast<size_t>(src.n));
  for (int64_t i = 0; i < src.n; ++i) {
    switch (src.bias_dtype) {
      case DType::kF32: w->bias[static_cast<size_t>(i)] = static_cast<const float*>(src.bias)[i]; break;
      case DType::kBF16: w->bias[static_cast<size_t>(i)] = bf16_to_f32(static_cast<const uint16_t*>(src.bias)[i]); break;
      case DType::kF16: w->bias[static_cast<size_t>(i)] = f16_to_f32(static_cast<const uint16_t*>(src.bias)[i]); break;
      default: return unsupported(src.name + ": bias dtype " + dtype_name(src.bias_dtype) + " is not supported");
    }
  }
  w->view.bias = w->bias.data();
  return Status::ok();
}

static Status prepare_quantized(const WeightSource& src, CpuWeight* w) {
  const int bits = src.bits;
  if (bits != 4 && bits != 8) return unsupported(src.name + ": " + std::to_string(bits) + "-bit weights are not supported (4 or 8)");
  if (!src.qweight || !src.scales) return invalid_argument(src.name + ": quantized weight without qweight/scales");
  if (src.scales_dtype != DType::kF16 && src.scales_dtype != DType::kF32 && src.scales_dtype != DType::kBF16)
    return unsupported(src.name + ": scales dtype " + dtype_name(src.scales_dtype));
  if (!src.sym && !src.qzeros) return invalid_argument(src.name + ": asymmetric weight without qzeros");
  const int64_t N = src.n, K = src.k, G = src.scale_groups;
  if (G <= 0) return invalid_argument(src.name + ": no scale groups");
  const int pf = 32 / bits;
  if (K % pf != 0 || (!src.sym && N % pf != 0))
    return invalid_argument(src.name + ": shape [" + std::to_string(N) + ", " + std::to_string(K) + "] is not packable");

  // Group of each input column, then a stable sort by group (identity without act-order).
  std::vector<int32_t> gidx(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    const int64_t g = src.g_idx ? src.g_idx[k] : (src.group_size > 0 ? k / src.group_size : 0);
    if (g < 0 || g >= G) return corrupt(src.name + ": g_idx out of range at column " + std::to_string(k));
    gidx[static_cast<size_t>(k)] = static_cast<int32_t>(g);
  }
  std::vector<int32_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return gidx[static_cast<size_t>(a)] < gidx[static_cast<size_t>(b)]; });
  bool identity = true;
  for (int64_t k = 0; k < K; ++k) identity &= perm[static_cast<size_t>(k)] == k;
  w->group_start.assign(static_cast<size_t>(G + 1), 0);
  for (int32_t g : gidx) ++w->group_start[static_cast<size_t>(g) + 1];
  for (int64_t g = 0; g < G; ++g) w->group_start[static_cast<size_t>(g + 1)] += w->group_start[static_cast<size_t>(g)];

  const int64_t n_pad = (N + kRowBlock - 1) / kRowBlock * kRowBlock;
  const int64_t bytes_per_k = bits == 4 ? 8 : 16;
  w->packed.assign(static_cast<size_t>(n_pad / kRowBlock * K * bytes_per_k), 0);
  const uint32_t mask = (1u << bits) - 1u;
  const int pf_bits = 32 / bits;
  // Row blocks are independent: split them over the cores (repacking dominates load time).
  ThreadPool::global().parallel_for(n_pad / kRowBlock, [&](int64_t rb0, int64_t rb1) {
    for (int64_t rb = rb0; rb < rb1; ++rb) {
      const int64_t n0 = rb * kRowBlock;
      const int rows = static_cast<int>(std::min<int64_t>(kRowBlock, N - n0));
      for (int64_t kk = 0; kk < K; ++kk) {
        const int64_t ksrc = perm[static_cast<size_t>(kk)];
        const int32_t* words = src.qweight + (ksrc / pf_bits) * N + n0;
        const int shift = static_cast<int>(ksrc % pf_bits) * bits;
        uint8_t* dst = w->packed.data() + (rb * K + kk) * bytes_per_k;
        for (int r = 0; r < rows; ++r) {
          const uint32_t q = (static_cast<uint32_t>(words[r]) >> shift) & mask;
          if (bits == 8) dst[r] = static_cast<uint8_t>(q);
          else dst[r % 8] |= static_cast<uint8_t>(r < 8 ? q : q << 4);
        }
      }
    }
  });
  w->scales.assign(static_cast<size_t>(G * n_pad), 0);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t i = g * N + n;
      uint16_t h = 0;
      switch (src.scales_dtype) {
        case DType::kF16: h = static_cast<const uint16_t*>(src.scales)[i]; break;
        case DType::kF32: h = f32_to_f16(static_cast<const float*>(src.scales)[i]); break;
        default: h = f32_to_f16(bf16_to_f32(static_cast<const uint16_t*>(src.scales)[i])); break;
      }
      w->scales[static_cast<size_t>(kernels::group_param_index(G, g, n))] = h;
    }
  if (!src.sym) {
    // v1 stores zero - 1; a stored 2^bits - 1 wraps to 0 as GPTQModel's packed v1->v2 add does.
    w->zeros.assign(static_cast<size_t>(G * n_pad), 0);
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < N; ++n)
        w->zeros[static_cast<size_t>(kernels::group_param_index(G, g, n))] = static_cast<uint8_t>(
            kernels::gptq_zero(src.qzeros, N, bits, false, src.zeros_v2, g, n));
  }
  if (!identity) w->perm = std::move(perm);

  auto& v = w->view;
  v.format = bits == 4 ? PackedFormat::kQ4 : PackedFormat::kQ8;
  v.n = N;
  v.k = K;
  v.n_pad = n_pad;
  v.data = w->packed.data();
  v.scales = w->scales.data();
  v.zeros = w->zeros.empty() ? nullptr : w->zeros.data();
  v.group_start = w->group_start.data();
  v.groups = G;
  v.perm = w->perm.empty() ? nullptr : w->perm.data();
  w->bytes = w->packed.size() + w->scales.size() * 2 + w->zeros.size();
  return Status::ok();
}

Result<std::unique_ptr<CpuWeight>> prepare_cpu_weight(const WeightSource& src) {
  auto w = std::make_unique<CpuWeight>();
  w->n = src.n;
  w->k = src.k;
  if (src.n <= 0 || src.k <= 0) return invalid_argument(src.name + ": empty weight");
  if (src.bits < 16) {
    DS_RETURN_IF_ERROR(prepare_quantized(src, w.get()));
  } else {
    if (!src.weight) return invalid_argument(src.name + ": dense weight without data");
    auto& v = w->view;
    switch (src.weight_dtype) {
      case DType::kF32: v.format = PackedFormat::kF32; break;
      case DType::kBF16: v.format = PackedFormat::kBF16; break;
      case DType::kF16: v.format = PackedFormat::kF16; break;
      default: return unsupported(src.name + ": weight dtype " + dtype_name(src.weight_dtype));
    }
    v.n = src.n;
    v.k = src.k;
    v.n_pad = src.n;
    v.data = src.weight;
    w->aliases_source = true;
    w->bytes = static_cast<size_t>(src.n * src.k) * dtype_size(src.weight_dtype);
  }
  DS_RETURN_IF_ERROR(convert_bias(src, w.get()));
  return w;
}

}  // namespace ds::backend
