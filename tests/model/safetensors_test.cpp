// Safetensors parsing and shard handling: good files give exact zero-copy views; every kind of damage
// gives one-line errors naming the file or tensor, never a crash.
#include <gtest/gtest.h>

#include "deltaserve/model/safetensors.h"
#include "tests/model/tiny_checkpoint.h"

namespace ds::model {
namespace {

using ds::testing::fresh_dir;
using ds::testing::StWriter;

StWriter small() {
  StWriter w;
  w.add("a", "BF16", {2, 3});
  w.add("b", "F32", {4});
  w.add_i32("c", {2}, {7, -9});
  return w;
}

void expect_one_line(const Status& s) {
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  EXPECT_FALSE(s.message().empty());
}

TEST(Safetensors, ParsesViewsAtExactOffsets) {
  const std::string img = small().bytes();
  auto r = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "x.safetensors");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  ASSERT_EQ(r->size(), 3u);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | static_cast<uint8_t>(img[static_cast<size_t>(i)]);
  const uint8_t* base = reinterpret_cast<const uint8_t*>(img.data()) + 8 + hlen;
  std::map<std::string, TensorView> by;
  for (auto& t : *r) by[t.name] = t;
  EXPECT_EQ(by["a"].dtype, DType::kBF16);
  EXPECT_EQ(by["a"].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(by["a"].data, base);
  EXPECT_EQ(by["a"].nbytes, 12u);
  EXPECT_EQ(by["b"].data, base + 12);
  EXPECT_EQ(by["c"].data, base + 28);
  EXPECT_EQ(static_cast<const int32_t*>(by["c"].data)[1], -9);
}

TEST(Safetensors, TooSmallFile) {
  const std::string img = "abc";
  auto r = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "tiny.safetensors");
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("tiny.safetensors"), std::string::npos);
}

TEST(Safetensors, HeaderLengthBeyondFile) {
  std::string img = small().bytes();
  img[0] = '\xff';
  img[1] = '\xff';
  img[2] = '\x0f';
  auto r = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "h.safetensors");
  expect_one_line(r.status());
  EXPECT_EQ(r.status().code(), ErrorCode::kCorrupt);
  EXPECT_NE(r.status().message().find("exceeds the file size"), std::string::npos) << r.status().message();
}

TEST(Safetensors, BadJson) {
  StWriter w = small();
  std::string img = w.bytes();
  img[8] = '[';  // header is now not an object / not valid JSON
  img[9] = '{';
  auto r = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "j.safetensors");
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("not a valid JSON"), std::string::npos) << r.status().message();
}

TEST(Safetensors, OffsetsPastEndOfFile) {
  StWriter w = small();
  auto h = w.header();
  h["b"]["data_offsets"] = {12, 12 + 16 + 4000};
  h["b"]["shape"] = {1004};
  const std::string img = w.bytes(h);
  auto r = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "p.safetensors");
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("'b'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
}

TEST(Safetensors, ShapeDisagreesWithOffsets) {
  StWriter w = small();
  auto h = w.header();
  h["a"]["shape"] = {3, 3};
  const std::string img = w.bytes(h);
  auto r = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "s.safetensors");
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("'a'"), std::string::npos);
}

TEST(Safetensors, UnknownDtypeAndOverlap) {
  StWriter w = small();
  auto h = w.header();
  h["a"]["dtype"] = "F8_E4M3";
  std::string img = w.bytes(h);
  auto r = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "d.safetensors");
  EXPECT_EQ(r.status().code(), ErrorCode::kUnsupported);
  EXPECT_NE(r.status().message().find("F8_E4M3"), std::string::npos);

  h = w.header();
  h["b"]["data_offsets"] = {8, 24};  // overlaps a [0, 12)
  img = w.bytes(h);
  r = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "o.safetensors");
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("overlap"), std::string::npos) << r.status().message();
}

