// GpuBackend's GPTQ/AutoRound weights on the quantized GEMM (kernels/gpu/qgemm.cu): the repack at
// load (checkpoint tensors uploaded to a reused staging area on the device, repacked there into the
// tile layout; never dequantised), dense linears (act-order inputs gathered first), and the MoE
// experts as two grouped launches (silu(gate) * up over both weights, then down) over the router's
// grouping, the top-k weights applied in the combine. Layouts the tile kernels do not take (fp32
// activations, group sizes that are not multiples of 16, act-order groups of unequal size) keep the
// checkpoint layout for the portable kernel (kernels/gpu/gptq_linear.cu). The experts' pointer
// table is built at load (prepare_experts, gpu_ops_moe.cpp).
#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/gpu/ops_moe.h"
#include "kernels/gpu/ops_qgemm.h"
#include "src/backend/gpu/gpu_backend.h"
#include "src/backend/gpu/gpu_ops_util.h"

namespace ds::backend::gpu {

namespace {

constexpr int kCounters = 16384;  // split-K arrival counters (tiles x column blocks of one call)

// The sorted order of an act-order g_idx, when the tile kernels can take it: empty for the plain
// order (g_idx[k] == k / group_size), else perm with g_idx[perm[r]] == r / group_size for every r.
// Sets *ok false when groups are not contiguous runs of group_size rows once sorted.
std::vector<int32_t> act_order_perm(const int32_t* g_idx, int64_t k, int64_t group_rows, bool* ok) {
  *ok = true;
  if (g_idx == nullptr) return {};
  bool plain = true;
  for (int64_t i = 0; i < k && plain; ++i) plain = g_idx[i] == i / group_rows;
  if (plain) return {};
  std::vector<int32_t> perm(static_cast<size_t>(k));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return g_idx[a] < g_idx[b]; });
  for (int64_t r = 0; r < k && *ok; ++r) *ok = g_idx[perm[static_cast<size_t>(r)]] == r / group_rows;
  return perm;
}

}  // namespace

