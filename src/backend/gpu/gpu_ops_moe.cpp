// GpuBackend's dense linears and MoE: linear / linear_shared_input (the vendor BLAS when it takes
// the call, else kernels/gpu/gemm.cu), the router and the grouped experts (kernels/gpu/moe.cu).
#include <algorithm>
#include <cstring>
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
  if (!d) op_fail(op, "a weight this GPU backend did not prepare");
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

Status GpuBackend::prepare_experts(const PreparedWeight* const* gate, const PreparedWeight* const* up,
                                   const PreparedWeight* const* down, int E) {
  if (E <= 0 || E > ds::gpu::kMaxExperts)
    return invalid_argument("expert count " + std::to_string(E) + " out of range (1.." +
                            std::to_string(ds::gpu::kMaxExperts) + ")");
  std::vector<unsigned char> host;
  if (dynamic_cast<const GpuQuantWeight*>(gate[0])) {
    DS_ASSIGN_OR_RETURN(auto t, quant_expert_table(gate, up, down, E));
    host.resize(t.size() * sizeof(t[0]));
    std::memcpy(host.data(), t.data(), host.size());
  } else {
    std::vector<const void*> t(3 * static_cast<size_t>(E));
    const auto* g0 = dynamic_cast<const GpuDenseWeight*>(gate[0]);
    for (int e = 0; e < E; ++e) {
      const auto* g = dynamic_cast<const GpuDenseWeight*>(gate[e]);
      const auto* u = dynamic_cast<const GpuDenseWeight*>(up[e]);
      const auto* d = dynamic_cast<const GpuDenseWeight*>(down[e]);
      if (!g || !u || !d)
        return unsupported("quantized MoE experts need bfloat16 or float16 activations on the GPU backend (--dtype)");
      if (!g0 || g->dtype != g0->dtype || u->dtype != g0->dtype || d->dtype != g0->dtype || g->n != g0->n ||
          u->n != g0->n || g->k != g0->k || u->k != g0->k || d->k != g0->n || d->n != g0->k)
        return invalid_argument("MoE experts must share one shape and dtype (expert " + std::to_string(e) + ")");
      t[static_cast<size_t>(e)] = g->w;
      t[static_cast<size_t>(E + e)] = u->w;
      t[static_cast<size_t>(2 * E + e)] = d->w;
    }
    host.resize(t.size() * sizeof(t[0]));
    std::memcpy(host.data(), t.data(), host.size());
  }
  DS_ASSIGN_OR_RETURN(auto buf, alloc(host.size(), "MoE expert table"));
  DS_RETURN_IF_ERROR(upload_weight(buf->data(), host.data(), host.size()));
  const auto* g0 = static_cast<const GpuWeight*>(gate[0]);
  g0->expert_table = std::move(buf);
  g0->expert_table_of.assign(gate, gate + E);
  g0->expert_table_of.insert(g0->expert_table_of.end(), up, up + E);
  g0->expert_table_of.insert(g0->expert_table_of.end(), down, down + E);
  return Status::ok();
}

const void* GpuBackend::expert_table(const PreparedWeight* const* gate, const PreparedWeight* const* up,
                                     const PreparedWeight* const* down, int E) const {
  const auto* g0 = dynamic_cast<const GpuWeight*>(gate[0]);
  const auto& of = g0 ? g0->expert_table_of : std::vector<const PreparedWeight*>{};
  const size_t n = static_cast<size_t>(E);
  if (!g0 || !g0->expert_table || of.size() != 3 * n || !std::equal(gate, gate + E, of.begin()) ||
      !std::equal(up, up + E, of.begin() + E) || !std::equal(down, down + E, of.begin() + 2 * E))
    op_fail("moe_experts", "these experts were not given to prepare_experts at load");
  return g0->expert_table->data();
}

void GpuBackend::moe_experts(Act x, const int32_t* ids, Act weights, int top_k, int num_experts, const PreparedWeight* const* gate,
                             const PreparedWeight* const* up, const PreparedWeight* const* down, Act out) {
  const int64_t T = x.rows;
  if (T == 0) return;
  const int E = num_experts;
  if (E <= 0 || E > ds::gpu::kMaxExperts) op_fail("moe_experts", "expert count " + std::to_string(E) + " out of range");
  const void* table = expert_table(gate, up, down, E);
  if (dynamic_cast<const GpuQuantWeight*>(gate[0]))
    return quant_moe_experts(x, ids, weights, top_k, E, gate, down, table, out);
  const GpuDenseWeight& g0 = dense(gate[0], "moe_experts");
  if (g0.k != x.cols || down[0]->n != x.cols)
    op_fail("moe_experts", "x=" + dims(x) + " does not fit experts of " + std::to_string(g0.k) + " inputs");
  const DType wt = g0.dtype;
  ds::gpu::MoeShape shape;
  shape.top_k = top_k;
  shape.E = E;
  shape.H = x.cols;
  shape.I = gate[0]->n;
  const size_t avail = scratch_ ? scratch_->bytes() : 0;
  auto need = [&](int64_t tokens) {
    const int64_t pairs = tokens * top_k;
    return align256(ds::gpu::moe_plan_bytes(pairs, E)) +
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
  const auto* tab = static_cast<const void* const*>(table);
  // Token passes keep every slot of a token in one pass, so each token's sum stays in slot order.
  for (int64_t t0 = 0; t0 < T; t0 += pass) {
    shape.T = std::min(pass, T - t0);
    void* plan = base;
    float* work = reinterpret_cast<float*>(base + align256(ds::gpu::moe_plan_bytes(shape.T * top_k, E)));
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
  return align256(ds::gpu::moe_plan_bytes(pairs, ds::gpu::kMaxExperts)) + work;
}

}  // namespace ds::backend::gpu
