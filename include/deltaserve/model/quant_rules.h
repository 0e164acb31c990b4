// Quantization rules of a checkpoint, resolved per module: GPTQ (`bits`, `group_size`, `sym`,
// `desc_act`, `checkpoint_format` gptq/gptq_v2, `dynamic` +:/-: regexes matched with Python re.match
// semantics, first match wins, `modules_in_block_to_quantize`, `lm_head`) and AutoRound
// (`block_name_to_quantize`, `extra_config` by exact name first, then by regex; bits 16 = unquantized).
// Rules are matched against the checkpoint's own module names and against vLLM's names for the same
// module (fused `self_attn.qkv_proj`, `linear_attn.in_proj_qkvz`/`in_proj_ba`, `mlp.gate_up_proj`,
// one `mlp.experts` per FusedMoE layer, `language_model.model.` prefix), since users write either.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/model/config.h"
#include "deltaserve/model/model_desc.h"

namespace ds::model {

// How strongly a resolved scheme binds the tensors on disk.
enum class SchemeBinding {
  kRequired,     // a rule (or the global scheme for a module the quantizer always handles) says so:
                 // the tensors must agree, or loading fails naming the module
  kFollowTensors,  // modules quantizers usually skip (router, shared_expert_gate, in_proj_a/b, mtp.*):
                   // stored quantized -> this scheme's parameters; stored as .weight -> unquantized
};

struct SchemeDecision {
  QuantScheme scheme;
  SchemeBinding binding = SchemeBinding::kRequired;
  std::string source;  // "global", "dynamic '-:.*shared_expert.*'", "extra_config['lm_head']", ...
};

struct ModuleQuery {
  std::string name;  // checkpoint module name, e.g. model.language_model.layers.3.self_attn.q_proj
  bool core = true;  // false: router, shared_expert_gate, in_proj_a/b, lm_head, mtp.*
  bool is_lm_head = false;
};

class QuantRules {
 public:
  // quantization_config from config.json, or quantize_config.json's object; nullptr: unquantized.
  // `source` names it in errors.
  static Result<QuantRules> parse(const ordered_json* quantization_config, const std::string& source);
  QuantRules();
  ~QuantRules();
  QuantRules(QuantRules&&) noexcept;
  QuantRules& operator=(QuantRules&&) noexcept;

  const std::string& method() const { return method_; }  // "none", "gptq", "auto-round"
  const QuantScheme& global() const { return global_; }
  bool quantized() const { return method_ != "none"; }

  // Resolves one module. Not const: it counts which rules matched, for check_rules_used().
  Result<SchemeDecision> decide(const ModuleQuery& q);

  // A `dynamic` rule that never applied to any module is an error naming the rule.
  Status check_rules_used() const;
  // extra_config keys that matched no module (a warning, not an error: AutoRound writes fused names).
  std::vector<std::string> unused_extra_config_keys() const;

  // One line, e.g. "gptq int4 g128 sym (gptq v1), 2 dynamic rules".
  std::string describe() const;

 private:
  struct Rule;
  std::string method_ = "none";
  QuantScheme global_;
  std::string source_;
  std::vector<Rule> dynamic_;       // GPTQ dynamic, in file order
  std::vector<Rule> extra_exact_;   // AutoRound extra_config, plain-name keys
  std::vector<Rule> extra_regex_;   // AutoRound extra_config, regex keys
  std::vector<std::string> blocks_;            // AutoRound block_name_to_quantize
  std::vector<std::string> in_block_modules_;  // GPTQ modules_in_block_to_quantize (flattened)
  bool has_in_block_list_ = false;
  bool lm_head_quantized_ = false;
};

// Names vLLM gives the module `name` (checkpoint naming), in addition to `name` itself: the fused module
// it is a shard of, and both under vLLM's own prefix (language_model.model. for multimodal checkpoints).
std::vector<std::string> module_match_names(const std::string& name);

// "int4 g128 sym (gptq v1)", "int8 g32 asym desc_act (gptq v2)", "bf16".
std::string describe_scheme(const QuantScheme& s, DType unquantized_dtype = DType::kBF16);

}  // namespace ds::model
