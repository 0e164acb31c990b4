// Filters, tests, attribute/item lookup (the sandbox's getattr/getitem), methods of str/dict/list
// and the globals of the Jinja engine (text/jinja.h). Internal to the engine.
#pragma once

#include <string>
#include <vector>

#include "deltaserve/text/jinja/jinja_value.h"

namespace ds::text::jinja {

// Per-render limits seen by builtins that build strings or lists (set by the evaluator).
struct BuildLimits {
  size_t max_string_bytes = 0;
  size_t max_list_items = 0;
};
void set_build_limits(const BuildLimits& l);
void check_string_size(size_t n);
void check_list_size(size_t n);

[[noreturn]] void raise_undefined(const Value& u);  // UndefinedError for a misused Undefined
std::string describe_object(const Value& v);        // "'dict object'" as jinja2 words it

Value apply_filter(const std::string& name, const Value& v, CallArgs& args);
bool apply_test(const std::string& name, const Value& v, CallArgs& args);
Value get_attr(const Value& obj, const std::string& attr);
Value get_item(const Value& obj, const Value& key);
std::vector<Value> iterate(const Value& v);  // what `for x in v` walks
bool contains(const Value& container, const Value& item);
Value binary_op(const std::string& op, const Value& a, const Value& b);
void install_globals(Dict& globals);

}  // namespace ds::text::jinja