Result<std::unique_ptr<PreparedWeight>> GpuBackend::prepare_quant(const WeightSource& src) {
  const DType act = options_.activation_dtype;
  const int64_t n = src.n, k = src.k;
  const int64_t gs = src.group_size > 0 && src.group_size < k ? src.group_size : 0;
  const bool sym = src.sym || src.qzeros == nullptr;
  if ((act != DType::kBF16 && act != DType::kF16) || (gs % 16) != 0 || (!sym && n % (32 / src.bits) != 0))
    return std::unique_ptr<PreparedWeight>();  // the portable kernel's
  const ds::gpu::QLayout l = ds::gpu::make_qlayout(ds::gpu::qgemm_lanes(), src.bits, act, n, k, static_cast<int>(gs),
                                                    gs ? src.scale_groups : 1);
  bool groups_ok = true;
  const std::vector<int32_t> perm = act_order_perm(src.g_idx, k, l.group_rows, &groups_ok);
  if (!groups_ok) return std::unique_ptr<PreparedWeight>();
  if ((k + l.group_rows - 1) / l.group_rows > src.scale_groups)
    return corrupt(src.name + ": fewer scale groups than K / group_size");

  // The checkpoint's tensors into the staging area (grown as needed, reused by every weight: the
  // uploads and repacks of consecutive weights are ordered on the stream).
  const size_t qw_bytes = static_cast<size_t>(k / (32 / src.bits) * n) * 4;
  const size_t sc_bytes = static_cast<size_t>(src.scale_groups * n) * 2;
  const size_t qz_bytes = sym ? 0 : static_cast<size_t>(src.scale_groups * (n / (32 / src.bits))) * 4;
  const size_t need = align256(qw_bytes) + align256(sc_bytes) + align256(qz_bytes);
  if (!repack_tmp_ || repack_tmp_->bytes() < need) {
    repack_tmp_.reset();
    DS_ASSIGN_OR_RETURN(repack_tmp_, alloc(need, "weight repack staging"));
  }
  char* tmp = static_cast<char*>(repack_tmp_->data());
  auto* qw = reinterpret_cast<int32_t*>(tmp);
  auto* sc = reinterpret_cast<uint16_t*>(tmp + align256(qw_bytes));
  auto* qz = sym ? nullptr : reinterpret_cast<int32_t*>(tmp + align256(qw_bytes) + align256(sc_bytes));
  DS_RETURN_IF_ERROR(upload_weight(qw, src.qweight, qw_bytes));
  DS_RETURN_IF_ERROR(upload_weight(sc, src.scales, sc_bytes));
  if (qz) {
    DS_RETURN_IF_ERROR(upload_weight(qz, src.qzeros, qz_bytes));
  }

  auto w = std::make_unique<GpuQuantWeight>();
  w->n = n;
  w->k = k;
  w->layout = l;
  auto take = [&](size_t bytes, const char* part) -> Result<void*> {
    DS_ASSIGN_OR_RETURN(auto buf, alloc(bytes, src.name + " " + part));
    void* p = buf->data();
    weights_.push_back(std::move(buf));
    return p;
  };
  DS_ASSIGN_OR_RETURN(void* packed, take(ds::gpu::qlayout_packed_bytes(l), "packed"));
  DS_ASSIGN_OR_RETURN(void* scales, take(ds::gpu::qlayout_scale_bytes(l), "scales"));
  void* zeros = nullptr;
  if (!sym) {
    DS_ASSIGN_OR_RETURN(zeros, take(ds::gpu::qlayout_scale_bytes(l), "zeros"));
  }
  if (!perm.empty()) {
    DS_ASSIGN_OR_RETURN(void* p, take(perm.size() * 4, "act-order permutation"));
    DS_RETURN_IF_ERROR(upload_weight(p, perm.data(), perm.size() * 4));
    w->perm = static_cast<const int32_t*>(p);
    if (l.k_pad > max_act_order_k_) {
      max_act_order_k_ = l.k_pad;
      if (limits_.max_tokens > 0) DS_RETURN_IF_ERROR(reserve_gather());  // reserve_step came first
    }
  }
  ds::gpu::qgemm_repack(l, qw, w->perm, static_cast<uint32_t*>(packed), rt_->stream());
  ds::gpu::qgemm_repack_scales(l, sc, src.scales_dtype, qz, sym, src.zeros_v2, static_cast<uint16_t*>(scales),
                               static_cast<uint16_t*>(zeros), rt_->stream());
  DS_RETURN_IF_ERROR(rt_->check_launch("weight repack", src.name));
  w->ptrs = {static_cast<const uint32_t*>(packed), static_cast<const uint16_t*>(scales),
             static_cast<const uint16_t*>(zeros)};
  w->bytes = ds::gpu::qlayout_packed_bytes(l) + ds::gpu::qlayout_scale_bytes(l) * (sym ? 1 : 2);
  if (src.bias != nullptr) {
    std::vector<float> b(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) b[static_cast<size_t>(i)] = host_float(src.bias_dtype, src.bias, i);
    DS_ASSIGN_OR_RETURN(void* bb, take(b.size() * 4, "bias"));
    DS_RETURN_IF_ERROR(upload_weight(bb, b.data(), b.size() * 4));
    w->bias = static_cast<float*>(bb);
  }
  return std::unique_ptr<PreparedWeight>(std::move(w));
}

Status GpuBackend::reserve_quant() {
  target_blocks_ = std::max(2 * rt_->info().multiprocessors, 16);
  // Split-K partials: at most about twice the target grid of 64 x 64 fp32 tiles.
  const size_t ws = static_cast<size_t>(2 * target_blocks_) * 64 * ds::gpu::kQBlockN * sizeof(float);
  DS_ASSIGN_OR_RETURN(qws_, alloc(ws, "quantized GEMM split-K partials"));
  DS_ASSIGN_OR_RETURN(qcounters_, alloc(kCounters * sizeof(int32_t), "quantized GEMM split-K counters"));
  DS_RETURN_IF_ERROR(rt_->memset(qcounters_->data(), 0, kCounters * sizeof(int32_t)));
  return reserve_gather();
}

