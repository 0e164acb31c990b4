// Python methods of str, dict and list values that the sandbox lets templates call
// (`content.startswith(...)`, `message.get(...)`, `d.items()`); mutating methods are refused as the
// ImmutableSandboxedEnvironment refuses them.
// GCC 12 reports a false -Wrestrict on `"literal" + std::string` (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include <algorithm>
#include <cctype>

#include "deltaserve/text/jinja/jinja_builtins.h"

namespace ds::text::jinja {
namespace {

const Value* arg(CallArgs& a, size_t i, const char* name) { return a.get(i, name); }

std::string need_str(const Value* v, const char* what) {
  if (!v || !v->is_string()) throw TemplateError(std::string(what) + " must be a string");
  return v->str();
}

bool is_cased_letter(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || py_lower(utf8_encode(std::u32string(1, c))) !=
                                                                   py_upper(utf8_encode(std::u32string(1, c)));
}

std::string py_title(const std::string& s) {
  std::u32string u = utf8_decode(s), out;
  bool prev_cased = false;
  for (char32_t c : u) {
    std::string one = utf8_encode(std::u32string(1, c));
    if (is_cased_letter(c)) {
      out += utf8_decode(prev_cased ? py_lower(one) : py_upper(one));
      prev_cased = true;
    } else {
      out += c;
      prev_cased = false;
    }
  }
  return utf8_encode(out);
}

std::vector<std::string> split_ws(const std::string& s, int64_t maxsplit, bool from_right) {
  std::u32string u = utf8_decode(s);
  std::vector<std::u32string> parts;
  if (!from_right) {
    size_t i = 0, n = u.size();
    while (true) {
      while (i < n && py_isspace(u[i])) ++i;
      if (i >= n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        size_t e = n;
        while (e > i && py_isspace(u[e - 1])) --e;
        parts.push_back(u.substr(i, e - i));
        break;
      }
      size_t j = i;
      while (j < n && !py_isspace(u[j])) ++j;
      parts.push_back(u.substr(i, j - i));
      i = j;
    }
  } else {
    int64_t i = static_cast<int64_t>(u.size()) - 1;
    while (true) {
      while (i >= 0 && py_isspace(u[i])) --i;
      if (i < 0) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        size_t b = 0;
        while (b < static_cast<size_t>(i) && py_isspace(u[b])) ++b;
        parts.push_back(u.substr(b, i + 1 - b));
        break;
      }
      int64_t j = i;
      while (j >= 0 && !py_isspace(u[j])) --j;
      parts.push_back(u.substr(j + 1, i - j));
      i = j;
    }
    std::reverse(parts.begin(), parts.end());
  }
  std::vector<std::string> out;
  for (auto& p : parts) out.push_back(utf8_encode(p));
  return out;
}

std::vector<std::string> split_sep(const std::string& s, const std::string& sep, int64_t maxsplit, bool from_right) {
  if (sep.empty()) throw TemplateError("empty separator");
  std::vector<std::string> out;
  if (!from_right) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t f = s.find(sep, pos);
      if (f == std::string::npos) break;
      out.push_back(s.substr(pos, f - pos));
      pos = f + sep.size();
    }
    out.push_back(s.substr(pos));
  } else {
    size_t end = s.size();
    std::vector<std::string> rev;
    while (maxsplit < 0 || static_cast<int64_t>(rev.size()) < maxsplit) {
      if (end < sep.size()) break;
      size_t f = s.rfind(sep, end - sep.size());
      if (f == std::string::npos) break;
      rev.push_back(s.substr(f + sep.size(), end - f - sep.size()));
      end = f;
    }
    rev.push_back(s.substr(0, end));
    out.assign(rev.rbegin(), rev.rend());
  }
  return out;
}

Value str_list(const std::vector<std::string>& parts) {
  List l;
  for (const auto& p : parts) l.push_back(Value::string(p));
  return Value::list(std::move(l));
}

// str.format with auto/explicit/named fields; format specs other than empty are refused.
std::string py_format(const std::string& fmt, CallArgs& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '{') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
        out += '{';
        ++i;
        continue;
      }
      size_t e = fmt.find('}', i);
      if (e == std::string::npos) throw TemplateError("Single '{' encountered in format string");
      std::string field = fmt.substr(i + 1, e - i - 1);
      std::string spec;
      if (size_t colon = field.find(':'); colon != std::string::npos) {
        spec = field.substr(colon + 1);
        field = field.substr(0, colon);
      }
      if (!spec.empty()) throw TemplateError("format specs are not supported in str.format");
      const Value* v = nullptr;
      if (field.empty()) {
        if (auto_idx >= a.pos.size()) throw TemplateError("Replacement index out of range for positional args tuple");
        v = &a.pos[auto_idx++];
      } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
        size_t k = std::stoul(field);
        if (k >= a.pos.size()) throw TemplateError("Replacement index out of range for positional args tuple");
        v = &a.pos[k];
      } else {
        v = a.kwarg(field);
        if (!v) throw TemplateError("KeyError: '" + field + "'");
      }
      out += py_str(*v);
      i = e;
    } else if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      else throw TemplateError("Single '}' encountered in format string");
      out += '}';
    } else {
      out += c;
    }
  }
  return out;
}

