// Progress reports on stderr for the offline subcommands' long steps. On a terminal one line is
// rewritten in place; otherwise (a log file, CI) at most one plain line per 10% of the work, so
// logs hold no carriage-return floods.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "deltaserve/core/timer.h"

namespace ds::cli {

bool stderr_is_terminal();

// "[#####.....] 12/40 windows  3.1 s  ETA 7.2 s"
class ProgressBar {
 public:
  explicit ProgressBar(std::string unit) : unit_(std::move(unit)) {}
  void update(int64_t done, int64_t total);
  void finish();  // ends the line (terminal only)

 private:
  std::string unit_;
  Timer timer_;
  bool tty_ = stderr_is_terminal();
  int last_decile_ = -1;
  bool drawn_ = false;
};

// While a model loads, "loading NAME ... 2.5 s" ticking on a terminal (nothing elsewhere); the line
// is cleared when it goes out of scope, so the caller's "loaded ..." line replaces it.
class LoadingLine {
 public:
  explicit LoadingLine(std::string what);
  ~LoadingLine();
  LoadingLine(const LoadingLine&) = delete;
  LoadingLine& operator=(const LoadingLine&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread ticker_;
};

}  // namespace ds::cli
