// main() for the fuzz targets when they are not built with libFuzzer (gcc, or DS_FUZZ=OFF): runs
// every file of the given directories/files through LLVMFuzzerTestOneInput, then, with
// --mutate-seconds=S, keeps feeding random mutations of those inputs for S seconds (a fixed seed,
// so a CI failure reproduces). A crash shows as the test failing; the input that did it is written
// to ./replay-crash-<target>.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace {

std::string g_name = "target";

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const std::string* g_current = nullptr;
char g_crash_path[512];

// Async-signal-safe: writes the input being run, then lets the signal kill the process.
void on_crash(int sig) {
  if (g_current) {
    const int fd = open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ssize_t w = write(fd, g_current->data(), g_current->size());
      (void)w;
      close(fd);
    }
    static const char msg[] = "replay: crashing input written to ";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    w = write(2, g_crash_path, strlen(g_crash_path));
    w = write(2, "\n", 1);
    (void)w;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void run_one(const std::string& in) {
  g_current = &in;
  std::vector<uint8_t> copy(in.begin(), in.end());  // exact-size buffer: ASan sees overreads
  LLVMFuzzerTestOneInput(copy.data(), copy.size());
  g_current = nullptr;
}

std::string mutate(const std::vector<std::string>& pool, std::mt19937_64& rng) {
  std::string s = pool[rng() % pool.size()];
  const int n = 1 + static_cast<int>(rng() % 8);
  static const char* kTokens[] = {"<tool_call>", "</tool_call>",
                                  "<function=",  "</function>",
                                  "<parameter=", "</parameter>",
                                  "<think>",     "</think>",
                                  "{{",          "}}",
                                  "{%",          "%}",
                                  "\n",          "\"",
                                  "\\u00",       "\xff",
                                  "\xc3",        "null",
                                  "[",           "]",
                                  "{",           "}",
                                  ">",           "<"};
  for (int i = 0; i < n; ++i) {
    const size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 6) {
      case 0:
        if (!s.empty() && pos < s.size()) s[pos] = static_cast<char>(rng());
        break;
      case 1:
        if (!s.empty() && pos < s.size()) s.erase(pos, 1 + rng() % std::min<size_t>(16, s.size() - pos));
        break;
      case 2:
        s.insert(pos, kTokens[rng() % (sizeof(kTokens) / sizeof(*kTokens))]);
        break;
      case 3: {  // splice from another input
        const std::string& o = pool[rng() % pool.size()];
        if (!o.empty()) {
          const size_t a = rng() % o.size();
          s.insert(pos, o.substr(a, 1 + rng() % std::min<size_t>(64, o.size() - a)));
        }
        break;
      }
      case 4:
        if (!s.empty() && pos < s.size())
          s.insert(pos, s.substr(pos, 1 + rng() % std::min<size_t>(32, s.size() - pos)));
        break;
      default:
        s.insert(pos, 1, static_cast<char>(rng() % 128));
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  g_name = std::filesystem::path(argv[0]).filename().string();
  std::snprintf(g_crash_path, sizeof(g_crash_path), "replay-crash-%s", g_name.c_str());
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(sig, on_crash);
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  double mutate_s = 0;
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--mutate-seconds=", 17) == 0) {
      mutate_s = std::atof(argv[i] + 17);
      continue;
    }
    std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::directory_iterator(p))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) inputs.push_back(read_file(f));
    } else if (std::filesystem::exists(p)) {
      inputs.push_back(read_file(p));
    } else {
      std::fprintf(stderr, "%s: no such input %s\n", g_name.c_str(), argv[i]);
      return 2;
    }
  }
  if (inputs.empty()) inputs.emplace_back();
  for (const auto& in : inputs) run_one(in);
  size_t mutations = 0;
  if (mutate_s > 0) {
    std::mt19937_64 rng(12345);
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(mutate_s);
    while (std::chrono::steady_clock::now() < end) {
      for (int k = 0; k < 16; ++k, ++mutations) run_one(mutate(inputs, rng));
    }
  }
  std::printf("%s: %zu inputs, %zu mutations, no crash\n", g_name.c_str(), inputs.size(), mutations);
  return 0;
}
