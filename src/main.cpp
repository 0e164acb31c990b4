// deltaserve: a drop-in replacement for `vllm serve` for the Qwen3.5 / Qwen3.6 family.
// main only dispatches to the subcommands registered in src/cli/.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "deltaserve/core/cli.h"
#include "deltaserve/core/version.h"

static void print_usage() {
  std::printf("deltaserve %s\n\nusage: deltaserve COMMAND [ARGS...]\n\ncommands:\n", DS_VERSION);
  for (const auto& c : ds::cli::commands()) std::printf("  %-14s %s\n", c.name, c.summary);
  std::printf("\nRun 'deltaserve COMMAND --help' for a command's flags.\n");
}

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version") || !std::strcmp(argv[1], "version")) {
    std::printf("%s\n", DS_VERSION);
    return 0;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : ds::cli::commands())
    if (argv[1] == std::string(c.name)) return c.fn(args);
  std::fprintf(stderr, "deltaserve: unknown command '%s' (see 'deltaserve --help')\n", argv[1]);
  return 2;
}
