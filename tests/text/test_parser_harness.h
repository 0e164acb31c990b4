// Test harness for the output parser: runs an output under any chunking and checks the streaming
// invariants (deltas concatenate to the final message; one header per call, first).
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "deltaserve/text/parsers/output_parser.h"

namespace ds::text::parser_testing {

// A unit of model output: one UTF-8 character of ordinary text, or one control token.
struct Unit {
  std::string text;
  std::optional<ControlToken> control;
};
std::vector<Unit> units_of(std::string_view tagged_output);  // tags become control tokens
std::vector<Unit> units_plain(std::string_view output);      // everything ordinary text

// A chunking: the unit index where each feed starts (first is 0).
using Cuts = std::vector<size_t>;

struct ParseRun {
  ParsedMessage msg;
  std::vector<ParserDelta> deltas;  // one per feed() (possibly empty), then the finish() delta
};

// Fresh options for a request; ids are "call-<n>" so runs are comparable.
OutputParserOptions options(bool reasoning, bool tools, const nlohmann::json& tool_schemas = nullptr,
                            bool enable_thinking = true);

// Feeds through OutputParser::feed(ids, text) with the Qwen3.5 control ids.
ParseRun run_units(const OutputParserOptions& o, const std::vector<Unit>& units, const Cuts& cuts,
                   std::string_view finish_reason = "stop");
ParseRun run_whole(const OutputParserOptions& o, std::string_view tagged_output,
                   std::string_view finish = "stop");
ParseRun run_deltas(const OutputParserOptions& o, const std::vector<std::string>& tagged_deltas);

// Streaming invariants; returns a failure description or "".
std::string check_invariants(const ParseRun& r);
// Same final message (content, reasoning, calls, finish reason); returns a difference or "".
std::string diff_messages(const ParsedMessage& a, const ParsedMessage& b);
std::string describe(const ParsedMessage& m);

// Content that looks like tool-call XML.
bool has_tool_xml(const std::string& s);

// Runs every 2-way split, char-by-char and `random_chunkings` random chunkings; each must give the
// reference message and keep the invariants. Returns the number of runs; failures via EXPECT.
size_t check_all_splits(const OutputParserOptions& o, const std::vector<Unit>& units,
                        const ParsedMessage& ref, const std::string& label, int random_chunkings,
                        uint64_t seed);

std::string test_data_dir();

}  // namespace ds::text::parser_testing
