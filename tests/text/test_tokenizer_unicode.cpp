// Unicode building blocks of the tokenizer: UTF-8 decoding with Python's replacement rules, NFC
// (expected strings from Python's unicodedata.normalize), and the hand-written Qwen pre-tokenizer
// against PCRE2 running the same regex on random text.
#include <gtest/gtest.h>

#include <random>

#include "deltaserve/text/tokenizer/unicode.h"
#include "src/text/tokenizer/pretokenize.h"

namespace ds::text {
namespace {

TEST(Unicode, Utf8ReplacementMatchesPython) {
  // (input bytes, bytes.decode("utf-8", "replace") re-encoded)
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"abc", "abc"},
      {"\x80", "\xEF\xBF\xBD"},
      {"\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD"},                                  // overlong: two parts
      {"\xE0\x80\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},                  // E0 needs A0..BF next
      {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},                  // surrogate
      {"\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},  // > U+10FFFF
      {"\xE4\xBD", "\xEF\xBF\xBD"},                                              // truncated: one part
      {"\xF0\x9F\x99", "\xEF\xBF\xBD"},
      {"\xF0\x9F\x99\x82", "\xF0\x9F\x99\x82"},
      {"a\xE4\xBD"
       "b",
       "a\xEF\xBF\xBD"
       "b"},
      {"\xFF\xFE", "\xEF\xBF\xBD\xEF\xBF\xBD"},
  };
  for (const auto& [in, out] : cases) {
    EXPECT_EQ(unicode::to_valid_utf8(in), out);
    EXPECT_EQ(unicode::is_valid_utf8(in), in == out);
  }
}

TEST(Unicode, NfcMatchesPython) {
  // Expected: unicodedata.normalize("NFC", input) (Unicode 14.0).
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"cafe\u0301", "caf\u00e9"},
      {"e\u0301\u0323", "\u1eb9\u0301"},  // reordered: dot below first
      {"a\u0323\u0302", "\u1ead"},        // two-step composition
      {"\u1100\u1161\u11a8", "\uac01"},   // Hangul L V T
      {"\uac00\u11a8", "\uac01"},         // LV + T
      {"\u212b", "\u00c5"},               // singleton (Angstrom sign)
      {"\u0958", "\u0915\u093c"},         // composition exclusion stays apart
      {"\u0344", "\u0308\u0301"},         // non-starter decomposition
      {"\u1e9b\u0323", "\u1e9b\u0323"},
      {"\u00e9\u0300", "\u00e9\u0300"},
      {"A\u030a\u0301", "\u01fa"},
      {"\u0041\u0300\u0315\u0300", "\u00c0\u0300\u0315"},
      {"\u0f73", "\u0f71\u0f72"},
      {"plain ascii", "plain ascii"},
      {"\u4f60\u597d", "\u4f60\u597d"},
  };
  for (const auto& [in, out] : cases) {
    EXPECT_EQ(unicode::nfc(in), out) << in;
    EXPECT_EQ(unicode::nfc(out), out);
  }
  EXPECT_TRUE(unicode::is_nfc_quick("hello \u4f60\u597d \u00e9"));
  EXPECT_FALSE(unicode::is_nfc_quick("cafe\u0301"));
}

TEST(Unicode, NfcFollowsHfTokenizersTables) {
  // HF tokenizers' NFC has pre-Unicode-10 tables: U+089B (ccc 220 since Unicode 14) stays after
  // U+0302 (ccc 230), and U+11935 U+11930 (Dives Akuru, Unicode 13) does not compose to U+11938.
  // Python's unicodedata would reorder / compose; vLLM's ids come from HF, so we follow HF.
  EXPECT_EQ(unicode::nfc("a\u0302\u089b"), "\u00e2\u089b");
  EXPECT_EQ(unicode::nfc("\U00011935\U00011930"), "\U00011935\U00011930");
  EXPECT_EQ(unicode::nfc("a\u0316\u0302"), "\u00e2\u0316");  // not blocked: 220 < 230
  EXPECT_EQ(unicode::nfc("a\u0302\u0316"), "\u00e2\u0316");
}

