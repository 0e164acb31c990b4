#include "deltaserve/core/cli.h"

namespace ds::cli {

static std::vector<Command>& registry() {
  static std::vector<Command> cmds;
  return cmds;
}

bool register_command(const Command& cmd) {
  registry().push_back(cmd);
  return true;
}

const std::vector<Command>& commands() { return registry(); }

}  // namespace ds::cli
