#include "deltaserve/model/quant_rules.h"

#include <algorithm>
#include <regex>
#include <sstream>

namespace ds::model {

struct QuantRules::Rule {
  std::string key;  // as written in the config ("+:.*mlp.*", "lm_head", ...)
  std::string pattern;
  bool negative = false;
  std::shared_ptr<std::regex> re;
  QuantScheme scheme;  // the global scheme with this rule's overrides applied
  int hits = 0;
};

QuantRules::QuantRules() = default;
QuantRules::~QuantRules() = default;
QuantRules::QuantRules(QuantRules&&) noexcept = default;
QuantRules& QuantRules::operator=(QuantRules&&) noexcept = default;

namespace {

Status read_int(const ordered_json& o, const char* key, int* out, const std::string& where) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  if (!it->is_number_integer()) return invalid_argument(where + ": '" + key + "' must be an integer");
  *out = it->get<int>();
  return {};
}

Status read_bool(const ordered_json& o, const char* key, bool* out, const std::string& where) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  if (!it->is_boolean()) return invalid_argument(where + ": '" + key + "' must be true or false");
  *out = it->get<bool>();
  return {};
}

std::string read_str(const ordered_json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Applies bits / group_size / sym / desc_act from `o` onto `s` and validates the result.
Status apply_overrides(const ordered_json& o, QuantScheme* s, const std::string& where) {
  if (!o.is_object()) return invalid_argument(where + " must be a JSON object");
  DS_RETURN_IF_ERROR(read_int(o, "bits", &s->bits, where));
  DS_RETURN_IF_ERROR(read_int(o, "group_size", &s->group_size, where));
  DS_RETURN_IF_ERROR(read_bool(o, "sym", &s->sym, where));
  DS_RETURN_IF_ERROR(read_bool(o, "desc_act", &s->desc_act, where));
  const std::string data_type = read_str(o, "data_type");
  if (!data_type.empty() && data_type.rfind("int", 0) != 0 && data_type != "float" && s->bits < 16)
    return unsupported(where + ": data_type '" + data_type + "' is not supported (int)");
  int act_bits = 16;
  DS_RETURN_IF_ERROR(read_int(o, "act_bits", &act_bits, where));
  if (act_bits < 16 && s->bits < 16)
    return unsupported(where + ": act_bits " + std::to_string(act_bits) + " (activation quantization) is not supported");
  if (s->bits >= 16) {
    s->bits = 16;
    return {};
  }
  if (s->bits != 4 && s->bits != 8)
    return unsupported(where + ": bits " + std::to_string(s->bits) + " is not supported (4, 8, or 16 = unquantized)");
  if (s->group_size != -1 && s->group_size != 32 && s->group_size != 64 && s->group_size != 128)
    return unsupported(where + ": group_size " + std::to_string(s->group_size) +
                       " is not supported (-1, 32, 64, 128)");
  if (s->group_size == -1) s->desc_act = false;  // vLLM: act-order is meaningless with one group
  return {};
}

// Python `re` spellings that ECMAScript lacks: (?P<name>...) groups, \A / \Z anchors, a leading (?i).
std::string python_to_ecmascript(const std::string& p, bool* icase) {
  std::string out;
  size_t i = 0;
  if (p.rfind("(?i)", 0) == 0) {
    *icase = true;
    i = 4;
  }
  for (; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      if (p[i + 1] == 'A') out += '^';
      else if (p[i + 1] == 'Z') out += '$';
      else out.append(p, i, 2);
      ++i;
    } else if (p.compare(i, 4, "(?P<") == 0 && p.find('>', i) != std::string::npos) {
      out += '(';
      i = p.find('>', i);
    } else {
      out += p[i];
    }
  }
  return out;
}

Result<std::shared_ptr<std::regex>> compile(const std::string& pattern, const std::string& where) {
  try {
    bool icase = false;
    const std::string ecma = python_to_ecmascript(pattern, &icase);
    auto flags = std::regex::ECMAScript | std::regex::optimize;
    if (icase) flags |= std::regex::icase;
    return std::make_shared<std::regex>(ecma, flags);
  } catch (const std::regex_error& e) {
    return invalid_argument(where + ": invalid regular expression '" + pattern + "' (" + e.what() + ")");
  }
}

// Python re.match: anchored at the start, not at the end.
bool re_match(const std::regex& re, const std::string& s) {
  return std::regex_search(s, re, std::regex_constants::match_continuous);
}

bool looks_like_regex(const std::string& key) {
  return key.find_first_of("*+?[](){}^$|\\") != std::string::npos;
}

