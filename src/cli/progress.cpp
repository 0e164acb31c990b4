#include "progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace ds::cli {

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

void ProgressBar::update(int64_t done, int64_t total) {
  total = std::max<int64_t>(1, total);
  const double elapsed = timer_.seconds();
  const double eta = done > 0 ? elapsed * static_cast<double>(total - done) / static_cast<double>(done) : 0.0;
  char eta_text[32] = "ETA --";
  if (done > 0) std::snprintf(eta_text, sizeof(eta_text), "ETA %.1f s", eta);
  if (tty_) {
    const int width = 40;
    const int fill = static_cast<int>(width * done / total);
    std::fprintf(stderr, "\r[%s%s] %lld/%lld %s  %.1f s  %s   ", std::string(static_cast<size_t>(fill), '#').c_str(),
                 std::string(static_cast<size_t>(width - fill), '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), unit_.c_str(), elapsed, eta_text);
    drawn_ = true;
    return;
  }
  const int decile = static_cast<int>(10 * done / total);
  if (decile == last_decile_) return;
  last_decile_ = decile;
  std::fprintf(stderr, "%lld/%lld %s (%d%%) %.1f s, %s\n", static_cast<long long>(done),
               static_cast<long long>(total), unit_.c_str(), static_cast<int>(100 * done / total), elapsed, eta_text);
}

void ProgressBar::finish() {
  if (tty_ && drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

LoadingLine::LoadingLine(std::string what) {
  if (!stderr_is_terminal()) return;
  ticker_ = std::thread([this, what = std::move(what)] {
    Timer t;
    while (!done_.load()) {
      std::fprintf(stderr, "\rloading %s ... %.1f s", what.c_str(), t.seconds());
      for (int i = 0; i < 5 && !done_.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::fprintf(stderr, "\r\033[K");  // clear the line for the caller's "loaded ..." report
  });
}

LoadingLine::~LoadingLine() {
  done_.store(true);
  if (ticker_.joinable()) ticker_.join();
}

}  // namespace ds::cli
