// TEST ONLY (tests/support, built with the tests, never part of `deltaserve`). A ds::model::Model
// whose output is scripted, so tests drive the engine and the whole HTTP path with known model output
// and no real runtime: the engine tests use it directly, the Python server tests through
// `deltaserve_test_server serve ... --test-scripted-output FILE` (test_server_main.cpp).
//
// Script file (JSON):
//   {"outputs": [{"match": "weather", "text": "It is sunny."}, {"text": "default answer"}],
//    "step_delay_ms": 0, "block_size": 16, "kv_block_bytes": 1048576, "state_slot_bytes": 4194304,
//    "fail_match": "FAIL"}
// The first entry whose "match" occurs in the decoded prompt (an entry without "match" always
// matches) gives the text; after it the model emits EOS. Logits are batch-independent: the scripted
// token gets +10, every token gets deterministic noise in [0, 4) hashed from (position, token), so
// greedy decoding reproduces the script exactly and sampling sometimes deviates.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/engine/text_codec.h"
#include "deltaserve/model/step_plan.h"

namespace ds::engine {

struct Script {
  struct Entry {
    std::string match;  // empty: always
    std::vector<int32_t> output;
  };
  std::vector<Entry> entries;
  int step_delay_ms = 0;
  int block_size = 16;
  int64_t kv_block_bytes = 1 << 20;
  int64_t state_slot_bytes = 4 << 20;
  int32_t eos_token_id = ByteCodec::kImEnd;
  std::string fail_match;  // a prompt containing it makes forward() fail after 3 generated tokens
};

Result<Script> parse_script(const std::string& json_text, const TextCodec& codec);
Result<Script> load_script(const std::string& path, const TextCodec& codec);

class ScriptedModel : public model::Model {
 public:
  ScriptedModel(Script script, model::CacheConfig cache, const TextCodec* codec);
  const model::CacheConfig& cache_config() const override { return cache_; }
  int64_t vocab_size() const override { return codec_->vocab_size(); }
  Result<model::StepOutput> forward(const model::StepPlan& plan) override;

  static constexpr float kTargetBoost = 10.0f;
  static constexpr float kNoise = 4.0f;
  // The logits row predicting position pos + 1 given scripted target `target` (exposed for tests).
  static void fill_row(float* row, int64_t vocab, int64_t pos, int32_t target);

 private:
  struct SeqState {
    std::vector<int32_t> tokens;
    int entry = -1;
    bool fail = false;
  };
  Script script_;
  model::CacheConfig cache_;
  const TextCodec* codec_;
  std::map<int64_t, SeqState> seqs_;
};

}  // namespace ds::engine