// "model.language_model.layers.3.self_attn.q_proj" -> "self_attn.q_proj"
std::string in_block_name(const std::string& name) {
  const size_t p = name.find("layers.");
  if (p == std::string::npos) return name;
  const size_t dot = name.find('.', p + 7);
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

}  // namespace

std::vector<std::string> module_match_names(const std::string& name) {
  // fused alias under the checkpoint prefix
  std::string fused;
  struct Map { const char* from; const char* to; };
  static const Map kFused[] = {
      {"self_attn.q_proj", "self_attn.qkv_proj"},       {"self_attn.k_proj", "self_attn.qkv_proj"},
      {"self_attn.v_proj", "self_attn.qkv_proj"},       {"linear_attn.in_proj_qkv", "linear_attn.in_proj_qkvz"},
      {"linear_attn.in_proj_z", "linear_attn.in_proj_qkvz"}, {"linear_attn.in_proj_a", "linear_attn.in_proj_ba"},
      {"linear_attn.in_proj_b", "linear_attn.in_proj_ba"},   {"mlp.gate_proj", "mlp.gate_up_proj"},
      {"mlp.up_proj", "mlp.gate_up_proj"},                   {"shared_expert.gate_proj", "shared_expert.gate_up_proj"},
      {"shared_expert.up_proj", "shared_expert.gate_up_proj"},
  };
  for (const auto& m : kFused) {
    const std::string from = m.from;
    if (name.size() >= from.size() && name.compare(name.size() - from.size(), from.size(), from) == 0 &&
        (name.size() == from.size() || name[name.size() - from.size() - 1] == '.')) {
      fused = name.substr(0, name.size() - from.size()) + m.to;
      break;
    }
  }
  // experts: "...mlp.experts.7.gate_proj" or "...mlp.experts.gate_up_proj" -> "...mlp.experts"
  if (fused.empty()) {
    const size_t p = name.rfind("mlp.experts.");
    if (p != std::string::npos) fused = name.substr(0, p + 11);
  }
  std::vector<std::string> out{name};
  if (!fused.empty()) out.push_back(fused);
  static const std::string kMm = "model.language_model.";
  const size_t n = out.size();
  for (size_t i = 0; i < n; ++i) {
    if (out[i].rfind(kMm, 0) == 0) out.push_back("language_model.model." + out[i].substr(kMm.size()));
  }
  if (name == "lm_head") out.push_back("language_model.lm_head");
  return out;
}

std::string describe_scheme(const QuantScheme& s, DType unquantized_dtype) {
  if (!s.quantized()) {
    std::string n = dtype_name(unquantized_dtype);
    std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
    return n;
  }
  std::ostringstream os;
  os << "int" << s.bits << " " << (s.group_size < 0 ? std::string("channelwise") : "g" + std::to_string(s.group_size))
     << (s.sym ? " sym" : " asym") << (s.desc_act ? " desc_act" : "") << " (" << (s.method.empty() ? "gptq" : s.method)
     << (s.zeros_v2 ? " v2" : " v1") << ")";
  return os.str();
}

