// The device sampler (ops_sample.h): logits processors into a work copy of each row, then greedy
// or the filtered softmax draw, and logprobs of the raw row; one block per row. Probabilities are
// computed in double as kernels/cpu/sampling.cpp does, so a token differs from the CPU's only when
// the uniform falls within rounding of a CDF boundary. Cuts keep a prefix of the order (p desc,
// id asc), found by bisection on uint32 keys with block reductions (exact counts, fixed-tree sums).
#include "kernels/gpu/block_select.h"
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_sample.h"

namespace ds::gpu {

namespace {

constexpr int kThreads = 512;
// Shared scratch of every kernel here: the reductions' kMaxWarp doubles + broadcast slots.
constexpr size_t kSmemBytes = (kMaxWarp + 8) * sizeof(double);

// Order-preserving bits of a float (larger float -> larger key; -0 and +0 equal); 0 is below
// every finite value and marks elements with no probability.
DS_DEV uint32_t ordered(float f) {
  const uint32_t u = f32_to_bits(f == 0.0f ? 0.0f : f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

DS_DEV bool valid(int64_t id, int64_t V) { return id >= 0 && id < V; }

__global__ void process_kernel(const float* logits, int64_t ld, int64_t V, const SampleDesc* descs,
                               const int32_t* ids, const float* vals, char* work) {
  const SampleDesc& d = descs[blockIdx.x];
  const float* l = logits + static_cast<int64_t>(blockIdx.x) * ld;
  float* P = reinterpret_cast<float*>(work + static_cast<int64_t>(blockIdx.x) * V * kSampleWorkBytesPerId);
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  for (int64_t i = tid; i < V; i += nt) P[i] = d.n_allowed > 0 ? -INFINITY : l[i];
  __syncthreads();
  for (int64_t j = tid; j < d.n_allowed; j += nt) {
    const int64_t t = ids[d.allowed_off + j];
    if (valid(t, V)) P[t] = l[t];  // a repeated id writes the same value
  }
  __syncthreads();
  if (tid == 0)  // in list order: a repeated id adds twice, in the CPU's order
    for (int64_t j = 0; j < d.n_bias; ++j) {
      const int64_t t = ids[d.bias_off + j];
      if (valid(t, V)) P[t] += vals[d.bias_off + j];
    }
  __syncthreads();
  for (int64_t j = tid; j < d.n_masked; j += nt) {
    const int64_t t = ids[d.masked_off + j];
    if (valid(t, V)) P[t] = -INFINITY;
  }
  __syncthreads();
  const float rp = d.repetition_penalty;
  for (int64_t j = tid; j < d.n_rep; j += nt) {  // distinct ids
    const int64_t t = ids[d.rep_off + j];
    P[t] = P[t] > 0 ? P[t] / rp : P[t] * rp;
  }
  __syncthreads();
  for (int64_t j = tid; j < d.n_pen; j += nt) P[ids[d.pen_off + j]] -= vals[d.pen_off + j];  // distinct ids
}

DS_DEV int32_t block_argmax_row(const float* v, int64_t V, void* red) {
  ValIdx best{0.0f, -1};
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
    if (better(ValIdx{v[i], static_cast<int32_t>(i)}, best)) best = ValIdx{v[i], static_cast<int32_t>(i)};
  const ValIdx r = block_argmax(best, red);
  return r.i < 0 ? 0 : r.i;
}

// Elements i with key[i] > at, or key[i] == at && i <= id_max: a prefix of the order.
struct Cut {
  uint32_t at = 0;
  int64_t id_max = -1;
  DS_DEV bool keeps(uint32_t key, int64_t i) const { return key > at || (key == at && i <= id_max); }
};
struct Kept {
  Cut top_k, top_p;  // both start as "every element with a probability"
  DS_DEV bool operator()(uint32_t key, int64_t i) const { return top_k.keeps(key, i) && top_p.keeps(key, i); }
};

DS_DEV int64_t count_at_least(const uint32_t* K, int64_t V, uint32_t at, void* red) {
  int64_t n = 0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) n += K[i] >= at;
  return block_sum_t<int64_t>(n, red);
}

// The id of the need-th (1-based) element of key `at` in id order.
DS_DEV int64_t nth_tie_id(const uint32_t* K, int64_t V, uint32_t at, int64_t need, void* red) {
  int64_t lo = 0, hi = V - 1;  // the smallest L with #(key == at, i <= L) >= need
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    int64_t n = 0;
    for (int64_t i = threadIdx.x; i <= mid; i += blockDim.x) n += K[i] == at;
    if (block_sum_t<int64_t>(n, red) >= need) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// The first top_k elements of the order (p desc, id asc).
DS_DEV Cut cut_top_k(const uint32_t* K, int64_t V, int64_t top_k, void* red) {
  uint32_t lo = 1, hi = 0xffffffffu;  // the largest key with #(key >= it) >= top_k
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2 + 1;
    if (count_at_least(K, V, mid, red) >= top_k) lo = mid;
    else hi = mid - 1;
  }
  const int64_t above = lo == 0xffffffffu ? 0 : count_at_least(K, V, lo + 1, red);
  return Cut{lo, nth_tie_id(K, V, lo, top_k - above, red)};
}

// The CPU keeps sorted item j of the top-k set iff j == 0 or the mass before it is < target: the
// smallest key whose strictly-greater mass is below target, then as many of its ties (equal p, in
// id order) as the running mass allows.
DS_DEV Cut cut_top_p(const uint32_t* K, const double* p, int64_t V, const Cut& top_k, double target, void* red) {
  auto mass_above = [&](uint32_t at) {
    double m = 0.0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
      if (K[i] > at && top_k.keeps(K[i], i)) m += p[i];
    return block_sum_t<double>(m, red);
  };
  if (!(target > 0.0)) {  // top_p <= 0: the CPU still keeps the first element of the order
    uint32_t top = 0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
      if (top_k.keeps(K[i], i) && K[i] > top) top = K[i];
    top = block_max_t<uint32_t>(top, red);
    return Cut{top, nth_tie_id(K, V, top, 1, red)};
  }
  uint32_t lo = 1, hi = 0xffffffffu;
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (mass_above(mid) < target) hi = mid;
    else lo = mid + 1;
  }
  const double m = mass_above(lo);
  int64_t ties = 0;
  double tie_p = 0.0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
    if (K[i] == lo && top_k.keeps(K[i], i)) {
      ++ties;
      tie_p = fmax(tie_p, p[i]);  // equal keys: equal p
    }
  ties = block_sum_t<int64_t>(ties, red);
  tie_p = block_max_t<double>(tie_p, red);
  if (ties == 0) return Cut{lo, -1};
  int64_t r = static_cast<int64_t>(ceil((target - m) / tie_p));  // m < target here
  if (r < 1) r = 1;
  // top_k kept the first `ties` of this key in id order; the r-th of them ends the prefix.
  if (r >= ties) return Cut{lo, V};
  return Cut{lo, nth_tie_id(K, V, lo, r, red)};
}

// The inverse CDF over the kept probabilities in id order at uniform u (the CPU's walk), with a
// block-wide prefix over contiguous id ranges; -1 when nothing is kept.
DS_DEV int32_t draw(const uint32_t* K, const double* p, int64_t V, const Kept& kept, double u, double* red) {
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
    if (kept(K[i], i)) sum += p[i];
  sum = block_sum_t<double>(sum, red);
  if (!(sum > 0.0)) return -1;
  const int64_t nt = blockDim.x, chunk = (V + nt - 1) / nt, i0 = threadIdx.x * chunk;
  const int64_t i1 = i0 + chunk < V ? i0 + chunk : V;
  double local = 0.0;
  for (int64_t i = i0; i < i1; ++i)
    if (kept(K[i], i)) local += p[i] / sum;
  double* prefix = red + kMaxWarp + 8;  // [blockDim.x]
  __syncthreads();
  prefix[threadIdx.x] = local;
  __syncthreads();
  if (threadIdx.x == 0) {
    double run = 0.0;
    for (int64_t t = 0; t < nt; ++t) {
      const double x = prefix[t];
      prefix[t] = run;
      run += x;
    }
  }
  __syncthreads();
  double cum = prefix[threadIdx.x];
  int32_t hit = -1, last = -1;
  for (int64_t i = i0; i < i1; ++i) {
    if (!kept(K[i], i)) continue;
    const double q = p[i] / sum;
    if (q <= 0.0) continue;
    last = static_cast<int32_t>(i);
    cum += q;
    if (u < cum) {
      hit = last;
      break;
    }
  }
  const ValIdx first = block_argmax(ValIdx{0.0f, hit}, red);  // the lowest id that hit
  if (first.i >= 0) return first.i;
  return block_argmax(ValIdx{static_cast<float>(last), last}, red).i;  // rounding: the last kept
}

__global__ void sample_kernel(int64_t V, const SampleDesc* descs, char* work, int32_t* tokens) {
  const SampleDesc& d = descs[blockIdx.x];
  char* base = work + static_cast<int64_t>(blockIdx.x) * V * kSampleWorkBytesPerId;
  const float* P = reinterpret_cast<const float*>(base);
  uint32_t* K = reinterpret_cast<uint32_t*>(base + 4 * V);
  double* p = reinterpret_cast<double*>(base + 8 * V);
  double* red = smem<double>();
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  int32_t token = -1;
  const double inv_t = 1.0 / d.temperature;
  float mxf = -INFINITY;
  for (int64_t i = tid; i < V; i += nt) mxf = fmaxf(mxf, P[i]);
  mxf = block_max(mxf, reinterpret_cast<float*>(red));
  const double mx = static_cast<double>(mxf) * inv_t;
  if (!d.greedy && fabs(mx) < INFINITY) {  // else: argmax, as the CPU
    double e_sum = 0.0;
    for (int64_t i = tid; i < V; i += nt) e_sum += (p[i] = exp(static_cast<double>(P[i]) * inv_t - mx));
    const double sum = block_sum_t<double>(e_sum, red);
    const double thresh = d.min_p * (1.0 / sum);  // the largest probability is exp(0) / sum
    int64_t alive = 0;
    for (int64_t i = tid; i < V; i += nt) {
      double q = p[i] / sum;
      if (d.min_p > 0.0 && q < thresh) q = 0.0;
      p[i] = q;
      K[i] = q > 0.0 ? ordered(P[i]) : 0u;  // p is monotone in P: the same order
      alive += q > 0.0;
    }
    const int64_t n_alive = block_sum_t<int64_t>(alive, red);
    Kept kept;
    if (d.top_k > 0 && d.top_k < V && d.top_k < n_alive) kept.top_k = cut_top_k(K, V, d.top_k, red);
    if (d.top_p < 1.0) {
      double in_k = 0.0, total = 0.0;
      for (int64_t i = tid; i < V; i += nt) {
        total += p[i];
        if (kept.top_k.keeps(K[i], i)) in_k += p[i];
      }
      in_k = block_sum_t<double>(in_k, red);
      total = block_sum_t<double>(total, red);
      const bool use_top_k = d.top_k > 0 && d.top_k < V;
      kept.top_p = cut_top_p(K, p, V, kept.top_k, d.top_p * (use_top_k ? in_k : total), red);
    }
    token = draw(K, p, V, kept, d.uniform, red);
  }
  if (token < 0) token = block_argmax_row(P, V, red);
  if (tid == 0) tokens[blockIdx.x] = token;
}

__global__ void logprob_kernel(const float* logits, int64_t ld, int64_t V, const int32_t* targets, const int32_t* ks,
                               LogprobOut* out) {
  const int32_t target = targets[blockIdx.x];
  if (target < 0 || target >= V) return;
  const float* l = logits + static_cast<int64_t>(blockIdx.x) * ld;
  double* red = smem<double>();
  float mxf = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) mxf = fmaxf(mxf, l[i]);
  const double mx = block_max(mxf, reinterpret_cast<float*>(red));
  double s = 0.0;
  int64_t above = 0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    s += exp(static_cast<double>(l[i]) - mx);
    above += l[i] > l[target];
  }
  const double lse = mx + log(block_sum_t<double>(s, red));
  above = block_sum_t<int64_t>(above, red);
  LogprobOut& o = out[blockIdx.x];
  if (threadIdx.x == 0) {
    o.logprob = static_cast<float>(static_cast<double>(l[target]) - lse);
    o.rank = above + 1;
  }
  int64_t k = ks[blockIdx.x] < 0 ? 0 : ks[blockIdx.x];
  if (k > kMaxTopLogprobs) k = kMaxTopLogprobs;
  if (k > V) k = V;
  ValIdx prev{0.0f, -1};
  for (int64_t j = 0; j < k; ++j) {  // the next element of the order after prev
    ValIdx best{0.0f, -1};
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
      const ValIdx c{l[i], static_cast<int32_t>(i)};
      if ((prev.i < 0 || better(prev, c)) && better(c, best)) best = c;
    }
    prev = block_argmax(best, red);
    if (threadIdx.x == 0) {
      o.top_ids[j] = prev.i;
      o.top_logprobs[j] = static_cast<float>(static_cast<double>(prev.v) - lse);
    }
  }
}

}  // namespace

void sample_rows(const float* logits, int64_t ld, int64_t rows, int64_t V, const SampleDesc* desc,
                 const int32_t* pool_ids, const float* pool_vals, void* work, int32_t* tokens, Stream stream) {
  if (rows <= 0 || V <= 0) return;
  char* w = static_cast<char*>(work);
  DS_LAUNCH(process_kernel, static_cast<unsigned>(rows), kThreads, 0, stream, logits, ld, V, desc, pool_ids, pool_vals,
            w);
  DS_LAUNCH(sample_kernel, static_cast<unsigned>(rows), kThreads, kSmemBytes + kThreads * sizeof(double), stream, V,
            desc, w, tokens);
}

void logprob_rows(const float* logits, int64_t ld, int64_t rows, int64_t V, const int32_t* targets, const int32_t* k,
                  LogprobOut* out, Stream stream) {
  if (rows <= 0 || V <= 0) return;
  DS_LAUNCH(logprob_kernel, static_cast<unsigned>(rows), kThreads, kSmemBytes, stream, logits, ld, V, targets, k, out);
}

}  // namespace ds::gpu
