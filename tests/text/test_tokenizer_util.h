// Shared helpers of the tokenizer tests: where the tokenizer files and the test data live, and
// one loaded copy of each tokenizer per test binary.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <list>
#include <sstream>
#include <string>

#include "deltaserve/text/tokenizer/tokenizer.h"

namespace ds::text::testing {

inline std::string test_data_dir() {
  if (const char* d = std::getenv("DS_SHARED_DATA")) return d;
  return std::string(DS_SOURCE_DIR) + "/tests/data";
}

// A tokenizer.json rebuilt by tools/setup.sh into <build>/tokenizers/NAME (tools/qwen35_tokenizer.py,
// tools/qwen3_tokenizer.py); ENV_VAR overrides.
inline std::string built_tokenizer_path(const char* name, const char* env_var) {
  if (const char* p = std::getenv(env_var)) return p;
  for (const std::string& dir : {std::string(DS_BINARY_DIR), std::string(DS_SOURCE_DIR) + "/build"}) {
    const std::string p = dir + "/tokenizers/" + name + "/tokenizer.json";
    if (std::filesystem::exists(p)) return p;
  }
  return std::string(DS_SOURCE_DIR) + "/build/tokenizers/" + name + "/tokenizer.json";
}
inline std::string qwen35_tokenizer_path() { return built_tokenizer_path("qwen35", "DS_QWEN35_TOKENIZER"); }
inline std::string qwen3_tokenizer_path() { return built_tokenizer_path("qwen3", "DS_QWEN3_TOKENIZER"); }

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// nullptr (and *error set) if the file is missing or does not load. Loaded once per binary.
inline const Tokenizer* cached_tokenizer(const std::string& path, std::string* error) {
  struct Entry {
    std::string path;
    Result<Tokenizer> tok;
  };
  static auto* entries = new std::list<Entry>();  // never freed: lives as long as the tests
  auto it = std::find_if(entries->begin(), entries->end(), [&](const Entry& e) { return e.path == path; });
  if (it == entries->end()) {
    entries->push_back({path, Tokenizer::load(path)});
    it = std::prev(entries->end());
  }
  if (!it->tok) {
    *error = it->tok.status().message() + " (run tools/setup.sh to build the tokenizers)";
    return nullptr;
  }
  return &*it->tok;
}

inline const Tokenizer* qwen35(std::string* error) {
  return cached_tokenizer(qwen35_tokenizer_path(), error);
}
inline const Tokenizer* qwen3(std::string* error) {
  return cached_tokenizer(qwen3_tokenizer_path(), error);
}

}  // namespace ds::text::testing