bool all_of(const std::string& s, bool (*pred)(char32_t)) {
  std::u32string u = utf8_decode(s);
  if (u.empty()) return false;
  for (char32_t c : u)
    if (!pred(c)) return false;
  return true;
}

Value string_method(const std::string& s, const std::string& name) {
  auto fn = [&](NativeFn f) { return Value::callable(name, std::move(f)); };
  if (name == "startswith" || name == "endswith") {
    bool start = name == "startswith";
    return fn([s, start](CallArgs& a) {
      const Value* p = arg(a, 0, "prefix");
      if (!p) throw TemplateError("startswith/endswith takes at least 1 argument");
      std::vector<Value> cands = p->is_tuple() || p->is_list() ? p->items() : std::vector<Value>{*p};
      for (const auto& c : cands) {
        std::string x = need_str(&c, "startswith/endswith argument");
        if (x.size() > s.size()) continue;
        if (start ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0)
          return Value::boolean(true);
      }
      return Value::boolean(false);
    });
  }
  if (name == "split" || name == "rsplit") {
    bool right = name == "rsplit";
    return fn([s, right](CallArgs& a) {
      const Value* sep = arg(a, 0, "sep");
      const Value* mx = arg(a, 1, "maxsplit");
      int64_t maxsplit = mx ? mx->as_int() : -1;
      if (!sep || sep->is_none()) return str_list(split_ws(s, maxsplit, right));
      return str_list(split_sep(s, need_str(sep, "separator"), maxsplit, right));
    });
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool l = name != "rstrip", r = name != "lstrip";
    return fn([s, l, r](CallArgs& a) {
      const Value* chars = arg(a, 0, "chars");
      if (chars && !chars->is_none()) {
        std::string c = need_str(chars, "strip argument");
        return Value::string(py_strip(s, l, r, &c));
      }
      return Value::string(py_strip(s, l, r, nullptr));
    });
  }
  if (name == "upper") return fn([s](CallArgs&) { return Value::string(py_upper(s)); });
  if (name == "lower" || name == "casefold") return fn([s](CallArgs&) { return Value::string(py_lower(s)); });
  if (name == "title") return fn([s](CallArgs&) { return Value::string(py_title(s)); });
  if (name == "capitalize")
    return fn([s](CallArgs&) {
      std::u32string u = utf8_decode(s);
      if (u.empty()) return Value::string("");
      return Value::string(py_upper(utf8_encode(u.substr(0, 1))) + py_lower(utf8_encode(u.substr(1))));
    });
  if (name == "replace")
    return fn([s](CallArgs& a) {
      std::string from = need_str(arg(a, 0, "old"), "replace argument");
      std::string to = need_str(arg(a, 1, "new"), "replace argument");
      const Value* cnt = arg(a, 2, "count");
      int64_t count = cnt ? cnt->as_int() : -1;
      std::string out;
      if (from.empty()) {  // Python inserts `to` between every character
        std::u32string u = utf8_decode(s);
        int64_t done = 0;
        for (size_t i = 0; i <= u.size(); ++i) {
          if (count < 0 || done < count) {
            out += to;
            ++done;
          }
          if (i < u.size()) out += utf8_encode(u.substr(i, 1));
        }
        check_string_size(out.size());
        return Value::string(out);
      }
      size_t pos = 0;
      int64_t done = 0;
      while (count < 0 || done < count) {
        size_t f = s.find(from, pos);
        if (f == std::string::npos) break;
        out.append(s, pos, f - pos);
        out += to;
        check_string_size(out.size());
        pos = f + from.size();
        ++done;
      }
      out.append(s, pos, std::string::npos);
      return Value::string(out);
    });
  if (name == "find" || name == "rfind" || name == "count" || name == "index" || name == "rindex")
    return fn([s, name](CallArgs& a) {
      std::string sub = need_str(arg(a, 0, "sub"), name.c_str());
      if (name == "count") {
        if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_decode(s).size()) + 1);
        int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
        return Value::integer(n);
      }
      size_t p = (name == "find" || name == "index") ? s.find(sub) : s.rfind(sub);
      if (p == std::string::npos) {
        if (name == "index" || name == "rindex") throw TemplateError("substring not found");
        return Value::integer(-1);
      }
      return Value::integer(static_cast<int64_t>(utf8_decode(s.substr(0, p)).size()));
    });
  if (name == "join")
    return fn([s](CallArgs& a) {
      const Value* it = arg(a, 0, "iterable");
      if (!it) throw TemplateError("join() takes exactly one argument");
      std::string out;
      bool first = true;
      for (const auto& x : iterate(*it)) {
        if (!x.is_string()) throw TemplateError("sequence item: expected str instance, " + x.type_name() + " found");
        if (!first) out += s;
        first = false;
        out += x.str();
        check_string_size(out.size());
      }
      return Value::string(out);
    });
  if (name == "format") return fn([s](CallArgs& a) { return Value::string(py_format(s, a)); });
  if (name == "isdigit" || name == "isnumeric" || name == "isdecimal")
    return fn([s](CallArgs&) { return Value::boolean(all_of(s, [](char32_t c) { return c >= '0' && c <= '9'; })); });
  if (name == "isalpha")
    return fn([s](CallArgs&) { return Value::boolean(all_of(s, [](char32_t c) { return is_cased_letter(c); })); });
  if (name == "isalnum")
    return fn([s](CallArgs&) {
      return Value::boolean(all_of(s, [](char32_t c) { return is_cased_letter(c) || (c >= '0' && c <= '9'); }));
    });
  if (name == "isspace") return fn([s](CallArgs&) { return Value::boolean(all_of(s, py_isspace)); });
  if (name == "islower" || name == "isupper") {
    bool lower = name == "islower";
    return fn([s, lower](CallArgs&) {
      bool cased = false;
      for (char32_t c : utf8_decode(s)) cased |= is_cased_letter(c);
      return Value::boolean(cased && (lower ? py_lower(s) == s : py_upper(s) == s));
    });
  }
  if (name == "splitlines")
    return fn([s](CallArgs& a) {
      const Value* keep = arg(a, 0, "keepends");
      bool keepends = keep && keep->truthy();
      List out;
      size_t b = 0;
      for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\n' || s[i] == '\r') {
          size_t e = i + ((s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ? 2 : 1);
          out.push_back(Value::string(s.substr(b, (keepends ? e : i) - b)));
          b = e;
          i = e - 1;
        }
      }
      if (b < s.size()) out.push_back(Value::string(s.substr(b)));
      return Value::list(std::move(out));
    });
  if (name == "removeprefix" || name == "removesuffix") {
    bool prefix = name == "removeprefix";
    return fn([s, prefix](CallArgs& a) {
      std::string x = need_str(arg(a, 0, "affix"), "removeprefix/removesuffix argument");
      if (x.size() <= s.size()) {
        if (prefix && s.compare(0, x.size(), x) == 0) return Value::string(s.substr(x.size()));
        if (!prefix && s.compare(s.size() - x.size(), x.size(), x) == 0) return Value::string(s.substr(0, s.size() - x.size()));
      }
      return Value::string(s);
    });
  }
  return Value::undefined();
}

