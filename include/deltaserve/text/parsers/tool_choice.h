// Request-level tool rules the server checks before generating (vLLM's `check_tool_usage` and the
// `--enable-auto-tool-choice` gate), and whether the output parser should parse tool calls.
// Error texts are vLLM's, since clients match on them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "deltaserve/core/status.h"

namespace ds::text {

// Tool parsers this build knows (both names are one engine). "" means none configured.
bool is_known_tool_parser(const std::string& name);
// Startup: `--enable-auto-tool-choice` needs `--tool-call-parser`; an unknown parser name fails.
Status validate_tool_parser_flags(bool enable_auto_tool_choice, const std::string& tool_parser);

// Per request. InvalidArgument (HTTP 400) for: tool_choice without tools; a malformed or unknown
// tool_choice; "auto" (explicit, or implied by sending tools) without --enable-auto-tool-choice and
// a parser; "required" / a named function (they need constrained decoding, not supported yet).
Status validate_tool_choice(const nlohmann::json& request, bool enable_auto_tool_choice,
                            const std::string& tool_parser);

// The effective tool_choice: the request's, else "auto" when tools are sent, else "none";
// "required" with an empty tool list is "none". A named choice is returned as "function".
std::string effective_tool_choice(const nlohmann::json& request);

// Whether the output parser parses tool calls for this (validated) request: tool_choice "auto",
// auto tool choice enabled and a known parser. With "none" the tool XML stays in content, as vLLM.
bool tool_parsing_enabled(const nlohmann::json& request, bool enable_auto_tool_choice,
                          const std::string& tool_parser);

}  // namespace ds::text
