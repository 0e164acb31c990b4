// Values of the Jinja engine (text/jinja.h): Python-like dynamic values with the semantics Python
// jinja2 gives them in Hugging Face's sandbox: insertion-ordered dicts, immutable lists, mutable
// namespaces, jinja2's default Undefined, Markup strings from `|safe`, and Python str()/repr()/json.
// Internal to the engine; chat code only meets it through jinja.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ds::text::jinja {

// Raised inside the engine; jinja.h turns it into a Status at the API boundary.
struct TemplateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Value;
struct Dict;
struct CallArgs;
using List = std::vector<Value>;
using NativeFn = std::function<Value(CallArgs&)>;

class Value {
 public:
  enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };

  Value() = default;  // Undefined
  static Value undefined(std::string hint = {});
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value floating(double f);
  static Value string(std::string s, bool markup = false);
  static Value list(List items, bool tuple = false);
  static Value dict(Dict d);
  static Value ns(Dict d);
  static Value callable(std::string name, NativeFn fn);
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }
  bool is_markup() const { return kind_ == Kind::kString && markup_; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }
  double as_float() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(as_int()); }
  const std::string& str() const { return *s_; }  // kString only
  const List& items() const { return *l_; }       // kList only
  const Dict& map() const { return *d_; }         // kDict / kNamespace
  Dict& mutable_ns() const { return *d_; }        // kNamespace only
  const std::string& undefined_hint() const;
  const std::string& callable_name() const;
  Value call(CallArgs& args) const;

  bool truthy() const;
  std::string type_name() const;  // Python-ish type name for error messages

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  bool markup_ = false;
  bool tuple_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;  // string text, or undefined hint, or callable name
  std::shared_ptr<const List> l_;
  std::shared_ptr<Dict> d_;
  std::shared_ptr<const NativeFn> fn_;
};

// Insertion-ordered string-keyed map (Python dict order). Non-string keys are not needed by chat
// templates; dict literals with other keys are rejected with a clear error.
struct Dict {
  std::vector<std::pair<std::string, Value>> entries;
  std::unordered_map<std::string, size_t> index;
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
  size_t size() const { return entries.size(); }
};

// Owns the namespaces created while it lives (one render) and empties them at the end, so that
// namespaces referring to each other are freed.
class NamespaceArena {
 public:
  NamespaceArena();
  ~NamespaceArena();
  NamespaceArena(const NamespaceArena&) = delete;
  NamespaceArena& operator=(const NamespaceArena&) = delete;

 private:
  std::vector<std::shared_ptr<Dict>> owned_;
  std::vector<std::shared_ptr<Dict>>* prev_;
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* kwarg(const std::string& name) const;
  // Positional index i, else keyword `name`, else nullptr.
  const Value* get(size_t i, const std::string& name) const;
};

// Python semantics shared by the evaluator and the builtins.
std::string py_str(const Value& v);   // str(v): what {{ v }} prints
std::string py_repr(const Value& v);  // repr(v)
std::string py_float_repr(double d);
std::string to_json(const Value& v, int indent, bool has_indent, const std::string& item_sep,
                    const std::string& key_sep, bool sort_keys, bool ensure_ascii);
bool py_equal(const Value& a, const Value& b);
int py_compare(const Value& a, const Value& b);  // <0, 0, >0; throws TemplateError if unorderable
std::string html_escape(const std::string& s);

// UTF-8 helpers: Python strings index by code point.
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
bool py_isspace(char32_t c);
std::string py_strip(const std::string& s, bool left, bool right, const std::string* chars);
std::string py_lower(const std::string& s);
std::string py_upper(const std::string& s);

}  // namespace ds::text::jinja
