// The rules that let one kernel source compile for nvcc, hipcc and the emulator (kernels/gpu/device.h):
// no raw asm, no vendor shuffles/votes, no static __shared__, no __CUDA_ARCH__ tests, no vendor
// headers in kernel files; every instruction goes through a named helper in device.h.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace ds {
namespace {

namespace fs = std::filesystem;

std::string source_dir() {
  const char* env = std::getenv("DS_SOURCE_DIR");
  return env ? env : DS_SOURCE_DIR;
}

// The file with comments and string literals blanked, so prose may name what code must not use.
std::string code_of(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str(), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 2, "//") == 0) {
      while (i < s.size() && s[i] != '\n') ++i;
      out += '\n';
    } else if (s.compare(i, 2, "/*") == 0) {
      const size_t e = s.find("*/", i + 2);
      i = e == std::string::npos ? s.size() : e + 1;
    } else if (s[i] == '"') {
      for (++i; i < s.size() && s[i] != '"'; ++i)
        if (s[i] == '\\') ++i;
      out += "\"\"";
    } else {
      out += s[i];
    }
  }
  return out;
}

TEST(GpuSourceRules, KernelsUseOnlyTheDeviceVocabulary) {
  const std::pair<const char*, const char*> rules[] = {
      {R"(\basm\b|__asm__)", "raw asm (add a named helper to device.h)"},
      {R"(__shfl\w*|__ballot\w*|__any_sync|__all_sync|__activemask)", "a vendor warp intrinsic (use ds::gpu::shfl_*/ballot)"},
      {R"(__shared__)", "static shared memory (use ds::gpu::smem<T>())"},
      {R"(__CUDA_ARCH__|__HIP_DEVICE_COMPILE__|__gfx\w+__)", "an architecture test (use a constexpr in device.h)"},
      {R"(#\s*include\s*<(cuda|hip)[^>]*>)", "a vendor header (device.h includes it)"},
  };
  int files = 0;
  for (const auto& e : fs::directory_iterator(fs::path(source_dir()) / "kernels" / "gpu")) {
    const std::string name = e.path().filename().string();
    if (name == "device.h" || name == "launch.h" || name == "mma.h") continue;  // where the vendor differences live
    ++files;
    const std::string code = code_of(e.path());
    for (const auto& [pattern, what] : rules) {
      std::smatch m;
      EXPECT_FALSE(std::regex_search(code, m, std::regex(pattern))) << name << " uses " << what << ": '" << m.str() << "'";
    }
  }
  EXPECT_GE(files, 10);
}

}  // namespace
}  // namespace ds
