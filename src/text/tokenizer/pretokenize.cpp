#include "src/text/tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "deltaserve/text/tokenizer/unicode.h"

namespace ds::text {

const char* const kQwen2SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen35SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

using unicode::kLetter;
using unicode::kMark;
using unicode::kNumber;
using unicode::kWhiteSpace;

struct Ch {
  char32_t cp;
  uint8_t cls;
  uint8_t len;
};

// Class flags of the 128 ASCII characters, so the common case never decodes UTF-8.
struct AsciiTable {
  uint8_t cls[128];
  constexpr AsciiTable() : cls() {
    for (int c = 0; c < 128; ++c) {
      uint8_t f = 0;
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) f = kLetter;
      if (c >= '0' && c <= '9') f = kNumber;
      if (c == ' ' || (c >= 0x09 && c <= 0x0D)) f = kWhiteSpace;
      cls[c] = f;
    }
  }
};
constexpr AsciiTable kAscii;

inline Ch char_at(std::string_view s, size_t i) {
  const unsigned char b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return {b, kAscii.cls[b], 1};
  size_t len;
  char32_t cp = unicode::decode_utf8(s.data() + i, s.size() - i, &len);
  if (cp == unicode::kInvalidUtf8) cp = unicode::kReplacement;  // input is sanitized; be safe
  return {cp, unicode::char_class(cp), static_cast<uint8_t>(len)};
}

// Lower-case fold for the contraction letters: ASCII, plus U+017F LONG S which case-folds to 's'
// (Oniguruma's (?i) uses Unicode simple case folding).
inline char32_t fold(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c == 0x17F) return 's';
  return c;
}

// One step of the Qwen pattern at position i (i < n): returns the end of the match. Mirrors the
// alternatives in order, including the backtracking of \s*[\r\n]+ and \s+(?!\S).
size_t match_qwen(std::string_view s, size_t i, uint8_t word) {
  const size_t n = s.size();
  const Ch c = char_at(s, i);
  const uint8_t other_mask = kWhiteSpace | word | kNumber;
  auto run_end = [&](size_t j, uint8_t mask) {
    while (j < n) {
      const Ch d = char_at(s, j);
      if (!(d.cls & mask)) break;
      j += d.len;
    }
    return j;
  };
  auto other_run_end = [&](size_t j) {
    while (j < n) {
      const Ch d = char_at(s, j);
      if (d.cls & other_mask) break;
      j += d.len;
    }
    while (j < n && (s[j] == '\r' || s[j] == '\n')) ++j;
    return j;
  };
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c.cp == '\'' && i + 1 < n) {
    const Ch c1 = char_at(s, i + 1);
    const char32_t f = fold(c1.cp);
    const size_t j = i + 1 + c1.len;
    if (f == 's' || f == 't' || f == 'm' || f == 'd') return j;
    if ((f == 'r' || f == 'v' || f == 'l') && j < n) {
      const char32_t f2 = fold(char_at(s, j).cp);
      if ((f != 'l' && f2 == 'e') || (f == 'l' && f2 == 'l')) return j + 1;
    }
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+   (Qwen3.5: [\p{L}\p{M}]+)
  if (c.cp != '\r' && c.cp != '\n' && !(c.cls & (kLetter | kNumber))) {
    const size_t j = i + c.len;
    if (j < n && (char_at(s, j).cls & word)) return run_end(j, word);
  }
  if (c.cls & word) return run_end(i, word);
  // \p{N}
  if (c.cls & kNumber) return i + c.len;
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  if (c.cp == ' ' && i + 1 < n && !(char_at(s, i + 1).cls & other_mask)) return other_run_end(i + 1);
  if (!(c.cls & other_mask)) return other_run_end(i);
  // c is white space: \s*[\r\n]+ | \s+(?!\S) | \s+
  size_t j = i, last_nl = n, last_start = i;
  while (j < n) {
    const Ch d = char_at(s, j);
    if (!(d.cls & kWhiteSpace)) break;
    if (d.cp == '\r' || d.cp == '\n') last_nl = j;
    last_start = j;
    j += d.len;
  }
  if (last_nl != n) return last_nl + 1;
  if (j == n) return j;
  if (last_start > i) return last_start;
  return j;
}

}  // namespace

struct PreTokenizer::Pcre {
  pcre2_code* code = nullptr;
  ~Pcre() {
    if (code) pcre2_code_free(code);
  }
};

Result<PreTokenizer> PreTokenizer::create(const std::string& pattern, bool force_pcre2) {
  PreTokenizer p;
  if (!force_pcre2 && pattern == kQwen2SplitPattern) {
    p.engine_ = Engine::kQwen2;
    return p;
  }
  if (!force_pcre2 && pattern == kQwen35SplitPattern) {
    p.engine_ = Engine::kQwen35;
    return p;
  }
  auto pc = std::make_shared<Pcre>();
  int err = 0;
  PCRE2_SIZE off = 0;
  pc->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                           PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
  if (!pc->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return invalid_argument("tokenizer.json: pre-tokenizer regex does not compile at offset " +
                            std::to_string(off) + ": " + reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(pc->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  p.pcre_ = std::move(pc);
  p.engine_ = Engine::kPcre2;
  return p;
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  const size_t n = text.size();
  if (engine_ != Engine::kPcre2) {
    const uint8_t word = engine_ == Engine::kQwen35 ? (kLetter | kMark) : kLetter;
    size_t i = 0;
    while (i < n) {
      const size_t e = match_qwen(text, i, word);
      out.push_back(text.substr(i, e - i));
      i = e;
    }
    return;
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(pcre_->code, nullptr);
  size_t pos = 0, last = 0;
  while (pos <= n) {
    const int rc = pcre2_match(pcre_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), n, pos,
                               PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t ms = ov[0], me = ov[1];
    if (me == ms) {  // empty match: not a piece; step one character
      if (ms >= n) break;
      size_t len;
      unicode::decode_utf8(text.data() + ms, n - ms, &len);
      pos = ms + len;
      continue;
    }
    if (ms > last) out.push_back(text.substr(last, ms - last));
    out.push_back(text.substr(ms, me - ms));
    last = pos = me;
  }
  if (last < n) out.push_back(text.substr(last));
  pcre2_match_data_free(md);
}

}  // namespace ds::text