TEST(Unicode, CharClasses) {
  using namespace unicode;
  EXPECT_EQ(char_class('a'), kLetter);
  EXPECT_EQ(char_class(0x4F60), kLetter);
  EXPECT_EQ(char_class(0x0301), kMark);
  EXPECT_EQ(char_class(0x0663), kNumber);  // Arabic-Indic three
  EXPECT_EQ(char_class(0x2167), kNumber);  // Roman numeral eight (Nl)
  EXPECT_EQ(char_class(0x3000), kWhiteSpace);
  EXPECT_EQ(char_class(0x0085), kWhiteSpace);
  EXPECT_EQ(char_class(0x180E), 0);  // not White_Space since Unicode 6.3
  EXPECT_EQ(char_class(0x200B), 0);
  EXPECT_EQ(char_class(0x1F642), 0);
  EXPECT_EQ(char_class(0x110000), 0);
}

// Random text over an alphabet that stresses every branch of the Qwen pattern.
std::string random_text(std::mt19937& rng) {
  static const std::vector<char32_t> alphabet = {
      'a',    'Z',    's',    'S',    't',     'r',    'e',    'v',
      'm',    'l',    'L',    'd',    'D',     '\'',   '0',    '7',
      ' ',    ' ',    ' ',    '\t',   '\n',    '\r',   '\v',   '\f',
      '!',    '.',    ',',    '-',    '_',     '"',    '(',    0x017F /* ſ */,
      0x00E9, 0x0301, 0x0308, 0x093F, 0x0915,  0x4F60, 0x3000, 0x00A0,
      0x2028, 0x0663, 0x2167, 0x00BD, 0x1F642, 0x200B, 0x05D0, 0x0627,
      0x064B, 0xFFFD, 0x2003, 0x0001};
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> len(0, 30);
  std::string s;
  const int n = len(rng);
  for (int i = 0; i < n; ++i) unicode::append_utf8(s, alphabet[pick(rng)]);
  return s;
}

TEST(PreTokenizer, HandWrittenMatcherEqualsPcre2) {
  // U+0085 (NEL) is left out of the alphabet: PCRE2's \s does not include it, Oniguruma's (and
  // ours, Unicode White_Space) does.
  for (const char* pattern : {kQwen2SplitPattern, kQwen35SplitPattern}) {
    auto fast = PreTokenizer::create(pattern);
    auto slow = PreTokenizer::create(pattern, /*force_pcre2=*/true);
    ASSERT_TRUE(fast.is_ok() && slow.is_ok());
    ASSERT_NE(fast->engine(), PreTokenizer::Engine::kPcre2);
    ASSERT_EQ(slow->engine(), PreTokenizer::Engine::kPcre2);
    std::mt19937 rng(7);
    for (int iter = 0; iter < 20000; ++iter) {
      const std::string s = random_text(rng);
      std::vector<std::string_view> a, b;
      fast->split(s, a);
      slow->split(s, b);
      ASSERT_EQ(a, b) << "pattern " << pattern << " text [" << s << "]";
    }
  }
}

TEST(PreTokenizer, KnownSplits) {
  auto p = PreTokenizer::create(kQwen35SplitPattern);
  ASSERT_TRUE(p.is_ok());
  auto split = [&](std::string_view s) {
    std::vector<std::string_view> v;
    p->split(s, v);
    return std::vector<std::string>(v.begin(), v.end());
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(split("I'm here's 123"), (V{"I", "'m", " here", "'s", " ", "1", "2", "3"}));
  EXPECT_EQ(split("a  \n\n  b"), (V{"a", "  \n\n", " ", " b"}));
  EXPECT_EQ(split("x   "), (V{"x", "   "}));
  EXPECT_EQ(split("!!!\r\n\tgo"), (V{"!!!\r\n", "\tgo"}));
  EXPECT_EQ(split("WE'LL"), (V{"WE", "'LL"}));
  EXPECT_EQ(split("na\u0308ive"), (V{"na\u0308ive"}));  // marks stay in the word (Qwen3.5)
  auto q2 = PreTokenizer::create(kQwen2SplitPattern);
  std::vector<std::string_view> v;
  q2->split("na\u0308ive", v);
  // Qwen2/3 letters exclude marks: the mark starts a new piece as the optional prefix character.
  EXPECT_EQ(v, (std::vector<std::string_view>{"na", "\u0308ive"}));
}

TEST(PreTokenizer, GenericRegexViaPcre2) {
  auto p = PreTokenizer::create(R"(\d+|\s+|[^\d\s]+)");
  ASSERT_TRUE(p.is_ok());
  std::vector<std::string_view> v;
  p->split("ab 12cd", v);
  EXPECT_EQ(v, (std::vector<std::string_view>{"ab", " ", "12", "cd"}));
  EXPECT_FALSE(PreTokenizer::create("(?<").is_ok());
}

}  // namespace
}  // namespace ds::text
