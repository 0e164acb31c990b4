#include "deltaserve/text/tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <memory>
#include <unordered_map>
#include <vector>

#include "src/text/tokenizer/unicode_data.h"

namespace ds::text::unicode {
namespace {

constexpr uint8_t kNfcUnsafe = 0x10;  // may change under NFC (see build_tables)
constexpr char32_t kMaxCp = 0x110000;

// Hangul syllable arithmetic (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
              kSCount = kLCount * kNCount;

struct Tables {
  // Two-level table: block_of[cp >> 8] indexes a 256-byte block of flags. Blocks are shared.
  std::vector<uint16_t> block_of;
  std::vector<std::array<uint8_t, 256>> blocks;
  std::unordered_map<char32_t, std::pair<char32_t, char32_t>> decomp;
  std::unordered_map<uint64_t, char32_t> compose;
};

const Tables& tables() {
  static const std::unique_ptr<Tables> t = [] {
    auto tb = std::make_unique<Tables>();
    std::vector<uint8_t> flags(kMaxCp, 0);
    for (int i = 0; i < unicode_data::kClassRunCount; ++i) {
      const auto& r = unicode_data::kClassRuns[i];
      for (uint32_t c = r.first; c <= r.last; ++c) flags[c] = r.value;
    }
    // A character is NFC-unsafe if it can change or combine with its neighbour under NFC: any
    // non-starter, anything with a canonical decomposition (except Hangul syllables, which only
    // change when a trailing jamo follows, and that jamo is itself unsafe), and anything that is
    // the second half of a primary composite.
    for (int i = 0; i < unicode_data::kCccRunCount; ++i) {
      const auto& r = unicode_data::kCccRuns[i];
      for (uint32_t c = r.first; c <= r.last; ++c) flags[c] |= kNfcUnsafe;
    }
    for (int i = 0; i < unicode_data::kDecompositionCount; ++i) {
      const auto& d = unicode_data::kDecompositions[i];
      tb->decomp[d.cp] = {d.first, d.second};
      flags[d.cp] |= kNfcUnsafe;
      if (d.composes) {
        tb->compose[(uint64_t{d.first} << 32) | d.second] = d.cp;
        flags[d.second] |= kNfcUnsafe;
      }
    }
    for (char32_t c = kVBase; c < kVBase + kVCount; ++c) flags[c] |= kNfcUnsafe;
    for (char32_t c = kTBase + 1; c < kTBase + kTCount; ++c) flags[c] |= kNfcUnsafe;

    std::vector<std::array<uint8_t, 256>>& blocks = tb->blocks;
    tb->block_of.resize(kMaxCp >> 8);
    for (size_t b = 0; b < tb->block_of.size(); ++b) {
      std::array<uint8_t, 256> blk;
      std::copy(flags.begin() + b * 256, flags.begin() + b * 256 + 256, blk.begin());
      size_t found = blocks.size();
      for (size_t k = 0; k < blocks.size(); ++k) {
        if (blocks[k] == blk) {
          found = k;
          break;
        }
      }
      if (found == blocks.size()) blocks.push_back(blk);
      tb->block_of[b] = static_cast<uint16_t>(found);
    }
    return tb;
  }();
  return *t;
}

inline uint8_t raw_flags(char32_t cp) {
  if (cp >= kMaxCp) return 0;
  const Tables& t = tables();
  return t.blocks[t.block_of[cp >> 8]][cp & 0xFF];
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const int s = static_cast<int>(cp - kSBase);
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto& d = tables().decomp;
  auto it = d.find(cp);
  if (it == d.end()) {
    out.push_back(cp);
    return;
  }
  decompose(it->second.first, out);
  if (it->second.second != 0) decompose(it->second.second, out);
}

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto& c = tables().compose;
  auto it = c.find((uint64_t{a} << 32) | b);
  return it == c.end() ? 0 : it->second;
}

}  // namespace

uint8_t char_class(char32_t cp) {
  if (cp < 0x80) {
    // ASCII without touching the tables.
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return kLetter;
    if (cp >= '0' && cp <= '9') return kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return kWhiteSpace;
    return 0;
  }
  return raw_flags(cp) & 0x0F;
}

