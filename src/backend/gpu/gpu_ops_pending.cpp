// TEMPORARY while the op files land in parallel: weak definitions that the real ones in
// gpu_ops_*.cpp override (ds_backend_gpu_emu is an object library, so both are seen by the linker).
// Deleted before issue 11 closes.
#include <cstdio>
#include <cstdlib>

#include "src/backend/gpu/gpu_backend.h"

namespace ds::backend::gpu {

[[noreturn]] static void pending(const char* op) {
  std::fprintf(stderr, "GpuBackend::%s is not implemented yet\n", op);
  std::abort();
}

__attribute__((weak)) void GpuBackend::reset_states() { pending("reset_states"); }
__attribute__((weak)) void GpuBackend::embed(const EmbeddingTable&, Act) { pending("embed"); }
__attribute__((weak)) void GpuBackend::rms_norm(Act, const float*, float, bool, Act) { pending("rms_norm"); }
__attribute__((weak)) void GpuBackend::gated_rms_norm(Act, Act, const float*, float, Act) { pending("gated_rms_norm"); }
__attribute__((weak)) void GpuBackend::l2_norm_heads(Act, int, float, float) { pending("l2_norm_heads"); }
__attribute__((weak)) void GpuBackend::linear(const PreparedWeight&, Act, Act) { pending("linear"); }
__attribute__((weak)) void GpuBackend::linear_shared_input(Act, const PreparedWeight* const*, const Act*, int) { pending("linear_shared_input"); }
__attribute__((weak)) void GpuBackend::rope_mrope(Act, int, int, int, double, const int32_t*) { pending("rope_mrope"); }
__attribute__((weak)) void GpuBackend::split_query_gate(Act, int, int, Act, Act) { pending("split_query_gate"); }
__attribute__((weak)) void GpuBackend::attention(int, Act, Act, Act, int, int, int, float, Act) { pending("attention"); }
__attribute__((weak)) void GpuBackend::conv1d_causal(int, Act, const float*, const float*, int, Act) { pending("conv1d_causal"); }
__attribute__((weak)) void GpuBackend::gdn_gates(Act, Act, const float*, const float*, Act, Act) { pending("gdn_gates"); }
__attribute__((weak)) void GpuBackend::gdn_decode(int, Act, Act, Act, Act, Act, int, int, int, int, Act) { pending("gdn_decode"); }
__attribute__((weak)) void GpuBackend::gdn_prefill(int, Act, Act, Act, Act, Act, int, int, int, int, Act) { pending("gdn_prefill"); }
__attribute__((weak)) void GpuBackend::moe_route(Act, int, bool, int32_t*, Act) { pending("moe_route"); }
__attribute__((weak)) void GpuBackend::moe_experts(Act, const int32_t*, Act, int, const PreparedWeight* const*, const PreparedWeight* const*, const PreparedWeight* const*, Act) { pending("moe_experts"); }
__attribute__((weak)) void GpuBackend::silu_mul(Act, Act, Act) { pending("silu_mul"); }
__attribute__((weak)) void GpuBackend::sigmoid_gate(Act, Act) { pending("sigmoid_gate"); }
__attribute__((weak)) void GpuBackend::add(Act, Act) { pending("add"); }
__attribute__((weak)) void GpuBackend::add_sigmoid_gated(Act, Act, Act) { pending("add_sigmoid_gated"); }
__attribute__((weak)) void GpuBackend::gather_logit_rows(Act, int64_t, Act) { pending("gather_logit_rows"); }
__attribute__((weak)) void GpuBackend::sample(Act, const SamplingRow*, SampleResult*) { pending("sample"); }
__attribute__((weak)) void GpuBackend::target_logprobs(Act, const int32_t*, const int32_t*, PositionLogprobs*) { pending("target_logprobs"); }
__attribute__((weak)) size_t GpuBackend::attention_scratch_bytes(const StepLimits&, const CacheSpec&) { return 0; }
__attribute__((weak)) size_t GpuBackend::gdn_scratch_bytes(const StepLimits&, const CacheSpec&) { return 0; }
__attribute__((weak)) size_t GpuBackend::moe_scratch_bytes(const StepLimits&, const CacheSpec&) { return 0; }
__attribute__((weak)) size_t GpuBackend::sample_scratch_bytes(const StepLimits&, const CacheSpec&) { return 0; }

}  // namespace ds::backend::gpu
