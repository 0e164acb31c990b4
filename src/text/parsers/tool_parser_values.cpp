// Typing of tool-call parameter values the way vLLM's Qwen3 parsers do it (`_convert_param_value`):
// the schema picks a kind, then Python int()/float()/json.loads/ast.literal_eval semantics decide the
// JSON written (the Python value machinery is in tool_parser_pyvalue.cpp).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "deltaserve/text/parsers/tool_parser.h"
#include "deltaserve/text/parsers/tool_parser_pyvalue.h"

namespace ds::text {
namespace {

std::string lower_ascii(std::string_view s) {
  std::string r(s);
  for (auto& c : r)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return r;
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// Python str.strip() for the ASCII whitespace a model can emit.
std::string_view py_strip(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

std::string canonical_int(bool neg, std::string digits) {
  size_t nz = digits.find_first_not_of('0');
  digits = nz == std::string::npos ? "0" : digits.substr(nz);
  return (neg && digits != "0") ? "-" + digits : digits;
}

std::optional<std::string> py_int(std::string_view raw) {
  std::string_view s = py_strip(raw);
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) neg = s[0] == '-', s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  std::string digits;
  for (size_t k = 0; k < s.size(); ++k) {
    if (s[k] == '_') {
      if (k == 0 || k + 1 >= s.size() || s[k - 1] == '_' ||
          !std::isdigit(static_cast<unsigned char>(s[k + 1])))
        return std::nullopt;
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(s[k]))) return std::nullopt;
    digits += s[k];
  }
  return canonical_int(neg, digits);
}

// Python float(str).
std::optional<double> py_float(std::string_view raw) {
  std::string_view s = py_strip(raw);
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) neg = s[0] == '-', s.remove_prefix(1);
  const std::string l = lower_ascii(s);
  if (l == "inf" || l == "infinity") return neg ? -INFINITY : INFINITY;
  if (l == "nan") return NAN;
  std::string t;
  for (size_t k = 0; k < l.size(); ++k) {
    if (l[k] == '_') {
      if (k == 0 || k + 1 >= l.size() || !std::isdigit(static_cast<unsigned char>(l[k - 1])) ||
          !std::isdigit(static_cast<unsigned char>(l[k + 1])))
        return std::nullopt;
      continue;
    }
    t += l[k];
  }
  size_t k = 0, nd = 0;
  while (k < t.size() && std::isdigit(static_cast<unsigned char>(t[k]))) ++k, ++nd;
  if (k < t.size() && t[k] == '.') {
    ++k;
    while (k < t.size() && std::isdigit(static_cast<unsigned char>(t[k]))) ++k, ++nd;
  }
  if (!nd) return std::nullopt;
  if (k < t.size() && t[k] == 'e') {
    ++k;
    if (k < t.size() && (t[k] == '+' || t[k] == '-')) ++k;
    size_t ne = 0;
    while (k < t.size() && std::isdigit(static_cast<unsigned char>(t[k]))) ++k, ++ne;
    if (!ne) return std::nullopt;
  }
  if (k != t.size()) return std::nullopt;
  if (t[0] == '.') t = "0" + t;
  double v = 0;
  auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  if (r.ec == std::errc::result_out_of_range) v = t.find("e-") != std::string::npos ? 0.0 : INFINITY;
  return neg ? -v : v;
}

std::string type_name_of(const nlohmann::json& t) {
  if (t.is_string()) return t.get<std::string>();
  return t.dump();
}

}  // namespace

