// GpuBackend::attention: append the step's k/v rows to the layer's paged cache, then the decode
// kernel (split-K over the context) when every sequence has one new token, else the varlen
// prefill kernel (it serves mixed prefill + decode steps too).
#include <string>

#include "kernels/gpu/ops_attention.h"
#include "src/backend/gpu/gpu_backend.h"
#include "src/backend/gpu/gpu_ops_util.h"

namespace ds::backend::gpu {

void GpuBackend::attention(int layer, Act q, Act k, Act v, int heads, int kv_heads, int head_dim, float scale,
                           Act out) {
  const DType dt = activation_dtype();
  ds::gpu::PagedAttention p;
  p.q = q.data;
  p.q_ld = q.ld;
  p.out = out.data;
  p.out_ld = out.ld;
  p.k_cache = kv_k_[static_cast<size_t>(layer)]->data();
  p.v_cache = kv_v_[static_cast<size_t>(layer)]->data();
  p.cu_seqlens = step_.cu_seqlens;
  p.start_pos = step_.start_pos;
  p.block_tables = step_.block_tables;
  p.blocks_per_seq = step_.blocks_per_seq;
  p.block_size = cache_.block_size;
  p.num_seqs = step_.S;
  p.heads = heads;
  p.kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.scale = scale;
  auto shapes = [&](int splits) {
    return "layer=" + std::to_string(layer) + " T=" + std::to_string(step_.T) + " S=" + std::to_string(step_.S) +
           " heads=" + std::to_string(heads) + "/" + std::to_string(kv_heads) + " head_dim=" + std::to_string(head_dim) +
           " max_context=" + std::to_string(step_.max_context) + " splits=" + std::to_string(splits);
  };
  if (head_dim > ds::gpu::kAttnMaxHeadDim || kv_heads <= 0 || heads % kv_heads != 0) {
    // A model the loader accepted but these kernels cannot run: no error channel in ops (contract).
    op_fail("attention", shapes(0) + ": needs head_dim <= 256 and heads a multiple of kv_heads");
  }
  ds::gpu::attention_kv_append(p, k.data, k.ld, v.data, v.ld, kv_k_[static_cast<size_t>(layer)]->data(),
                               kv_v_[static_cast<size_t>(layer)]->data(), step_.token_seq, step_.T, dt, rt_->stream());
  check("attention kv append", [&] { return shapes(0); });
  if (step_.all_decode) {
    const int splits = ds::gpu::attention_decode_splits(step_.S, heads, kv_heads, head_dim, step_.max_context,
                                                        scratch_ ? scratch_->bytes() : 0);
    ds::gpu::attention_decode(p, splits, static_cast<float*>(scratch()), dt, rt_->stream());
    check("attention decode", [&] { return shapes(splits); });
  } else {
    ds::gpu::attention_prefill(p, step_.max_new_tokens, dt, rt_->stream());
    check("attention prefill", [&] { return shapes(1); });
  }
}

// The decode partials at their largest: splits only happen while (sequences x head groups x
// splits) stays under the target CTA count, and a group has at most kAttnMaxGroup heads.
size_t GpuBackend::attention_scratch_bytes(const StepLimits& limits, const CacheSpec& cache) {
  (void)limits;
  return sizeof(float) * static_cast<size_t>(ds::gpu::kAttnDecodeTargetCtas) * ds::gpu::kAttnMaxGroup *
         (2 + static_cast<size_t>(cache.head_dim));
}

}  // namespace ds::backend::gpu
