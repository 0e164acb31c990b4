// Subcommands of the `deltaserve` binary (serve, inspect, tokenize, ...). Each lives in its own
// file under src/cli/ and registers itself with DS_COMMAND, so adding one touches no shared file.
#pragma once

#include <string>
#include <vector>

namespace ds::cli {

using CommandFn = int (*)(const std::vector<std::string>& args);  // args exclude the command name

struct Command {
  const char* name;
  const char* summary;
  CommandFn fn;
};

bool register_command(const Command& cmd);
const std::vector<Command>& commands();

}  // namespace ds::cli

#define DS_COMMAND(ident, name, summary, fn) \
  static const bool ds_registered_##ident = ::ds::cli::register_command({name, summary, fn})
