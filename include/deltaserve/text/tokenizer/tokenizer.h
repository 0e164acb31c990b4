// Text <-> token ids for Qwen-family models, read from a Hugging Face tokenizer.json (Qwen2, 2.5,
// 3, 3.5, 3.6: byte-level BPE, NFC normalizer, Split regex pre-tokenizer, added tokens). Encoding
// matches HF `tokenizers` `encode(text, add_special_tokens=False)`, which is how vLLM encodes a
// rendered chat prompt: added tokens in the text (special or not, e.g. `<think>`) become their
// ids, honouring their single_word / lstrip / rstrip / normalized flags.
//
// Input bytes: encode() takes UTF-8. HF takes a Python str, which cannot hold invalid UTF-8, so
// we define it the way Python decodes bytes with errors="replace": each maximal invalid subpart
// becomes U+FFFD before tokenizing. Decoding joins the tokens' bytes and replaces invalid UTF-8
// the same way (HF decode = String::from_utf8_lossy).
//
// A Tokenizer is immutable after loading, cheap to copy (shared state) and safe to use from many
// threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "deltaserve/core/status.h"

namespace ds::text {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool single_word = false;  // only match when not inside a word
  bool lstrip = false;       // the match also takes white space on its left
  bool rstrip = false;       // ... and on its right
  bool normalized = true;    // matched against normalized (NFC) text instead of the raw text
};

struct EncodeOptions {
  // transformers' split_special_tokens: special added tokens in the text are tokenized as plain
  // text (non-special added tokens such as <think> are still recognised, as in HF).
  bool split_special_tokens = false;
};

class Tokenizer {
 public:
  // path: a tokenizer.json file, or a directory containing one.
  static Result<Tokenizer> load(const std::string& path);
  static Result<Tokenizer> from_json(std::string_view json_text);

  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& opts = {}) const;
  // Same, but also lets the caller see where each piece came from (for tests): pieces of text
  // after added-token splitting and pre-tokenization, in order.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  // ids -> text. Unknown ids are skipped (as HF does); invalid UTF-8 becomes U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  // Raw bytes of one token (the added token's content for added tokens); empty for unknown ids.
  std::string_view token_bytes(int32_t id) const;

  bool is_special(int32_t id) const;
  bool is_added(int32_t id) const;
  // A token's string form as in tokenizer.json (byte-level characters, or the added content).
  std::optional<std::string> id_to_token(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Largest id + 1 over the vocabulary and the added tokens.
  int32_t vocab_size() const;
  const std::vector<AddedToken>& added_tokens() const;
  // Name of the pre-tokenizer engine in use: "qwen2", "qwen35" (hand-written) or "pcre2".
  std::string pre_tokenizer_engine() const;

 private:
  struct Impl;
  static Result<Tokenizer> build(std::string_view json_text);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace ds::text
