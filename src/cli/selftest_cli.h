// The selftest command's body, also run by `serve --selftest` before the model loads.
#pragma once

#include <string>

namespace ds::cli {

// Returns the process exit code: 0 when every op agrees with the CPU backend.
int run_selftest_command(const std::string& device, const std::string& dtype, const std::string& only, int repeats);

}  // namespace ds::cli
