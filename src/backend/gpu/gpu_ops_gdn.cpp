// GpuBackend's Gated DeltaNet ops: the state-slot reset, the causal conv1d with its per-slot conv
// state, and the gated delta rule as the token recurrence (gdn_decode) or the chunked WY form
// (gdn_prefill). Kernels: kernels/gpu/conv1d.cu, gdn_decode.cu, gdn_prefill.cu.
#include <string>

#include "kernels/gpu/ops_gdn.h"
#include "src/backend/gpu/gpu_backend.h"
#include "src/backend/gpu/gpu_ops_util.h"

namespace ds::backend::gpu {
namespace {

// A model the loader accepted but these kernels cannot run: ops have no error channel (contract).
[[noreturn]] void unsupported(const char* op, const std::string& shapes, const char* why) {
  op_fail(op, shapes + ": " + why);
}

}  // namespace

void GpuBackend::reset_states() {
  if (step_.n_reset == 0) return;
  for (int l = 0; l < cache_.num_gdn_layers; ++l) {
    ds::gpu::gdn_zero_slots(ssm_state(l), gdn_slot_floats_, gdn_slot_floats_, step_.reset_slots, step_.n_reset,
                            rt_->stream());
    check("gdn reset_states", [&] { return std::string("layer=" + std::to_string(l) + " slots=" + std::to_string(step_.n_reset)); });
  }
}

void GpuBackend::conv1d_causal(int layer, Act x, const float* w, const float* bias, int kernel, Act y) {
  auto shapes = [&] {
    return "layer=" + std::to_string(layer) + " T=" + std::to_string(step_.T) + " S=" + std::to_string(step_.S) +
           " C=" + std::to_string(x.cols) + " kernel=" + std::to_string(kernel);
  };
  if (kernel < 2 || kernel > ds::gpu::kConvMaxKernel || (kernel - 1) * x.cols > gdn_slot_floats_ - ssm_floats_)
    unsupported("conv1d_causal", shapes(), "needs 2 <= kernel <= 8 and a conv state that fits the cache's slots");
  ds::gpu::GdnSeqs seqs{step_.cu_seqlens, step_.state_slots, step_.S, step_.max_new_tokens};
  ds::gpu::conv1d_causal_silu(activation_dtype(), x.data, x.ld, y.data, y.ld, x.cols, kernel, w, bias,
                              conv_state(layer), gdn_slot_floats_, seqs, rt_->stream());
  check("conv1d_causal", shapes);
}

namespace {

ds::gpu::GdnLayer gdn_layer(DType dt, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv, Act o,
                            float* state, int64_t slot_floats) {
  ds::gpu::GdnLayer p;
  p.dtype = dt;
  p.q = q.data;
  p.k = k.data;
  p.v = v.data;
  p.ldq = q.ld;
  p.ldk = k.ld;
  p.ldv = v.ld;
  p.g = g.as<float>();
  p.beta = beta.as<float>();
  p.ldg = g.ld;
  p.ldbeta = beta.ld;
  p.o = o.data;
  p.ldo = o.ld;
  p.Hk = Hk;
  p.Hv = Hv;
  p.dk = dk;
  p.dv = dv;
  p.state = state;
  p.slot_floats = slot_floats;
  return p;
}

std::string gdn_shapes(int layer, const DeviceStep& st, int Hk, int Hv, int dk, int dv) {
  return "layer=" + std::to_string(layer) + " T=" + std::to_string(st.T) + " S=" + std::to_string(st.S) +
         " heads=" + std::to_string(Hv) + "/" + std::to_string(Hk) + " dk=" + std::to_string(dk) +
         " dv=" + std::to_string(dv) + " max_new_tokens=" + std::to_string(st.max_new_tokens);
}

bool gdn_shapes_ok(int Hk, int Hv, int dk, int dv, int64_t ssm_floats) {
  return Hk > 0 && Hv % Hk == 0 && dk > 0 && dv > 0 && dk <= ds::gpu::kGdnMaxHeadDim &&
         dv <= ds::gpu::kGdnMaxHeadDim && int64_t{Hv} * dk * dv <= ssm_floats;
}

}  // namespace

void GpuBackend::gdn_decode(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv, Act o) {
  auto shapes = [&] { return gdn_shapes(layer, step_, Hk, Hv, dk, dv); };
  if (!gdn_shapes_ok(Hk, Hv, dk, dv, ssm_floats_))
    unsupported("gdn_decode", shapes(), "needs Hv a multiple of Hk, dk, dv <= 256 and a state that fits the cache's slots");
  const auto p = gdn_layer(activation_dtype(), q, k, v, g, beta, Hk, Hv, dk, dv, o, ssm_state(layer), gdn_slot_floats_);
  ds::gpu::gdn_recurrent(p, {step_.cu_seqlens, step_.state_slots, step_.S, step_.max_new_tokens}, rt_->stream());
  check("gdn_decode", shapes);
}

void GpuBackend::gdn_prefill(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv,
                             Act o) {
  auto shapes = [&] { return gdn_shapes(layer, step_, Hk, Hv, dk, dv); };
  if (!gdn_shapes_ok(Hk, Hv, dk, dv, ssm_floats_))
    unsupported("gdn_prefill", shapes(), "needs Hv a multiple of Hk, dk, dv <= 256 and a state that fits the cache's slots");
  const auto p = gdn_layer(activation_dtype(), q, k, v, g, beta, Hk, Hv, dk, dv, o, ssm_state(layer), gdn_slot_floats_);
  const ds::gpu::GdnSeqs seqs{step_.cu_seqlens, step_.state_slots, step_.S, step_.max_new_tokens};
  // Devices whose shared memory cannot hold a chunk (gfx9's 64 KiB at dk = 128) run the
  // recurrence: the same result, serial in tokens.
  if (!ds::gpu::gdn_chunked(p, seqs, rt_->info().max_smem_per_block, rt_->stream()))
    ds::gpu::gdn_recurrent(p, seqs, rt_->stream());
  check("gdn_prefill", shapes);
}

// The GDN kernels keep everything in registers and shared memory.
size_t GpuBackend::gdn_scratch_bytes(const StepLimits& limits, const CacheSpec& cache) {
  (void)limits;
  (void)cache;
  return 0;
}

}  // namespace ds::backend::gpu
