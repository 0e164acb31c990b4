// Attribute/item lookup as jinja2's sandbox does it, operators, iteration, tests and globals.
// Filters are in jinja_filters.cpp, str/dict/list methods in jinja_methods.cpp.
// GCC 12 reports a false -Wrestrict on `"literal" + std::string` (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include <chrono>
#include <cmath>
#include <ctime>

#include "deltaserve/text/jinja/jinja_builtins.h"

namespace ds::text::jinja {

Value get_method(const Value& obj, const std::string& name);  // jinja_methods.cpp

namespace {
thread_local BuildLimits g_limits{32u << 20, 1'000'000};
}

void set_build_limits(const BuildLimits& l) { g_limits = l; }
void check_string_size(size_t n) {
  if (n > g_limits.max_string_bytes)
    throw TemplateError("template built a string larger than " + std::to_string(g_limits.max_string_bytes) + " bytes");
}
void check_list_size(size_t n) {
  if (n > g_limits.max_list_items)
    throw TemplateError("template built a list longer than " + std::to_string(g_limits.max_list_items) + " items");
}

void raise_undefined(const Value& u) {
  const std::string& h = u.undefined_hint();
  throw TemplateError(h.empty() ? "value is undefined" : h);
}

std::string describe_object(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNamespace: return "'jinja2.utils.Namespace object'";
    case Value::Kind::kNone: return "'None'";
    default: return "'" + v.type_name() + " object'";
  }
}

Value get_attr(const Value& obj, const std::string& attr) {
  if (obj.is_undefined()) raise_undefined(obj);
  // Python attributes first (methods of str/dict/list), then item lookup, as the sandbox does.
  Value m = get_method(obj, attr);
  if (!m.is_undefined()) return m;
  if (obj.is_dict() || obj.is_namespace()) {
    if (const Value* v = obj.map().find(attr)) return *v;
  }
  return Value::undefined(describe_object(obj) + " has no attribute '" + attr + "'");
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) raise_undefined(obj);
  if (obj.is_dict()) {
    if (key.is_string()) {
      if (const Value* v = obj.map().find(key.str())) return *v;
      Value m = get_method(obj, key.str());
      if (!m.is_undefined()) return m;
    }
    return Value::undefined(describe_object(obj) + " has no attribute '" + py_str(key) + "'");
  }
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      int64_t n = static_cast<int64_t>(obj.items().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.items()[i];
    } else {
      std::u32string u = utf8_decode(obj.str());
      int64_t n = static_cast<int64_t>(u.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value::string(utf8_encode(u.substr(i, 1)));
    }
    return Value::undefined(describe_object(obj) + " has no element " + py_str(key));
  }
  if (key.is_string()) return get_attr(obj, key.str());
  return Value::undefined(describe_object(obj) + " has no element " + py_repr(key));
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return {};
    case Value::Kind::kList: return v.items();
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& [k, e] : v.map().entries) keys.push_back(Value::string(k));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (char32_t c : utf8_decode(v.str())) chars.push_back(Value::string(utf8_encode(std::u32string(1, c))));
      return chars;
    }
    default: throw TemplateError("'" + v.type_name() + "' object is not iterable");
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kString:
      if (!item.is_string())
        throw TemplateError("'in <string>' requires string as left operand, not " + item.type_name());
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const auto& x : container.items())
        if (py_equal(x, item)) return true;
      return false;
    case Value::Kind::kDict:
      if ((item.is_list() && !item.is_tuple()) || item.is_dict() || item.is_namespace())
        throw TemplateError("unhashable type: '" + item.type_name() + "'");
      return item.is_string() && container.map().find(item.str()) != nullptr;
    default: throw TemplateError("argument of type '" + container.type_name() + "' is not iterable");
  }
}

namespace {

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) raise_undefined(a);
  if (b.is_undefined()) raise_undefined(b);
  throw TemplateError("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() +
                      "'");
}

int64_t checked(bool overflow, int64_t v) {
  if (overflow) throw TemplateError("integer overflow in template arithmetic");
  return v;
}

Value repeat(const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    check_string_size(seq.str().size() * static_cast<size_t>(n));
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value::string(std::move(out));
  }
  check_list_size(seq.items().size() * static_cast<size_t>(n));
  List out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
  return Value::list(std::move(out), seq.is_tuple());
}

