// The pre-tokenizer split of Qwen-family tokenizer.json files: a regex whose matches (and any gaps
// between them) become the words BPE runs on (HF Split, behavior "Isolated"). The Qwen2/2.5/3 and
// Qwen3.5/3.6 patterns run on a hand-written matcher (several times faster than a regex engine);
// any other pattern runs on PCRE2 (UTF + UCP, JIT). tests/text/test_tokenizer_pretok.cpp checks
// the two agree.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "deltaserve/core/status.h"

namespace ds::text {

class PreTokenizer {
 public:
  enum class Engine { kQwen2, kQwen35, kPcre2 };

  // force_pcre2: use PCRE2 even for a pattern the hand-written matcher knows (for tests).
  static Result<PreTokenizer> create(const std::string& pattern, bool force_pcre2 = false);

  // Appends the pieces of text (valid UTF-8) to out, in order; together they cover text exactly.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

  Engine engine() const { return engine_; }

 private:
  struct Pcre;
  Engine engine_ = Engine::kPcre2;
  std::shared_ptr<const Pcre> pcre_;
};

// The two patterns the hand-written matcher implements, verbatim as in tokenizer.json.
extern const char* const kQwen2SplitPattern;
extern const char* const kQwen35SplitPattern;

}  // namespace ds::text
