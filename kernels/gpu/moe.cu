// MoE on the device: the router (softmax + top-k, kernels/cpu/moe.cpp's exact tie rule and
// summation order) and the experts. The experts group the (token, slot) pairs by expert with a
// stable counting sort (per-chunk integer counts, a prefix over chunks and experts, a rank within
// the chunk: no float atomics, the order inside an expert is the pair order), cut each expert's
// rows into tiles of kMoeTileRows (vLLM's moe_align_block_size layout, without padding rows in
// memory), run gate, up (x silu(gate), fused) and down as grouped GEMMs over the tiles, and sum
// each token's slots in slot order: the bytes do not depend on the schedule.
#include "kernels/gpu/block_select.h"
#include "kernels/gpu/gemm_args.h"
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_moe.h"

namespace ds::gpu {

namespace {

constexpr int kRouteThreads = 128, kChunk = 256, kPlanThreads = 512, kCombineThreads = 256;

// One token per block. smem: p[E] then the argmax scratch.
__global__ void route_kernel(const float* logits, int64_t ld, int E, int top_k, bool renormalize, int32_t* ids,
                             float* weights, int64_t ldw) {
  float* p = smem<float>();
  float* red = p + ((E + 3) & ~3);
  const int64_t t = blockIdx.x;
  const float* l = logits + t * ld;
  const int tid = static_cast<int>(threadIdx.x);
  // One thread keeps the CPU's sequential max and sum order (E <= 512: negligible work).
  if (tid == 0) {
    float mx = l[0];
    for (int e = 1; e < E; ++e) mx = fmaxf(mx, l[e]);
    float sum = 0.0f;
    for (int e = 0; e < E; ++e) sum += (p[e] = expf(l[e] - mx));
    red[2 * kMaxWarp] = sum;
  }
  __syncthreads();
  const float sum = red[2 * kMaxWarp];
  for (int e = tid; e < E; e += static_cast<int>(blockDim.x)) p[e] /= sum;
  __syncthreads();
  int32_t* out_ids = ids + t * top_k;
  float* chosen = red + 2 * kMaxWarp + 4;  // [top_k] the selected p, in rank order
  for (int s = 0; s < top_k; ++s) {
    ValIdx best{0.0f, -1};
    for (int e = tid; e < E; e += static_cast<int>(blockDim.x))
      if (p[e] >= 0.0f && better(ValIdx{p[e], e}, best)) best = ValIdx{p[e], e};
    best = block_argmax(best, red);
    if (tid == 0) {
      out_ids[s] = best.i;
      chosen[s] = p[best.i];
      p[best.i] = -1.0f;  // taken (p >= 0 otherwise)
    }
    __syncthreads();
  }
  if (tid == 0) {
    float tsum = 0.0f;
    for (int s = 0; s < top_k; ++s) tsum += chosen[s];
    for (int s = 0; s < top_k; ++s) weights[t * ldw + s] = chosen[s] / (renormalize ? tsum : 1.0f);
  }
}

struct Plan {
  int32_t *counts, *offsets, *chunk_counts, *sorted_pair, *sorted_token, *tiles, *num_tiles;
  int chunks, max_tiles;
};

size_t align16(size_t x) { return (x + 15) & ~size_t{15}; }

// Lays the plan out from `base`; *bytes receives its size.
Plan carve(void* base, int64_t pairs, int E, size_t* bytes = nullptr) {
  Plan p{};
  p.chunks = ceil_div(pairs, kChunk);
  p.max_tiles = ceil_div(pairs, kMoeTileRows) + static_cast<int>(pairs < E ? pairs : E);
  size_t off = 0;
  auto take = [&](size_t n) {
    int32_t* r = reinterpret_cast<int32_t*>(reinterpret_cast<uintptr_t>(base) + off);
    off += align16(n * sizeof(int32_t));
    return r;
  };
  p.counts = take(static_cast<size_t>(E));
  p.offsets = take(static_cast<size_t>(E) + 1);
  p.chunk_counts = take(static_cast<size_t>(p.chunks) * static_cast<size_t>(E));
  p.sorted_pair = take(static_cast<size_t>(pairs));
  p.sorted_token = take(static_cast<size_t>(pairs));
  p.tiles = take(3 * static_cast<size_t>(p.max_tiles));
  p.num_tiles = take(1);
  if (bytes) *bytes = off;
  return p;
}

// Per chunk of kChunk pairs: how many go to each expert (shared integer atomics: exact).
__global__ void count_kernel(const int32_t* ids, int64_t pairs, int E, int32_t* chunk_counts) {
  int* cnt = smem<int>();
  for (int e = static_cast<int>(threadIdx.x); e < E; e += static_cast<int>(blockDim.x)) cnt[e] = 0;
  __syncthreads();
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kChunk + threadIdx.x;
  if (p < pairs && ids[p] >= 0 && ids[p] < E) atomic_add(&cnt[ids[p]], 1);
  __syncthreads();
  for (int e = static_cast<int>(threadIdx.x); e < E; e += static_cast<int>(blockDim.x))
    chunk_counts[static_cast<int64_t>(blockIdx.x) * E + e] = cnt[e];
}

// One block: chunk counts -> each chunk's start inside its expert; expert offsets; the tile list.
__global__ void offsets_kernel(int E, int chunks, Plan plan) {
  for (int e = static_cast<int>(threadIdx.x); e < E; e += static_cast<int>(blockDim.x)) {
    int run = 0;
    for (int c = 0; c < chunks; ++c) {
      const int n = plan.chunk_counts[static_cast<int64_t>(c) * E + e];
      plan.chunk_counts[static_cast<int64_t>(c) * E + e] = run;
      run += n;
    }
    plan.counts[e] = run;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  int off = 0, tiles = 0;
  for (int e = 0; e < E; ++e) {
    plan.offsets[e] = off;
    for (int r = 0; r < plan.counts[e]; r += kMoeTileRows) {
      plan.tiles[3 * tiles] = e;
      plan.tiles[3 * tiles + 1] = off + r;
      plan.tiles[3 * tiles + 2] = plan.counts[e] - r < kMoeTileRows ? plan.counts[e] - r : kMoeTileRows;
      ++tiles;
    }
    off += plan.counts[e];
  }
  plan.offsets[E] = off;
  *plan.num_tiles = tiles;
}

// Each pair's place: its expert's offset + its chunk's start + its rank among the chunk's pairs of
// the same expert (a stable sort by expert).
__global__ void scatter_kernel(const int32_t* ids, int64_t pairs, int E, int top_k, Plan plan) {
  int32_t* chunk_ids = smem<int32_t>();
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kChunk, p = base + tid;
  chunk_ids[tid] = p < pairs ? ids[p] : -1;
  __syncthreads();
  const int e = chunk_ids[tid];
  if (p >= pairs || e < 0 || e >= E) return;
  int rank = 0;
  for (int j = 0; j < tid; ++j) rank += chunk_ids[j] == e;
  const int pos = plan.offsets[e] + plan.chunk_counts[static_cast<int64_t>(blockIdx.x) * E + e] + rank;
  plan.sorted_pair[pos] = static_cast<int32_t>(p);
  plan.sorted_token[pos] = static_cast<int32_t>(p / top_k);
}

// out[t] = sum over slots in order of weight * y[pair]; y [pairs][H] fp32.
template <typename T>
__global__ void combine_kernel(const float* y, int64_t H, int top_k, const float* w, int64_t ldw, T* out, int64_t ldo) {
  const int64_t t = blockIdx.x;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < top_k; ++s) acc += w[t * ldw + s] * y[(t * top_k + s) * H + j];
    out[t * ldo + j] = from_f32<T>(acc);
  }
}

}  // namespace

