// Incremental detokenizer: on random token streams (including tokens that split UTF-8 characters,
// invalid byte sequences and special tokens) every emitted piece is valid UTF-8 and the pieces
// concatenate to Tokenizer::decode of the whole stream.
#include <gtest/gtest.h>

#include <random>

#include "deltaserve/text/tokenizer/detokenizer.h"
#include "deltaserve/text/tokenizer/unicode.h"
#include "tests/text/test_tokenizer_util.h"

namespace ds::text {
namespace {

using Ids = std::vector<int32_t>;

TEST(Detokenizer, HoldsSplitCharacters) {
  std::string err;
  const Tokenizer* tok = testing::qwen35(&err);
  ASSERT_NE(tok, nullptr) << err;
  // "你" is E4 BD A0; single-byte tokens carry each byte.
  const int32_t e4 = tok->token_to_id("ä").value();  // byte-level char for 0xE4
  const int32_t bd = tok->token_to_id("½").value();  // 0xBD
  ASSERT_EQ(tok->token_bytes(e4), "\xE4");
  ASSERT_EQ(tok->token_bytes(bd), "\xBD");
  const int32_t a0_id = tok->token_to_id("ł").value();  // 0xA0 maps to U+0142
  ASSERT_EQ(tok->token_bytes(a0_id), "\xA0");
  IncrementalDetokenizer d(*tok);
  EXPECT_EQ(d.step(tok->encode("Hi ")), "Hi ");
  EXPECT_EQ(d.step(e4), "");
  EXPECT_EQ(d.step(bd), "");
  EXPECT_EQ(d.pending_bytes(), 2u);
  EXPECT_EQ(d.step(a0_id), "你");
  EXPECT_EQ(d.pending_bytes(), 0u);
  // A character that can never complete comes out as U+FFFD as soon as that is known.
  EXPECT_EQ(d.step(e4), "");
  EXPECT_EQ(d.step(tok->encode("x")), "\xEF\xBF\xBDx");
  EXPECT_EQ(d.step(e4), "");
  EXPECT_EQ(d.finish(), "\xEF\xBF\xBD");
}

TEST(Detokenizer, SkipsSpecialTokensButKeepsThinkTags) {
  std::string err;
  const Tokenizer* tok = testing::qwen35(&err);
  ASSERT_NE(tok, nullptr) << err;
  const Ids ids = tok->encode("<think>\nhm</think>\n\nYes.<|im_end|>");
  for (bool skip : {true, false}) {
    IncrementalDetokenizer d(*tok, {.skip_special_tokens = skip});
    std::string all;
    for (int32_t id : ids) all += d.step(id);
    all += d.finish();
    EXPECT_EQ(all, tok->decode(ids, skip));
    EXPECT_EQ(all, skip ? "<think>\nhm</think>\n\nYes." : "<think>\nhm</think>\n\nYes.<|im_end|>");
  }
}

TEST(Detokenizer, RandomStreamsConcatenateToFullDecode) {
  std::string err;
  const Tokenizer* tok = testing::qwen35(&err);
  ASSERT_NE(tok, nullptr) << err;
  std::mt19937 rng(1234);
  // Byte tokens (ids 0..255 are single bytes in byte-level vocabularies) cut characters; random
  // vocabulary ids include multi-byte pieces; added tokens include special ones.
  const int32_t n_vocab = tok->vocab_size();
  std::uniform_int_distribution<int32_t> any_id(0, n_vocab + 5);  // a few unknown ids too
  std::uniform_int_distribution<int32_t> byte_id(0, 255);
  std::uniform_int_distribution<int32_t> added_id(248044, 248076);
  std::uniform_int_distribution<int> kind(0, 9), len(0, 40);
  int total_pieces = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    Ids ids;
    const int n = len(rng);
    for (int i = 0; i < n; ++i) {
      const int k = kind(rng);
      ids.push_back(k < 4 ? byte_id(rng) : k < 9 ? any_id(rng) : added_id(rng));
    }
    for (bool skip : {true, false}) {
      IncrementalDetokenizer d(*tok, {.skip_special_tokens = skip});
      std::string all;
      for (int32_t id : ids) {
        const std::string piece = d.step(id);
        ASSERT_TRUE(unicode::is_valid_utf8(piece));
        all += piece;
        ++total_pieces;
      }
      const std::string tail = d.finish();
      ASSERT_TRUE(unicode::is_valid_utf8(tail));
      all += tail;
      ASSERT_EQ(all, tok->decode(ids, skip)) << "iteration " << iter;
    }
  }
  EXPECT_GT(total_pieces, 50000);
}

TEST(Detokenizer, RoundTripsEncodedTextAtEverySplit) {
  std::string err;
  const Tokenizer* tok = testing::qwen35(&err);
  ASSERT_NE(tok, nullptr) << err;
  const std::string text = "Grüße, 世界! 🙂🙃 naïve — ✓ <tool_call>\n{\"a\": 1}</tool_call>";
  const Ids ids = tok->encode(text);
  // Streaming in chunks of any size gives the same text.
  for (size_t chunk = 1; chunk <= ids.size(); ++chunk) {
    IncrementalDetokenizer d(*tok, {.skip_special_tokens = false});
    std::string all;
    for (size_t i = 0; i < ids.size(); i += chunk) {
      all += d.step(std::span<const int32_t>(ids).subspan(i, std::min(chunk, ids.size() - i)));
    }
    all += d.finish();
    EXPECT_EQ(all, text) << "chunk " << chunk;
  }
}

}  // namespace
}  // namespace ds::text
