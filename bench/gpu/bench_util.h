// What the GPU bench programs share beside the bandwidth probe: stop with the program's name, the
// step and the error when a set-up call fails (a bench has nothing to measure after that).
#pragma once

#include <errno.h>  // program_invocation_short_name (glibc)

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "deltaserve/core/status.h"

namespace ds::bench {

[[noreturn]] inline void fail(const std::string& what, const Status& s) {
  std::fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what.c_str(), s.message().c_str());
  std::exit(1);
}

template <typename T>
T must(Result<T> r, const std::string& what) {
  if (!r.is_ok()) fail(what, r.status());
  return std::move(r).value();
}

}  // namespace ds::bench
