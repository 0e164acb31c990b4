// Paged causal GQA attention: KV append, varlen prefill (query x key tiles in shared memory) and
// split-K decode (flash-decoding) with its combine. Softmax in fp32, online form, everywhere.
#include "kernels/gpu/ops_attention.h"


namespace ds::gpu {
namespace {

constexpr int kThreads = 128;  // a multiple of both warp sizes
constexpr int kPartHeader = 2;  // partial row: max, sum, then head_dim unnormalised outputs

// Element offset of (position pos, kv head kvh) of sequence s in a cache pool.
DS_DEV int64_t cache_offset(const PagedAttention& p, int s, int64_t pos, int kvh) {
  const int64_t block = p.block_tables[static_cast<int64_t>(s) * p.blocks_per_seq + pos / p.block_size];
  return ((block * p.block_size + pos % p.block_size) * p.kv_heads + kvh) * p.head_dim;
}

// --- append -----------------------------------------------------------------------------------

template <typename T>
__global__ void kv_append_kernel(PagedAttention p, const T* k, int64_t k_ld, const T* v, int64_t v_ld,
                                 T* k_cache, T* v_cache, const int32_t* token_seq) {
  const int64_t t = blockIdx.x;
  const int s = token_seq[t];
  const int64_t pos = p.start_pos[s] + (t - p.cu_seqlens[s]);
  const int64_t dst = cache_offset(p, s, pos, 0), n = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    k_cache[dst + i] = k[t * k_ld + i];
    v_cache[dst + i] = v[t * v_ld + i];
  }
}

// --- prefill ----------------------------------------------------------------------------------
// One CTA per (16-query tile, query head, sequence). Q (pre-scaled), then K, then V tiles live in
// shared memory as fp32 rows padded to head_dim+1 floats so that threads reading different rows
// hit different banks. Eight threads share a query row; each owns head_dim/8 output columns.

constexpr int kBQ = 16, kBK = 16, kRowThreads = kThreads / kBQ, kAccPerThread = kAttnMaxHeadDim / kRowThreads;

size_t prefill_smem_bytes(int head_dim) {
  return sizeof(float) * (static_cast<size_t>(kBQ + kBK) * (head_dim + 1) + kBQ * (kBK + 1));
}

template <typename T>
__global__ void prefill_kernel(PagedAttention p) {
  const int s = blockIdx.z, h = blockIdx.y, hd = p.head_dim, ld = hd + 1;
  const int64_t row0 = p.cu_seqlens[s], n_new = p.cu_seqlens[s + 1] - row0, q0 = int64_t{blockIdx.x} * kBQ;
  if (q0 >= n_new) return;  // whole CTA: before any barrier
  const int kvh = h / (p.heads / p.kv_heads), tid = threadIdx.x;
  const int64_t start = p.start_pos[s];
  const int64_t n_keys = start + (q0 + kBQ < n_new ? q0 + kBQ : n_new);  // causal: up to the tile's last query
  float* qs = smem<float>();
  float* kvs = qs + kBQ * ld;
  float* ss = kvs + kBK * ld;
  const T* q = static_cast<const T*>(p.q);
  const T* kc = static_cast<const T*>(p.k_cache);
  const T* vc = static_cast<const T*>(p.v_cache);

  for (int e = tid; e < kBQ * hd; e += blockDim.x) {
    const int r = e / hd, i = e % hd;
    qs[r * ld + i] = q0 + r < n_new ? to_f32(q[(row0 + q0 + r) * p.q_ld + int64_t{h} * hd + i]) * p.scale : 0.0f;
  }
  const int r = tid / kRowThreads, sub = tid % kRowThreads;
  float acc[kAccPerThread];
DS_UNROLL
  for (int j = 0; j < kAccPerThread; ++j) acc[j] = 0.0f;
  float m = -INFINITY, l = 0.0f;

  for (int64_t k0 = 0; k0 < n_keys; k0 += kBK) {
    __syncthreads();  // the previous tile's V (and, first time, nothing) is no longer read
    for (int e = tid; e < kBK * hd; e += blockDim.x) {
      const int c = e / hd, i = e % hd;
      kvs[c * ld + i] = k0 + c < n_keys ? to_f32(kc[cache_offset(p, s, k0 + c, kvh) + i]) : 0.0f;
    }
    __syncthreads();
    for (int e = tid; e < kBQ * kBK; e += blockDim.x) {
      const int qr = e / kBK, c = e % kBK;
      const int64_t kp = k0 + c;
      float dot = -INFINITY;
      if (q0 + qr < n_new && kp <= start + q0 + qr) {
        dot = 0.0f;
        for (int i = 0; i < hd; ++i) dot += qs[qr * ld + i] * kvs[c * ld + i];
      }
      ss[qr * (kBK + 1) + c] = dot;
    }
    __syncthreads();
    for (int e = tid; e < kBK * hd; e += blockDim.x) {
      const int c = e / hd, i = e % hd;
      kvs[c * ld + i] = k0 + c < n_keys ? to_f32(vc[cache_offset(p, s, k0 + c, kvh) + i]) : 0.0f;
    }
    __syncthreads();
    // The row's eight threads compute the same max and weights in the same order: no exchange.
    float mt = m;
    for (int c = 0; c < kBK; ++c) mt = fmaxf(mt, ss[r * (kBK + 1) + c]);
    if (mt == -INFINITY) continue;  // row invalid or fully masked so far; uniform per row, no barrier inside
    const float corr = fast_exp(m - mt);  // m = -inf: 0
    l *= corr;
DS_UNROLL
    for (int j = 0; j < kAccPerThread; ++j) acc[j] *= corr;
    for (int c = 0; c < kBK; ++c) {
      const float pc = fast_exp(ss[r * (kBK + 1) + c] - mt);
      l += pc;
DS_UNROLL
      for (int j = 0; j < kAccPerThread; ++j)
        if (sub + j * kRowThreads < hd) acc[j] += pc * kvs[c * ld + sub + j * kRowThreads];
    }
    m = mt;
  }
  if (q0 + r >= n_new) return;
  T* out = static_cast<T*>(p.out) + (row0 + q0 + r) * p.out_ld + int64_t{h} * hd;
  const float inv = 1.0f / l;
DS_UNROLL
  for (int j = 0; j < kAccPerThread; ++j)
    if (sub + j * kRowThreads < hd) out[sub + j * kRowThreads] = from_f32<T>(acc[j] * inv);
}

// --- decode -----------------------------------------------------------------------------------
// One CTA per (context split, group of query heads sharing a KV head, sequence). Each warp walks
// its keys UNROLL at a time (several rows in flight per warp); a lane holds up to PL elements of
// q (for every head of the group), of the K/V rows and of the output accumulators, so a score is
// one warp_sum. GMAX and PL are compile-time bounds (every loop over them unrolls, keeping the
// arrays in registers); group <= GMAX and head_dim <= 32 * PL at run time. The warps' states
// merge in shared memory at the end.

// Lane `lane`'s j-th element of a row: chunks of V contiguous elements, a warp's chunks side by
// side, so that one 16-byte load fetches a lane's chunk.
template <int V>
DS_DEV int lane_elem(int j, int lane, int ws) {
  return (j / V) * ws * V + lane * V + j % V;
}

// Loads V elements at p (aligned to V * sizeof(T)) as fp32 with one vector load.
template <typename T, int V>
DS_DEV void load_chunk(const T* p, float* out) {
  struct alignas(V * sizeof(T)) Chunk {
    T v[V];
  };
  const Chunk c = *reinterpret_cast<const Chunk*>(p);
DS_UNROLL
  for (int e = 0; e < V; ++e) out[e] = to_f32(c.v[e]);
}

// PL elements of the row at `row` owned by `lane` (zeros past head_dim). vec: head_dim % V == 0,
// so chunks are whole and aligned (rows start at multiples of head_dim in a 256-byte aligned pool).
template <typename T, int PL, int V>
DS_DEV void load_lane_row(const T* row, int lane, int ws, int hd, bool vec, float* out) {
  if (vec) {
DS_UNROLL
    for (int c = 0; c < PL / V; ++c) {
      const int i0 = lane_elem<V>(c * V, lane, ws);
      if (i0 < hd) {
        load_chunk<T, V>(row + i0, out + c * V);
      } else {
DS_UNROLL
        for (int e = 0; e < V; ++e) out[c * V + e] = 0.0f;
      }
    }
  } else {
DS_UNROLL
    for (int j = 0; j < PL; ++j) {
      const int i = lane_elem<V>(j, lane, ws);
      out[j] = i < hd ? to_f32(row[i]) : 0.0f;
    }
  }
}

template <typename T, int GMAX, int PL>
__global__ void decode_kernel(PagedAttention p, int group, int splits, float* part) {
  constexpr int UNROLL = GMAX * PL >= 32 ? 2 : 4;
  constexpr int V = PL < 16 / static_cast<int>(sizeof(T)) ? PL : 16 / static_cast<int>(sizeof(T));
  const bool vec = p.head_dim % V == 0;
  const int split = blockIdx.x, s = blockIdx.z, h0 = blockIdx.y * group, hd = p.head_dim;
  const int kvh = h0 / (p.heads / p.kv_heads);
  const int ws = warp_size(), lane = lane_id(), warp = threadIdx.x / ws, nwarps = blockDim.x / ws;
  const int64_t n_ctx = p.start_pos[s] + 1, per_split = (n_ctx + splits - 1) / splits;
  const int64_t k_begin = split * per_split, k_end = k_begin + per_split < n_ctx ? k_begin + per_split : n_ctx;
  const T* q = static_cast<const T*>(p.q) + p.cu_seqlens[s] * p.q_ld;
  const T* kc = static_cast<const T*>(p.k_cache);
  const T* vc = static_cast<const T*>(p.v_cache);

  float qr[GMAX][PL], acc[GMAX][PL], m[GMAX], l[GMAX];
DS_UNROLL
  for (int g = 0; g < GMAX; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
DS_UNROLL
    for (int j = 0; j < PL; ++j) {
      const int i = lane_elem<V>(j, lane, ws);
      acc[g][j] = 0.0f;
      qr[g][j] = g < group && i < hd ? to_f32(q[int64_t{h0 + g} * hd + i]) * p.scale : 0.0f;
    }
  }
  for (int64_t kb = k_begin + int64_t{warp} * UNROLL; kb < k_end; kb += int64_t{nwarps} * UNROLL) {
    const int nk = k_end - kb < UNROLL ? static_cast<int>(k_end - kb) : UNROLL;  // warp-uniform
    float kr[UNROLL][PL], vr[UNROLL][PL];
DS_UNROLL
    for (int u = 0; u < UNROLL; ++u) {
      if (u < nk) {
        const int64_t off = cache_offset(p, s, kb + u, kvh);
        load_lane_row<T, PL, V>(kc + off, lane, ws, hd, vec, kr[u]);
        load_lane_row<T, PL, V>(vc + off, lane, ws, hd, vec, vr[u]);
      } else {
DS_UNROLL
        for (int j = 0; j < PL; ++j) kr[u][j] = vr[u][j] = 0.0f;
      }
    }
DS_UNROLL
    for (int g = 0; g < GMAX; ++g) {
      if (g >= group) break;  // uniform over the block
      float sc[UNROLL], mt = m[g];
DS_UNROLL
      for (int u = 0; u < UNROLL; ++u) {
        float d = 0.0f;
DS_UNROLL
        for (int j = 0; j < PL; ++j) d += qr[g][j] * kr[u][j];
        sc[u] = u < nk ? warp_sum(d) : -INFINITY;
        mt = fmaxf(mt, sc[u]);
      }
      const float corr = fast_exp(m[g] - mt);  // m = -inf: 0
      l[g] *= corr;
DS_UNROLL
      for (int j = 0; j < PL; ++j) acc[g][j] *= corr;
DS_UNROLL
      for (int u = 0; u < UNROLL; ++u) {
        const float pu = fast_exp(sc[u] - mt);  // key past the split: 0
        l[g] += pu;
DS_UNROLL
        for (int j = 0; j < PL; ++j) acc[g][j] += pu * vr[u][j];
      }
      m[g] = mt;
    }
  }

  // Merge the warps: per warp and head [max, sum, acc[head_dim]] in shared memory.
  const int row = kPartHeader + hd;
  float* ws_state = smem<float>();
DS_UNROLL
  for (int g = 0; g < GMAX; ++g) {
    if (g >= group) break;
    float* w = ws_state + (warp * group + g) * row;
    if (lane == 0) {
      w[0] = m[g];
      w[1] = l[g];
    }
DS_UNROLL
    for (int j = 0; j < PL; ++j) {
      const int i = lane_elem<V>(j, lane, ws);
      if (i < hd) w[kPartHeader + i] = acc[g][j];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < group * hd; e += blockDim.x) {
    const int g = e / hd, i = e % hd;
    float mx = -INFINITY;
    for (int w = 0; w < nwarps; ++w) mx = fmaxf(mx, ws_state[(w * group + g) * row]);
    float sum = 0.0f, o = 0.0f;
    for (int w = 0; w < nwarps; ++w) {
      const float* st = ws_state + (w * group + g) * row;
      const float f = st[0] == -INFINITY ? 0.0f : fast_exp(st[0] - mx);  // warps without keys add nothing
      sum += st[1] * f;
      o += st[kPartHeader + i] * f;
    }
    const int h = h0 + g;
    if (splits == 1) {
      T* out = static_cast<T*>(p.out) + p.cu_seqlens[s] * p.out_ld + int64_t{h} * hd;
      out[i] = from_f32<T>(o / sum);
    } else {
      float* pr = part + ((int64_t{s} * p.heads + h) * splits + split) * row;
      if (i == 0) {
        pr[0] = mx;
        pr[1] = sum;
      }
      pr[kPartHeader + i] = o;
    }
  }
}

// Merges the splits of one (sequence, head): O = sum_i e^(m_i - M) o_i / sum_i e^(m_i - M) l_i.
template <typename T>
__global__ void decode_combine_kernel(PagedAttention p, int splits, const float* part) {
  const int h = blockIdx.x, s = blockIdx.y, hd = p.head_dim, row = kPartHeader + hd;
  const float* pr = part + (int64_t{s} * p.heads + h) * splits * row;
  float mx = -INFINITY;
  for (int k = 0; k < splits; ++k) mx = fmaxf(mx, pr[k * row]);
  T* out = static_cast<T*>(p.out) + p.cu_seqlens[s] * p.out_ld + int64_t{h} * hd;
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float sum = 0.0f, o = 0.0f;
    for (int k = 0; k < splits; ++k) {
      const float* st = pr + k * row;
      const float f = st[0] == -INFINITY ? 0.0f : fast_exp(st[0] - mx);  // empty split
      sum += st[1] * f;
      o += st[kPartHeader + i] * f;
    }
    out[i] = from_f32<T>(o / sum);
  }
}

template <typename T>
void launch_all(const PagedAttention& p, int64_t max_new_tokens, int splits, float* partials, Stream stream,
                bool decode) {
  (void)stream;  // unused under emulation
  if (p.num_seqs == 0) return;
  if (!decode) {
    const int bytes = static_cast<int>(prefill_smem_bytes(p.head_dim));
    auto k = prefill_kernel<T>;
    allow_smem(k, bytes);
    DS_LAUNCH(k, dim3(ceil_div(max_new_tokens, kBQ), p.heads, p.num_seqs), kThreads, bytes, stream, p);
    return;
  }
  const int group = attention_decode_group(p.heads, p.kv_heads);
  // Shared memory for the warp merge: sized for the narrowest warp (most warps).
  const int bytes = static_cast<int>(sizeof(float) * (kThreads / 32) * group * (kPartHeader + p.head_dim));
  const int pl = p.head_dim <= 64 ? 2 : p.head_dim <= 128 ? 4 : 8;  // per-lane elements at warp 32
  const int gmax = group == 1 ? 1 : group == 2 ? 2 : group <= 4 ? 4 : 8;
  auto k = decode_kernel<T, 8, 8>;
  if (gmax == 1) k = pl == 2 ? decode_kernel<T, 1, 2> : pl == 4 ? decode_kernel<T, 1, 4> : decode_kernel<T, 1, 8>;
  if (gmax == 2) k = pl == 2 ? decode_kernel<T, 2, 2> : pl == 4 ? decode_kernel<T, 2, 4> : decode_kernel<T, 2, 8>;
  if (gmax == 4) k = pl == 2 ? decode_kernel<T, 4, 2> : pl == 4 ? decode_kernel<T, 4, 4> : decode_kernel<T, 4, 8>;
  if (gmax == 8) k = pl == 2 ? decode_kernel<T, 8, 2> : pl == 4 ? decode_kernel<T, 8, 4> : decode_kernel<T, 8, 8>;
  allow_smem(k, bytes);
  DS_LAUNCH(k, dim3(splits, p.heads / group, p.num_seqs), kThreads, bytes, stream, p, group, splits, partials);
  if (splits > 1) {
    auto c = decode_combine_kernel<T>;
    DS_LAUNCH(c, dim3(p.heads, p.num_seqs), kThreads, 0, stream, p, splits, static_cast<const float*>(partials));
  }
}

template <typename T>
void launch_append(const PagedAttention& p, const void* k, int64_t k_ld, const void* v, int64_t v_ld,
                   void* k_cache, void* v_cache, const int32_t* token_seq, int64_t num_tokens, Stream stream) {
  (void)stream;  // unused under emulation
  if (num_tokens == 0) return;
  auto kern = kv_append_kernel<T>;
  DS_LAUNCH(kern, static_cast<unsigned>(num_tokens), kThreads, 0, stream, p, static_cast<const T*>(k), k_ld,
            static_cast<const T*>(v), v_ld, static_cast<T*>(k_cache), static_cast<T*>(v_cache), token_seq);
}

}  // namespace

