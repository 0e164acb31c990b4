// Every real HF fixture (tests/fixtures/models/<name>, generated with transformers + GPTQModel /
// AutoRound by tools/fixtures) against its manifest (tests/fixtures/reference/<name>/modules.json):
// the inspect report must give exactly the manifest's per-module formats and per-component bytes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "deltaserve/model/inspect.h"

namespace ds::model {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> fixture_names() {
  std::vector<std::string> out;
  const fs::path ref = fs::path(DS_SOURCE_DIR) / "tests/fixtures/reference";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ref, ec))
    if (fs::exists(e.path() / "modules.json") && fs::is_directory(fs::path(DS_SOURCE_DIR) / "tests/fixtures/models" / e.path().filename()))
      out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

ordered_json read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ordered_json::parse(ss.str());
}

void check_fixture(const std::string& name) {
  SCOPED_TRACE("fixture " + name);
  const fs::path root = fs::path(DS_SOURCE_DIR) / "tests/fixtures";
  const ordered_json manifest = read(root / "reference" / name / "modules.json");
  InspectOptions o;
  o.list_modules = true;
  o.memory.include_mtp = true;
  auto r = inspect_model((root / "models" / name).string(), o);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ((*r)["source"], "weights");

  std::map<std::string, ordered_json> mine;
  std::map<std::string, std::vector<ordered_json>> by_tensor;  // fused expert slices by their 3-D tensor
  for (const auto& m : (*r)["modules"]) {
    mine[m["name"].get<std::string>()] = m;
    by_tensor[m["tensor"].get<std::string>()].push_back(m);
  }
  std::set<std::string> covered;
  for (auto it = manifest["modules"].begin(); it != manifest["modules"].end(); ++it) {
    const std::string& key = it.key();
    const ordered_json& want = it.value();
    SCOPED_TRACE(key);
    if (want["kind"] == "fused_experts") {
      const auto& slices = by_tensor[key];
      ASSERT_EQ(static_cast<int64_t>(slices.size()), want["num_experts"].get<int64_t>() * (key.ends_with("gate_up_proj") ? 2 : 1));
      uint64_t bytes = 0;
      for (const auto& s : slices) {
        EXPECT_EQ(s["format"], "plain");
        EXPECT_EQ(s["dtype"], want["dtype"]);
        EXPECT_EQ(s["in_features"], want["in_features"]);
        bytes += s["bytes"].get<uint64_t>();
        covered.insert(s["name"].get<std::string>());
      }
      EXPECT_EQ(bytes, want["bytes"].get<uint64_t>());
      continue;
    }
    auto m = mine.find(key);
    ASSERT_NE(m, mine.end()) << "inspect does not list module " << key;
    covered.insert(key);
    const ordered_json& got = m->second;
    EXPECT_EQ(got["format"], want["format"]);
    EXPECT_EQ(got["bits"], want["bits"]);
    EXPECT_EQ(got["group_size"], want["group_size"]);
    if (want["format"] == "gptq") {
      EXPECT_EQ(got["sym"], want["sym"]);
    }
    EXPECT_EQ(got["desc_act"], want["desc_act"]);
    EXPECT_EQ(got["dtype"], want["dtype"]);
    EXPECT_EQ(got["in_features"], want["in_features"]);
    EXPECT_EQ(got["out_features"], want["out_features"]);
    EXPECT_EQ(got["component"], want["component"]);
    EXPECT_EQ(got["bytes"], want["bytes"]);
  }
  for (const auto& [n, m] : mine)
    if (!covered.count(n) && !(n == "lm_head" && (*r)["dims"]["tie_word_embeddings"].get<bool>()))
      ADD_FAILURE() << "inspect lists " << n << " which the manifest does not have";

  const ordered_json& totals = manifest["bytes_by_component"];
  uint64_t sum = 0;
  for (const auto& c : (*r)["components"]) {
    const std::string cn = c["component"].get<std::string>();
    EXPECT_EQ(c["bytes"].get<uint64_t>(), totals.value(cn, uint64_t{0})) << "component " << cn;
    sum += c["bytes"].get<uint64_t>();
  }
  for (auto it = totals.begin(); it != totals.end(); ++it) {
    if (it.key() == "total" || it.value().get<uint64_t>() == 0) continue;
    bool listed = false;
    for (const auto& c : (*r)["components"]) listed |= c["component"] == it.key();
    EXPECT_TRUE(listed) << "component " << it.key() << " missing from the report";
  }
  EXPECT_EQ(sum, totals["total"].get<uint64_t>());
  EXPECT_EQ((*r)["checkpoint_bytes"].get<uint64_t>(), totals["total"].get<uint64_t>());
  EXPECT_EQ((*r)["unused_tensors"], 0);
}

TEST(Fixtures, InspectMatchesEveryManifest) {
  const auto names = fixture_names();
  ASSERT_FALSE(names.empty()) << "no fixtures under tests/fixtures/reference (run tools/fixtures)";
  for (const auto& n : names) check_fixture(n);
}

}  // namespace
}  // namespace ds::model