Value dict_method(const Value& d, const std::string& name) {
  if (name == "get")
    return Value::callable(name, [d](CallArgs& a) {
      const Value* k = arg(a, 0, "key");
      if (!k) throw TemplateError("get expected at least 1 argument, got 0");
      const Value* dflt = arg(a, 1, "default");
      if (k->is_string())
        if (const Value* v = d.map().find(k->str())) return *v;
      return dflt ? *dflt : Value::none();
    });
  if (name == "items" || name == "keys" || name == "values")
    return Value::callable(name, [d, name](CallArgs&) {
      List out;
      for (const auto& [k, v] : d.map().entries) {
        if (name == "items") out.push_back(Value::list({Value::string(k), v}, true));
        else if (name == "keys") out.push_back(Value::string(k));
        else out.push_back(v);
      }
      return Value::list(std::move(out));
    });
  if (name == "copy") return Value::callable(name, [d](CallArgs&) { return Value::dict(d.map()); });
  if (name == "update" || name == "pop" || name == "popitem" || name == "setdefault" || name == "clear")
    throw TemplateError("access to attribute '" + name + "' of 'dict' object is unsafe.");
  return Value::undefined();
}

Value list_method(const Value& l, const std::string& name) {
  if (name == "index" || name == "count")
    return Value::callable(name, [l, name](CallArgs& a) {
      const Value* x = arg(a, 0, "value");
      if (!x) throw TemplateError(name + "() takes exactly one argument");
      int64_t n = 0;
      for (size_t i = 0; i < l.items().size(); ++i) {
        if (!py_equal(l.items()[i], *x)) continue;
        if (name == "index") return Value::integer(static_cast<int64_t>(i));
        ++n;
      }
      if (name == "index") throw TemplateError(py_repr(*x) + " is not in list");
      return Value::integer(n);
    });
  if (name == "append" || name == "extend" || name == "insert" || name == "pop" || name == "remove" ||
      name == "sort" || name == "reverse" || name == "clear")
    throw TemplateError("access to attribute '" + name + "' of '" + l.type_name() + "' object is unsafe.");
  return Value::undefined();
}

}  // namespace

Value get_method(const Value& obj, const std::string& name) {
  if (obj.is_string()) return string_method(obj.str(), name);
  if (obj.is_dict()) return dict_method(obj, name);
  if (obj.is_list()) return list_method(obj, name);
  return Value::undefined();
}

}  // namespace ds::text::jinja
