// Elementwise glue and row copies: SiLU-mul, sigmoid gates, residual adds (plain and with the
// shared expert's per-row sigmoid gate), the q/gate split of gated attention, row gathers
// (embedding, logit rows) and the GDN gates. Each thread moves one 16-byte vector per operand;
// the grid is rows x column chunks, and contiguous operands are seen as one long row so that
// narrow rows do not leave threads idle.
#include "kernels/common/gdn.h"
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_norm.h"
#include "kernels/gpu/ops_norm_vec.h"

namespace ds::gpu {
namespace {

constexpr int kThreads = 256;

template <typename T, int V, int OP>
__global__ void binary_kernel(const T* a, int64_t lda, const T* b, int64_t ldb, T* out, int64_t ldo, int64_t nv,
                              int chunks, const void* gate, int64_t ld_gate, int gate_code) {
  const int64_t r = blockIdx.x / chunks;
  const int64_t v = static_cast<int64_t>(blockIdx.x % chunks) * blockDim.x + threadIdx.x;
  if (v >= nv) return;
  float fa[V], fb[V];
  load_vec<T, V>(a + r * lda + v * V, fa);
  load_vec<T, V>(b + r * ldb + v * V, fb);
  float s = 0.0f;
  if constexpr (OP == static_cast<int>(BinaryOp::kAddGated)) s = kernels::sigmoidf(load_any(gate, r * ld_gate, gate_code));
  DS_UNROLL
  for (int i = 0; i < V; ++i) {
    if constexpr (OP == static_cast<int>(BinaryOp::kSiluMul)) fa[i] = kernels::siluf(fa[i]) * fb[i];
    if constexpr (OP == static_cast<int>(BinaryOp::kSigmoidGate)) fa[i] = fa[i] * kernels::sigmoidf(fb[i]);
    if constexpr (OP == static_cast<int>(BinaryOp::kAdd)) fa[i] = fa[i] + fb[i];
    if constexpr (OP == static_cast<int>(BinaryOp::kAddGated)) fa[i] = fa[i] + s * fb[i];
  }
  store_vec<T, V>(out + r * ldo + v * V, fa);
}

template <typename T, int V>
void launch_binary(BinaryOp op, const T* a, int64_t lda, const T* b, int64_t ldb, T* out, int64_t ldo, int64_t rows,
                   int64_t cols, const void* gate, int64_t ld_gate, int gate_code, Stream stream) {
  const int64_t nv = cols / V;
  const int threads = threads_for(nv, kThreads);
  const int chunks = ceil_div(nv, threads);
  const unsigned grid = static_cast<unsigned>(rows * chunks);
  switch (op) {
    case BinaryOp::kSiluMul: {
      auto k = binary_kernel<T, V, static_cast<int>(BinaryOp::kSiluMul)>;
      DS_LAUNCH(k, grid, threads, 0, stream, a, lda, b, ldb, out, ldo, nv, chunks, gate, ld_gate, gate_code);
      break;
    }
    case BinaryOp::kSigmoidGate: {
      auto k = binary_kernel<T, V, static_cast<int>(BinaryOp::kSigmoidGate)>;
      DS_LAUNCH(k, grid, threads, 0, stream, a, lda, b, ldb, out, ldo, nv, chunks, gate, ld_gate, gate_code);
      break;
    }
    case BinaryOp::kAdd: {
      auto k = binary_kernel<T, V, static_cast<int>(BinaryOp::kAdd)>;
      DS_LAUNCH(k, grid, threads, 0, stream, a, lda, b, ldb, out, ldo, nv, chunks, gate, ld_gate, gate_code);
      break;
    }
    case BinaryOp::kAddGated: {
      auto k = binary_kernel<T, V, static_cast<int>(BinaryOp::kAddGated)>;
      DS_LAUNCH(k, grid, threads, 0, stream, a, lda, b, ldb, out, ldo, nv, chunks, gate, ld_gate, gate_code);
      break;
    }
  }
}

// dst[i] = src[ids[i] - first_id] (zeros for an id out of range), converted element by element.
template <typename Tin, typename Tout, int V>
__global__ void gather_kernel(const Tin* src, int64_t src_rows, int64_t ld_src, const int32_t* ids, int64_t first_id,
                              Tout* dst, int64_t ld_dst, int64_t nv, int chunks) {
  const int64_t i = blockIdx.x / chunks;
  const int64_t v = static_cast<int64_t>(blockIdx.x % chunks) * blockDim.x + threadIdx.x;
  if (v >= nv) return;
  const int64_t row = ids[i] - first_id;
  float f[V];
  if (row >= 0 && row < src_rows) {
    load_vec<Tin, V>(src + row * ld_src + v * V, f);
  } else {
    DS_UNROLL
    for (int e = 0; e < V; ++e) f[e] = 0.0f;
  }
  store_vec<Tout, V>(dst + i * ld_dst + v * V, f);
}

// One block per (token, head): the head's query and gate halves are adjacent in qg.
template <typename T, int V>
__global__ void split_query_gate_kernel(const T* qg, int64_t ldqg, int heads, int hd, T* q, int64_t ldq, T* gate,
                                        int64_t ldg) {
  const int64_t t = blockIdx.x / heads;
  const int h = static_cast<int>(blockIdx.x % heads);
  const int nv = hd / V;
  const T* src = qg + t * ldqg + static_cast<int64_t>(h) * 2 * hd;
  for (int v = threadIdx.x; v < 2 * nv; v += blockDim.x) {
    const bool is_gate = v >= nv;
    T* dst = (is_gate ? gate + t * ldg : q + t * ldq) + static_cast<int64_t>(h) * hd + (v - (is_gate ? nv : 0)) * V;
    *reinterpret_cast<Pack<T, V>*>(dst) = *reinterpret_cast<const Pack<T, V>*>(src + v * V);
  }
}

__global__ void gdn_gates_kernel(const void* a, int64_t lda, int a_code, const void* b, int64_t ldb, int b_code,
                                 int64_t T, int Hv, const float* A_log, const float* dt_bias, float* g, int64_t ldg,
                                 float* beta, int64_t ldbeta) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * Hv) return;
  const int64_t t = i / Hv;
  const int h = static_cast<int>(i - t * Hv);
  beta[t * ldbeta + h] = kernels::sigmoidf(load_any(b, t * ldb + h, b_code));
  g[t * ldg + h] = kernels::gdn_log_decay(load_any(a, t * lda + h, a_code), A_log[h], dt_bias[h]);
}

}  // namespace