void attention_kv_append(const PagedAttention& p, const void* k, int64_t k_ld, const void* v, int64_t v_ld,
                         void* k_cache, void* v_cache, const int32_t* token_seq, int64_t num_tokens, DType dtype,
                         Stream stream) {
  switch (dtype) {
    case DType::kBF16: return launch_append<bf16>(p, k, k_ld, v, v_ld, k_cache, v_cache, token_seq, num_tokens, stream);
    case DType::kF16: return launch_append<f16>(p, k, k_ld, v, v_ld, k_cache, v_cache, token_seq, num_tokens, stream);
    default: return launch_append<float>(p, k, k_ld, v, v_ld, k_cache, v_cache, token_seq, num_tokens, stream);
  }
}

void attention_prefill(const PagedAttention& p, int64_t max_new_tokens, DType dtype, Stream stream) {
  switch (dtype) {
    case DType::kBF16: return launch_all<bf16>(p, max_new_tokens, 1, nullptr, stream, false);
    case DType::kF16: return launch_all<f16>(p, max_new_tokens, 1, nullptr, stream, false);
    default: return launch_all<float>(p, max_new_tokens, 1, nullptr, stream, false);
  }
}

void attention_decode(const PagedAttention& p, int splits, float* partials, DType dtype, Stream stream) {
  switch (dtype) {
    case DType::kBF16: return launch_all<bf16>(p, 1, splits, partials, stream, true);
    case DType::kF16: return launch_all<f16>(p, 1, splits, partials, stream, true);
    default: return launch_all<float>(p, 1, splits, partials, stream, true);
  }
}

