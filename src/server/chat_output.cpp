#include "chat_output.h"

namespace ds::server {

namespace {
text::OutputParserOptions parser_options(const ChatOutputOptions& o) {
  text::OutputParserOptions p;
  p.reasoning_parser = o.reasoning_parser;
  p.enable_thinking = o.start_in_reasoning;
  p.include_reasoning = o.include_reasoning;
  p.tool_parser = o.tool_parser;
  p.parallel_tool_calls = o.parallel_tool_calls;
  p.tools = o.tools;
  p.ids = o.ids;
  return p;
}
}  // namespace

ChatOutput::ChatOutput(const ChatOutputOptions& opts)
    : by_ids_(opts.by_token_ids), reasoning_on_(opts.reasoning_parser), parser_(parser_options(opts)) {}

ChatDelta ChatOutput::convert(const text::ParserDelta& d) const {
  ChatDelta out;
  out.reasoning = d.reasoning;
  out.content = d.content;
  if (!d.tool_calls.empty()) out.tool_calls = text::delta_to_json(d)["tool_calls"];
  return out;
}

ChatDelta ChatOutput::feed(const std::vector<int32_t>& ids, const std::string& text) {
  return convert(by_ids_ ? parser_.feed(ids, text) : parser_.feed_tagged_text(text));
}

ChatDelta ChatOutput::finish(const std::string& engine_finish_reason) {
  return convert(parser_.finish(engine_finish_reason));
}

std::optional<std::string> ChatOutput::reasoning() const {
  if (!reasoning_on_) return std::nullopt;
  return parser_.message().reasoning;
}

std::optional<std::string> ChatOutput::content() const { return parser_.message().content; }

nlohmann::json ChatOutput::tool_calls() const {
  return text::message_to_json(parser_.message(), false)["tool_calls"];
}

}  // namespace ds::server