void moe_route(const float* logits, int64_t ld_logits, int64_t T, int E, int top_k, bool renormalize, int32_t* ids,
               float* weights, int64_t ld_weights, Stream stream) {
  if (T <= 0) return;
  const size_t smem_bytes = (static_cast<size_t>((E + 3) & ~3) + 2 * kMaxWarp + 4 + kMaxTopK) * sizeof(float);
  DS_LAUNCH(route_kernel, static_cast<unsigned>(T), kRouteThreads, smem_bytes, stream, logits, ld_logits, E, top_k,
            renormalize, ids, weights, ld_weights);
}

size_t moe_plan_bytes(int64_t pairs, int E) {
  size_t bytes = 0;
  carve(nullptr, pairs, E, &bytes);
  return bytes;
}

MoePlanView moe_plan(const int32_t* ids, int64_t pairs, int E, int top_k, void* plan_mem, Stream stream) {
  const Plan plan = carve(plan_mem, pairs, E);
  MoePlanView v{plan.sorted_pair, plan.sorted_token, plan.tiles, plan.num_tiles, plan.max_tiles};
  if (pairs <= 0) return v;
  DS_LAUNCH(count_kernel, plan.chunks, kChunk, static_cast<size_t>(E) * sizeof(int), stream, ids, pairs, E,
            plan.chunk_counts);
  DS_LAUNCH(offsets_kernel, 1, kPlanThreads, 0, stream, E, plan.chunks, plan);
  DS_LAUNCH(scatter_kernel, plan.chunks, kChunk, kChunk * sizeof(int32_t), stream, ids, pairs, E, top_k, plan);
  return v;
}