Status GpuBackend::reserve_gather() {
  qgather_.reset();
  if (max_act_order_k_ > 0) {
    DS_ASSIGN_OR_RETURN(qgather_, alloc(static_cast<size_t>(limits_.max_tokens * max_act_order_k_) * 2,
                                        "act-order input gather"));
  }
  return Status::ok();
}

void GpuBackend::fill_split_k(ds::gpu::QGemmCall& c) const {
  if (!qws_ || !qcounters_) return;
  c.workspace = static_cast<float*>(qws_->data());
  c.workspace_bytes = qws_->bytes();
  c.counters = static_cast<int32_t*>(qcounters_->data());
  c.num_counters = kCounters;
  c.target_blocks = target_blocks_;
}

void GpuBackend::quant_linear(const GpuQuantWeight& w, Act x, Act y) {
  auto shapes = [&] {
    return "x=" + dims(x) + " w=" + std::to_string(w.n) + "x" + std::to_string(w.k) + " int" +
           std::to_string(w.layout.bits) + " y=" + dims(y);
  };
  if (x.cols != w.k || y.cols != w.n || x.rows != y.rows || x.dtype != w.layout.act ||
      (y.dtype != x.dtype && y.dtype != DType::kF32))
    op_fail("linear", "shapes or types do not fit the quantized weight: " + shapes());
  if (x.rows == 0) return;
  ds::gpu::QGemmCall c;
  c.layout = w.layout;
  c.w = w.ptrs;
  c.x = x.data;
  c.ldx = x.ld;
  c.y = y.data;
  c.ldy = y.ld;
  c.y_type = y.dtype;
  c.bias = w.bias;
  c.m = x.rows;
  fill_split_k(c);
  if (w.perm != nullptr) {
    if (!qgather_ || static_cast<size_t>(x.rows * w.layout.k_pad) * 2 > qgather_->bytes())
      op_fail("linear", "act-order gather area not reserved for " + shapes());
    ds::gpu::qgemm_gather_columns(x.data, x.ld, x.dtype, w.perm, x.rows, w.k, qgather_->data(), w.layout.k_pad,
                                  rt_->stream());
    c.x = qgather_->data();
    c.ldx = w.layout.k_pad;
  }
  ds::gpu::qgemm(c, rt_->stream());
  check("linear (quantized)", shapes);
}

// The experts' tile pointers as the grouped launches index them: gate[E], up[E], down[E].
Result<std::vector<ds::gpu::QWeightPtrs>> GpuBackend::quant_expert_table(const PreparedWeight* const* gate,
                                                                          const PreparedWeight* const* up,
                                                                          const PreparedWeight* const* down,
                                                                          int E) const {
  std::vector<ds::gpu::QWeightPtrs> t(3 * static_cast<size_t>(E));
  const auto* g0 = dynamic_cast<const GpuQuantWeight*>(gate[0]);
  const auto* d0 = dynamic_cast<const GpuQuantWeight*>(down[0]);
  auto same = [](const ds::gpu::QLayout& a, const ds::gpu::QLayout& b) {
    return a.bits == b.bits && a.n == b.n && a.k == b.k && a.group_rows == b.group_rows && a.lanes == b.lanes;
  };
  for (int e = 0; e < E; ++e) {
    const auto* g = dynamic_cast<const GpuQuantWeight*>(gate[e]);
    const auto* u = dynamic_cast<const GpuQuantWeight*>(up[e]);
    const auto* d = dynamic_cast<const GpuQuantWeight*>(down[e]);
    if (!g || !u || !d || !d0 || !same(g->layout, g0->layout) || !same(u->layout, g0->layout) ||
        !same(d->layout, d0->layout) || d0->k != g0->n || d0->n != g0->k)
      return invalid_argument("MoE experts on the GPU must share one quantized format and shape (expert " +
                              std::to_string(e) + ")");
    if (g->perm || u->perm || d->perm)
      return unsupported("act-order (desc_act) MoE experts are not supported on the GPU backend (expert " +
                         std::to_string(e) + ")");
    t[static_cast<size_t>(e)] = g->ptrs;
    t[static_cast<size_t>(E + e)] = u->ptrs;
    t[static_cast<size_t>(2 * E + e)] = d->ptrs;
  }
  return t;
}