std::string percent_format(const std::string& fmt, const Value& args);

}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  const bool nums = a.is_number() && b.is_number();
  const bool ints = nums && !a.is_float() && !b.is_float();
  if (op == "+") {
    if (ints) {
      int64_t r = 0;
      bool overflow = __builtin_add_overflow(a.as_int(), b.as_int(), &r);
      return Value::integer(checked(overflow, r));
    }
    if (nums) return Value::floating(a.as_float() + b.as_float());
    if (a.is_string() && b.is_string()) {
      check_string_size(a.str().size() + b.str().size());
      // Markup + str escapes the plain side (markupsafe), which `|safe` values can meet.
      std::string joined;
      if (a.is_markup() != b.is_markup()) {
        joined.append(a.is_markup() ? a.str() : html_escape(a.str()));
        joined.append(b.is_markup() ? b.str() : html_escape(b.str()));
        return Value::string(std::move(joined), true);
      }
      joined.reserve(a.str().size() + b.str().size());
      joined.append(a.str());
      joined.append(b.str());
      return Value::string(std::move(joined), a.is_markup());
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      check_list_size(a.items().size() + b.items().size());
      List r = a.items();
      r.insert(r.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(r), a.is_tuple());
    }
    if (a.is_string() || b.is_string()) {
      if (a.is_undefined()) raise_undefined(a);
      if (b.is_undefined()) raise_undefined(b);
      throw TemplateError(a.is_string() ? "can only concatenate str (not \"" + b.type_name() + "\") to str"
                                        : "unsupported operand type(s) for +: '" + a.type_name() + "' and 'str'");
    }
    unsupported(op, a, b);
  }
  if (op == "-") {
    if (ints) {
      int64_t r = 0;
      bool overflow = __builtin_sub_overflow(a.as_int(), b.as_int(), &r);
      return Value::integer(checked(overflow, r));
    }
    if (nums) return Value::floating(a.as_float() - b.as_float());
    unsupported(op, a, b);
  }
  if (op == "*") {
    if (ints) {
      int64_t r = 0;
      bool overflow = __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
      return Value::integer(checked(overflow, r));
    }
    if (nums) return Value::floating(a.as_float() * b.as_float());
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) return repeat(a, b.as_int());
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) return repeat(b, a.as_int());
    unsupported(op, a, b);
  }
  if (op == "/") {
    if (!nums) unsupported(op, a, b);
    if (b.as_float() == 0.0) throw TemplateError("division by zero");
    return Value::floating(a.as_float() / b.as_float());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) return Value::string(percent_format(a.str(), b));
    if (!nums) unsupported(op, a, b);
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (y == 0) throw TemplateError(op == "%" ? "integer modulo by zero" : "integer division or modulo by zero");
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {
        --q;
        r += y;
      }
      return Value::integer(op == "//" ? q : r);
    }
    // CPython's float_divmod.
    double x = a.as_float(), y = b.as_float();
    if (y == 0.0) throw TemplateError("float division by zero");
    double mod = std::fmod(x, y);
    double div = (x - mod) / y;
    if (mod != 0) {
      if ((y < 0) != (mod < 0)) {
        mod += y;
        div -= 1.0;
      }
    } else {
      mod = std::copysign(0.0, y);
    }
    double floordiv = 0.0;
    if (div != 0) {
      floordiv = std::floor(div);
      if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
      floordiv = std::copysign(0.0, x / y);
    }
    return Value::floating(op == "%" ? mod : floordiv);
  }
  if (op == "**") {
    if (!nums) unsupported(op, a, b);
    if (ints && b.as_int() >= 0) {
      int64_t r = 1, base = a.as_int();
      for (int64_t i = 0; i < b.as_int(); ++i) {
        if (__builtin_mul_overflow(r, base, &r)) throw TemplateError("integer overflow in template arithmetic");
        if (r == 0 || r == 1) break;
      }
      return Value::integer(r);
    }
    return Value::floating(std::pow(a.as_float(), b.as_float()));
  }
  throw TemplateError("unknown operator " + op);
}

namespace {

// printf-style `str % args` for %s %r %d %i %f %% (what templates use).
std::string percent_format(const std::string& fmt, const Value& args) {
  std::vector<Value> list = args.is_tuple() ? args.items() : std::vector<Value>{args};
  size_t k = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) throw TemplateError("incomplete format");
    char c = fmt[i];
    if (c == '%') {
      out += '%';
      continue;
    }
    if (k >= list.size()) throw TemplateError("not enough arguments for format string");
    const Value& v = list[k++];
    if (c == 's') out += py_str(v);
    else if (c == 'r') out += py_repr(v);
    else if (c == 'd' || c == 'i') {
      if (!v.is_number()) throw TemplateError("%d format: a real number is required, not " + v.type_name());
      out += std::to_string(v.is_float() ? static_cast<int64_t>(v.as_float()) : v.as_int());
    } else if (c == 'f') {
      char b[64];
      std::snprintf(b, sizeof(b), "%f", v.as_float());
      out += b;
    } else {
      throw TemplateError(std::string("unsupported format character '") + c + "'");
    }
  }
  // Python treats a non-tuple container argument as a mapping and does not complain about it.
  if (k < list.size() && !(args.is_list() && !args.is_tuple()) && !args.is_dict() && !args.is_undefined())
    throw TemplateError("not all arguments converted during string formatting");
  return out;
}

bool test_number(const Value& v) { return v.is_number(); }

}  // namespace

