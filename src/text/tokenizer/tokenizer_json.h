// Fast reading of tokenizer.json: the model's vocab and merges are streamed into BpeTables, the
// rest of the file becomes a small nlohmann DOM.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string_view>

#include "deltaserve/core/status.h"
#include "src/text/tokenizer/bpe.h"

namespace ds::text {

Status parse_tokenizer_json(std::string_view text, nlohmann::json* rest, BpeTables* tables);

}  // namespace ds::text