Result<QuantRules> QuantRules::parse(const ordered_json* qc, const std::string& source) {
  QuantRules r;
  r.source_ = source;
  r.global_.method = "none";
  if (!qc || qc->is_null()) return r;
  if (!qc->is_object()) return invalid_argument(source + ": quantization_config must be a JSON object");
  std::string method = read_str(*qc, "quant_method");
  if (method.empty()) method = read_str(*qc, "method");
  if (method.empty() && qc->contains("bits")) method = "gptq";  // old quantize_config.json
  std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return std::tolower(c); });
  if (method == "auto_round" || method == "intel/auto-round" || method == "autoround") method = "auto-round";
  if (method != "gptq" && method != "auto-round")
    return unsupported(source + ": quant_method '" + method +
                       "' is not supported (gptq, auto-round with auto_gptq packing, or unquantized)");
  r.method_ = method;
  QuantScheme& g = r.global_;
  g.bits = 4;
  g.group_size = 128;
  g.sym = true;
  g.desc_act = false;
  g.method = method;
  const std::string where = source + " quantization_config";
  if (!qc->contains("bits")) return invalid_argument(where + ": 'bits' is missing");
  DS_RETURN_IF_ERROR(apply_overrides(*qc, &g, where));
  if (!g.quantized()) return unsupported(where + ": bits 16 as the global scheme is not a quantized checkpoint");

  if (method == "gptq") {
    std::string fmt = read_str(*qc, "checkpoint_format");
    if (fmt.empty()) fmt = read_str(*qc, "format");
    if (fmt.empty()) fmt = "gptq";
    if (fmt == "gptq_v2") g.zeros_v2 = true;
    else if (fmt != "gptq")
      return unsupported(where + ": checkpoint_format '" + fmt + "' is not supported (gptq, gptq_v2)");
    DS_RETURN_IF_ERROR(read_bool(*qc, "lm_head", &r.lm_head_quantized_, where));
    if (auto it = qc->find("modules_in_block_to_quantize"); it != qc->end() && !it->is_null()) {
      if (!it->is_array()) return invalid_argument(where + ": 'modules_in_block_to_quantize' must be a list");
      r.has_in_block_list_ = true;
      for (const auto& x : *it) {
        if (x.is_string()) r.in_block_modules_.push_back(x.get<std::string>());
        else if (x.is_array()) {
          for (const auto& y : x)
            if (y.is_string()) r.in_block_modules_.push_back(y.get<std::string>());
            else return invalid_argument(where + ": 'modules_in_block_to_quantize' must hold names");
        } else return invalid_argument(where + ": 'modules_in_block_to_quantize' must hold names");
      }
    }
    if (auto it = qc->find("dynamic"); it != qc->end() && !it->is_null()) {
      if (!it->is_object()) return invalid_argument(where + ": 'dynamic' must be an object of regex -> overrides");
      for (auto d = it->begin(); d != it->end(); ++d) {
        Rule rule;
        rule.key = d.key();
        rule.pattern = rule.key;
        if (rule.key.rfind("-:", 0) == 0) {
          rule.negative = true;
          rule.pattern = rule.key.substr(2);
        } else if (rule.key.rfind("+:", 0) == 0) {
          rule.pattern = rule.key.substr(2);
        }
        const std::string rw = where + " dynamic rule '" + rule.key + "'";
        DS_ASSIGN_OR_RETURN(rule.re, compile(rule.pattern, rw));
        rule.scheme = g;
        if (rule.negative) rule.scheme.bits = 16;
        else DS_RETURN_IF_ERROR(apply_overrides(d.value(), &rule.scheme, rw));
        r.dynamic_.push_back(std::move(rule));
      }
    }
  } else {  // auto-round
    std::string packing = read_str(*qc, "packing_format");
    if (packing.empty()) packing = read_str(*qc, "backend");
    if (!packing.empty() && packing != "auto_round:auto_gptq" && packing != "auto_round:gptq" &&
        packing != "auto_gptq" && packing != "auto_round" && packing != "auto_round:gptqmodel")
      return unsupported(where + ": packing_format '" + packing + "' is not supported (auto_round:auto_gptq)");
    if (auto it = qc->find("block_name_to_quantize"); it != qc->end() && !it->is_null()) {
      if (it->is_string()) {
        std::stringstream ss(it->get<std::string>());  // "a,b" is also accepted by vLLM
        std::string part;
        while (std::getline(ss, part, ','))
          if (!part.empty()) r.blocks_.push_back(part);
      } else if (it->is_array()) {
        for (const auto& x : *it) {
          if (!x.is_string()) return invalid_argument(where + ": 'block_name_to_quantize' must hold strings");
          r.blocks_.push_back(x.get<std::string>());
        }
      } else return invalid_argument(where + ": 'block_name_to_quantize' must be a string or a list");
    }
    if (auto it = qc->find("extra_config"); it != qc->end() && !it->is_null()) {
      if (!it->is_object()) return invalid_argument(where + ": 'extra_config' must be an object");
      for (auto e = it->begin(); e != it->end(); ++e) {
        Rule rule;
        rule.key = e.key();
        rule.pattern = rule.key;
        rule.scheme = g;
        const std::string rw = where + " extra_config['" + rule.key + "']";
        DS_RETURN_IF_ERROR(apply_overrides(e.value(), &rule.scheme, rw));
        if (looks_like_regex(rule.key)) {
          DS_ASSIGN_OR_RETURN(rule.re, compile(rule.key, rw));
          r.extra_regex_.push_back(std::move(rule));
        } else {
          r.extra_exact_.push_back(std::move(rule));
        }
      }
    }
  }
  return r;
}

