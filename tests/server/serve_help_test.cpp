// `deltaserve serve --help`: every flag of the table has a description and a default, as
// `vllm serve --help` gives, and ignored / limited flags say so.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "deltaserve/server/cli_args.h"
#include "src/server/cli_flags.h"

namespace ds::server {
namespace {

TEST(ServeHelp, EveryFlagHasADescriptionAndADefault) {
  for (const auto& f : flag_specs()) {
    const FlagHelp* h = flag_help(f.name);
    ASSERT_NE(h, nullptr) << "--" << f.name << " has no help line (src/server/flag_help.cpp)";
    EXPECT_FALSE(h->description.empty()) << f.name;
    EXPECT_FALSE(h->default_value.empty()) << f.name;
    EXPECT_EQ(h->description.find('\n'), std::string::npos) << f.name;
    EXPECT_EQ(h->metavar.empty(), f.kind == FlagKind::kBool) << "--" << f.name << ": metavar only for valued flags";
  }
}

// The line of --NAME in the help text (the flag's own line, or the next when the flag is long).
std::string help_line(const std::string& help, const std::string& name) {
  std::istringstream in(help);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("  --" + name + " ", 0) == 0 || line.rfind("  --" + name + ",", 0) == 0 || line == "  --" + name) {
      if (line.find("(default: ") != std::string::npos) return line;
      std::string next;
      std::getline(in, next);
      return line + "\n" + next;
    }
  }
  return "";
}

TEST(ServeHelp, ShowsDescriptionDefaultAndPolicy) {
  const std::string help = serve_help();
  EXPECT_NE(help_line(help, "port").find("Port to listen on"), std::string::npos) << help_line(help, "port");
  EXPECT_NE(help_line(help, "port").find("(default: 8000)"), std::string::npos);
  EXPECT_NE(help_line(help, "max-num-seqs").find("(default: 256)"), std::string::npos);
  EXPECT_NE(help_line(help, "enable-auto-tool-choice").find("--no-enable-auto-tool-choice"), std::string::npos);
  EXPECT_NE(help_line(help, "swap-space").find("[ignored: "), std::string::npos);
  EXPECT_NE(help_line(help, "pipeline-parallel-size").find("[limited: "), std::string::npos);
  size_t lines = 0;
  for (char c : help) lines += c == '\n';
  EXPECT_GE(lines, flag_specs().size());
}

}  // namespace
}  // namespace ds::server
