// json.loads, ast.literal_eval (literals only) and json.dumps with ensure_ascii=False, written so
// typed tool-call arguments are byte-identical to what vLLM's Python produces.
#include "deltaserve/text/parsers/tool_parser_pyvalue.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "deltaserve/text/parsers/tool_parser.h"

namespace ds::text {
namespace py {
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

void append_utf8(std::string& out, uint32_t cp) {
  if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // a lone surrogate cannot be written as UTF-8
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp <= 0x10FFFF) {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    append_utf8(out, 0xFFFD);
  }
}

// Exact decimal digits of a whole double (Python int(float)).

void dumps_into(const PyVal& v, std::string& out) {
  switch (v.kind) {
    case PyVal::kNull:
      out += "null";
      break;
    case PyVal::kBool:
      out += v.b ? "true" : "false";
      break;
    case PyVal::kInt:
      out += v.text;
      break;
    case PyVal::kFloat:
      out += py_float_repr(v.f);
      break;
    case PyVal::kStr:
      out += json_quote(v.text);
      break;
    case PyVal::kList:
      out += '[';
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ", ";
        dumps_into(v.items[i], out);
      }
      out += ']';
      break;
    case PyVal::kDict:
      out += '{';
      for (size_t i = 0; i < v.kv.size(); ++i) {
        if (i) out += ", ";
        out += json_quote(v.kv[i].first);
        out += ": ";
        dumps_into(v.kv[i].second, out);
      }
      out += '}';
      break;
  }
}

// Python dicts keep the first position of a key and its last value.
void dict_set(PyVal& d, std::string key, PyVal val) {
  for (auto& [k, v] : d.kv)
    if (k == key) {
      v = std::move(val);
      return;
    }
  d.kv.push_back({std::move(key), std::move(val)});
}

std::string canonical_int(bool neg, std::string digits) {
  size_t nz = digits.find_first_not_of('0');
  digits = nz == std::string::npos ? "0" : digits.substr(nz);
  return (neg && digits != "0") ? "-" + digits : digits;
}

constexpr int kMaxDepth = 256;

