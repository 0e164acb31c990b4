// Mechanics of vLLM's FlexibleArgumentParser: tokens, aliases, --no-FLAG, --flag=value, nargs+
// lists, dotted JSON keys, --config YAML (CLI wins), unknown flags warned and skipped.
#include "deltaserve/server/cli_args.h"

#include <cmath>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "cli_flags.h"

namespace ds::server {

using nlohmann::json;

std::optional<int64_t> parse_human_int(const std::string& in) {
  std::string s = in;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  if (s.empty()) return std::nullopt;
  double mult = 1;
  const char last = s.back();
  const std::string dec = "kmgt", bin = "KMGT";
  if (auto p = dec.find(last); p != std::string::npos) {
    mult = std::pow(1000.0, static_cast<double>(p + 1));
    s.pop_back();
  } else if (auto q = bin.find(last); q != std::string::npos) {
    mult = std::pow(1024.0, static_cast<double>(q + 1));
    s.pop_back();
  }
  try {
    size_t pos = 0;
    if (mult == 1) {
      const long long v = std::stoll(s, &pos);
      if (pos != s.size()) return std::nullopt;
      return v;
    }
    const double v = std::stod(s, &pos);
    if (pos != s.size()) return std::nullopt;
    return static_cast<int64_t>(std::llround(v * mult));
  } catch (...) {
    return std::nullopt;
  }
}

namespace {

std::string canonical(std::string name) {
  for (char& c : name)
    if (c == '_') c = '-';
  static const std::map<std::string, std::string> kShort = {
      {"tp", "tensor-parallel-size"}, {"pp", "pipeline-parallel-size"}, {"dp", "data-parallel-size"},
      {"q", "quantization"}, {"asc", "api-server-count"}, {"O", "compilation-config"}};
  if (auto it = kShort.find(name); it != kShort.end()) return it->second;
  return name;
}

std::string yaml_scalar_to_json(const YAML::Node& n) {
  // Re-emit YAML as JSON text (for JSON-valued flags given in a config file).
  if (n.IsScalar()) return json(n.as<std::string>()).dump();
  json j;
  if (n.IsSequence()) {
    j = json::array();
    for (const auto& x : n) j.push_back(json::parse(yaml_scalar_to_json(x)));
  } else if (n.IsMap()) {
    j = json::object();
    for (const auto& kv : n) {
      const std::string v = yaml_scalar_to_json(kv.second);
      json parsed = json::parse(v);
      if (kv.second.IsScalar()) {  // numbers and booleans in YAML maps stay typed
        const std::string s = kv.second.as<std::string>();
        json typed = json::parse(s, nullptr, false);
        if (!typed.is_discarded() && !typed.is_string()) parsed = typed;
      }
      j[kv.first.as<std::string>()] = parsed;
    }
  }
  return j.dump();
}

Result<std::vector<std::string>> config_tokens(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return invalid_argument("argument --config: cannot read " + path + ": " + e.what());
  }
  if (!root.IsMap()) return invalid_argument("argument --config: " + path + " must be a YAML mapping");
  std::vector<std::string> out;
  for (const auto& kv : root) {
    const std::string key = canonical(kv.first.as<std::string>());
    const FlagSpec* spec = find_flag(key);
    const YAML::Node& v = kv.second;
    if (spec && spec->kind == FlagKind::kBool) {
      out.push_back((v.as<std::string>() == "true" || v.as<std::string>() == "True") ? "--" + key : "--no-" + key);
    } else if (spec && spec->kind == FlagKind::kList && v.IsSequence()) {
      out.push_back("--" + key);
      for (const auto& x : v) out.push_back(x.as<std::string>());
    } else if (v.IsScalar()) {
      out.push_back("--" + key + "=" + v.as<std::string>());
    } else {
      out.push_back("--" + key + "=" + yaml_scalar_to_json(v));
    }
  }
  return out;
}

std::string py_repr(const FlagSpec& spec, const FlagValue& v) {
  if (spec.kind == FlagKind::kBool) return v.as_bool() ? "True" : "False";
  if (spec.kind == FlagKind::kList) {
    std::string s = "[";
    for (size_t i = 0; i < v.list.size(); ++i) s += (i ? ", '" : "'") + v.list[i] + "'";
    return s + "]";
  }
  if (spec.kind == FlagKind::kString || spec.kind == FlagKind::kJson) return "'" + v.text + "'";
  return v.text;
}

}  // namespace