Result<SchemeDecision> QuantRules::decide(const ModuleQuery& q) {
  SchemeDecision d;
  d.scheme.method = "none";
  if (method_ == "none") {
    d.binding = SchemeBinding::kFollowTensors;
    d.source = "unquantized checkpoint";
    return d;
  }
  const std::vector<std::string> names = module_match_names(q.name);
  if (method_ == "gptq") {
    for (auto& rule : dynamic_) {
      for (const auto& n : names) {
        if (!re_match(*rule.re, n)) continue;
        ++rule.hits;
        d.scheme = rule.scheme;
        // A '-:' rule binds every module. A '+:' rule binds the modules GPTQ quantizes; for the ones it
        // skips (router, in_proj_a/b, ...) vLLM follows the checkpoint, and so do we.
        d.binding = rule.negative || q.core ? SchemeBinding::kRequired : SchemeBinding::kFollowTensors;
        d.source = "dynamic '" + rule.key + "'";
        return d;
      }
    }
    d.scheme = global_;
    if (q.is_lm_head) {
      if (!lm_head_quantized_) d.scheme.bits = 16;
      d.binding = SchemeBinding::kRequired;
      d.source = std::string("lm_head: ") + (lm_head_quantized_ ? "true" : "false");
      return d;
    }
    if (has_in_block_list_ && q.name.find("layers.") != std::string::npos && q.name.rfind("mtp.", 0) != 0) {
      bool listed = false;
      for (const auto& n : names) {
        const std::string short_name = in_block_name(n);
        for (const auto& m : in_block_modules_)
          listed = listed || short_name == m || short_name.rfind(m + ".", 0) == 0;
      }
      if (!listed) d.scheme.bits = 16;
      d.binding = q.core || listed ? SchemeBinding::kRequired : SchemeBinding::kFollowTensors;
      d.source = listed ? "modules_in_block_to_quantize" : "not in modules_in_block_to_quantize";
      return d;
    }
    d.binding = q.core ? SchemeBinding::kRequired : SchemeBinding::kFollowTensors;
    d.source = "global";
    return d;
  }

  // AutoRound: exact extra_config name first (checkpoint or vLLM name, or a dotted suffix of it), then
  // the block test, then regex keys, then the global scheme.
  for (auto& rule : extra_exact_) {
    for (const auto& n : names) {
      const bool hit = n == rule.key || (n.size() > rule.key.size() &&
                                         n.compare(n.size() - rule.key.size(), rule.key.size(), rule.key) == 0 &&
                                         n[n.size() - rule.key.size() - 1] == '.');
      if (!hit) continue;
      ++rule.hits;
      d.scheme = rule.scheme;
      d.binding = SchemeBinding::kRequired;
      d.source = "extra_config['" + rule.key + "']";
      return d;
    }
  }
  bool in_block = blocks_.empty() && !q.is_lm_head;
  for (const auto& b : blocks_)
    for (const auto& n : names) in_block = in_block || n.rfind(b, 0) == 0;
  for (auto& rule : extra_regex_) {
    for (const auto& n : names) {
      if (!std::regex_search(n, *rule.re)) continue;
      ++rule.hits;
      d.scheme = rule.scheme;
      d.binding = q.core || !rule.scheme.quantized() ? SchemeBinding::kRequired : SchemeBinding::kFollowTensors;
      d.source = "extra_config['" + rule.key + "']";
      return d;
    }
  }
  d.scheme = global_;
  if (!in_block) {
    d.scheme.bits = 16;
    d.binding = q.is_lm_head ? SchemeBinding::kRequired : SchemeBinding::kFollowTensors;
    d.source = "outside block_name_to_quantize";
    return d;
  }
  d.binding = q.core ? SchemeBinding::kRequired : SchemeBinding::kFollowTensors;
  d.source = "global";
  return d;
}

Status QuantRules::check_rules_used() const {
  for (const auto& rule : dynamic_)
    if (rule.hits == 0)
      return invalid_argument(source_ + " quantization_config: dynamic rule '" + rule.key +
                              "' matches no module (patterns use re.match from the start of names such as "
                              "'model.language_model.layers.0.mlp.experts' or vLLM's fused names)");
  return {};
}

std::vector<std::string> QuantRules::unused_extra_config_keys() const {
  std::vector<std::string> out;
  for (const auto* v : {&extra_exact_, &extra_regex_})
    for (const auto& rule : *v)
      if (rule.hits == 0) out.push_back(rule.key);
  return out;
}

std::string QuantRules::describe() const {
  if (method_ == "none") return "unquantized";
  std::ostringstream os;
  os << method_ << " " << describe_scheme(global_);
  if (!dynamic_.empty()) os << ", " << dynamic_.size() << " dynamic rule" << (dynamic_.size() > 1 ? "s" : "");
  const size_t extra = extra_exact_.size() + extra_regex_.size();
  if (extra) os << ", " << extra << " extra_config entr" << (extra > 1 ? "ies" : "y");
  if (lm_head_quantized_) os << ", lm_head quantized";
  return os.str();
}

}  // namespace ds::model
