// Subcommands of the `deltaserve` binary (serve, inspect, tokenize, ...). Each lives in its own
// file under src/cli/ and registers itself with DS_COMMAND, so adding one touches no shared file.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"

namespace ds::cli {

using CommandFn = int (*)(const std::vector<std::string>& args);  // args exclude the command name

struct Command {
  const char* name;
  const char* summary;
  CommandFn fn;
};

bool register_command(const Command& cmd);
const std::vector<Command>& commands();

// Stores a checked flag value (ds::parse_int64 / parse_double), or prints
// "deltaserve COMMAND: error: MESSAGE" and returns false; the caller exits with 2, as argparse does.
template <typename T, typename Out>
bool set_flag(const char* command, Result<T> parsed, Out* out) {
  if (!parsed) {
    std::fprintf(stderr, "deltaserve %s: error: %s\n", command, parsed.status().message().c_str());
    return false;
  }
  *out = static_cast<Out>(*parsed);
  return true;
}

}  // namespace ds::cli

#define DS_COMMAND(ident, name, summary, fn) \
  static const bool ds_registered_##ident = ::ds::cli::register_command({name, summary, fn})