Result<ServeArgs> parse_serve_args(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
  ServeArgs a;
  // --config FILE: its keys come first so the command line overrides them.
  std::vector<std::string> args;
  std::vector<std::string> rest;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& t = argv[i];
    std::string path;
    if (t == "--config" && i + 1 < argv.size()) {
      path = argv[++i];
    } else if (t.rfind("--config=", 0) == 0) {
      path = t.substr(9);
    } else {
      rest.push_back(t);
      continue;
    }
    auto toks = config_tokens(path);
    if (!toks) return toks.status();
    args.insert(args.end(), toks->begin(), toks->end());
    a.non_default["config"] = "'" + path + "'";
  }
  args.insert(args.end(), rest.begin(), rest.end());

  bool api_key_flag = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& tok = args[i];
    if (tok == "-h" || tok == "--help") {
      a.help = true;
      continue;
    }
    if (tok.size() < 2 || tok[0] != '-' || (tok[1] != '-' && std::isdigit(static_cast<unsigned char>(tok[1])))) {
      if (a.model.empty()) {
        a.model = tok;
      } else {
        a.warnings.push_back("unexpected positional argument '" + tok + "' ignored");
      }
      continue;
    }
    std::string name = tok.substr(tok[1] == '-' ? 2 : 1);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (tok[1] != '-' && name.size() == 2 && name[0] == 'O' && std::isdigit(static_cast<unsigned char>(name[1]))) {
      inline_value = name.substr(1);  // -O3: vLLM's optimization level
      name = "O";
    }
    name = canonical(name);
    bool negated = false;
    const FlagSpec* spec = find_flag(name);
    if (!spec && name.rfind("no-", 0) == 0) {
      const FlagSpec* s = find_flag(name.substr(3));
      if (s && s->kind == FlagKind::kBool) {
        spec = s;
        negated = true;
      }
    }
    std::string dotted;
    if (!spec && name.find('.') != std::string::npos) {
      const FlagSpec* s = find_flag(canonical(name.substr(0, name.find('.'))));
      if (s && s->kind == FlagKind::kJson) {
        spec = s;
        dotted = name.substr(name.find('.') + 1);
      }
    }
    auto next_is_value = [&](size_t j) { return j < args.size() && !(args[j].size() > 1 && args[j][0] == '-' && !std::isdigit(static_cast<unsigned char>(args[j][1]))); };
    if (!spec) {
      // Unknown: warn; take a following value only if it cannot be the model positional.
      std::string msg = "unrecognized argument --" + name + " (ignored)";
      if (!inline_value && next_is_value(i + 1) && (!a.model.empty() || next_is_value(i + 2))) msg += " with value '" + args[++i] + "'";
      a.warnings.push_back(msg);
      continue;
    }
    FlagValue v;
    if (spec->kind == FlagKind::kBool) {
      std::string t = inline_value.value_or("true");
      for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const bool b = t == "true" || t == "1" || t == "yes";
      v.text = (b != negated) ? "true" : "false";
    } else if (spec->kind == FlagKind::kList) {
      if (inline_value) v.list.push_back(*inline_value);
      while (next_is_value(i + 1) && !(a.model.empty() && !next_is_value(i + 2) && !v.list.empty())) v.list.push_back(args[++i]);
      v.text = v.list.empty() ? "" : v.list.front();
    } else {
      if (inline_value) {
        v.text = *inline_value;
      } else if (i + 1 < args.size()) {
        v.text = args[++i];
      } else {
        return invalid_argument("argument --" + name + ": expected one argument");
      }
    }
    if (!dotted.empty() && spec->name == "compilation-config") {
      // -O.cudagraph_mode=NONE: one key merged into the JSON (a value that is not JSON is a string).
      nlohmann::json one = nlohmann::json::object();
      auto parsed = nlohmann::json::parse(v.text, nullptr, false);
      for (char& c : dotted)
        if (c == '-') c = '_';  // canonical() turned the key's underscores into dashes
      one[dotted] = parsed.is_discarded() ? nlohmann::json(v.text) : parsed;
      v.text = one.dump();
      name = spec->name;
    } else if (!dotted.empty()) {
      a.infos.push_back("--" + name + " " + v.text + " accepted and ignored: " + spec->note);
      continue;
    }
    Status st = spec->apply(a, v);
    if (!st) return st;
    if (spec->policy == FlagPolicy::kAccepted) a.infos.push_back("--" + name + " accepted and ignored: " + spec->note);
    if (name == "api-key") api_key_flag = true;
    std::string key = name;
    for (char& c : key)
      if (c == '-') c = '_';
    a.non_default[key] = py_repr(*spec, v);
  }
  if (a.help) return a;

  // Environment (the flag wins).
  auto envv = [&](const char* k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
  if (!api_key_flag)
    if (auto k = envv("VLLM_API_KEY")) a.server.api_keys = {*k};
  if (auto s = envv("VLLM_LOG_STATS_INTERVAL")) a.server.log_stats_interval_s = std::max(0.1, std::atof(s->c_str()));
  if (auto s = envv("VLLM_HTTP_TIMEOUT_KEEP_ALIVE")) a.server.keep_alive_s = std::max(1, std::atoi(s->c_str()));

  if (a.model.empty()) return invalid_argument("the following arguments are required: model_tag (serve MODEL)");
  if (a.server.enable_auto_tool_choice && a.server.tool_call_parser.empty())
    return invalid_argument("TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser");
  if (a.enable_log_outputs && !a.server.enable_log_requests)
    return invalid_argument("TypeError: Error: --enable-log-outputs requires --enable-log-requests");
  if (a.language_model_only) {
    a.server.limit_mm_per_prompt["image"] = 0;
    a.server.limit_mm_per_prompt["video"] = 0;
  }
  if (a.server.served_model_names.empty()) a.server.served_model_names = {a.model};
  a.server.model_root = a.model;
  if (a.max_model_len) a.server.max_model_len = *a.max_model_len;
  return a;
}

