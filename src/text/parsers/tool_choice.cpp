// tool_choice validation, following vLLM's ChatCompletionRequest.check_tool_usage and serving_chat.
#include "deltaserve/text/parsers/tool_choice.h"

namespace ds::text {

bool is_known_tool_parser(const std::string& name) {
  return name == "qwen3_coder" || name == "qwen3_xml";
}

Status validate_tool_parser_flags(bool enable_auto_tool_choice, const std::string& tool_parser) {
  if (!tool_parser.empty() && !is_known_tool_parser(tool_parser))
    return invalid_argument("invalid tool call parser: " + tool_parser +
                            " (choose from {qwen3_coder, qwen3_xml})");
  if (enable_auto_tool_choice && tool_parser.empty())
    return invalid_argument("Error: --enable-auto-tool-choice requires --tool-call-parser");
  return Status::ok();
}

static bool has_tools(const nlohmann::json& request) {
  auto it = request.find("tools");
  return it != request.end() && !it->is_null();
}

std::string effective_tool_choice(const nlohmann::json& request) {
  auto it = request.find("tool_choice");
  const bool tools = has_tools(request);
  if (it == request.end() || it->is_null()) return tools ? "auto" : "none";
  if (it->is_object()) return "function";
  if (!it->is_string()) return "invalid";
  const std::string c = it->get<std::string>();
  if (c == "required" && tools && request["tools"].is_array() && request["tools"].empty()) return "none";
  return c;
}

Status validate_tool_choice(const nlohmann::json& request, bool enable_auto_tool_choice,
                            const std::string& tool_parser) {
  if (!request.is_object()) return invalid_argument("request body must be a JSON object");
  auto it = request.find("tool_choice");
  const bool explicit_choice = it != request.end() && !it->is_null();
  if (has_tools(request) && !request["tools"].is_array())
    return invalid_argument("`tools` must be a list of tool definitions");
  if (explicit_choice && !(it->is_string() && *it == "none") && !has_tools(request))
    return invalid_argument("When using `tool_choice`, `tools` must be set.");
  if (explicit_choice) {
    const nlohmann::json& tc = *it;
    if (tc.is_object()) {
      if (!tc.contains("function") || !tc["function"].is_object())
        return invalid_argument(
            "Expected field `function` in `tool_choice`. Correct usage: `{\"type\": \"function\", "
            "\"function\": {\"name\": \"my_function\"}}`");
      if (!tc["function"].contains("name") || !tc["function"]["name"].is_string())
        return invalid_argument(
            "Expected field `name` in `function` in `tool_choice`. Correct usage: `{\"type\": "
            "\"function\", \"function\": {\"name\": \"my_function\"}}`");
      const std::string name = tc["function"]["name"].get<std::string>();
      bool found = false;
      for (const auto& t : request["tools"])
        if (t.is_object() && t.contains("function") && t["function"].is_object() &&
            t["function"].value("name", std::string()) == name)
          found = true;
      if (!found)
        return invalid_argument(
            "The tool specified in `tool_choice` does not match any of the specified `tools`");
    } else if (!tc.is_string() || (tc != "none" && tc != "auto" && tc != "required")) {
      return invalid_argument("Invalid value for `tool_choice`: " + tc.dump() +
                              "! Only named tools, \"none\", \"auto\" or \"required\" are supported.");
    }
  }
  const std::string choice = effective_tool_choice(request);
  if (choice == "auto" && !(enable_auto_tool_choice && is_known_tool_parser(tool_parser)))
    return invalid_argument(
        "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set");
  if (choice == "required" || choice == "function")
    return invalid_argument(
        std::string("tool_choice=") + (choice == "required" ? "\"required\"" : "a named function") +
        " needs constrained decoding (structured outputs), which deltaserve does not support "
        "yet; use tool_choice=\"auto\" with --enable-auto-tool-choice");
  return Status::ok();
}

bool tool_parsing_enabled(const nlohmann::json& request, bool enable_auto_tool_choice,
                          const std::string& tool_parser) {
  return request.is_object() && enable_auto_tool_choice && is_known_tool_parser(tool_parser) &&
         effective_tool_choice(request) == "auto";
}

}  // namespace ds::text
