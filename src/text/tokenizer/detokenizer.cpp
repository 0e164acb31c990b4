#include "deltaserve/text/tokenizer/detokenizer.h"

#include "deltaserve/text/tokenizer/unicode.h"

namespace ds::text {

std::string IncrementalDetokenizer::step(int32_t id) {
  if (opts_.skip_special_tokens && tok_.is_special(id)) return {};
  pending_ += tok_.token_bytes(id);
  // Emit complete characters and invalid subparts (final: no later byte makes them valid); keep
  // only a truncated, so far valid sequence at the very end.
  std::string out;
  size_t i = 0;
  const size_t n = pending_.size();
  while (i < n) {
    const unsigned char b = static_cast<unsigned char>(pending_[i]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    size_t len;
    const char32_t cp = unicode::decode_utf8(pending_.data() + i, n - i, &len);
    if (cp == unicode::kInvalidUtf8) {
      // A valid lead byte whose continuation bytes are all valid so far but run out: wait.
      if (b >= 0xC2 && b <= 0xF4 && i + len == n) break;
      unicode::append_utf8(out, unicode::kReplacement);
    } else {
      out.append(pending_, i, len);
    }
    i += len;
  }
  pending_.erase(0, i);
  return out;
}

std::string IncrementalDetokenizer::step(std::span<const int32_t> ids) {
  std::string out;
  for (int32_t id : ids) out += step(id);
  return out;
}

std::string IncrementalDetokenizer::finish() {
  std::string out = unicode::to_valid_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace ds::text
