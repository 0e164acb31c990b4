// Shared helpers of the tokenizer tests: where the tokenizer files and the shared data live, and
// one loaded copy of each tokenizer per test binary.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <list>
#include <sstream>
#include <string>

#include "deltaserve/text/tokenizer.h"

namespace ds::text::testing {

inline std::string shared_data_dir() {
  if (const char* d = std::getenv("DS_SHARED_DATA")) return d;
  return std::string(DS_SOURCE_DIR) + "/../shared/data";
}

// The Qwen3.5 tokenizer.json rebuilt by tools/setup.sh (tools/qwen35_tokenizer.py).
inline std::string qwen35_tokenizer_path() {
  if (const char* p = std::getenv("DS_QWEN35_TOKENIZER")) return p;
  for (const std::string& dir : {std::string(DS_BINARY_DIR), std::string(DS_SOURCE_DIR) + "/build"}) {
    const std::string p = dir + "/tokenizers/qwen35/tokenizer.json";
    if (std::filesystem::exists(p)) return p;
  }
  return std::string(DS_SOURCE_DIR) + "/build/tokenizers/qwen35/tokenizer.json";
}

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
    *error = it->tok.status().message() + " (run tools/setup.sh to build the Qwen3.5 tokenizer)";
    return nullptr;
  }
  return &*it->tok;
}

inline const Tokenizer* qwen35(std::string* error) {
  return cached_tokenizer(qwen35_tokenizer_path(), error);
}
inline const Tokenizer* qwen3(std::string* error) {
  return cached_tokenizer(shared_data_dir() + "/qwen3-tokenizer/tokenizer.json", error);
}

}  // namespace ds::text::testing
