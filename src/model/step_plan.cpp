#include "deltaserve/model/step_plan.h"

#include "deltaserve/backend/host_sampling.h"

namespace ds::model {

void finish_step_on_host(const StepPlan& plan, StepOutput* out) {
  const int64_t V = out->vocab_size;
  out->sampled.assign(plan.seqs.size(), {});
  out->target_logprobs.assign(plan.seqs.size(), {});
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const SeqStep& s = plan.seqs[i];
    const int64_t n = static_cast<int64_t>(s.token_ids.size());
    const float* first = out->logits.data() + out->row_offset[i] * V;
    const float* last = first + (s.all_logits ? n - 1 : 0) * V;
    if (s.sampling) backend::sample_host_row(last, V, *s.sampling, &out->sampled[i]);
    if (!s.logprob_targets.empty() && s.all_logits) {
      out->target_logprobs[i].resize(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j)
        if (s.logprob_targets[static_cast<size_t>(j)] >= 0)
          out->target_logprobs[i][static_cast<size_t>(j)] =
              backend::host_logprobs(first + j * V, V, s.logprob_targets[static_cast<size_t>(j)], s.target_top_k);
    }
  }
}

}  // namespace ds::model