int attention_decode_group(int heads, int kv_heads) {
  const int ratio = heads / kv_heads;
  int g = ratio < kAttnMaxGroup ? ratio : kAttnMaxGroup;
  while (ratio % g != 0) --g;
  return g;
}

size_t attention_decode_partials_bytes(int num_seqs, int heads, int head_dim, int splits) {
  return splits <= 1 ? 0
                     : sizeof(float) * static_cast<size_t>(num_seqs) * heads * splits * (kPartHeader + head_dim);
}

int attention_decode_splits(int num_seqs, int heads, int kv_heads, int head_dim, int64_t max_context,
                            size_t scratch_bytes) {
  const int64_t ctas = static_cast<int64_t>(num_seqs) * (heads / attention_decode_group(heads, kv_heads));
  const int64_t by_keys = (max_context + kAttnDecodeMinKeysPerSplit - 1) / kAttnDecodeMinKeysPerSplit;
  const int64_t by_grid = ctas > 0 ? kAttnDecodeTargetCtas / ctas : 1;
  int splits = static_cast<int>(by_keys < by_grid ? by_keys : by_grid);
  if (splits < 1) splits = 1;
  while (splits > 1 && attention_decode_partials_bytes(num_seqs, heads, head_dim, splits) > scratch_bytes) --splits;
  return splits;
}

}  // namespace ds::gpu
