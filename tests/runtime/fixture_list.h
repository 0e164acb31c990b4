// The reference fixtures present in tests/fixtures (both a model and its prompts.json), shared by
// the fixture tests.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace ds::test {

inline std::string fixtures_dir() {
  const char* env = std::getenv("DS_SOURCE_DIR");
  return std::string(env ? env : DS_SOURCE_DIR) + "/tests/fixtures";
}

inline std::vector<std::string> fixture_names() {
  namespace fs = std::filesystem;
  std::vector<std::string> v;
  const fs::path ref = fs::path(fixtures_dir()) / "reference";
  if (!fs::exists(ref)) return v;
  for (const auto& e : fs::directory_iterator(ref))
    if (fs::exists(e.path() / "prompts.json") && fs::exists(fs::path(fixtures_dir()) / "models" / e.path().filename()))
      v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace ds::test
