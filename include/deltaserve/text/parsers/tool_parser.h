// Qwen3 XML tool-call parsing (`--tool-call-parser qwen3_coder` and `qwen3_xml`, one engine).
// The model writes `<tool_call>\n<function=NAME>\n<parameter=ARG>\nVALUE\n</parameter>\n</function>
// \n</tool_call>`; ToolCallParser is an incremental, text-level state machine over the content stream
// that turns it into OpenAI tool calls, streaming argument JSON as it arrives. Values are typed from
// the request's tool schema with vLLM's rules (convert_param_value). Used through output_parser.h.
#pragma once

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace ds::text {

// ---- Value typing (vLLM `_convert_param_value`) ----

enum class ParamKind {
  kString,     // string|str|text|varchar|char|enum, no type, or not in the schema: kept verbatim
  kInteger,    // int*|uint*|long*|short*|unsigned*: Python int(), else the string
  kNumber,     // num*|float*: Python float(), whole values as integers, else the string
  kBoolean,    // boolean|bool|binary: lower()=="true"
  kContainer,  // object|array|arr|dict*|list*: json.loads, then ast.literal_eval, else the string
  kOther,      // any other type name: ast.literal_eval, else the string
};

struct ParamSpec {
  ParamKind kind = ParamKind::kString;
  bool allows_null = false;  // schema admits null ("null" type, anyOf/oneOf/type-list member)
};

// `properties` is tools[i].function.parameters.properties (or null). anyOf/oneOf/type lists use the
// first non-null type.
ParamSpec param_spec(const nlohmann::json* properties, const std::string& name);

// The JSON text (Python json.dumps style: ", "/": " separators, non-ASCII raw, Python float repr)
// of a raw parameter value, typed by `spec`.
std::string convert_param_value(std::string_view raw, const ParamSpec& spec);

// JSON string literal of `s` as Python json.dumps(s, ensure_ascii=False) writes it.
std::string json_quote(std::string_view s);
// Appends the escaped body (no quotes).
void json_escape_append(std::string& out, std::string_view s);
// Python repr() of a double (shortest round trip; "1e-05", "0.0001", "1e+16"; inf/nan as JSON
// Infinity/NaN like json.dumps).
std::string py_float_repr(double v);
// Parses `text` as JSON (json.loads) or a Python literal (ast.literal_eval) and returns json.dumps
// of the result; nullopt when it is not valid or not JSON-serialisable.
std::optional<std::string> py_json_loads_dumps(std::string_view text);
std::optional<std::string> py_literal_eval_dumps(std::string_view text, bool* is_string = nullptr);

// ---- Streaming parser ----

struct ToolParserLimits {
  size_t max_value_bytes = 8u << 20;  // one parameter value; beyond it the call is cut (error)
  size_t max_name_bytes = 256;        // function / parameter names
  size_t max_lookahead_ws = 1024;     // whitespace scanned to decide whether a tag is structural
  // Text held to decide whether a `<parameter=NAME>` the schema does not declare is a parameter
  // (it closes cleanly) or text inside the current value; past it, a parameter.
  size_t max_lookahead_bytes = 64u << 10;
};

// What the parser produces, in order. `text` is content for kContent and an arguments fragment for
// kArguments; a kHeader event carries id and name (arguments "").
struct ToolEvent {
  enum Kind { kContent, kHeader, kArguments } kind;
  int index = 0;  // tool-call index (kHeader / kArguments)
  std::string text;
  std::string id;
  std::string name;
};

class ToolCallParser {
 public:
  // tools: the request's `tools` array (may be null). make_id: tool-call id generator.
  ToolCallParser(const nlohmann::json& tools, ToolParserLimits limits, std::function<std::string()> make_id,
                 bool parallel_tool_calls = true);

  // Content text (valid UTF-8). Events are appended to `out`.
  void feed(std::string_view text, std::vector<ToolEvent>& out);
  // End of output: resolves pending look-ahead, closes any open call.
  void finish(std::vector<ToolEvent>& out);

  int num_calls_emitted() const { return emitted_calls_; }
  bool ended_inside_call() const { return ended_inside_call_; }
  const std::string& error() const { return error_; }  // non-empty when a limit was hit

 private:
  enum class State {
    kContent,
    kAfterOpen,
    kFuncName,
    kFuncBody,
    kParamName,
    kValue,
    kAfterFunc,
    kAfterCall,
    kDrain
  };
  enum class Tri { kNo, kYes, kMore };

  bool step(std::vector<ToolEvent>& out);  // false: needs more input
  bool step_value(std::vector<ToolEvent>& out);
  Tri match(size_t pos, std::string_view lit) const;
  Tri skip_ws(size_t& pos) const;
  Tri read_name(size_t pos, std::string* name, size_t* end) const;
  Tri param_close_is_real(size_t after);
  Tri function_close_is_real(size_t after) const;
  Tri call_close_is_real(size_t after) const;
  bool output_ends_in_a_tag(size_t p) const;
  Tri undeclared_param_closes_cleanly(size_t value_start);

  void emit_content(std::string_view s, std::vector<ToolEvent>& out);
  void start_call(const std::string& name, std::vector<ToolEvent>& out);
  void emit_args(std::string_view s, std::vector<ToolEvent>& out);
  void open_param(const std::string& name, std::vector<ToolEvent>& out);
  void value_append(std::string_view s, std::vector<ToolEvent>& out);
  void value_close(std::vector<ToolEvent>& out);
  void close_function(std::vector<ToolEvent>& out);
  bool name_is_schema_param(const std::string& name) const;
  void consume(size_t n);

  const nlohmann::json& tools_;
  ToolParserLimits limits_;
  std::function<std::string()> make_id_;
  bool parallel_;

  std::string buf_;  // undecided input
  size_t pos_ = 0;
  bool eof_ = false;
  State state_ = State::kContent;
  bool content_line_start_ = true;
  std::string raw_hold_;  // text that becomes content if a tentative call turns out not to be one
  std::string ws_hold_;   // whitespace after a call, dropped if another call follows

  std::string name_;  // function / parameter name being read

  // current call
  bool muted_ = false;  // parallel_tool_calls=false: calls after the first are parsed, not emitted
  int call_index_ = -1;
  int emitted_calls_ = 0;
  const nlohmann::json* props_ = nullptr;  // schema properties of the current function, or null
  std::vector<std::string> seen_params_;
  int n_params_ = 0;

  // current value
  std::string param_name_;
  ParamSpec spec_;
  bool value_fresh_ = true;
  bool value_has_call_tag_ = false;  // the value wrote a literal `<tool_call>` / `<function=`
  size_t lookahead_scanned_ = 0;     // undeclared_param_closes_cleanly progress, relative to pos_
  bool after_nl_ = true;
  bool held_nl_ = false;
  int depth_ = 0;
  bool str_open_ = false;
  std::string raw_;
  size_t value_bytes_ = 0;
  bool overflow_ = false;

  bool ended_inside_call_ = false;
  std::string error_;
};

}  // namespace ds::text
