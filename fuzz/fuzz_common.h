// Shared helpers for the fuzz targets: a byte reader that splits one fuzz input into parameters
// (libFuzzer's FuzzedDataProvider, minus what we do not need), and the check macro that turns a
// broken invariant into a crash the fuzzer records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace ds::fuzz {

class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  size_t left() const { return n_; }
  uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | u8();
    return v;
  }
  // Up to the next `sep` byte (consumed), or the rest.
  std::string_view until(char sep) {
    const char* s = reinterpret_cast<const char*>(p_);
    size_t i = 0;
    while (i < n_ && s[i] != sep) ++i;
    std::string_view out(s, i);
    const size_t used = i < n_ ? i + 1 : i;
    p_ += used;
    n_ -= used;
    return out;
  }
  std::string_view rest() {
    std::string_view out(reinterpret_cast<const char*>(p_), n_);
    p_ += n_;
    n_ = 0;
    return out;
  }

 private:
  const uint8_t* p_;
  size_t n_;
};

// Data files. Inside the source tree they are found as the tests find them; when the binaries run
// elsewhere (tools/fuzz_remote.sh) DS_FUZZ_DATA names a folder holding copies of both.
inline bool readable(const std::string& p) {
  FILE* f = std::fopen(p.c_str(), "rb");
  if (f) std::fclose(f);
  return f != nullptr;
}

inline std::string qwen35_tokenizer_path() {
  if (const char* p = std::getenv("DS_QWEN35_TOKENIZER")) return p;
  if (const char* d = std::getenv("DS_FUZZ_DATA")) return std::string(d) + "/qwen35_tokenizer.json";
  const std::string in_build = std::string(DS_BINARY_DIR) + "/tokenizers/qwen35/tokenizer.json";
  if (readable(in_build)) return in_build;
  return std::string(DS_SOURCE_DIR) + "/build/tokenizers/qwen35/tokenizer.json";
}

inline std::string qwen35_template_path() {
  if (const char* d = std::getenv("DS_FUZZ_DATA"))
    return std::string(d) + "/qwen3.5_official_chat_template.jinja";
  return std::string(DS_SOURCE_DIR) + "/tests/data/qwen35-templates/qwen3.5_official_chat_template.jinja";
}

}  // namespace ds::fuzz

// An invariant the code promises (streamed == whole, round trips): a violation aborts, so the
// fuzzer saves the input.
#define DS_FUZZ_CHECK(cond, ...)                                                           \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "fuzz check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                   \
      std::fprintf(stderr, "\n");                                                          \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)
