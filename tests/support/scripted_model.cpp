#include "tests/support/scripted_model.h"

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

namespace ds::engine {

Result<Script> parse_script(const std::string& text, const TextCodec& codec) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument("scripted output: not a JSON object");
  Script s;
  auto num = [&](const char* key, auto* out) {
    if (j.contains(key) && j[key].is_number_integer()) *out = j[key].get<std::remove_pointer_t<decltype(out)>>();
  };
  num("step_delay_ms", &s.step_delay_ms);
  num("block_size", &s.block_size);
  num("kv_block_bytes", &s.kv_block_bytes);
  num("state_slot_bytes", &s.state_slot_bytes);
  num("eos_token_id", &s.eos_token_id);
  if (j.contains("fail_match") && j["fail_match"].is_string()) s.fail_match = j["fail_match"].get<std::string>();
  if (!j.contains("outputs") || !j["outputs"].is_array() || j["outputs"].empty())
    return invalid_argument("scripted output: \"outputs\" must be a non-empty array");
  for (const auto& e : j["outputs"]) {
    if (!e.is_object() || !e.contains("text") || !e["text"].is_string())
      return invalid_argument("scripted output: each output needs a \"text\" string");
    Script::Entry entry;
    if (e.contains("match") && e["match"].is_string()) entry.match = e["match"].get<std::string>();
    auto ids = codec.encode(e["text"].get<std::string>(), false);
    if (!ids) return ids.status();
    entry.output = std::move(*ids);
    s.entries.push_back(std::move(entry));
  }
  if (s.block_size <= 0 || s.kv_block_bytes <= 0 || s.state_slot_bytes < 0)
    return invalid_argument("scripted output: bad cache geometry");
  return s;
}

Result<Script> load_script(const std::string& path, const TextCodec& codec) {
  std::ifstream f(path);
  if (!f) return not_found("scripted output file not found: " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_script(ss.str(), codec);
}

ScriptedModel::ScriptedModel(Script script, model::CacheConfig cache, const TextCodec* codec)
    : script_(std::move(script)), cache_(cache), codec_(codec) {}

void ScriptedModel::fill_row(float* row, int64_t vocab, int64_t pos, int32_t target) {
  for (int64_t v = 0; v < vocab; ++v) {
    uint64_t h = static_cast<uint64_t>(pos) * 0x9E3779B97F4A7C15ULL ^ static_cast<uint64_t>(v) * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 29;
    row[v] = kNoise * static_cast<float>(static_cast<double>(h >> 11) * 0x1.0p-53);
  }
  if (target >= 0 && target < vocab) row[target] += kTargetBoost;
}

Result<model::StepOutput> ScriptedModel::forward(const model::StepPlan& plan) {
  if (script_.step_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(script_.step_delay_ms));
  model::StepOutput out;
  out.vocab_size = vocab_size();
  const int64_t V = out.vocab_size;
  int64_t rows = 0;
  for (const auto& s : plan.seqs) {
    out.row_offset.push_back(rows);
    rows += s.all_logits ? static_cast<int64_t>(s.token_ids.size()) : 1;
  }
  out.logits.resize(static_cast<size_t>(rows * V));
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const model::SeqStep& s = plan.seqs[i];
    if (s.token_ids.empty()) return invalid_argument("scripted model: empty step");
    if (s.block_table.size() * static_cast<size_t>(cache_.block_size) < s.start_pos + s.token_ids.size())
      return internal_error("scripted model: block table does not cover the step");
    SeqState& st = seqs_[s.seq_id];
    if (s.start_pos == 0) st = SeqState{};
    st.tokens.resize(static_cast<size_t>(s.start_pos));
    st.tokens.insert(st.tokens.end(), s.token_ids.begin(), s.token_ids.end());
    const int64_t P = s.num_prompt_tokens;
    if (st.entry < 0 && static_cast<int64_t>(st.tokens.size()) >= P) {
      const std::string prompt =
          codec_->decode(std::vector<int32_t>(st.tokens.begin(), st.tokens.begin() + P), false);
      st.entry = static_cast<int>(script_.entries.size()) - 1;
      st.fail = !script_.fail_match.empty() && prompt.find(script_.fail_match) != std::string::npos;
      for (size_t e = 0; e < script_.entries.size(); ++e) {
        if (script_.entries[e].match.empty() || prompt.find(script_.entries[e].match) != std::string::npos) {
          st.entry = static_cast<int>(e);
          break;
        }
      }
    }
    const int64_t n = static_cast<int64_t>(s.token_ids.size());
    if (st.fail && s.start_pos + n - P >= 3) return internal_error("scripted model: injected failure");
    const int64_t first = s.all_logits ? 0 : n - 1;
    for (int64_t j = first; j < n; ++j) {
      const int64_t pos = s.start_pos + j;
      const int64_t g = pos + 1 - P;  // index of the generated token this row predicts
      int32_t target = static_cast<int32_t>((pos * 7919) % 256);
      if (g >= 0 && st.entry >= 0) {
        const auto& o = script_.entries[st.entry].output;
        target = g < static_cast<int64_t>(o.size()) ? o[g] : script_.eos_token_id;
      }
      fill_row(out.logits.data() + (out.row_offset[i] + (j - first)) * V, V, pos, target);
    }
    // Drop state of finished sequences lazily: ids only grow, keep the map bounded.
    if (seqs_.size() > 4096) seqs_.erase(seqs_.begin());
  }
  model::finish_step_on_host(plan, &out);
  return out;
}

}  // namespace ds::engine