// ---- json.loads ----
class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}
  bool parse(PyVal& out) {
    ws();
    if (!value(out, 0)) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool lit(std::string_view l) {
    if (s_.substr(i_, l.size()) != l) return false;
    i_ += l.size();
    return true;
  }
  bool value(PyVal& v, int depth) {
    if (depth > kMaxDepth || i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{') return object(v, depth);
    if (c == '[') return array(v, depth);
    if (c == '"') {
      v.kind = PyVal::kStr;
      return string(v.text);
    }
    if (lit("true")) return v.kind = PyVal::kBool, v.b = true, true;
    if (lit("false")) return v.kind = PyVal::kBool, v.b = false, true;
    if (lit("null")) return v.kind = PyVal::kNull, true;
    if (lit("NaN")) return v.kind = PyVal::kFloat, v.f = NAN, true;
    if (lit("Infinity")) return v.kind = PyVal::kFloat, v.f = INFINITY, true;
    if (lit("-Infinity")) return v.kind = PyVal::kFloat, v.f = -INFINITY, true;
    return number(v);
  }
  bool number(PyVal& v) {
    const size_t start = i_;
    bool neg = false;
    if (i_ < s_.size() && s_[i_] == '-') neg = true, ++i_;
    const size_t int_start = i_;
    if (i_ < s_.size() && s_[i_] == '0') {
      ++i_;
    } else {
      if (i_ >= s_.size() || s_[i_] < '1' || s_[i_] > '9') return false;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    const size_t int_end = i_;
    bool is_float = false;
    if (i_ + 1 < s_.size() && s_[i_] == '.' && std::isdigit(static_cast<unsigned char>(s_[i_ + 1]))) {
      is_float = true;
      ++i_;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      size_t j = i_ + 1;
      if (j < s_.size() && (s_[j] == '+' || s_[j] == '-')) ++j;
      if (j < s_.size() && std::isdigit(static_cast<unsigned char>(s_[j]))) {
        is_float = true;
        i_ = j;
        while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
      }
    }
    if (!is_float) {
      v.kind = PyVal::kInt;
      v.text = canonical_int(neg, std::string(s_.substr(int_start, int_end - int_start)));
      return true;
    }
    v.kind = PyVal::kFloat;
    const std::string num(s_.substr(start, i_ - start));
    auto r = std::from_chars(num.data(), num.data() + num.size(), v.f);
    if (r.ec == std::errc::result_out_of_range) {  // Python: 1e999 -> inf, 1e-999 -> 0.0
      const bool tiny = num.find("e-") != std::string::npos || num.find("E-") != std::string::npos;
      v.f = tiny ? (neg ? -0.0 : 0.0) : (neg ? -INFINITY : INFINITY);
    }
    return true;
  }
  bool hex4(uint32_t& cp) {
    if (i_ + 4 > s_.size()) return false;
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      cp <<= 4;
      if (c >= '0' && c <= '9')
        cp |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        cp |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        cp |= static_cast<uint32_t>(c - 'A' + 10);
      else
        return false;
    }
    return true;
  }
  bool string(std::string& out) {
    ++i_;  // opening quote
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '"') return ++i_, true;
      if (static_cast<unsigned char>(c) < 0x20) return false;  // json.loads(strict=True)
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      if (++i_ >= s_.size()) return false;
      const char e = s_[i_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF && s_.substr(i_, 2) == "\\u") {
            const size_t save = i_;
            i_ += 2;
            uint32_t lo = 0;
            if (hex4(lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              i_ = save;
            }
          }
          append_utf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool array(PyVal& v, int depth) {
    v.kind = PyVal::kList;
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
    while (true) {
      ws();
      PyVal item;
      if (!value(item, depth + 1)) return false;
      v.items.push_back(std::move(item));
      ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == ']') return ++i_, true;
      return false;
    }
  }
  bool object(PyVal& v, int depth) {
    v.kind = PyVal::kDict;
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
    while (true) {
      ws();
      if (i_ >= s_.size() || s_[i_] != '"') return false;
      std::string key;
      if (!string(key)) return false;
      ws();
      if (i_ >= s_.size() || s_[i_] != ':') return false;
      ++i_;
      ws();
      PyVal item;
      if (!value(item, depth + 1)) return false;
      dict_set(v, std::move(key), std::move(item));
      ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == '}') return ++i_, true;
      return false;
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

// ---- ast.literal_eval, for the literal forms a model writes (strings, numbers, True/False/None,
// lists, tuples, dicts). Sets, bytes and complex numbers are not JSON-serialisable and fail. ----
class PyLiteralReader {
 public:
  explicit PyLiteralReader(std::string_view s) : s_(s) {}
  bool parse(PyVal& out) {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;  // literal_eval lstrip(" \t")
    ws();
    if (!value(out, 0)) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  void ws() {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
        ++i_;
      } else if (c == '\\' && i_ + 1 < s_.size() && s_[i_ + 1] == '\n') {
        i_ += 2;
      } else if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else {
        break;
      }
    }
  }
  static bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
  bool word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    if (i_ + w.size() < s_.size() && ident_char(s_[i_ + w.size()])) return false;
    i_ += w.size();
    return true;
  }
  bool value(PyVal& v, int depth) {
    if (depth > kMaxDepth) return false;
    ws();
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '[') return seq(v, ']', depth);
    if (c == '(') return seq(v, ')', depth);
    if (c == '{') return dict(v, depth);
    if (word("True")) return v.kind = PyVal::kBool, v.b = true, true;
    if (word("False")) return v.kind = PyVal::kBool, v.b = false, true;
    if (word("None")) return v.kind = PyVal::kNull, true;
    if (c == '-' || c == '+') {
      ++i_;
      ws();
      if (!number(v)) return false;
      if (c == '-') {
        if (v.kind == PyVal::kFloat)
          v.f = -v.f;
        else if (v.text != "0")
          v.text = v.text[0] == '-' ? v.text.substr(1) : "-" + v.text;
      }
      return true;
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') return number(v);
    return strings(v);
  }
  bool number(PyVal& v) {
    const size_t start = i_;
    while (i_ < s_.size() &&
           (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' || s_[i_] == '.' ||
            ((s_[i_] == '+' || s_[i_] == '-') && (s_[i_ - 1] == 'e' || s_[i_ - 1] == 'E'))))
      ++i_;
    std::string tok(s_.substr(start, i_ - start));
    if (tok.empty()) return false;
    // underscores only between digits
    std::string t;
    for (size_t k = 0; k < tok.size(); ++k) {
      if (tok[k] == '_') {
        if (k == 0 || k + 1 >= tok.size() || !std::isxdigit(static_cast<unsigned char>(tok[k - 1])) ||
            !std::isxdigit(static_cast<unsigned char>(tok[k + 1])))
          return false;
        continue;
      }
      t += tok[k];
    }
    const std::string lt = lower_ascii(t);
    int base = 0;
    if (starts_with(lt, "0x"))
      base = 16;
    else if (starts_with(lt, "0o"))
      base = 8;
    else if (starts_with(lt, "0b"))
      base = 2;
    if (base) {
      const std::string digits = lt.substr(2);
      if (digits.empty()) return false;
      // arbitrary precision: repeated multiply-add in decimal
      std::vector<int> dec{0};
      for (char ch : digits) {
        int d = std::isdigit(static_cast<unsigned char>(ch)) ? ch - '0'
                                                             : (ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : 99);
        if (d >= base) return false;
        int carry = d;
        for (auto& x : dec) {
          const int y = x * base + carry;
          x = y % 10;
          carry = y / 10;
        }
        while (carry) dec.push_back(carry % 10), carry /= 10;
      }
      std::string s;
      for (auto it = dec.rbegin(); it != dec.rend(); ++it) s += static_cast<char>('0' + *it);
      v.kind = PyVal::kInt;
      v.text = canonical_int(false, s);
      return true;
    }
    if (lt.back() == 'j') return false;  // complex
    const bool is_float = lt.find_first_of(".e") != std::string::npos;
    if (!is_float) {
      for (char ch : lt)
        if (!std::isdigit(static_cast<unsigned char>(ch))) return false;
      if (lt.size() > 1 && lt[0] == '0' && lt.find_first_not_of('0') != std::string::npos) return false;
      v.kind = PyVal::kInt;
      v.text = canonical_int(false, lt);
      return true;
    }
    // digits [. digits] [e [+-] digits], at least one digit in the mantissa
    size_t k = 0, nd = 0;
    while (k < lt.size() && std::isdigit(static_cast<unsigned char>(lt[k]))) ++k, ++nd;
    if (k < lt.size() && lt[k] == '.') {
      ++k;
      while (k < lt.size() && std::isdigit(static_cast<unsigned char>(lt[k]))) ++k, ++nd;
    }
    if (!nd) return false;
    if (k < lt.size() && lt[k] == 'e') {
      ++k;
      if (k < lt.size() && (lt[k] == '+' || lt[k] == '-')) ++k;
      size_t ne = 0;
      while (k < lt.size() && std::isdigit(static_cast<unsigned char>(lt[k]))) ++k, ++ne;
      if (!ne) return false;
    }
    if (k != lt.size()) return false;
    v.kind = PyVal::kFloat;
    std::string num = lt[0] == '.' ? "0" + lt : lt;
    auto r = std::from_chars(num.data(), num.data() + num.size(), v.f);
    if (r.ec == std::errc::result_out_of_range)
      v.f = lt.find("e-") != std::string::npos ? 0.0 : INFINITY;
    else if (r.ptr != num.data() + num.size())
      return false;
    return true;
  }
  bool one_string(std::string& out) {
    bool raw = false;
    while (i_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[i_]))) {
      const char p = static_cast<char>(std::tolower(static_cast<unsigned char>(s_[i_])));
      if (p == 'r')
        raw = true;
      else if (p != 'u')
        return false;  // b'', f'' and names are not JSON literals
      ++i_;
    }
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) return false;
    const char q = s_[i_];
    const bool triple = s_.substr(i_, 3) == std::string(3, q);
    i_ += triple ? 3 : 1;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == q && (!triple || s_.substr(i_, 3) == std::string(3, q))) {
        i_ += triple ? 3 : 1;
        return true;
      }
      if (c == '\n' && !triple) return false;
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      if (i_ + 1 >= s_.size()) return false;
      const char e = s_[i_ + 1];
      if (raw) {
        out += c;
        out += e;
        i_ += 2;
        continue;
      }
      i_ += 2;
      switch (e) {
        case '\n':
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'v':
          out += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          if (i_ + static_cast<size_t>(n) > s_.size()) return false;
          uint32_t cp = 0;
          for (int k = 0; k < n; ++k) {
            const char h = s_[i_++];
            if (!std::isxdigit(static_cast<unsigned char>(h))) return false;
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                     ? h - '0'
                                                     : std::tolower(h) - 'a' + 10);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '7'; ++k)
              cp = cp * 8 + static_cast<uint32_t>(s_[i_++] - '0');
            append_utf8(out, cp);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    return false;
  }
  bool strings(PyVal& v) {  // adjacent literals concatenate
    v.kind = PyVal::kStr;
    if (!one_string(v.text)) return false;
    while (true) {
      const size_t save = i_;
      ws();
      if (i_ < s_.size() &&
          (s_[i_] == '\'' || s_[i_] == '"' || std::isalpha(static_cast<unsigned char>(s_[i_])))) {
        if (!one_string(v.text)) return false;
      } else {
        i_ = save;
        return true;
      }
    }
  }
  bool seq(PyVal& v, char close, int depth) {
    const bool tuple = close == ')';
    v.kind = PyVal::kList;
    ++i_;
    bool saw_comma = false;
    while (true) {
      ws();
      if (i_ < s_.size() && s_[i_] == close) {
        ++i_;
        break;
      }
      PyVal item;
      if (!value(item, depth + 1)) return false;
      v.items.push_back(std::move(item));
      ws();
      if (i_ < s_.size() && s_[i_] == ',') {
        saw_comma = true;
        ++i_;
        continue;
      }
      if (i_ < s_.size() && s_[i_] == close) {
        ++i_;
        break;
      }
      return false;
    }
    if (tuple && v.items.size() == 1 && !saw_comma) {  // (x) is x
      PyVal inner = std::move(v.items[0]);
      v = std::move(inner);
    }
    return true;
  }
  static bool key_string(const PyVal& k, std::string& out) {  // json.dumps key coercion
    switch (k.kind) {
      case PyVal::kStr:
        out = k.text;
        return true;
      case PyVal::kInt:
        out = k.text;
        return true;
      case PyVal::kFloat:
        out = py_float_repr(k.f);
        return true;
      case PyVal::kBool:
        out = k.b ? "true" : "false";
        return true;
      case PyVal::kNull:
        out = "null";
        return true;
      default:
        return false;
    }
  }
  // Python key identity: 1 == 1.0 == True share one slot (the first key's spelling is kept).
  static std::string key_identity(const PyVal& k) {
    switch (k.kind) {
      case PyVal::kBool:
        return k.b ? "n:1" : "n:0";
      case PyVal::kInt:
        return "n:" + k.text;
      case PyVal::kFloat:
        return std::isfinite(k.f) && k.f == std::trunc(k.f) ? "n:" + whole_double_to_int_string(k.f)
                                                            : "f:" + py_float_repr(k.f);
      case PyVal::kNull:
        return "None";
      default:
        return "s:" + k.text;
    }
  }
  bool dict(PyVal& v, int depth) {
    v.kind = PyVal::kDict;
    std::vector<std::string> idents;
    ++i_;
    while (true) {
      ws();
      if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
      PyVal key, item;
      if (!value(key, depth + 1)) return false;
      ws();
      if (i_ >= s_.size() || s_[i_] != ':') return false;  // a set literal
      ++i_;
      if (!value(item, depth + 1)) return false;
      std::string k;
      if (!key_string(key, k)) return false;
      const std::string ident = key_identity(key);
      auto hit = std::find(idents.begin(), idents.end(), ident);
      if (hit != idents.end()) {
        v.kv[static_cast<size_t>(hit - idents.begin())].second = std::move(item);
      } else {
        idents.push_back(ident);
        v.kv.push_back({std::move(k), std::move(item)});
      }
      ws();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
      return false;
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::string whole_double_to_int_string(double v) {
  if (std::fabs(v) < 9.0e18) return std::to_string(static_cast<int64_t>(v));
  int exp = 0;
  const double m = std::frexp(std::fabs(v), &exp);  // v = m * 2^exp, 0.5 <= m < 1
  uint64_t mant = static_cast<uint64_t>(std::ldexp(m, 53));
  exp -= 53;
  std::vector<int> digits;  // little-endian decimal
  while (mant) {
    digits.push_back(static_cast<int>(mant % 10));
    mant /= 10;
  }
  for (int i = 0; i < exp; ++i) {
    int carry = 0;
    for (auto& d : digits) {
      const int x = d * 2 + carry;
      d = x % 10;
      carry = x / 10;
    }
    if (carry) digits.push_back(carry);
  }
  std::string s = v < 0 ? "-" : "";
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) s += static_cast<char>('0' + *it);
  return s;
}

bool json_loads(std::string_view text, PyVal& out) {
  return JsonReader(text).parse(out);
}
bool literal_eval(std::string_view text, PyVal& out) {
  return PyLiteralReader(text).parse(out);
}

std::string dumps(const PyVal& v) {
  std::string s;
  dumps_into(v, s);
  return s;
}

// Python int(str): whitespace, sign, digits with single underscores, leading zeros allowed.
}  // namespace py

std::optional<std::string> py_json_loads_dumps(std::string_view text) {
  py::PyVal v;
  if (!py::json_loads(text, v)) return std::nullopt;
  return py::dumps(v);
}

std::optional<std::string> py_literal_eval_dumps(std::string_view text, bool* is_string) {
  py::PyVal v;
  if (!py::literal_eval(text, v)) return std::nullopt;
  if (is_string) *is_string = v.kind == py::PyVal::kStr;
  return py::dumps(v);
}

}  // namespace ds::text
