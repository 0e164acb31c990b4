#include "deltaserve/core/parse.h"

#include <charconv>
#include <cmath>
#include <string>
#include <system_error>

namespace ds {

namespace {

std::string quoted(std::string_view what, std::string_view text) {
  return std::string(what) + ": '" + std::string(text) + "'";
}

// from_chars takes no leading '+', which users (and Python's int()) accept.
std::string_view without_plus(std::string_view text) {
  return text.size() > 1 && text[0] == '+' && text[1] != '-' ? text.substr(1) : text;
}

}  // namespace

Result<int64_t> parse_int64(std::string_view text, std::string_view what, int64_t min, int64_t max) {
  const std::string_view t = without_plus(text);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec == std::errc::invalid_argument || end != t.data() + t.size())
    return invalid_argument(quoted(what, text) + " is not an integer");
  if (ec == std::errc::result_out_of_range) return invalid_argument(quoted(what, text) + " is out of range");
  if (v < min) return invalid_argument(quoted(what, text) + " must be at least " + std::to_string(min));
  if (v > max) return invalid_argument(quoted(what, text) + " must be at most " + std::to_string(max));
  return v;
}

Result<double> parse_double(std::string_view text, std::string_view what, double min, double max) {
  const std::string_view t = without_plus(text);
  double v = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec == std::errc::invalid_argument || end != t.data() + t.size())
    return invalid_argument(quoted(what, text) + " is not a number");
  if (ec == std::errc::result_out_of_range) return invalid_argument(quoted(what, text) + " is out of range");
  if (!std::isfinite(v)) return invalid_argument(quoted(what, text) + " is not a number");
  auto num = [](double d) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof(buf), d);
    return std::string(buf, r.ptr);
  };
  if (v < min) return invalid_argument(quoted(what, text) + " must be at least " + num(min));
  if (v > max) return invalid_argument(quoted(what, text) + " must be at most " + num(max));
  return v;
}

}  // namespace ds
