// config.json fuzz target: parse_model_config, then the quantization rules it carries (GPTQ
// `dynamic`, AutoRound `extra_config` regexes) resolved for a few real module names. Errors are
// values; crashes, hangs, uncaught exceptions and sanitizer reports are findings.
#include <cstdint>
#include <string>

#include "deltaserve/model/config.h"
#include "deltaserve/model/quant_rules.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;
  const auto j = ds::model::ordered_json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto cfg = ds::model::parse_model_config(j);
  (void)cfg;
  const ds::model::ordered_json* qc = nullptr;
  if (j.is_object()) {
    auto it = j.find("quantization_config");
    if (it != j.end()) qc = &*it;
  }
  auto rules = ds::model::QuantRules::parse(qc ? qc : &j, "config.json");
  if (!rules.is_ok()) return 0;
  static const char* kModules[] = {"model.language_model.layers.0.self_attn.q_proj",
                                   "model.language_model.layers.3.linear_attn.in_proj_qkvz",
                                   "model.language_model.layers.1.mlp.experts.7.down_proj",
                                   "model.language_model.layers.2.mlp.shared_expert_gate",
                                   "lm_head",
                                   "mtp.layers.0.mlp.gate_proj",
                                   "model.layers.10.mlp.gate"};
  for (const char* m : kModules) {
    ds::model::ModuleQuery q;
    q.name = m;
    q.is_lm_head = std::string(m) == "lm_head";
    q.core = !q.is_lm_head && std::string(m).find("gate") == std::string::npos;
    auto d = rules.value().decide(q);
    (void)d;
  }
  (void)rules.value().check_rules_used();
  (void)rules.value().describe();
  return 0;
}
