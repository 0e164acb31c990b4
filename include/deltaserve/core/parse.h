// Checked number parsing for command-line flags and environment variables: the whole text must be
// one number of the right kind within [min, max], or the Status names the flag and says why.
// Use these instead of atoi/atoll/atof, which turn "abc" into 0 and "12x" into 12 without a word.
#pragma once

#include <cstdint>
#include <limits>
#include <string_view>

#include "deltaserve/core/status.h"

namespace ds {

// A base-10 integer ("-3", "+4096"); `what` names the input in the error ("--ctx").
Result<int64_t> parse_int64(std::string_view text, std::string_view what,
                            int64_t min = std::numeric_limits<int64_t>::min(),
                            int64_t max = std::numeric_limits<int64_t>::max());

// A finite decimal or exponent number ("0.7", "1e-3"); no inf / nan.
Result<double> parse_double(std::string_view text, std::string_view what,
                            double min = -std::numeric_limits<double>::max(),
                            double max = std::numeric_limits<double>::max());

}  // namespace ds