bool apply_test(const std::string& name, const Value& v, CallArgs& args) {
  auto arg = [&](size_t i) -> const Value& {
    const Value* a = args.get(i, "other");
    if (!a) throw TemplateError("test '" + name + "' needs an argument");
    return *a;
  };
  static const char* kNoArg[] = {"defined", "undefined", "none", "boolean", "true", "false", "integer", "float",
                                 "number", "string", "mapping", "iterable", "sequence", "callable", "escaped",
                                 "odd", "even", "lower", "upper"};
  for (const char* n : kNoArg)
    if (name == n && (!args.pos.empty() || !args.kw.empty()))
      throw TemplateError("test '" + name + "' takes no arguments");
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return test_number(v);
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "callable") return v.is_callable();
  if (name == "escaped") return v.is_markup();
  if (name == "odd" || name == "even") {  // jinja2: value % 2 == 1 / value % 2 == 0
    Value r = binary_op("%", v, Value::integer(2));
    return py_equal(r, Value::integer(name == "odd" ? 1 : 0));
  }
  if (name == "divisibleby") {
    const Value& d = arg(0);
    if (d.as_int() == 0) throw TemplateError("integer modulo by zero");
    return v.as_int() % d.as_int() == 0;
  }
  if (name == "lower") return v.is_string() && py_lower(v.str()) == v.str();
  if (name == "upper") return v.is_string() && py_upper(v.str()) == v.str();
  if (name == "eq" || name == "equalto" || name == "==") return py_equal(v, arg(0));
  if (name == "ne" || name == "!=") return !py_equal(v, arg(0));
  if (name == "sameas") {
    const Value& o = arg(0);
    if (v.is_none() || v.is_bool() || o.is_none() || o.is_bool()) return v.kind() == o.kind() && py_equal(v, o);
    return false;
  }
  if (name == "in") return contains(arg(0), v);
  if (name == "lt" || name == "lessthan" || name == "<") return py_compare(v, arg(0)) < 0;
  if (name == "le" || name == "<=") return py_compare(v, arg(0)) <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return py_compare(v, arg(0)) > 0;
  if (name == "ge" || name == ">=") return py_compare(v, arg(0)) >= 0;
  throw TemplateError("No test named '" + name + "'.");
}

void install_globals(Dict& g) {
  g.set("raise_exception", Value::callable("raise_exception", [](CallArgs& a) -> Value {
          const Value* m = a.get(0, "message");
          throw TemplateError(m ? py_str(*m) : std::string("raise_exception called"));
        }));
  g.set("strftime_now", Value::callable("strftime_now", [](CallArgs& a) -> Value {
          const Value* f = a.get(0, "format");
          if (!f || !f->is_string()) throw TemplateError("strftime_now() needs a format string");
          std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
          std::tm tm{};
          localtime_r(&now, &tm);
          char buf[512];
          size_t n = std::strftime(buf, sizeof(buf), f->str().c_str(), &tm);
          return Value::string(std::string(buf, n));
        }));
  g.set("namespace", Value::callable("namespace", [](CallArgs& a) -> Value {
          Dict d;
          for (const auto& p : a.pos) {
            if (!p.is_dict() && !p.is_namespace()) throw TemplateError("namespace() positional argument must be a dict");
            for (const auto& [k, v] : p.map().entries) d.set(k, v);
          }
          for (const auto& [k, v] : a.kw) {
            if (!k.empty() && k[0] == '_')
              throw TemplateError("Chat templates cannot store underscore-prefixed attributes on a namespace");
            d.set(k, v);
          }
          return Value::ns(std::move(d));
        }));
  g.set("dict", Value::callable("dict", [](CallArgs& a) -> Value {
          Dict d;
          for (const auto& p : a.pos) {
            if (!p.is_dict()) throw TemplateError("dict() positional argument must be a mapping");
            for (const auto& [k, v] : p.map().entries) d.set(k, v);
          }
          for (const auto& [k, v] : a.kw) d.set(k, v);
          return Value::dict(std::move(d));
        }));
  g.set("range", Value::callable("range", [](CallArgs& a) -> Value {
          int64_t start = 0, stop = 0, step = 1;
          for (const auto& p : a.pos)
            if (!p.is_int() && !p.is_bool()) throw TemplateError("range() arguments must be integers");
          if (a.pos.size() == 1) stop = a.pos[0].as_int();
          else if (a.pos.size() >= 2) {
            start = a.pos[0].as_int();
            stop = a.pos[1].as_int();
            if (a.pos.size() >= 3) step = a.pos[2].as_int();
          } else {
            throw TemplateError("range expected at least 1 argument, got 0");
          }
          if (step == 0) throw TemplateError("range() arg 3 must not be zero");
          double count = std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step));
          if (count > 0) check_list_size(static_cast<size_t>(count));
          List out;
          for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(Value::integer(i));
          return Value::list(std::move(out));
        }));
}

}  // namespace ds::text::jinja
