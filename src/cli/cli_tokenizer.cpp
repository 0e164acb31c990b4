#include "cli_tokenizer.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

namespace ds::cli {

namespace {

// <directory of the running binary>/tokenizers/qwen35: build/deltaserve -> build/tokenizers/qwen35.
std::string built_qwen35_tokenizer_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "build/tokenizers/qwen35";
  return (std::filesystem::path(std::string(buf, static_cast<size_t>(n))).parent_path() / "tokenizers" / "qwen35")
      .string();
}

}  // namespace

Result<text::Tokenizer> load_cli_tokenizer(const std::string& flag_path, const std::string& model_dir,
                                           int64_t model_vocab_size) {
  if (!flag_path.empty()) return text::Tokenizer::load(flag_path);
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(model_dir) / "tokenizer.json", ec))
    return text::Tokenizer::load(model_dir);
  const std::string built = built_qwen35_tokenizer_dir();
  const std::string hint = model_dir + " has no tokenizer.json; pass --tokenizer PATH (tools/setup.sh builds the "
                           "Qwen3.5/3.6 tokenizer into " + built + ")";
  if (!std::filesystem::exists(std::filesystem::path(built) / "tokenizer.json", ec)) return not_found(hint);
  auto tok = text::Tokenizer::load(built);
  if (!tok) return Status(tok.status().code(), hint + ": " + tok.status().message());
  if (model_vocab_size > 0 && tok->vocab_size() > model_vocab_size)
    return not_found(model_dir + " has no tokenizer.json and its vocabulary (" + std::to_string(model_vocab_size) +
                     ") is smaller than the Qwen3.5 tokenizer's; pass --tokenizer PATH");
  std::fprintf(stderr, "no tokenizer.json in %s: using %s (--tokenizer to choose another)\n", model_dir.c_str(),
               built.c_str());
  return tok;
}

}  // namespace ds::cli
