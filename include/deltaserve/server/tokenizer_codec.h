// Adapts the real tokenizer (text/tokenizer.h, HF tokenizer.json) to the engine's TextCodec.
#pragma once

#include "deltaserve/engine/text_codec.h"
#include "deltaserve/text/tokenizer/tokenizer.h"

namespace ds::server {

class TokenizerCodec : public engine::TextCodec {
 public:
  // model_vocab: the model's vocab_size (embedding rows), which may exceed the tokenizer's.
  TokenizerCodec(text::Tokenizer tok, int64_t model_vocab) : tok_(std::move(tok)), model_vocab_(model_vocab) {}
  Result<std::vector<int32_t>> encode(const std::string& text, bool add_special_tokens) const override {
    return tok_.encode(text);  // Qwen tokenizers add no BOS/EOS
  }
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override {
    return tok_.decode(ids, skip_special_tokens);
  }
  int64_t vocab_size() const override { return std::max<int64_t>(model_vocab_, tok_.vocab_size()); }
  bool is_special(int32_t id) const override { return tok_.is_special(id); }
  std::optional<int32_t> token_to_id(const std::string& token) const override { return tok_.token_to_id(token); }
  const text::Tokenizer& tokenizer() const { return tok_; }

 private:
  text::Tokenizer tok_;
  int64_t model_vocab_;
};

}  // namespace ds::server
