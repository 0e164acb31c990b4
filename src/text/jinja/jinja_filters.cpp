// Jinja filters with jinja2 3.1's semantics, and `tojson` as transformers overrides it:
// json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
// GCC 12 reports a false -Wrestrict on `"literal" + std::string` (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include <algorithm>
#include <cmath>

#include "deltaserve/text/jinja/jinja_builtins.h"

namespace ds::text::jinja {
namespace {

// environment.getitem over a dotted attribute path, as jinja2's make_attrgetter does.
Value attr_path(const Value& item, const std::string& path) {
  Value cur = item;
  size_t b = 0;
  while (true) {
    size_t e = path.find('.', b);
    std::string part = path.substr(b, e == std::string::npos ? std::string::npos : e - b);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    cur = get_item(cur, digits ? Value::integer(std::stoll(part)) : Value::string(part));
    if (e == std::string::npos) return cur;
    b = e + 1;
  }
}

Value ignore_case(const Value& v, bool case_sensitive) {
  return (!case_sensitive && v.is_string()) ? Value::string(py_lower(v.str())) : v;
}

int64_t len_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return static_cast<int64_t>(utf8_decode(v.str()).size());
    case Value::Kind::kList: return static_cast<int64_t>(v.items().size());
    case Value::Kind::kDict: return static_cast<int64_t>(v.map().size());
    default: throw TemplateError("object of type '" + v.type_name() + "' has no len()");
  }
}

bool flag(const CallArgs& a, size_t i, const char* name, bool dflt) {
  const Value* v = a.get(i, name);
  return v ? v->truthy() : dflt;
}

// Python int(str, base): optional sign, underscores between digits, surrounding whitespace, and a
// matching 0x/0o/0b prefix.
bool parse_int(const std::string& text, int base, int64_t& out) {
  std::string s = py_strip(text, true, true, nullptr);
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (i + 1 < s.size() && s[i] == '0') {
    char p = static_cast<char>(s[i + 1] | 0x20);
    if ((p == 'x' && base == 16) || (p == 'o' && base == 8) || (p == 'b' && base == 2)) i += 2;
  }
  if (i >= s.size()) return false;
  int64_t v = 0;
  bool any = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_' && any && i + 1 < s.size()) continue;
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'z') ? c - 'a' + 10 : (c >= 'A' && c <= 'Z') ? c - 'A' + 10 : 99;
    if (d >= base) return false;
    if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v)) return false;
    any = true;
  }
  out = neg ? -v : v;
  return any;
}

bool parse_float(const std::string& text, double& out) {
  std::string s = py_strip(text, true, true, nullptr);
  if (s.empty()) return false;
  try {
    size_t n = 0;
    out = std::stod(s, &n);
    return n == s.size();
  } catch (const std::exception&) {
    return false;
  }
}

Value do_tojson(const Value& v, CallArgs& a) {
  bool ensure_ascii = flag(a, 0, "ensure_ascii", false);
  const Value* indent = a.get(1, "indent");
  const Value* seps = a.get(2, "separators");
  bool sort_keys = flag(a, 3, "sort_keys", false);
  bool has_indent = indent && !indent->is_none();
  int ind = has_indent ? static_cast<int>(std::max<int64_t>(0, indent->as_int())) : 0;
  std::string item_sep = has_indent ? "," : ", ", key_sep = ": ";
  if (seps && !seps->is_none()) {
    if (!seps->is_list() || seps->items().size() != 2 || !seps->items()[0].is_string() ||
        !seps->items()[1].is_string())
      throw TemplateError("tojson: separators must be a (item_separator, key_separator) pair");
    item_sep = seps->items()[0].str();
    key_sep = seps->items()[1].str();
  }
  std::string out = to_json(v, ind, has_indent, item_sep, key_sep, sort_keys, ensure_ascii);
  check_string_size(out.size());
  return Value::string(std::move(out));
}

