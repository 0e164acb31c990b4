// Value typing and tool_choice rules against independent references: the expected strings below
// were produced by Python 3 itself (json.loads / ast.literal_eval / json.dumps(ensure_ascii=False))
// running vLLM's qwen3_coder `_convert_param_value` rules, not by this code.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "deltaserve/text/parsers/tool_choice.h"
#include "deltaserve/text/parsers/tool_parser.h"

namespace ds::text {
namespace {

struct ValueCase {
  const char* raw;
  const char* type;
  const char* expected;
};

const ValueCase kValueCases[] = {
    {"42", "integer", "42"},
    {" 42 ", "integer", "42"},
    {"-0", "integer", "0"},
    {"007", "integer", "7"},
    {"1_000", "integer", "1000"},
    {"1__0", "integer", "\"1__0\""},
    {"4.0", "integer", "\"4.0\""},
    {"abc", "integer", "\"abc\""},
    {"+12", "integer", "12"},
    {"123456789012345678901234567890", "integer", "123456789012345678901234567890"},
    {"3.14", "number", "3.14"},
    {"3.0", "number", "3"},
    {"1e16", "number", "10000000000000000"},
    {"1.5e-7", "number", "1.5e-07"},
    {"0.0001", "number", "0.0001"},
    {"0.00001", "number", "1e-05"},
    {"-2.50", "float", "-2.5"},
    {"1e300", "number",
     "1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375080447864043"
     "7044438328838781769425232353604305756447921847867069828483872009265758037378302337947880900593689532349"
     "70799945081119038967640880074652742780142494579258788820056842838115669472196386865459400540160"},
    {"nan", "number", "\"nan\""},
    {".5", "number", "0.5"},
    {"5.", "number", "5"},
    {"1_0.5", "number", "10.5"},
    {"0.1", "number", "0.1"},
    {"123456.789", "number", "123456.789"},
    {"1e22", "number", "10000000000000000000000"},
    {"x", "number", "\"x\""},
    {"true", "boolean", "true"},
    {"True", "boolean", "true"},
    {"yes", "boolean", "false"},
    {"FALSE", "boolean", "false"},
    {"null", "integer", "null"},
    {"None", "object", "null"},
    {"NULL", "boolean", "null"},
    {"null", "string", "\"null\""},
    {"{\"a\": 1, \"b\": [1, 2.5, \"x\"]}", "object", "{\"a\": 1, \"b\": [1, 2.5, \"x\"]}"},
    {"{'a': 1, 'b': (1, 2)}", "object", "{\"a\": 1, \"b\": [1, 2]}"},
    {"[1, 'two', None, True]", "array", "[1, \"two\", null, true]"},
    {"\"{'k': 'v'}\"", "object", "{\"k\": \"v\"}"},
    {"{\"a\": 1, \"a\": 2}", "object", "{\"a\": 2}"},
    {"{\"x\": 1e400}", "object", "{\"x\": Infinity}"},
    {"{\"u\": \"\\u00e9\\ud83d\\ude00\"}", "object",
     "{\"u\": \"\xc3"
     "\xa9"
     "\xf0"
     "\x9f"
     "\x98"
     "\x80"
     "\"}"},
    {"{'t': '\\t\\n\\x41'}", "dict", "{\"t\": \"\\t\\nA\"}"},
    {"not json", "object", "\"not json\""},
    {"[1, 2,]", "array", "[1, 2]"},
    {"{1: 'a', 2.5: 'b', None: 'c', True: 'd'}", "object", "{\"1\": \"d\", \"2.5\": \"b\", \"null\": \"c\"}"},
    {"{\"s\": \"caf\xc3"
     "\xa9"
     " \\\"q\\\"\"}",
     "object",
     "{\"s\": \"caf\xc3"
     "\xa9"
     " \\\"q\\\"\"}"},
    {"[]", "list", "[]"},
    {"{}", "object", "{}"},
    {"[1e5, 2E-3, -0.0]", "array", "[100000.0, 0.002, -0.0]"},
    {"0x1F", "other_type", "31"},
    {"'hello'", "other_type", "\"hello\""},
    {"[1,2]", "other_type", "[1, 2]"},
    {"hello", "other_type", "\"hello\""},
    {"-5", "other_type", "-5"},
    {"3.25", "other_type", "3.25"},
    {"line1\nline2", "string", "\"line1\\nline2\""},
    {"tab\there", "string", "\"tab\\there\""},
    {"ctrl\x01"
     "char",
     "string", "\"ctrl\\u0001char\""},
    {"back\\slash \"q\"", "string", "\"back\\\\slash \\\"q\\\"\""},
    {"uni caf\xc3"
     "\xa9"
     " \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "",
     "string",
     "\"uni caf\xc3"
     "\xa9"
     " \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "\""},
    {"'a' 'b'", "object", "\"ab\""},
    {"r'\\d'", "other_type", "\"\\\\d\""},
    {"'''tri\nple'''", "other_type", "\"tri\\nple\""},
};

TEST(ParserValues, MatchesPythonReference) {
  for (const auto& c : kValueCases) {
    const nlohmann::json props = {{"p", {{"type", c.type}}}};
    const ParamSpec spec = param_spec(&props, "p");
    EXPECT_EQ(convert_param_value(c.raw, spec), c.expected) << "raw=" << c.raw << " type=" << c.type;
  }
}

TEST(ParserValues, SchemaShapes) {
  const nlohmann::json props = nlohmann::json::parse(R"({
    "a": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
    "b": {"type": ["number", "null"]},
    "c": {"oneOf": [{"type": "boolean"}]},
    "d": {"enum": ["x", "y"]},
    "e": {"type": "null"},
    "f": {"type": "string"}
  })");
  EXPECT_EQ(param_spec(&props, "a").kind, ParamKind::kInteger);
  EXPECT_TRUE(param_spec(&props, "a").allows_null);
  EXPECT_EQ(param_spec(&props, "b").kind, ParamKind::kNumber);
  EXPECT_TRUE(param_spec(&props, "b").allows_null);
  EXPECT_EQ(param_spec(&props, "c").kind, ParamKind::kBoolean);
  EXPECT_EQ(param_spec(&props, "d").kind, ParamKind::kString);  // no type: string
  EXPECT_TRUE(param_spec(&props, "e").allows_null);
  EXPECT_FALSE(param_spec(&props, "f").allows_null);
  EXPECT_EQ(param_spec(&props, "missing").kind, ParamKind::kString);
  EXPECT_EQ(param_spec(nullptr, "x").kind, ParamKind::kString);
  EXPECT_EQ(convert_param_value("None", param_spec(&props, "b")), "null");
  EXPECT_EQ(convert_param_value("None", param_spec(&props, "f")), "\"None\"");
}

TEST(ParserValues, FloatRepr) {
  EXPECT_EQ(py_float_repr(0.1), "0.1");
  EXPECT_EQ(py_float_repr(1e16), "1e+16");
  EXPECT_EQ(py_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(py_float_repr(0.0001), "0.0001");
  EXPECT_EQ(py_float_repr(0.00001), "1e-05");
  EXPECT_EQ(py_float_repr(-2.5), "-2.5");
  EXPECT_EQ(py_float_repr(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(py_float_repr(1e-300), "1e-300");
}

TEST(ParserValues, MalformedLiteralsNeverThrow) {
  for (const char* s :
       {"{", "[", "{'a':", "'unterminated", "\"\\u12\"", "[[[[[[[[", "{1:}", "0x", "1e", "--1", "()", "(1,)",
        "{,}", "\xff\xfe", "'\\N{DASH}'", "b'x'", "f'x'", "1j", "{1, 2}"}) {
    (void)py_json_loads_dumps(s);
    (void)py_literal_eval_dumps(s);
  }
  EXPECT_EQ(py_literal_eval_dumps("(1,)").value_or("?"), "[1]");
  EXPECT_EQ(py_literal_eval_dumps("(1)").value_or("?"), "1");
  EXPECT_FALSE(py_literal_eval_dumps("{1, 2}"));  // a set is not JSON
  EXPECT_FALSE(py_literal_eval_dumps("1j"));
  std::string deep(100000, '[');
  EXPECT_FALSE(py_json_loads_dumps(deep));  // depth-limited, no stack overflow
  EXPECT_FALSE(py_literal_eval_dumps(deep));
}

// ---- tool_choice ----

nlohmann::json req(const char* s) {
  return nlohmann::json::parse(s);
}
const char* kTools = R"("tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}])";

TEST(ParserToolChoice, Rules) {
  const std::string with_tools = std::string("{") + kTools;
  auto msg = [](const Status& s) { return s.message(); };
  EXPECT_TRUE(validate_tool_choice(req("{}"), false, "").is_ok());
  EXPECT_FALSE(tool_parsing_enabled(req("{}"), true, "qwen3_coder"));
  // tools imply "auto", which needs the flags
  EXPECT_EQ(msg(validate_tool_choice(req((with_tools + "}").c_str()), false, "")),
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set");
  EXPECT_TRUE(validate_tool_choice(req((with_tools + "}").c_str()), true, "qwen3_coder").is_ok());
  EXPECT_TRUE(tool_parsing_enabled(req((with_tools + "}").c_str()), true, "qwen3_xml"));
  // none: allowed, no parsing
  const auto none = req((with_tools + R"(, "tool_choice": "none"})").c_str());
  EXPECT_TRUE(validate_tool_choice(none, false, "").is_ok());
  EXPECT_FALSE(tool_parsing_enabled(none, true, "qwen3_coder"));
  EXPECT_TRUE(validate_tool_choice(req(R"({"tool_choice": "none"})"), false, "").is_ok());
  // tool_choice without tools
  EXPECT_EQ(msg(validate_tool_choice(req(R"({"tool_choice": "auto"})"), true, "qwen3_coder")),
            "When using `tool_choice`, `tools` must be set.");
  // required / named: need constrained decoding
  const Status r = validate_tool_choice(req((with_tools + R"(, "tool_choice": "required"})").c_str()), true,
                                        "qwen3_coder");
  EXPECT_EQ(r.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.message().find("constrained decoding"), std::string::npos);
  EXPECT_TRUE(validate_tool_choice(req(R"({"tools": [], "tool_choice": "required"})"), false, "").is_ok());
  EXPECT_EQ(
      msg(validate_tool_choice(
          req((with_tools + R"(, "tool_choice": {"type": "function", "function": {"name": "g"}}})").c_str()),
          true, "qwen3_coder")),
      "The tool specified in `tool_choice` does not match any of the specified `tools`");
  EXPECT_NE(msg(validate_tool_choice(
                    req((with_tools + R"(, "tool_choice": {"type": "function", "function": {"name": "f"}}})")
                            .c_str()),
                    true, "qwen3_coder"))
                .find("constrained decoding"),
            std::string::npos);
  EXPECT_NE(msg(validate_tool_choice(req((with_tools + R"(, "tool_choice": "sometimes"})").c_str()), true,
                                     "qwen3_coder"))
                .find("Invalid value for `tool_choice`"),
            std::string::npos);
  EXPECT_NE(msg(validate_tool_choice(req((with_tools + R"(, "tool_choice": {"type": "function"}})").c_str()),
                                     true, "qwen3_coder"))
                .find("Expected field `function`"),
            std::string::npos);
  EXPECT_FALSE(validate_tool_choice(req("[1]"), true, "qwen3_coder").is_ok());
}

TEST(ParserToolChoice, StartupFlags) {
  EXPECT_TRUE(validate_tool_parser_flags(false, "").is_ok());
  EXPECT_TRUE(validate_tool_parser_flags(true, "qwen3_coder").is_ok());
  EXPECT_TRUE(validate_tool_parser_flags(false, "qwen3_xml").is_ok());
  EXPECT_EQ(validate_tool_parser_flags(true, "").message(),
            "Error: --enable-auto-tool-choice requires --tool-call-parser");
  EXPECT_NE(validate_tool_parser_flags(true, "hermes").message().find("invalid tool call parser"),
            std::string::npos);
}

}  // namespace
}  // namespace ds::text
