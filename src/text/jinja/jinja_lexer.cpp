// Jinja lexer, mirroring jinja2.lexer.Lexer.tokeniter under trim_blocks / lstrip_blocks.
// GCC 12 reports a false -Wrestrict on `"literal" + std::string` (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include <cctype>
#include <cstring>

#include "deltaserve/text/jinja/jinja_ast.h"

namespace ds::text::jinja {
namespace {

// Length in bytes of the Unicode whitespace character at s[i], or 0.
size_t space_len(const std::string& s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return py_isspace(c) ? 1 : 0;
  size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + len > s.size()) return 0;
  std::u32string u = utf8_decode(std::string_view(s).substr(i, len));
  return (u.size() == 1 && py_isspace(u[0])) ? len : 0;
}

size_t skip_spaces(const std::string& s, size_t i) {
  while (i < s.size()) {
    size_t n = space_len(s, i);
    if (!n) break;
    i += n;
  }
  return i;
}

bool all_spaces(const std::string& s, size_t from) {
  return from < s.size() && skip_spaces(s, from) == s.size();
}

std::string unescape_string(const std::string& body, int line) {
  // Python's "unicode-escape" decoding of the literal's body (jinja2 lexer: _unescape_string).
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out += c;
      continue;
    }
    char e = body[++i];
    auto hex = [&](size_t n) -> std::string {
      unsigned long v = 0;
      for (size_t k = 1; k <= n; ++k) {
        if (i + k >= body.size()) throw TemplateError("line " + std::to_string(line) + ": truncated \\x escape");
        char h = body[i + k];
        int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                : (h >= 'A' && h <= 'F')   ? h - 'A' + 10
                                           : -1;
        if (d < 0) throw TemplateError("line " + std::to_string(line) + ": bad escape in string literal");
        v = v * 16 + d;
      }
      i += n;
      return utf8_encode(std::u32string(1, static_cast<char32_t>(v)));
    };
    switch (e) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\n': break;
      case 'x': out += hex(2); break;
      case 'u': out += hex(4); break;
      case 'U': out += hex(8); break;
      default:
        if (e >= '0' && e <= '7') {
          unsigned v = e - '0';
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
            v = v * 8 + (body[++i] - '0');
          out += utf8_encode(std::u32string(1, static_cast<char32_t>(v)));
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return out;
}

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  Lexer(const std::string& src, const LexOptions& o) : opts_(o) {
    // Newline normalisation and the dropped trailing newline (keep_trailing_newline=False).
    s_.reserve(src.size());
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\r') {
        s_ += '\n';
        if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
      } else {
        s_ += src[i];
      }
    }
    if (!s_.empty() && s_.back() == '\n') s_.pop_back();
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < s_.size()) {
      size_t open = find_open(pos);
      if (open == std::string::npos) {
        emit(Tok::kData, s_.substr(pos));
        break;
      }
      char kind = s_[open + 1];
      size_t after = open + 2;
      char sign = (after < s_.size() && (s_[after] == '-' || s_[after] == '+')) ? s_[after] : 0;
      std::string text = s_.substr(pos, open - pos);
      bool raw = kind == '%' && is_raw_begin(after + (sign ? 1 : 0));
      if (sign == '-') {
        text = py_strip(text, false, true, nullptr);
      } else if (sign != '+' && opts_.lstrip_blocks && kind != '{') {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting) && all_spaces(text, l_pos)) text.resize(l_pos);
      }
      if (!text.empty()) emit(Tok::kData, text);
      count_lines(s_, pos, open);
      pos = after + (sign ? 1 : 0);
      if (raw) {
        pos = lex_raw(pos, line_starting);
      } else if (kind == '#') {
        pos = lex_comment(pos, line_starting);
      } else {
        pos = lex_tag(pos, kind == '%', line_starting);
      }
    }
    tokens_.push_back({Tok::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t find_open(size_t pos) const {
    for (size_t i = pos; i + 1 < s_.size(); ++i)
      if (s_[i] == '{' && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    return std::string::npos;
  }
  void emit(Tok t, std::string text) { tokens_.push_back({t, std::move(text), line_}); }
  void count_lines(const std::string& s, size_t from, size_t to) {
    for (size_t i = from; i < to && i < s.size(); ++i)
      if (s[i] == '\n') ++line_;
  }
  [[noreturn]] void fail(const std::string& msg) const {
    throw TemplateError("syntax error on line " + std::to_string(line_) + ": " + msg);
  }

  // `{%` [-+] \s* raw \s* (-%}\s* | %})
  bool is_raw_begin(size_t p) const {
    p = skip_spaces(s_, p);
    if (s_.compare(p, 3, "raw") != 0) return false;
    p = skip_spaces(s_, p + 3);
    return s_.compare(p, 2, "%}") == 0 || s_.compare(p, 3, "-%}") == 0;
  }

  // After an end marker: `-X}` eats all whitespace, `+X}` keeps the newline, plain `X}` drops
  // one newline when trim_blocks is on (block and comment tags only).
  size_t after_end(size_t p, char sign, bool trims, bool& line_starting) {
    size_t start = p;
    if (sign == '-') p = skip_spaces(s_, p);
    else if (sign == 0 && trims && opts_.trim_blocks && p < s_.size() && s_[p] == '\n') ++p;
    count_lines(s_, start, p);
    line_starting = p > 0 && s_[p - 1] == '\n';
    return p;
  }

  size_t lex_comment(size_t pos, bool& line_starting) {
    size_t end = s_.find("#}", pos);
    if (end == std::string::npos) fail("Missing end of comment tag");
    char sign = (end > pos && (s_[end - 1] == '-' || s_[end - 1] == '+')) ? s_[end - 1] : 0;
    count_lines(s_, pos, end);
    return after_end(end + 2, sign, true, line_starting);
  }

  size_t lex_raw(size_t pos, bool& line_starting) {
    // Skip the rest of the `{% raw %}` tag.
    size_t p = skip_spaces(s_, pos) + 3;
    p = skip_spaces(s_, p);
    if (s_[p] == '-') p = skip_spaces(s_, p + 3);
    else p += 2;
    count_lines(s_, pos, p);
    // Find `{%[-+]?\s*endraw\s*(+%}|-%}\s*|%}\n?)`.
    for (size_t i = p; i + 1 < s_.size(); ++i) {
      if (s_[i] != '{' || s_[i + 1] != '%') continue;
      size_t q = i + 2;
      char open_sign = (q < s_.size() && (s_[q] == '-' || s_[q] == '+')) ? s_[q] : 0;
      if (open_sign) ++q;
      q = skip_spaces(s_, q);
      if (s_.compare(q, 6, "endraw") != 0) continue;
      q = skip_spaces(s_, q + 6);
      char sign = 0;
      if (q < s_.size() && (s_[q] == '-' || s_[q] == '+')) sign = s_[q++];
      if (s_.compare(q, 2, "%}") != 0) continue;
      std::string text = s_.substr(p, i - p);
      if (open_sign == '-') {
        text = py_strip(text, false, true, nullptr);
      } else if (open_sign != '+' && opts_.lstrip_blocks) {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if (l_pos > 0 && all_spaces(text, l_pos)) text.resize(l_pos);
      }
      if (!text.empty()) emit(Tok::kData, text);
      count_lines(s_, p, q);
      return after_end(q + 2, sign, true, line_starting);
    }
    fail("Missing end of raw directive");
  }

  size_t lex_tag(size_t pos, bool block, bool& line_starting) {
    emit(block ? Tok::kBlockBegin : Tok::kVarBegin, "");
    std::vector<char> balance;
    size_t p = pos;
    const char* close = block ? "%}" : "}}";
    while (true) {
      if (p >= s_.size()) fail(block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'");
      if (balance.empty()) {
        char sign = 0;
        size_t q = p;
        if ((s_[q] == '-' || (block && s_[q] == '+')) && s_.compare(q + 1, 2, close) == 0) sign = s_[q++];
        if (s_.compare(q, 2, close) == 0) {
          emit(block ? Tok::kBlockEnd : Tok::kVarEnd, "");
          return after_end(q + 2, sign, block, line_starting);
        }
      }
      char c = s_[p];
      if (size_t n = space_len(s_, p)) {
        count_lines(s_, p, p + n);
        p += n;
        continue;
      }
      if (is_digit(c)) {
        p = lex_number(p);
        continue;
      }
      if (is_name_start(c)) {
        size_t q = p;
        while (q < s_.size() && (is_name_start(s_[q]) || is_digit(s_[q]))) ++q;
        emit(Tok::kName, s_.substr(p, q - p));
        p = q;
        continue;
      }
      if (c == '\'' || c == '"') {
        size_t q = p + 1;
        while (q < s_.size() && s_[q] != c) q += (s_[q] == '\\') ? 2 : 1;
        if (q >= s_.size()) fail("unterminated string literal");
        emit(Tok::kString, unescape_string(s_.substr(p + 1, q - p - 1), line_));
        count_lines(s_, p, q);
        p = q + 1;
        continue;
      }
      static const char* kOps2[] = {"//", "**", "==", "!=", "<=", ">="};
      bool two = false;
      for (const char* op : kOps2)
        if (s_.compare(p, 2, op) == 0) {
          emit(Tok::kOp, op);
          p += 2;
          two = true;
          break;
        }
      if (two) continue;
      if (std::strchr("+-/*%~[](){}<>=.:|,;", c) && c != 0) {
        if (c == '(' || c == '[' || c == '{') balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
        if (c == ')' || c == ']' || c == '}') {
          if (balance.empty()) fail(std::string("unexpected '") + c + "'");
          if (balance.back() != c) fail(std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
          balance.pop_back();
        }
        emit(Tok::kOp, std::string(1, c));
        ++p;
        continue;
      }
      fail(std::string("unexpected char '") + c + "'");
    }
  }

  size_t lex_number(size_t p) {
    size_t q = p;
    auto digits = [&](size_t& r) {
      size_t st = r;
      while (r < s_.size() && (is_digit(s_[r]) || (s_[r] == '_' && r + 1 < s_.size() && is_digit(s_[r + 1])))) ++r;
      return r > st;
    };
    if (s_[q] == '0' && q + 1 < s_.size() && std::strchr("xXoObB", s_[q + 1]) && s_[q + 1]) {
      char base = static_cast<char>(s_[q + 1] | 0x20);
      size_t r = q + 2;
      std::string num;
      while (r < s_.size() && (std::isxdigit(static_cast<unsigned char>(s_[r])) || s_[r] == '_')) {
        if (s_[r] != '_') num += s_[r];
        ++r;
      }
      int b = base == 'x' ? 16 : base == 'o' ? 8 : 2;
      emit(Tok::kInt, std::to_string(std::stoll(num.empty() ? "0" : num, nullptr, b)));
      return r;
    }
    digits(q);
    bool is_float = false;
    size_t r = q;
    if (r + 1 < s_.size() && s_[r] == '.' && is_digit(s_[r + 1])) {
      ++r;
      digits(r);
      is_float = true;
    }
    if (r < s_.size() && (s_[r] == 'e' || s_[r] == 'E')) {
      size_t t = r + 1;
      if (t < s_.size() && (s_[t] == '+' || s_[t] == '-')) ++t;
      if (t < s_.size() && is_digit(s_[t])) {
        digits(t);
        r = t;
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = p; i < r; ++i)
      if (s_[i] != '_') text += s_[i];
    emit(is_float ? Tok::kFloat : Tok::kInt, text);
    return r;
  }

  std::string s_;
  LexOptions opts_;
  std::vector<Token> tokens_;
  int line_ = 1;
};

}  // namespace

std::vector<Token> lex(const std::string& source, const LexOptions& opts) { return Lexer(source, opts).run(); }

}  // namespace ds::text::jinja
