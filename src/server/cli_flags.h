// The table of `vllm serve` flags deltaserve knows (private to src/server): kind, policy and what
// each does to ServeArgs. Mechanics (tokenizing argv, YAML, aliases) are in cli_args.cpp.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "deltaserve/server/cli_args.h"

namespace ds::server {

enum class FlagKind { kBool, kInt, kHumanInt, kFloat, kString, kList, kJson };
enum class FlagPolicy {
  kHonoured,  // MUST / SHOULD honoured
  kAccepted,  // ACCEPT: parsed, logged, ignored
  kRefused,   // refused at start-up with a reason (setter returns the error)
};

struct FlagValue {
  std::string text;               // scalar value (bools: "true"/"false")
  std::vector<std::string> list;  // kList
  bool as_bool() const { return text == "true"; }
};

struct FlagSpec {
  std::string name;  // canonical, without dashes: "max-model-len"
  FlagKind kind;
  FlagPolicy policy;
  std::function<Status(ServeArgs&, const FlagValue&)> apply;
  std::string note;  // why ignored / refused (FLAGS.md and logs)
};

const std::vector<FlagSpec>& flag_specs();
const FlagSpec* find_flag(const std::string& name);

// The `serve --help` line of a flag (flag_help.cpp); nullptr for a flag that has none.
struct FlagHelp {
  std::string metavar;      // "N", "JSON", ...; empty for booleans
  std::string description;  // one line, vLLM's wording where the flag is vLLM's
  std::string default_value;
};
const FlagHelp* flag_help(const std::string& name);

}  // namespace ds::server
