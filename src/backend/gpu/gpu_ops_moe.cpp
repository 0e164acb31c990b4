// GpuBackend's dense linears and MoE: linear / linear_shared_input (the vendor BLAS when it takes
// the call, else kernels/gpu/gemm.cu), the router and the grouped experts (kernels/gpu/moe.cu).
#include <algorithm>
#include <string>
#include <vector>

#include "kernels/gpu/ops_gptq.h"
#include "kernels/gpu/ops_moe.h"
#include "src/backend/gpu/blas.h"
#include "src/backend/gpu/gpu_backend.h"
#include "src/backend/gpu/gpu_ops_util.h"

namespace ds::backend::gpu {
namespace {

const GpuDenseWeight& dense(const PreparedWeight* w, const char* op) {
  const auto* d = dynamic_cast<const GpuDenseWeight*>(w);
  if (!d) op_fail(op, "quantized experts need bfloat16 or float16 activations on the GPU backend (--dtype)");
  return *d;
}

// Work area for the experts when reserve_step knows neither H nor I: up to 256 MiB, enough for
// max_tokens * 16 pairs of H + I <= 4096; moe_experts runs in token passes when it is not.
constexpr size_t kMoeWorkCap = size_t{256} << 20;

}  // namespace

void GpuBackend::linear(const PreparedWeight& pw, Act x, Act y) {
  if (const auto* q = dynamic_cast<const GpuQuantWeight*>(&pw)) return quant_linear(*q, x, y);
  if (const auto* q = dynamic_cast<const GpuGptqWeight*>(&pw)) {
    if (x.cols != q->k || y.cols != q->n || x.rows != y.rows)
      op_fail("linear", "shapes do not fit: x=" + dims(x) + " w=" + std::to_string(q->n) + "x" + std::to_string(q->k) +
                         " y=" + dims(y));
    ds::gpu::GptqArgs a;
    a.qweight = q->qweight;
    a.qzeros = q->qzeros;
    a.scales = q->scales;
    a.g_idx = q->g_idx;
    a.bias = q->bias;
    a.m = x.rows;
    a.n = q->n;
    a.k = q->k;
    a.bits = q->bits;
    a.group_size = q->group_size;
    a.sym = q->sym;
    a.zeros_v2 = q->zeros_v2;
    a.bf16_scales = q->bf16_scales;
    ds::gpu::gptq_linear(a, x.data, x.ld, x.dtype, y.data, y.ld, y.dtype, rt_->stream());
    check("linear (GPTQ fallback)", [&] { return std::string("x=" + dims(x) + " w=" + std::to_string(q->n) + "x" + std::to_string(q->k) + " int" +
                                        std::to_string(q->bits) + " y=" + dims(y)); });
    return;
  }
  const GpuDenseWeight& w = dense(&pw, "linear");
  if (x.rows == 0) return;
  if (x.cols != w.k || y.cols != w.n || (y.dtype != x.dtype && y.dtype != DType::kF32))
    op_fail("linear", "shapes or types do not fit: x=" + dims(x) + " w=" + std::to_string(w.n) + "x" +
                       std::to_string(w.k) + " y=" + dims(y));
  // The vendor BLAS first (cuBLASLt on CUDA); our kernel when it declines (HIP, emulation, mixed
  // types) or when y is fp32 under 16-bit activations (the router), which its signature cannot say.
  if (y.dtype == x.dtype && blas_gemm(*rt_, x.dtype, x.data, x.ld, w.dtype, w.w, w.bias, y.data, y.ld, x.rows, w.n, w.k))
    return;
  ds::gpu::linear(x.data, x.ld, x.dtype, w.w, w.dtype, w.bias, y.data, y.ld, y.dtype, x.rows, w.n, w.k,
                  rt_->stream());
  check("linear", [&] { return std::string("x=" + dims(x) + " w=" + std::to_string(w.n) + "x" + std::to_string(w.k) + " " +
                      dtype_name(w.dtype) + " y=" + dims(y)); });
}

void GpuBackend::linear_shared_input(Act x, const PreparedWeight* const* w, const Act* y, int n) {
  for (int i = 0; i < n; ++i) linear(*w[i], x, y[i]);
}

void GpuBackend::moe_route(Act logits, int top_k, bool renormalize, int32_t* ids, Act weights) {
  const int E = static_cast<int>(logits.cols);
  if (E > ds::gpu::kMaxExperts || top_k > ds::gpu::kMaxTopK || top_k > E || top_k <= 0)
    op_fail("moe_route", "needs top_k <= experts, experts <= " + std::to_string(ds::gpu::kMaxExperts) +
                          " and top_k <= " + std::to_string(ds::gpu::kMaxTopK) + "; got E=" + std::to_string(E) +
                          " top_k=" + std::to_string(top_k));
  ds::gpu::moe_route(logits.as<float>(), logits.ld, logits.rows, E, top_k, renormalize, ids, weights.as<float>(),
                     weights.ld, rt_->stream());
  check("moe_route", [&] { return std::string("logits=" + dims(logits) + " top_k=" + std::to_string(top_k)); });
}

void GpuBackend::moe_experts(Act x, const int32_t* ids, Act weights, int top_k, int num_experts, const PreparedWeight* const* gate,
                             const PreparedWeight* const* up, const PreparedWeight* const* down, Act out) {
  const int64_t T = x.rows;
  if (T == 0) return;
  const int E = num_experts;
  if (E <= 0 || E > ds::gpu::kMaxExperts) op_fail("moe_experts", "expert count " + std::to_string(E) + " out of range");
  if (dynamic_cast<const GpuQuantWeight*>(gate[0]))
    return quant_moe_experts(x, ids, weights, top_k, E, gate, up, down, out);
  // Device tables of the experts' weight pointers, uploaded into the scratch head each call.
  std::vector<const void*> table(3 * static_cast<size_t>(E));
  DType wt = DType::kUnknown;
  for (int e = 0; e < E; ++e) {
    const GpuDenseWeight &g = dense(gate[e], "moe_experts"), &u = dense(up[e], "moe_experts"),
                         &d = dense(down[e], "moe_experts");
    if (e == 0) wt = g.dtype;
    if (g.dtype != wt || u.dtype != wt || d.dtype != wt || g.n != gate[0]->n || u.n != g.n || d.k != g.n ||
        g.k != x.cols || d.n != x.cols)
      op_fail("moe_experts", "experts must share one shape and dtype (expert " + std::to_string(e) + ")");
    table[static_cast<size_t>(e)] = g.w;
    table[static_cast<size_t>(E + e)] = u.w;
    table[static_cast<size_t>(2 * E + e)] = d.w;
  }
  ds::gpu::MoeShape shape;
  shape.top_k = top_k;
  shape.E = E;
  shape.H = x.cols;
  shape.I = gate[0]->n;
  const size_t table_bytes = align256(table.size() * sizeof(void*));
  const size_t avail = scratch_ ? scratch_->bytes() : 0;
  auto need = [&](int64_t tokens) {
    const int64_t pairs = tokens * top_k;
    return table_bytes + align256(ds::gpu::moe_plan_bytes(pairs, E)) +
           static_cast<size_t>(pairs) * ds::gpu::moe_work_bytes_per_pair(shape.H, shape.I);
  };
  int64_t pass = T;
  while (pass > 1 && need(pass) > avail) pass = (pass + 1) / 2;
  auto shapes = [&] {
    return "x=" + dims(x) + " E=" + std::to_string(E) + " top_k=" + std::to_string(top_k) + " I=" +
           std::to_string(shape.I) + " out=" + dims(out);
  };
  if (need(pass) > avail)
    op_fail("moe_experts", "op scratch of " + std::to_string(avail) + " bytes is too small [" + shapes() + "]");
  char* base = static_cast<char*>(scratch());
  Status s = rt_->copy_h2d(base, table.data(), table.size() * sizeof(void*));
  if (!s.is_ok()) op_fail("moe_experts (expert table upload)", shapes() + ": " + s.message());
  const auto* tab = reinterpret_cast<const void* const*>(base);
  // Token passes keep every slot of a token in one pass, so each token's sum stays in slot order.
  for (int64_t t0 = 0; t0 < T; t0 += pass) {
    shape.T = std::min(pass, T - t0);
    void* plan = base + table_bytes;
    float* work = reinterpret_cast<float*>(base + table_bytes + align256(ds::gpu::moe_plan_bytes(shape.T * top_k, E)));
    const size_t act = dtype_size(x.dtype);
    ds::gpu::moe_experts(shape, static_cast<const char*>(x.data) + t0 * x.ld * act, x.ld, x.dtype, ids + t0 * top_k,
                         weights.as<float>() + t0 * weights.ld, weights.ld, tab, tab + E, tab + 2 * E, wt,
                         static_cast<char*>(out.data) + t0 * out.ld * act, out.ld, plan, work, rt_->stream());
    check("moe_experts", shapes);
  }
}

size_t GpuBackend::moe_scratch_bytes(const StepLimits& limits, const CacheSpec&) {
  const int64_t pairs = limits.max_tokens * ds::gpu::kMaxTopK;
  const size_t work = std::min(kMoeWorkCap, static_cast<size_t>(pairs) * ds::gpu::moe_work_bytes_per_pair(3072, 1024));
  return align256(3 * ds::gpu::kMaxExperts * sizeof(void*)) + align256(ds::gpu::moe_plan_bytes(pairs, ds::gpu::kMaxExperts)) +
         work;
}

}  // namespace ds::backend::gpu
