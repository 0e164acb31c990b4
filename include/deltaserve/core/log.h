// Minimal leveled logging to stderr in vLLM's line shape: "INFO 11-22 14:37:48 [file] message".
// Thread-safe (one write per line). Level from --log-level / VLLM_LOGGING_LEVEL.
#pragma once

#include <sstream>
#include <string>

namespace ds::log {

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void set_level(Level level);
Level level();
// Parses "debug|info|warning|error" (case-insensitive); returns false on anything else.
bool parse_level(const std::string& text, Level* out);
void write(Level level, const char* file, const std::string& message);

class Line {
 public:
  Line(Level level, const char* file) : level_(level), file_(file) {}
  ~Line() { write(level_, file_, os_.str()); }
  template <typename T>
  Line& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  Level level_;
  const char* file_;
  std::ostringstream os_;
};

}  // namespace ds::log

#define DS_LOG(lvl) \
  if (::ds::log::Level::lvl < ::ds::log::level()) {} else ::ds::log::Line(::ds::log::Level::lvl, __FILE__)
#define DS_DEBUG DS_LOG(kDebug)
#define DS_INFO DS_LOG(kInfo)
#define DS_WARN DS_LOG(kWarning)
#define DS_ERROR DS_LOG(kError)
