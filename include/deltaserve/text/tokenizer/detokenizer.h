// Incremental detokenizer for streaming: feeds generated token ids one at a time and returns only
// text that is final. A token that ends inside a multi-byte UTF-8 character is held until the
// character is complete; bytes that can never become valid UTF-8 come out as U+FFFD at once, so
// the concatenation of every step() plus finish() equals Tokenizer::decode() of all ids.
//
// vLLM options: skip_special_tokens drops special added tokens (non-special added tokens such as
// <think> are kept). spaces_between_special_tokens only changes output for tokenizers whose
// decoder puts spaces between added tokens; vLLM's fast path for byte-level BPE (Qwen) never
// does, so it is accepted and has no effect here.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "deltaserve/text/tokenizer/tokenizer.h"

namespace ds::text {

struct DetokenizerOptions {
  bool skip_special_tokens = true;
  bool spaces_between_special_tokens = true;
};

class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(Tokenizer tokenizer, DetokenizerOptions opts = {})
      : tok_(std::move(tokenizer)), opts_(opts) {}

  // New final text after this token (often empty while a character is incomplete).
  std::string step(int32_t id);
  std::string step(std::span<const int32_t> ids);
  // End of stream: whatever is still held (an incomplete character) as U+FFFD.
  std::string finish();

  // Bytes held back because they may be the start of a character.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  Tokenizer tok_;
  DetokenizerOptions opts_;
  std::string pending_;
};

}  // namespace ds::text