ParamSpec param_spec(const nlohmann::json* properties, const std::string& name) {
  ParamSpec spec;
  if (!properties || !properties->is_object()) return spec;
  auto it = properties->find(name);
  if (it == properties->end() || !it->is_object()) return spec;
  const nlohmann::json& p = *it;
  std::string type = "string";
  auto pick_from = [&](const nlohmann::json& options) {
    bool picked = false;
    for (const auto& o : options) {
      const nlohmann::json* t =
          o.is_object() && o.contains("type") ? &o["type"] : (o.is_string() ? &o : nullptr);
      if (!t) continue;
      const std::string tn = lower_ascii(py_strip(type_name_of(*t)));
      if (tn == "null") {
        spec.allows_null = true;
      } else if (!picked) {
        type = tn;
        picked = true;
      }
    }
  };
  if (p.contains("type")) {
    if (p["type"].is_array()) {
      pick_from(p["type"]);
    } else {
      type = lower_ascii(py_strip(type_name_of(p["type"])));
      spec.allows_null = type == "null";
    }
  } else if (p.contains("anyOf") && p["anyOf"].is_array()) {
    pick_from(p["anyOf"]);
  } else if (p.contains("oneOf") && p["oneOf"].is_array()) {
    pick_from(p["oneOf"]);
  }
  auto starts = [&](const char* pre) { return starts_with(type, pre); };
  if (type == "string" || type == "str" || type == "text" || type == "varchar" || type == "char" ||
      type == "enum")
    spec.kind = ParamKind::kString;
  else if (starts("int") || starts("uint") || starts("long") || starts("short") || starts("unsigned"))
    spec.kind = ParamKind::kInteger;
  else if (starts("num") || starts("float"))
    spec.kind = ParamKind::kNumber;
  else if (type == "boolean" || type == "bool" || type == "binary")
    spec.kind = ParamKind::kBoolean;
  else if (type == "object" || type == "array" || type == "arr" || starts("dict") || starts("list"))
    spec.kind = ParamKind::kContainer;
  else
    spec.kind = ParamKind::kOther;
  return spec;
}

std::string convert_param_value(std::string_view raw, const ParamSpec& spec) {
  const std::string low = lower_ascii(raw);
  const bool null_word = low == "null" || low == "none";
  if (spec.allows_null && null_word) return "null";
  if (spec.kind == ParamKind::kString) return json_quote(raw);
  if (null_word) return "null";
  switch (spec.kind) {
    case ParamKind::kInteger: {
      auto i = py_int(raw);
      return i ? *i : json_quote(raw);
    }
    case ParamKind::kNumber: {
      auto f = py_float(raw);
      if (!f || std::isnan(*f) || std::isinf(*f)) return json_quote(raw);  // vLLM: int(nan) fails -> str
      if (*f == std::trunc(*f)) return py::whole_double_to_int_string(*f);
      return py_float_repr(*f);
    }
    case ParamKind::kBoolean:
      return low == "true" ? "true" : "false";
    case ParamKind::kContainer: {
      py::PyVal v;
      if (py::json_loads(raw, v)) {
        if (v.kind == py::PyVal::kStr) {  // a JSON-encoded Python repr: decode once more
          py::PyVal inner;
          if (py::literal_eval(v.text, inner)) return py::dumps(inner);
        }
        return py::dumps(v);
      }
      py::PyVal lv;
      if (py::literal_eval(raw, lv)) {
        if (lv.kind == py::PyVal::kStr) {
          py::PyVal inner;
          if (py::literal_eval(lv.text, inner)) return py::dumps(inner);
        }
        return py::dumps(lv);
      }
      return json_quote(raw);
    }
    default: {
      py::PyVal v;
      if (py::literal_eval(raw, v)) return py::dumps(v);
      return json_quote(raw);
    }
  }
}

void json_escape_append(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += kHex[(c >> 4) & 0xF];
          out += kHex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
}

std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  json_escape_append(out, s);
  out += '"';
  return out;
}

std::string py_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // [-]d[.ddd]e[+-]XX, shortest round trip
  std::string out;
  size_t k = 0;
  if (sci[0] == '-') out += '-', k = 1;
  const size_t epos = sci.find('e');
  std::string digits;
  for (size_t i = k; i < epos; ++i)
    if (sci[i] != '.') digits += sci[i];
  const int exp = std::stoi(sci.substr(epos + 1));
  const int decpt = exp + 1;
  // GCC 12 flags `"x" + std::string` here with a false -Wrestrict at -O3, hence the appends.
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out.append("0.");
      out.append(static_cast<size_t>(-decpt), '0');
      out.append(digits);
    } else if (static_cast<size_t>(decpt) >= digits.size()) {
      out.append(digits);
      out.append(static_cast<size_t>(decpt) - digits.size(), '0');
      out.append(".0");
    } else {
      out.append(digits, 0, static_cast<size_t>(decpt));
      out.push_back('.');
      out.append(digits, static_cast<size_t>(decpt), std::string::npos);
    }
    return out;
  }
  out.push_back(digits[0]);
  if (digits.size() > 1) {
    out.push_back('.');
    out.append(digits, 1, std::string::npos);
  }
  out.append(exp < 0 ? "e-" : "e+");
  const std::string e = std::to_string(std::abs(exp));
  if (e.size() < 2) out.push_back('0');
  out.append(e);
  return out;
}

}  // namespace ds::text