std::vector<Value> sorted(std::vector<Value> items, bool reverse, bool case_sensitive, const Value* attribute) {
  auto key = [&](const Value& x) {
    Value k = attribute && !attribute->is_none() ? attr_path(x, py_str(*attribute)) : x;
    return ignore_case(k, case_sensitive);
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? py_compare(key(y), key(x)) < 0 : py_compare(key(x), key(y)) < 0;
  });
  return items;
}

// select / reject / selectattr / rejectattr
Value select(const Value& v, CallArgs& a, bool by_attr, bool keep) {
  size_t i = 0;
  std::string attr;
  if (by_attr) {
    if (a.pos.empty()) throw TemplateError("selectattr/rejectattr need an attribute name");
    attr = py_str(a.pos[i++]);
  }
  std::string test;
  if (i < a.pos.size()) test = py_str(a.pos[i++]);
  CallArgs targs;
  targs.pos.assign(a.pos.begin() + static_cast<std::ptrdiff_t>(std::min(i, a.pos.size())), a.pos.end());
  targs.kw = a.kw;
  List out;
  if (!v.truthy()) return Value::list(std::move(out));  // jinja2: `if value:` before iterating
  for (const auto& item : iterate(v)) {
    Value x = by_attr ? attr_path(item, attr) : item;
    bool r = test.empty() ? x.truthy() : apply_test(test, x, targs);
    if (r == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, CallArgs& a) {
  if (name == "tojson") return do_tojson(v, a);
  if (name == "safe") return v.is_markup() ? v : Value::string(py_str(v), true);
  if (name == "string") return v.is_markup() ? v : Value::string(py_str(v));
  if (name == "length" || name == "count") return Value::integer(len_of(v));
  if (name == "trim") {
    const Value* chars = a.get(0, "chars");
    std::string c = chars && !chars->is_none() ? py_str(*chars) : std::string();
    return Value::string(py_strip(py_str(v), true, true, chars && !chars->is_none() ? &c : nullptr), v.is_markup());
  }
  if (name == "lower") return Value::string(py_lower(py_str(v)));
  if (name == "upper") return Value::string(py_upper(py_str(v)));
  if (name == "capitalize") {
    CallArgs none;
    return get_attr(Value::string(py_str(v)), name).call(none);
  }
  if (name == "title") {
    // jinja2's do_title: words start after runs of [-\s({[<]; first char upper, rest lower.
    std::u32string u = utf8_decode(py_str(v)), out;
    bool start = true;
    for (char32_t c : u) {
      bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
      std::string one = utf8_encode(std::u32string(1, c));
      out += sep ? std::u32string(1, c) : utf8_decode(start ? py_upper(one) : py_lower(one));
      start = sep;
    }
    return Value::string(utf8_encode(out));
  }
  if (name == "default" || name == "d") {
    const Value* dflt = a.get(0, "default_value");
    bool boolean = flag(a, 1, "boolean", false);
    if (v.is_undefined() || (boolean && !v.truthy())) return dflt ? *dflt : Value::string("");
    return v;
  }
  if (name == "first") {
    if (v.is_undefined()) return Value::undefined("No first item, sequence was empty.");
    auto items = iterate(v);
    return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
  }
  if (name == "last") {
    if (v.is_dict()) {  // dicts are reversible: the last key
      if (v.map().size() == 0) return Value::undefined("No last item, sequence was empty.");
      return Value::string(v.map().entries.back().first);
    }
    if (!v.is_list() && !v.is_string()) {
      if (v.is_undefined()) return Value::undefined("No last item, sequence was empty.");
      throw TemplateError("'" + v.type_name() + "' object is not reversible");
    }
    auto items = iterate(v);
    return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
  }
  if (name == "list") return Value::list(iterate(v));
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string u = utf8_decode(v.str());
      std::reverse(u.begin(), u.end());
      return Value::string(utf8_encode(u));
    }
    auto items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "join") {
    const Value* sep = a.get(0, "d");
    const Value* attr = a.get(1, "attribute");
    std::string s = sep ? py_str(*sep) : "", out;
    bool first = true;
    for (const auto& item : iterate(v)) {
      if (!first) out += s;
      first = false;
      out += py_str(attr && !attr->is_none() ? attr_path(item, py_str(*attr)) : item);
      check_string_size(out.size());
    }
    return Value::string(std::move(out));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::list({});
    if (!v.is_dict()) throw TemplateError("Can only get item pairs from a mapping.");
    List out;
    for (const auto& [k, x] : v.map().entries) out.push_back(Value::list({Value::string(k), x}, true));
    return Value::list(std::move(out));
  }
  if (name == "dictsort") {
    if (!v.is_dict()) throw TemplateError("dictsort needs a mapping");
    bool cs = flag(a, 0, "case_sensitive", false);
    const Value* by = a.get(1, "by");
    bool by_value = by && py_str(*by) == "value";
    bool rev = flag(a, 2, "reverse", false);
    List pairs;
    for (const auto& [k, x] : v.map().entries) pairs.push_back(Value::list({Value::string(k), x}, true));
    std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& p, const Value& q) {
      Value x = ignore_case(p.items()[by_value ? 1 : 0], cs), y = ignore_case(q.items()[by_value ? 1 : 0], cs);
      return rev ? py_compare(y, x) < 0 : py_compare(x, y) < 0;
    });
    return Value::list(std::move(pairs));
  }
  if (name == "map") {
    List out;
    if (!v.truthy()) return Value::list(std::move(out));  // jinja2: `if value:` before iterating
    const Value* attr = a.kwarg("attribute");
    if (attr) {
      const Value* dflt = a.kwarg("default");
      for (const auto& item : iterate(v)) {
        Value x = attr_path(item, py_str(*attr));
        out.push_back(x.is_undefined() && dflt ? *dflt : x);
      }
      return Value::list(std::move(out));
    }
    if (a.pos.empty()) return Value::list(iterate(v));
    std::string f = py_str(a.pos[0]);
    CallArgs fargs;
    fargs.pos.assign(a.pos.begin() + 1, a.pos.end());
    fargs.kw = a.kw;
    for (const auto& item : iterate(v)) out.push_back(apply_filter(f, item, fargs));
    return Value::list(std::move(out));
  }
  if (name == "select") return select(v, a, false, true);
  if (name == "reject") return select(v, a, false, false);
  if (name == "selectattr") return select(v, a, true, true);
  if (name == "rejectattr") return select(v, a, true, false);
  if (name == "replace") {
    CallArgs m;
    m.pos = a.pos;
    return get_attr(Value::string(py_str(v)), "replace").call(m);
  }
  if (name == "int") {
    const Value* dflt = a.get(0, "default");
    const Value* base = a.get(1, "base");
    Value fallback = dflt ? *dflt : Value::integer(0);
    if (v.is_undefined()) raise_undefined(v);
    if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
    if (v.is_float()) return std::isfinite(v.as_float()) ? Value::integer(static_cast<int64_t>(v.as_float())) : fallback;
    if (v.is_string()) {
      int64_t i;
      if (parse_int(v.str(), base ? static_cast<int>(base->as_int()) : 10, i)) return Value::integer(i);
      double d;
      if (parse_float(v.str(), d) && std::isfinite(d)) return Value::integer(static_cast<int64_t>(d));
    }
    return fallback;
  }
  if (name == "float") {
    const Value* dflt = a.get(0, "default");
    if (v.is_undefined()) raise_undefined(v);
    if (v.is_number()) return Value::floating(v.as_float());
    double d;
    if (v.is_string() && parse_float(v.str(), d)) return Value::floating(d);
    return dflt ? *dflt : Value::floating(0.0);
  }
  if (name == "abs") {
    if (v.is_float()) return Value::floating(std::fabs(v.as_float()));
    if (v.is_number()) return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
    if (v.is_undefined()) raise_undefined(v);
    throw TemplateError("bad operand type for abs(): '" + v.type_name() + "'");
  }
  if (name == "round") {
    const Value* prec = a.get(0, "precision");
    const Value* method = a.get(1, "method");
    std::string m = method ? py_str(*method) : "common";
    if (v.is_undefined()) raise_undefined(v);
    if (!v.is_number()) throw TemplateError("type " + v.type_name() + " doesn't define __round__ method");
    if (!v.is_float() && (m == "common" || !method)) return Value::integer(v.as_int());  // round(int) is an int
    double p = std::pow(10.0, prec ? static_cast<double>(prec->as_int()) : 0.0);
    double x = v.as_float() * p;
    double r = m == "ceil" ? std::ceil(x) : m == "floor" ? std::floor(x) : std::nearbyint(x);  // half to even, as Python round()
    return Value::floating(r / p);
  }
  if (name == "unique") {
    bool cs = flag(a, 0, "case_sensitive", false);
    const Value* attr = a.get(1, "attribute");
    List out, seen;
    for (const auto& item : iterate(v)) {
      Value k = ignore_case(attr && !attr->is_none() ? attr_path(item, py_str(*attr)) : item, cs);
      if ((k.is_list() && !k.is_tuple()) || k.is_dict() || k.is_namespace())
        throw TemplateError("unhashable type: '" + k.type_name() + "'");
      bool dup = false;
      for (const auto& s : seen) dup |= py_equal(s, k);
      if (dup) continue;
      seen.push_back(k);
      out.push_back(item);
    }
    return Value::list(std::move(out));
  }
  if (name == "sort")
    return Value::list(sorted(iterate(v), flag(a, 0, "reverse", false), flag(a, 1, "case_sensitive", false),
                              a.get(2, "attribute")));
  if (name == "min" || name == "max") {
    auto items = sorted(iterate(v), false, flag(a, 0, "case_sensitive", false), a.get(1, "attribute"));
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    return name == "min" ? items.front() : items.back();
  }
  if (name == "sum") {
    const Value* attr = a.get(0, "attribute");
    const Value* start = a.get(1, "start");
    Value total = start ? *start : Value::integer(0);
    for (const auto& item : iterate(v))
      total = binary_op("+", total, attr && !attr->is_none() ? attr_path(item, py_str(*attr)) : item);
    return total;
  }
  if (name == "escape" || name == "e" || name == "forceescape")
    return v.is_markup() && name != "forceescape" ? v : Value::string(html_escape(py_str(v)), true);
  if (name == "indent") {
    const Value* width = a.get(0, "width");
    std::string pad = width ? (width->is_string() ? width->str() : std::string(std::max<int64_t>(0, width->as_int()), ' '))
                            : std::string(4, ' ');
    bool first = flag(a, 1, "first", false), blank = flag(a, 2, "blank", false);
    // jinja2's do_indent: append a newline, splitlines(), pad every non-empty line but the first.
    std::string s = py_str(v) + "\n";
    std::vector<std::string> lines;
    size_t b = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\n' && s[i] != '\r') continue;
      lines.push_back(s.substr(b, i - b));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      b = i + 1;
    }
    if (b < s.size()) lines.push_back(s.substr(b));
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) out += '\n';
      if (i && (blank || !lines[i].empty())) out += pad;
      out += lines[i];
    }
    if (first) out = pad + out;
    return Value::string(out);
  }
  if (name == "format") {
    Value args = Value::list(a.pos, true);
    return binary_op("%", Value::string(py_str(v)), args);
  }
  if (name == "attr") {
    const Value* n = a.get(0, "name");
    if (!n) throw TemplateError("attr filter needs a name");
    return get_attr(v, py_str(*n));
  }
  if (name == "wordcount") {  // len(re.findall(r"\w+", s))
    int64_t words = 0;
    bool in_word = false;
    for (char32_t c : utf8_decode(py_str(v))) {
      bool w = c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= 0xAA && !py_isspace(c) && py_lower(utf8_encode(std::u32string(1, c))) !=
                                                   py_upper(utf8_encode(std::u32string(1, c))));
      if (w && !in_word) ++words;
      in_word = w;
    }
    return Value::integer(words);
  }
  throw TemplateError("No filter named '" + name + "'.");
}

}  // namespace ds::text::jinja
