// The narrow text interface the engine and server need from a tokenizer: encode, decode (with or
// without special tokens) and special-token lookup. The real tokenizer (text/tokenizer.h) is
// adapted to it; ByteCodec is a tiny byte-level codec for tests and the scripted test model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"

namespace ds::engine {

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  virtual Result<std::vector<int32_t>> encode(const std::string& text, bool add_special_tokens) const = 0;
  // Invalid / partial UTF-8 decodes to U+FFFD, as HF tokenizers do.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  virtual std::optional<int32_t> token_to_id(const std::string& token) const = 0;
};

// Ids 0..255 are bytes; ids 256.. are Qwen-style added tokens, matched whole when encoding.
class ByteCodec : public TextCodec {
 public:
  ByteCodec();
  Result<std::vector<int32_t>> encode(const std::string& text, bool add_special_tokens) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override;
  int64_t vocab_size() const override { return 320; }
  // Like Qwen's tokenizer: <think>, </think>, <tool_call>... are added but not special.
  bool is_special(int32_t id) const override { return id >= 256 && (id <= 258 || id >= 265); }
  std::optional<int32_t> token_to_id(const std::string& token) const override;

  static constexpr int32_t kEndOfText = 256;  // <|endoftext|>
  static constexpr int32_t kImStart = 257;    // <|im_start|>
  static constexpr int32_t kImEnd = 258;      // <|im_end|>

 private:
  std::vector<std::string> specials_;  // index i is id 256 + i
};

// Appends the UTF-8 text of `ids` while keeping incomplete multi-byte characters back (vLLM's
// incremental detokenization: decode a short window and emit what became final).
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const TextCodec* codec, bool skip_special_tokens)
      : codec_(codec), skip_special_(skip_special_tokens) {}
  std::string add(int32_t id);  // the text that became final with this token (maybe empty)

 private:
  const TextCodec* codec_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0, read_offset_ = 0;
};

// The generated text of one sequence with stop-string handling: stop strings are found across
// token boundaries; text that could still be the start of a stop string is held back.
class StopStringTracker {
 public:
  StopStringTracker(std::vector<std::string> stops, bool include_stop_str);
  // Adds newly final text. Returns the index of the stop string that matched, or -1. After a
  // match the text is cut (before the stop string, or after it when included). match=false
  // (before min_tokens) only appends.
  int add(const std::string& delta, bool match = true);
  // Text that may be sent now; `final` releases the held-back tail.
  std::string take(bool final);
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stops_;
  bool include_;
  size_t hold_ = 0;  // bytes held back: longest stop string - 1
  std::string text_;
  size_t sent_ = 0;
  bool stopped_ = false;
};

}  // namespace ds::engine