std::string format_non_default(const ServeArgs& a) {
  std::string s = "non-default args: {'model': '" + a.model + "'";
  for (const auto& [k, v] : a.non_default)
    if (k != "model") s += ", '" + k + "': " + v;
  return s + "}";
}

std::string serve_help() {
  std::ostringstream os;
  os << "usage: deltaserve serve MODEL [flags]\n\n"
        "Starts an OpenAI-compatible server, flag-compatible with `vllm serve`.\n"
        "MODEL is a local checkpoint directory or a Hugging Face repo id found in the HF cache.\n\n"
        "flags (vLLM names; --a_b == --a-b, --no-FLAG for booleans, --config file.yaml;\n"
        "[ignored] flags are accepted for compatibility and have no effect, [limited] ones refuse some values):\n";
  constexpr size_t kHelpColumn = 24;  // argparse's layout: help at column 24, or on the next line
  for (const auto& f : flag_specs()) {
    const FlagHelp* h = flag_help(f.name);
    std::string flag = "  --" + f.name;
    if (f.kind == FlagKind::kBool && f.name.rfind("no-", 0) != 0) flag += ", --no-" + f.name;
    if (h && !h->metavar.empty()) flag += " " + h->metavar;
    std::string line = h ? h->description : "";
    if (h && !h->default_value.empty()) line += " (default: " + h->default_value + ")";
    if (f.policy == FlagPolicy::kAccepted) line += " [ignored: " + f.note + "]";
    if (f.policy == FlagPolicy::kRefused) line += " [limited: " + f.note + "]";
    os << flag;
    if (flag.size() + 2 <= kHelpColumn) os << std::string(kHelpColumn - flag.size(), ' ');
    else os << "\n" << std::string(kHelpColumn, ' ');
    os << line << "\n";
  }
  return os.str();
}

}  // namespace ds::server