uint8_t combining_class(char32_t cp) {
  const auto* runs = unicode_data::kCccRuns;
  const auto* end = runs + unicode_data::kCccRunCount;
  auto it = std::upper_bound(runs, end, cp,
                             [](char32_t c, const unicode_data::ClassRun& r) { return c < r.first; });
  if (it == runs) return 0;
  --it;
  return cp <= it->last ? it->value : 0;
}

char32_t decode_utf8(const char* s, size_t n, size_t* len) {
  const auto* u = reinterpret_cast<const unsigned char*>(s);
  const unsigned b0 = u[0];
  if (b0 < 0x80) {
    *len = 1;
    return b0;
  }
  int need;
  char32_t cp;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *len = 1;
    return kInvalidUtf8;
  }
  for (int i = 1; i <= need; ++i) {
    if (static_cast<size_t>(i) >= n) {
      *len = i;
      return kInvalidUtf8;
    }
    const unsigned b = u[i];
    const unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *len = i;
      return kInvalidUtf8;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  *len = need + 1;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t valid_utf8_prefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    if (decode_utf8(s.data() + i, s.size() - i, &len) == kInvalidUtf8) return i;
    i += len;
  }
  return i;
}

bool is_valid_utf8(std::string_view s) {
  return valid_utf8_prefix(s) == s.size();
}

std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t len;
    const char32_t cp = decode_utf8(s.data() + i, s.size() - i, &len);
    if (cp == kInvalidUtf8) {
      append_utf8(out, kReplacement);
    } else {
      out.append(s.data() + i, len);
    }
    i += len;
  }
  return out;
}

bool is_nfc_quick(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0xCC) {  // everything below U+0300 is a safe starter
      i += b < 0x80 ? 1 : 2;
      continue;
    }
    size_t len;
    const char32_t cp = decode_utf8(s.data() + i, s.size() - i, &len);
    if (cp == kInvalidUtf8 || (raw_flags(cp) & kNfcUnsafe)) return false;
    i += len;
  }
  return true;
}

std::string nfc(std::string_view s) {
  if (is_nfc_quick(s)) return std::string(s);
  // Full decomposition, canonical ordering, canonical composition (UAX #15).
  std::vector<char32_t> buf;
  buf.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    size_t len;
    char32_t cp = decode_utf8(s.data() + i, s.size() - i, &len);
    if (cp == kInvalidUtf8) cp = kReplacement;
    decompose(cp, buf);
    i += len;
  }
  std::vector<uint8_t> ccc(buf.size());
  for (size_t k = 0; k < buf.size(); ++k) ccc[k] = combining_class(buf[k]);
  for (size_t k = 0; k < buf.size();) {  // stable sort each run of non-starters by class
    if (ccc[k] == 0) {
      ++k;
      continue;
    }
    size_t e = k;
    while (e < buf.size() && ccc[e] != 0) ++e;
    for (size_t a = k + 1; a < e; ++a) {
      for (size_t b = a; b > k && ccc[b - 1] > ccc[b]; --b) {
        std::swap(ccc[b - 1], ccc[b]);
        std::swap(buf[b - 1], buf[b]);
      }
    }
    k = e;
  }
  size_t out_n = 0;
  int starter = -1;
  int last_class = 0;
  for (size_t k = 0; k < buf.size(); ++k) {
    const char32_t ch = buf[k];
    const int cls = ccc[k];
    if (starter >= 0) {
      // Blocked unless the previous kept character is the starter itself or has a lower class.
      const bool adjacent = static_cast<size_t>(starter) + 1 == out_n;
      if (adjacent || (last_class != 0 && last_class < cls)) {
        if (char32_t comp = compose_pair(buf[starter], ch)) {
          buf[starter] = comp;
          continue;
        }
      }
    }
    if (cls == 0) starter = static_cast<int>(out_n);
    last_class = cls;
    buf[out_n] = ch;
    ccc[out_n] = static_cast<uint8_t>(cls);
    ++out_n;
  }
  std::string out;
  out.reserve(s.size());
  for (size_t k = 0; k < out_n; ++k) append_utf8(out, buf[k]);
  return out;
}

}  // namespace ds::text::unicode
