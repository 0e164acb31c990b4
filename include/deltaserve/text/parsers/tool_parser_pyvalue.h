// Internal to the tool parser (tool_parser_values.cpp): the Python values json.loads and
// ast.literal_eval return, reduced to what json.dumps can write, with readers for both syntaxes and
// a writer in json.dumps(ensure_ascii=False) format.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ds::text::py {

struct PyKeyVal;

struct PyVal {
  enum Kind { kNull, kBool, kInt, kFloat, kStr, kList, kDict } kind = kNull;
  bool b = false;
  std::string text;  // kInt: canonical digits; kStr: the string
  double f = 0;
  std::vector<PyVal> items;
  // Not std::pair<std::string, PyVal>: a pair needs PyVal complete here, which clang with
  // libstdc++ 12 enforces.
  std::vector<PyKeyVal> kv;
};

struct PyKeyVal {
  std::string first;
  PyVal second;
};

bool json_loads(std::string_view text, PyVal& out);    // Python json.loads (strict)
bool literal_eval(std::string_view text, PyVal& out);  // ast.literal_eval of JSON-able literals
std::string dumps(const PyVal& v);                     // json.dumps(v, ensure_ascii=False)
std::string whole_double_to_int_string(double v);      // Python int(float) for a whole float

}  // namespace ds::text::py