void moe_combine(const float* y, int64_t T, int64_t H, int top_k, const float* weights, int64_t ld_weights, void* out,
                 int64_t ldo, DType act, Stream stream) {
  if (T <= 0) return;
  auto launch_combine = [&](auto zero) {
    using T16 = decltype(zero);
    auto k = combine_kernel<T16>;
    DS_LAUNCH(k, static_cast<unsigned>(T), kCombineThreads, 0, stream, y, H, top_k, weights, ld_weights,
              static_cast<T16*>(out), ldo);
  };
  if (act == DType::kBF16) launch_combine(bf16{});
  else if (act == DType::kF16) launch_combine(f16{});
  else launch_combine(0.0f);
}

void moe_experts(const MoeShape& s, const void* x, int64_t ldx, DType act, const int32_t* ids, const float* weights,
                 int64_t ld_weights, const void* const* gate_w, const void* const* up_w, const void* const* down_w,
                 DType wt, void* out, int64_t ldo, void* plan_mem, float* work, Stream stream) {
  const int64_t pairs = s.T * s.top_k;
  if (pairs <= 0) return;
  const MoePlanView plan = moe_plan(ids, pairs, s.E, s.top_k, plan_mem, stream);

  float* g = work;                // [pairs][I] in sorted order: gate, then silu(gate) * up
  float* y = work + pairs * s.I;  // [pairs][H] in pair order: the down projection of each pair
  GemmCall c;
  c.tiles = plan.tiles;
  c.num_tiles = plan.num_tiles;
  c.max_tiles = plan.max_tiles;
  c.w_type = wt;
  c.M = pairs;
  c.a = x;
  c.lda = ldx;
  c.a_type = act;
  c.a_rows = plan.sorted_token;
  c.y = g;
  c.ldy = s.I;
  c.y_type = DType::kF32;
  c.N = s.I;
  c.K = s.H;
  c.w_table = gate_w;
  gemm(c, stream);
  c.w_table = up_w;
  c.silu_gate_in_y = true;
  gemm(c, stream);
  c.silu_gate_in_y = false;
  c.a = g;
  c.lda = s.I;
  c.a_type = DType::kF32;
  c.a_rows = nullptr;
  c.w_table = down_w;
  c.y = y;
  c.ldy = s.H;
  c.y_rows = plan.sorted_pair;
  c.N = s.H;
  c.K = s.I;
  gemm(c, stream);

  moe_combine(y, s.T, s.H, s.top_k, weights, ld_weights, out, ldo, act, stream);
}

}  // namespace ds::gpu