void GpuBackend::quant_moe_experts(Act x, const int32_t* ids, Act weights, int top_k, int E,
                                   const PreparedWeight* const* gate, const PreparedWeight* const* down,
                                   const void* table_mem, Act out) {
  const int64_t T = x.rows;
  const auto& g0 = static_cast<const GpuQuantWeight&>(*gate[0]);
  const auto* d0 = dynamic_cast<const GpuQuantWeight*>(down[0]);
  const int64_t H = x.cols, I = g0.n;
  auto shapes = [&] {
    return "x=" + dims(x) + " E=" + std::to_string(E) + " top_k=" + std::to_string(top_k) + " I=" + std::to_string(I) +
           " int" + std::to_string(g0.layout.bits) + " out=" + dims(out);
  };
  if (x.dtype != g0.layout.act || g0.k != H || !d0 || d0->k != I || d0->n != H || out.cols != H)
    op_fail("moe_experts", "shapes or types do not fit the quantized experts: " + shapes());
  const auto* table = static_cast<const ds::gpu::QWeightPtrs*>(table_mem);
  const size_t act = dtype_size(x.dtype);
  // Scratch per pass: plan | silu(gate) * up [pairs][I] of act | down fp32 [pairs][H].
  auto need = [&](int64_t tokens) {
    const int64_t pairs = tokens * top_k;
    return align256(ds::gpu::moe_plan_bytes(pairs, E)) + align256(static_cast<size_t>(pairs * I) * act) +
           static_cast<size_t>(pairs * H) * 4;
  };
  const size_t avail = scratch_ ? scratch_->bytes() : 0;
  int64_t pass = T;
  while (pass > 1 && need(pass) > avail) pass = (pass + 1) / 2;
  if (need(pass) > avail)
    op_fail("moe_experts", "op scratch of " + std::to_string(avail) + " bytes is too small [" + shapes() + "]");
  char* base = static_cast<char*>(scratch());
  for (int64_t t0 = 0; t0 < T; t0 += pass) {
    const int64_t tn = std::min(pass, T - t0), pairs = tn * top_k;
    char* p = base;
    void* plan_mem = p;
    p += align256(ds::gpu::moe_plan_bytes(pairs, E));
    void* h = p;
    p += align256(static_cast<size_t>(pairs * I) * act);
    auto* y = reinterpret_cast<float*>(p);
    const ds::gpu::MoePlanView plan = ds::gpu::moe_plan(ids + t0 * top_k, pairs, E, top_k, plan_mem, rt_->stream());
    ds::gpu::QGemmCall c;
    c.layout = g0.layout;
    c.experts = table;
    c.tiles = plan.tiles;
    c.num_tiles = plan.num_tiles;
    c.max_tiles = plan.max_tiles;
    c.a_rows = plan.sorted_token;
    c.m = tn;  // bounds the rows of a tile
    c.x = static_cast<const char*>(x.data) + t0 * x.ld * static_cast<int64_t>(act);
    c.ldx = x.ld;
    c.experts2 = table + E;
    c.y = h;
    c.ldy = I;
    c.y_type = x.dtype;
    fill_split_k(c);
    ds::gpu::qgemm(c, rt_->stream());  // silu(gate) * up, one launch
    c.layout = d0->layout;
    c.experts = table + 2 * E;
    c.experts2 = nullptr;
    c.a_rows = nullptr;
    c.x = h;
    c.ldx = I;
    c.y = y;
    c.ldy = H;
    c.y_type = DType::kF32;
    c.y_rows = plan.sorted_pair;
    ds::gpu::qgemm(c, rt_->stream());  // down, each pair's row in pair order
    ds::gpu::moe_combine(y, tn, H, top_k, weights.as<float>() + t0 * weights.ld, weights.ld,
                         static_cast<char*>(out.data) + t0 * out.ld * static_cast<int64_t>(act), out.ld, out.dtype,
                         rt_->stream());
    check("moe_experts (quantized)", shapes);
  }
}

}  // namespace ds::backend::gpu
