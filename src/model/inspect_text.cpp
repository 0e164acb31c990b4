// Text rendering of the inspect report (inspect.cpp builds the JSON it reads).
#include <cinttypes>
#include <cstdio>
#include <sstream>

#include "deltaserve/model/inspect.h"

namespace ds::model {

namespace {

uint64_t u(const ordered_json& j, const char* k) {
  auto it = j.find(k);
  if (it == j.end() || !it->is_number()) return 0;
  if (it->is_number_integer() && it->get<int64_t>() < 0) return 0;
  return it->get<uint64_t>();
}

std::string join(const ordered_json& arr, const char* sep) {
  std::string s;
  for (const auto& x : arr) s += (s.empty() ? "" : sep) + (x.is_string() ? x.get<std::string>() : x.dump());
  return s;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

std::string render_inspect_text(const ordered_json& r) {
  std::ostringstream os;
  const ordered_json& d = r["dims"];
  const ordered_json& mem = r["memory"];
  os << "model        " << r["path"].get<std::string>() << "\n";
  if (r["source"] == "config-only") {
    os << "source       config-only: " << r["source_note"].get<std::string>() << "\n";
  } else {
    os << "source       weights: " << u(r, "shards") << " shard(s), " << format_bytes(u(r, "checkpoint_bytes")) << "\n";
  }
  os << "arch         " << r["architecture"].get<std::string>() << " (" << r["model_type"].get<std::string>()
     << "), text weights under " << r["weight_prefix"].get<std::string>() << ", dtype " << r["dtype"].get<std::string>()
     << "\n";
  const ordered_json& L = r["layers"];
  os << "layers       " << u(d, "num_layers") << " = " << L["pattern"].get<std::string>()
     << "   (L = Gated DeltaNet: " << u(L, "num_linear_attention") << ", F = full attention: "
     << u(L, "num_full_attention") << " at " << join(L["full_attention_layers"], ",") << ")\n";
  const ordered_json& rope = r["rope"];
  os << "attention    " << u(d, "num_attention_heads") << " q / " << u(d, "num_key_value_heads") << " kv heads x "
     << u(d, "head_dim") << ", rotary " << u(d, "rotary_dim") << " (" << rope["type"].get<std::string>()
     << ", theta " << fmt("%g", rope["theta"].get<double>()) << ", mrope [" << join(rope["mrope_section"], ",") << "]"
     << (rope["mrope_interleaved"].get<bool>() ? " interleaved" : "") << ")\n";
  os << "gdn          " << u(d, "linear_num_key_heads") << " k / " << u(d, "linear_num_value_heads") << " v heads x "
     << u(d, "linear_key_head_dim") << "/" << u(d, "linear_value_head_dim") << ", conv kernel "
     << u(d, "linear_conv_kernel_dim") << ", conv_dim " << u(d, "conv_dim") << "\n";
  if (d["is_moe"].get<bool>())
    os << "mlp          MoE: " << u(d, "num_experts") << " experts, top-" << u(d, "num_experts_per_tok")
       << ", expert intermediate " << u(d, "moe_intermediate_size") << ", shared expert "
       << u(d, "shared_expert_intermediate_size") << "\n";
  else
    os << "mlp          dense, intermediate " << u(d, "intermediate_size") << "\n";
  os << "embedding    vocab " << u(d, "vocab_size") << " x hidden " << u(d, "hidden_size")
     << (d["tie_word_embeddings"].get<bool>() ? ", lm_head tied" : ", separate lm_head") << ", max positions "
     << u(d, "max_position_embeddings") << "\n";
  os << "quantization " << r["quantization"]["summary"].get<std::string>() << "\n";

  const int tp = mem["tensor_parallel_size"].get<int>();
  os << "\nstorage by component                               whole model   per rank (TP=" << tp << ")\n";
  for (const auto& c : r["components"]) {
    char line[256];
    std::snprintf(line, sizeof line, "  %-15s %-34s %12s %12s%s\n", c["component"].get<std::string>().c_str(),
                  join(c["formats"], ", ").c_str(), format_bytes(u(c, "bytes")).c_str(),
                  format_bytes(u(c, "bytes_per_rank")).c_str(), c["counted"].get<bool>() ? "" : "  (not loaded)");
    os << line;
  }
  os << "\nformats of Linear modules\n";
  for (const auto& f : r["formats"]) {
    char line[256];
    std::snprintf(line, sizeof line, "  %-15s %-34s %7" PRIu64 " modules %12s\n", f["component"].get<std::string>().c_str(),
                  f["format"].get<std::string>().c_str(), u(f, "modules"), format_bytes(u(f, "bytes")).c_str());
    os << line;
  }
  if (r.contains("modules")) {
    os << "\nmodules\n";
    for (const auto& m : r["modules"])
      os << "  " << m["name"].get<std::string>() << "  [" << u(m, "out_features") << ", " << u(m, "in_features")
         << "]  " << m["scheme"].get<std::string>() << "\n";
  }
  os << "\nmtp          " << (r["mtp"]["present"].get<bool>() ? format_bytes(u(r["mtp"], "bytes")) + " (" +
                                                                  std::to_string(u(r["mtp"], "layers")) + " layer)"
                                                            : std::string("absent"))
     << (r["mtp"]["present"].get<bool>() && !r["mtp"]["counted"].get<bool>() ? ", not in the weights below (speculative decoding off)" : "")
     << "\n";
  os << "vision       "
     << (u(r["vision"], "tensors") ? format_bytes(u(r["vision"], "bytes")) + " in " + std::to_string(u(r["vision"], "tensors")) +
                                         " tensors, replicated on every rank"
                                   : std::string(r["vision"]["configured"].get<bool>() ? "configured, no weights" : "none"))
     << "\n";
  os << "tokenizer    " << (r["tokenizer_files"].empty() ? std::string("(none)") : join(r["tokenizer_files"], ", ")) << "\n";
  if (!r["generation"].empty()) os << "generation   " << r["generation"].dump() << "\n";

  os << "\nmemory per GPU at TP=" << tp << ", max-model-len " << u(mem, "max_model_len") << "\n";
  os << "  weights      " << format_bytes(u(mem, "weights_bytes_per_rank")) << " per rank ("
     << format_bytes(u(mem, "weights_bytes")) << " in all)\n";
  os << "  KV cache     " << format_bytes(u(mem, "kv_bytes_per_token")) << " per token = 2 x " << u(mem, "kv_heads_per_rank")
     << " kv head(s) x " << u(d, "head_dim") << " x " << u(mem, "kv_cache_dtype_bytes") << " B x "
     << u(mem, "num_attention_layers") << " attention layers\n";
  os << "  GDN state    " << format_bytes(u(mem, "gdn_state_bytes_per_seq")) << " per sequence = " << u(mem, "num_gdn_layers")
     << " layers x (conv " << format_bytes(u(mem, "conv_state_bytes_per_seq") / std::max<uint64_t>(1, u(mem, "num_gdn_layers")))
     << " + ssm fp32 " << format_bytes(u(mem, "ssm_state_bytes_per_seq") / std::max<uint64_t>(1, u(mem, "num_gdn_layers")))
     << ")\n";
  const ordered_json& res = mem["reserve"];
  os << "  reserve      " << format_bytes(u(res, "total_bytes")) << " = runtime " << format_bytes(u(res, "runtime_overhead_bytes"))
     << " + activations " << format_bytes(u(res, "activation_bytes")) << " (" << u(res, "max_num_batched_tokens")
     << "-token prefill chunk) + logits " << format_bytes(u(res, "logits_bytes")) << " (fp32, max-num-seqs rows)\n";
  if (mem.contains("fit")) {
    const ordered_json& f = mem["fit"];
    os << "  budget       " << format_bytes(u(f, "budget_bytes")) << " = " << fmt("%.2f", f["gpu_memory_utilization"].get<double>())
       << " x " << fmt("%g", f["gpu_memory_gib"].get<double>()) << " GiB\n";
    const int64_t cache = f["cache_bytes"].get<int64_t>();
    if (cache <= 0) {
      os << "  cache        none: weights + reserve exceed the budget by " << format_bytes(static_cast<uint64_t>(-cache)) << "\n";
    } else {
      os << "  cache        " << format_bytes(static_cast<uint64_t>(cache)) << " -> " << u(f, "kv_tokens")
         << " KV tokens after GDN state for " << u(f, "max_num_seqs") << " sequences; "
         << u(f, "max_seqs_at_max_model_len") << " sequence(s) of " << u(mem, "max_model_len") << " tokens\n";
    }
    os << "  fits         " << (f["fits"].get<bool>() ? "yes" : "NO") << "\n";
  } else {
    os << "  (pass --gpu-memory-gib G to see how many tokens and sequences fit)\n";
  }
  for (const auto& n : mem["notes"]) os << "  note: " << n.get<std::string>() << "\n";
  for (const auto& w : r["warnings"]) os << "warning: " << w.get<std::string>() << "\n";
  return os.str();
}

}  // namespace ds::model