// Every truncation and many single-byte corruptions of a valid file: errors, never crashes.
TEST(Safetensors, FuzzTruncationAndByteFlips) {
  const std::string img = small().bytes();
  for (size_t n = 0; n < img.size(); ++n) {
    auto r = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), n, "t.safetensors");
    EXPECT_FALSE(r.is_ok()) << "truncated to " << n << " bytes was accepted";
    if (!r.is_ok()) {
      EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
    }
  }
  std::mt19937 rng(42);
  for (int it = 0; it < 3000; ++it) {
    std::string bad = img;
    const size_t pos = rng() % (bad.size() < 200 ? bad.size() : 200);
    bad[pos] = static_cast<char>(rng() & 0xff);
    auto r = parse_safetensors(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), "f.safetensors");
    if (!r.is_ok()) continue;
    for (const auto& t : *r) {
      const auto* b = reinterpret_cast<const uint8_t*>(bad.data());
      EXPECT_GE(static_cast<const uint8_t*>(t.data), b);
      EXPECT_LE(static_cast<const uint8_t*>(t.data) + t.nbytes, b + bad.size());
    }
  }
}

TEST(WeightStorage, TruncatedShardOnDisk) {
  const std::string dir = fresh_dir("st_trunc");
  std::string img = small().bytes();
  img.resize(img.size() - 5);
  StWriter::write_file(dir + "/model.safetensors", img);
  auto r = WeightStorage::open_dir(dir);
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("model.safetensors"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("'c'"), std::string::npos) << r.status().message();
}

TEST(WeightStorage, IndexedShardsPlusUnindexedExtra) {
  const std::string dir = fresh_dir("st_index");
  StWriter s1, s2, extra;
  s1.add("x.weight", "BF16", {4});
  s2.add("y.weight", "BF16", {4});
  extra.add("mtp.fc.weight", "BF16", {2, 2});
  s1.write(dir + "/model-00001-of-00002.safetensors");
  s2.write(dir + "/model-00002-of-00002.safetensors");
  extra.write(dir + "/model_extra_tensors.safetensors");
  ds::testing::write_json(dir + "/model.safetensors.index.json",
                          {{"metadata", {{"total_size", 16}}},
                           {"weight_map", {{"x.weight", "model-00001-of-00002.safetensors"},
                                           {"y.weight", "model-00002-of-00002.safetensors"}}}});
  auto r = WeightStorage::open_dir(dir);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_NE((*r)->find("x.weight"), nullptr);
  EXPECT_NE((*r)->find("y.weight"), nullptr);
  EXPECT_NE((*r)->find("mtp.fc.weight"), nullptr);
  EXPECT_EQ((*r)->unindexed_shards(), std::vector<std::string>{"model_extra_tensors.safetensors"});
  EXPECT_EQ((*r)->shard_paths().size(), 3u);
  EXPECT_EQ((*r)->total_bytes(), 8u + 8u + 8u);
}

TEST(WeightStorage, DuplicateTensorAcrossShards) {
  const std::string dir = fresh_dir("st_dup");
  StWriter s1, s2;
  s1.add("x.weight", "BF16", {4});
  s2.add("x.weight", "BF16", {4});
  s1.write(dir + "/a.safetensors");
  s2.write(dir + "/b.safetensors");
  auto r = WeightStorage::open_dir(dir);
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("duplicate tensor 'x.weight'"), std::string::npos) << r.status().message();
}

TEST(WeightStorage, IndexProblems) {
  const std::string dir = fresh_dir("st_badindex");
  StWriter s1;
  s1.add("x.weight", "BF16", {4});
  s1.write(dir + "/a.safetensors");
  ds::testing::write_json(dir + "/model.safetensors.index.json", {{"weight_map", {{"x.weight", "gone.safetensors"}}}});
  auto r = WeightStorage::open_dir(dir);
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("gone.safetensors"), std::string::npos);

  ds::testing::write_json(dir + "/model.safetensors.index.json", {{"weight_map", {{"z.weight", "a.safetensors"}}}});
  r = WeightStorage::open_dir(dir);
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("'z.weight'"), std::string::npos);

  StWriter::write_file(dir + "/model.safetensors.index.json", "{not json");
  r = WeightStorage::open_dir(dir);
  expect_one_line(r.status());
  EXPECT_NE(r.status().message().find("index.json"), std::string::npos);
}

}  // namespace
}  // namespace ds::model
