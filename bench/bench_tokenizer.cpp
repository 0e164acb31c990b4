// Tokenizer throughput against HF `tokenizers` in the same run: encodes every line of WikiText-2
// test with ours (one thread) and with HF (python3, TOKENIZERS_PARALLELISM=false, one encode()
// call per line), best of N passes each, and prints MB/s, tokens/s and the ratio. Also checks
// that both produced the same number of tokens.
//
// usage: bench_tokenizer [--tokenizer PATH] [--data wiki.test.raw] [--repeat N] [--no-hf]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "deltaserve/text/tokenizer/tokenizer.h"

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

constexpr const char* kHfScript = R"PY(
import os, sys, time
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
with open(sys.argv[2], encoding="utf-8", newline="") as f:
    lines = f.read().split("\n")
best, n = 1e9, 0
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    n = 0
    for line in lines:
        n += len(tok.encode(line, add_special_tokens=False).ids)
    best = min(best, time.perf_counter() - t0)
print(best, n)
)PY";

}  // namespace

int main(int argc, char** argv) {
  // Defaults relative to the binary (build/bench_tokenizer): build/tokenizers/qwen35 (made by
  // tools/setup.sh) and shared/data beside the repository.
  const std::string exe_dir = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  std::string tokenizer = exe_dir + "/tokenizers/qwen35/tokenizer.json";
  if (const char* t = std::getenv("DS_QWEN35_TOKENIZER")) tokenizer = t;
  const char* shared = std::getenv("DS_SHARED_DATA");
  std::string data =
      (shared ? std::string(shared) : exe_dir + "/../../shared/data") + "/wikitext-2/wiki.test.raw";
  int repeat = 5;
  bool with_hf = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tokenizer" && i + 1 < argc)
      tokenizer = argv[++i];
    else if (a == "--data" && i + 1 < argc)
      data = argv[++i];
    else if (a == "--repeat" && i + 1 < argc)
      repeat = std::max(1, std::atoi(argv[++i]));
    else if (a == "--no-hf")
      with_hf = false;
    else {
      std::fprintf(stderr, "usage: %s [--tokenizer PATH] [--data FILE] [--repeat N] [--no-hf]\n", argv[0]);
      return 2;
    }
  }
  auto tok = ds::text::Tokenizer::load(tokenizer);
  if (!tok) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", tok.status().message().c_str());
    return 1;
  }
  const std::string text = read_all(data);
  if (text.empty()) {
    std::fprintf(stderr, "bench_tokenizer: cannot read %s\n", data.c_str());
    return 1;
  }
  std::vector<std::string> lines;
  for (size_t pos = 0;;) {
    const size_t e = text.find('\n', pos);
    lines.push_back(text.substr(pos, e == std::string::npos ? std::string::npos : e - pos));
    if (e == std::string::npos) break;
    pos = e + 1;
  }
  size_t bytes = 0;
  for (const auto& l : lines) bytes += l.size();

  double best = 1e9;
  size_t tokens = 0;
  for (int r = 0; r < repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    size_t n = 0;
    for (const auto& l : lines) n += tok->encode(l).size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    tokens = n;
  }
  std::printf("data: %s (%zu lines, %.2f MB)\n", data.c_str(), lines.size(), bytes / 1e6);
  std::printf("deltaserve: %8.2f MB/s %12.0f tokens/s (%zu tokens, best of %d)\n", bytes / 1e6 / best,
              tokens / best, tokens, repeat);
  if (!with_hf) return 0;

  const std::string script_path = "/tmp/ds_bench_tokenizer_hf.py";
  {
    std::ofstream f(script_path);
    f << kHfScript;
  }
  const std::string cmd =
      "python3 " + script_path + " '" + tokenizer + "' '" + data + "' " + std::to_string(repeat);
  FILE* p = popen(cmd.c_str(), "r");
  double hf_best = 0;
  size_t hf_tokens = 0;
  if (!p || std::fscanf(p, "%lf %zu", &hf_best, &hf_tokens) != 2 || hf_best <= 0) {
    std::fprintf(stderr, "bench_tokenizer: running HF tokenizers via python3 failed\n");
    if (p) pclose(p);
    return 1;
  }
  pclose(p);
  std::printf("hf tokenizers: %8.2f MB/s %12.0f tokens/s (%zu tokens, best of %d)\n", bytes / 1e6 / hf_best,
              hf_tokens / hf_best, hf_tokens, repeat);
  std::printf("ratio (deltaserve / hf): %.2fx%s\n", hf_best / best,
              hf_tokens == tokens ? "" : "  WARNING: token counts differ");
  return hf_tokens == tokens ? 0 : 1;
}
