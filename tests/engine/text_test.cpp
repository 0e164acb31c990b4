#include <gtest/gtest.h>

#include "deltaserve/engine/text_codec.h"

using namespace ds::engine;

TEST(ByteCodec, RoundTripWithSpecials) {
  ByteCodec c;
  auto ids = c.encode("<|im_start|>hi<think>", false);
  ASSERT_TRUE(ids.is_ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{ByteCodec::kImStart, 'h', 'i', 259}));
  EXPECT_EQ(c.decode(*ids, false), "<|im_start|>hi<think>");
  EXPECT_EQ(c.decode(*ids, true), "hi<think>");  // <think> is added, not special
  EXPECT_EQ(c.decode({0xE4, 0xB8}, true), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(IncrementalDetokenizer, HoldsBackPartialUtf8AndSkipsSpecials) {
  ByteCodec c;
  IncrementalDetokenizer d(&c, true);
  const std::string s = "a\xE4\xB8\xAD" "b";  // a 中 b, the CJK char split over three tokens
  std::string out;
  std::vector<std::string> pieces;
  for (unsigned char ch : s) pieces.push_back(d.add(ch));
  EXPECT_EQ(pieces[0], "a");
  EXPECT_EQ(pieces[1], "");
  EXPECT_EQ(pieces[2], "");
  EXPECT_EQ(pieces[3], "\xE4\xB8\xAD");
  EXPECT_EQ(pieces[4], "b");
  EXPECT_EQ(d.add(ByteCodec::kImEnd), "");
  EXPECT_EQ(d.add('c'), "c");
}

TEST(StopStringTracker, MatchesAcrossTokenBoundariesAtEverySplit) {
  const std::string text = "hello wor" "ld STOP here";
  for (size_t split = 0; split <= text.size(); ++split) {
    for (bool include : {false, true}) {
      StopStringTracker t({"STOP", "zz"}, include);
      std::string sent;
      int hit = t.add(text.substr(0, split));
      sent += t.take(false);
      if (hit < 0) hit = t.add(text.substr(split));
      sent += t.take(true);
      EXPECT_EQ(hit, 0) << split;
      EXPECT_EQ(sent, include ? "hello world STOP" : "hello world ") << split;
      EXPECT_EQ(t.text(), sent);
    }
  }
}

TEST(StopStringTracker, HoldsBackPossibleStopPrefix) {
  StopStringTracker t({"</s>"}, false);
  EXPECT_EQ(t.add("abc</"), -1);
  EXPECT_EQ(t.take(false), "ab");  // "c</" might still begin "</s>"
  EXPECT_EQ(t.add("x"), -1);
  EXPECT_EQ(t.take(false), "c");
  EXPECT_EQ(t.take(true), "</x");
}

TEST(StopStringTracker, NoMatchBeforeMinTokens) {
  StopStringTracker t({"ab"}, false);
  EXPECT_EQ(t.add("ab", false), -1);
  EXPECT_EQ(t.add("c"), -1);
  EXPECT_EQ(t.take(true), "abc");
}