void binary_rows(BinaryOp op, const void* a, int64_t lda, const void* b, int64_t ldb, void* out, int64_t ldo,
                 int64_t rows, int64_t cols, DType dtype, const void* gate, int64_t ld_gate, DType gate_dtype,
                 Stream stream) {
  if (rows <= 0 || cols <= 0) return;
  // Contiguous operands are one long row (the per-row gate needs its rows).
  if (op != BinaryOp::kAddGated && lda == cols && ldb == cols && ldo == cols) {
    cols *= rows;
    rows = 1;
  }
  with_elem_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = static_cast<int>(16 / sizeof(T));
    const T* at = static_cast<const T*>(a);
    const T* bt = static_cast<const T*>(b);
    T* ot = static_cast<T*>(out);
    const int code = elem_code(gate_dtype);
    if (vec_ok(kVec, sizeof(T), cols, {{a, lda}, {b, ldb}, {out, ldo}}))
      launch_binary<T, kVec>(op, at, lda, bt, ldb, ot, ldo, rows, cols, gate, ld_gate, code, stream);
    else
      launch_binary<T, 1>(op, at, lda, bt, ldb, ot, ldo, rows, cols, gate, ld_gate, code, stream);
  });
}

void gather_rows(const void* src, DType src_dtype, int64_t src_rows, int64_t ld_src, int64_t cols,
                 const int32_t* ids, int64_t n, void* dst, DType dst_dtype, int64_t ld_dst, Stream stream,
                 int64_t first_id) {
  if (n <= 0 || cols <= 0) return;
  with_elem_type(src_dtype, [&](auto in_tag) {
    with_elem_type(dst_dtype, [&](auto out_tag) {
      using Tin = decltype(in_tag);
      using Tout = decltype(out_tag);
      constexpr int kVec = static_cast<int>(16 / (sizeof(Tin) > sizeof(Tout) ? sizeof(Tin) : sizeof(Tout)));
      const bool vec = vec_ok(kVec, sizeof(Tin), cols, {{src, ld_src}}) && vec_ok(kVec, sizeof(Tout), cols, {{dst, ld_dst}});
      const int V = vec ? kVec : 1;
      const int64_t nv = cols / V;
      const int threads = threads_for(nv, kThreads);
      const int chunks = ceil_div(nv, threads);
      const unsigned grid = static_cast<unsigned>(n * chunks);
      const Tin* s = static_cast<const Tin*>(src);
      Tout* d = static_cast<Tout*>(dst);
      if (vec) {
        auto k = gather_kernel<Tin, Tout, kVec>;
        DS_LAUNCH(k, grid, threads, 0, stream, s, src_rows, ld_src, ids, first_id, d, ld_dst, nv, chunks);
      } else {
        auto k = gather_kernel<Tin, Tout, 1>;
        DS_LAUNCH(k, grid, threads, 0, stream, s, src_rows, ld_src, ids, first_id, d, ld_dst, nv, chunks);
      }
    });
  });
}

void split_query_gate(const void* qg, int64_t ldqg, int64_t T, int heads, int hd, void* q, int64_t ldq, void* gate,
                      int64_t ldg, DType dtype, Stream stream) {
  if (T <= 0 || heads <= 0 || hd <= 0) return;
  with_elem_type(dtype, [&](auto tag) {
    using T_ = decltype(tag);
    constexpr int kVec = static_cast<int>(16 / sizeof(T_));
    const T_* s = static_cast<const T_*>(qg);
    T_* qt = static_cast<T_*>(q);
    T_* gt = static_cast<T_*>(gate);
    const unsigned grid = static_cast<unsigned>(T * heads);
    if (vec_ok(kVec, sizeof(T_), hd, {{qg, ldqg}, {q, ldq}, {gate, ldg}})) {
      auto k = split_query_gate_kernel<T_, kVec>;
      DS_LAUNCH(k, grid, threads_for(2 * (hd / kVec), kThreads), 0, stream, s, ldqg, heads, hd, qt, ldq, gt, ldg);
    } else {
      auto k = split_query_gate_kernel<T_, 1>;
      DS_LAUNCH(k, grid, threads_for(2 * hd, kThreads), 0, stream, s, ldqg, heads, hd, qt, ldq, gt, ldg);
    }
  });
}

void gdn_gates(const void* a, int64_t lda, DType a_dtype, const void* b, int64_t ldb, DType b_dtype, int64_t T, int Hv,
               const float* A_log, const float* dt_bias, float* g, int64_t ldg, float* beta, int64_t ldbeta,
               Stream stream) {
  if (T <= 0 || Hv <= 0) return;
  const int64_t n = T * Hv;
  const int threads = threads_for(n, kThreads);
  DS_LAUNCH(gdn_gates_kernel, ceil_div(n, threads), threads, 0, stream, a, lda, elem_code(a_dtype), b, ldb,
            elem_code(b_dtype), T, Hv, A_log, dt_bias, g, ldg, beta, ldbeta);
}

}  // namespace ds::gpu
