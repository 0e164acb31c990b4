// The Qwen3 XML tool-call state machine. It scans the content stream once; the only text it keeps
// is the undecided tail (a possible tag prefix plus bounded look-ahead), so memory and time are
// linear in the output. Which tags are structural inside a parameter value:
// - a `</parameter>` closes the value when the next thing is `</function>`, `</tool_call>`, the
//   end, or a `<parameter=NAME>` where NAME is a schema parameter or an undeclared one that closes
//   cleanly (its own `</parameter>`, or `</function>` / `</tool_call>`, is followed by a structural
//   tag or the end). vLLM keeps undeclared parameters as strings; the clean-close test keeps a
//   `content` value that merely shows `</parameter>\n<parameter=new_string>...` whole, as vLLM's
//   schema-aware `_find_true_param_end` does;
// - a line-initial `<parameter=NAME>` with a NAME not seen yet in this call means the value was
//   missing its close tag and the next parameter starts (vLLM's qwen3_coder regex and qwen3_xml
//   read it so), under the same test for undeclared names. It nests instead (its `</parameter>` is
//   literal too) when NAME was seen already (`content` showing `<parameter=path>`), when an
//   undeclared NAME does not close cleanly, and for undeclared names inside a value that has
//   written a literal `<tool_call>` / `<function=` (code showing the format);
// - output cut off inside the tag after a `</parameter>` ends the value there.
#include "deltaserve/text/parsers/tool_parser.h"

#include <algorithm>
#include <cstring>

namespace ds::text {
namespace {

constexpr std::string_view kToolCallOpen = "<tool_call>";
constexpr std::string_view kToolCallClose = "</tool_call>";
constexpr std::string_view kFunctionOpen = "<function=";
constexpr std::string_view kFunctionClose = "</function>";
constexpr std::string_view kParamOpen = "<parameter=";
constexpr std::string_view kParamClose = "</parameter>";

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
// vLLM `_is_valid_function_name`: template syntax, quotes and whitespace mark a phantom call.
bool bad_name_char(char c) {
  return c == '{' || c == '}' || c == '<' || c == '"' || c == '\'' || is_ws(c);
}

bool could_be_null_word(const std::string& raw) {
  if (raw.size() > 4) return false;
  std::string l = raw;
  for (auto& c : l)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return std::string_view("null").substr(0, l.size()) == l ||
         std::string_view("none").substr(0, l.size()) == l;
}

}  // namespace

ToolCallParser::ToolCallParser(const nlohmann::json& tools, ToolParserLimits limits,
                               std::function<std::string()> make_id, bool parallel_tool_calls)
    : tools_(tools), limits_(limits), make_id_(std::move(make_id)), parallel_(parallel_tool_calls) {}

void ToolCallParser::feed(std::string_view text, std::vector<ToolEvent>& out) {
  if (state_ == State::kDrain) return;
  buf_.append(text);
  while (step(out)) {
  }
  buf_.erase(0, pos_);
  pos_ = 0;
}

void ToolCallParser::finish(std::vector<ToolEvent>& out) {
  eof_ = true;
  while (step(out)) {
  }
  switch (state_) {
    case State::kFuncBody:
    case State::kParamName:
      close_function(out);
      ended_inside_call_ = true;
      break;
    case State::kValue:
      held_nl_ = false;
      value_close(out);
      close_function(out);
      ended_inside_call_ = true;
      break;
    default:  // a dangling `<tool_call>` / truncated `<function=NAME` / whitespace: nothing to say
      break;
  }
  state_ = State::kDrain;
  buf_.clear();
  pos_ = 0;
}

void ToolCallParser::consume(size_t n) {
  pos_ += n;
  lookahead_scanned_ = 0;
}

ToolCallParser::Tri ToolCallParser::match(size_t pos, std::string_view lit) const {
  const size_t avail = buf_.size() > pos ? buf_.size() - pos : 0;
  const size_t n = std::min(avail, lit.size());
  if (buf_.compare(pos, n, lit.substr(0, n)) != 0) return Tri::kNo;
  if (n == lit.size()) return Tri::kYes;
  return eof_ ? Tri::kNo : Tri::kMore;
}

// kYes: a non-space character at pos; kNo: end of output (eof) at pos; kMore: need input.
// More than max_lookahead_ws spaces count as "something else" (pos is set past the cap).
ToolCallParser::Tri ToolCallParser::skip_ws(size_t& pos) const {
  const size_t start = pos;
  while (pos < buf_.size() && is_ws(buf_[pos])) {
    if (pos - start >= limits_.max_lookahead_ws) return Tri::kYes;
    ++pos;
  }
  if (pos < buf_.size()) return Tri::kYes;
  return eof_ ? Tri::kNo : Tri::kMore;
}

ToolCallParser::Tri ToolCallParser::read_name(size_t pos, std::string* name, size_t* end) const {
  for (size_t p = pos; p < buf_.size(); ++p) {
    const char c = buf_[p];
    if (c == '>') {
      *name = buf_.substr(pos, p - pos);
      *end = p + 1;
      return Tri::kYes;
    }
    if (c == '\n' || c == '<' || p - pos >= limits_.max_name_bytes) return Tri::kNo;
  }
  return eof_ ? Tri::kNo : Tri::kMore;
}

bool ToolCallParser::name_is_schema_param(const std::string& name) const {
  return props_ == nullptr || props_->contains(name);
}

// After a depth-0 `</parameter>` inside a value: is it the real end of the value?
ToolCallParser::Tri ToolCallParser::param_close_is_real(size_t after) {
  size_t p = after;
  const Tri w = skip_ws(p);
  if (w != Tri::kYes) return w == Tri::kMore ? Tri::kMore : Tri::kYes;  // end of output: real
  if (p < buf_.size() && is_ws(buf_[p])) return Tri::kNo;               // whitespace cap
  if (eof_ && output_ends_in_a_tag(p)) return Tri::kYes;  // cut off while writing the next tag
  const Tri mp = match(p, kParamOpen);
  if (mp == Tri::kYes) {
    std::string name;
    size_t end = 0;
    const Tri r = read_name(p + kParamOpen.size(), &name, &end);
    if (r != Tri::kYes || name_is_schema_param(name)) return r;
    if (value_has_call_tag_) return Tri::kNo;
    return undeclared_param_closes_cleanly(end);
  }
  const Tri mf = match(p, kFunctionClose);
  const Tri mc = match(p, kToolCallClose);
  if (mf == Tri::kYes || mc == Tri::kYes) return Tri::kYes;
  if (mp == Tri::kMore || mf == Tri::kMore || mc == Tri::kMore) return Tri::kMore;
  return Tri::kNo;
}

// `value_start` is just past `<parameter=NAME>` of an undeclared NAME. kYes when that value ends
// with a close tag that is followed by a structural tag or the end of output (or runs to the end,
// or past max_lookahead_bytes). The scan resumes where the last call stopped, so a long value
// streamed in many pieces costs linear time.
ToolCallParser::Tri ToolCallParser::undeclared_param_closes_cleanly(size_t value_start) {
  size_t from = std::max(value_start, pos_ + lookahead_scanned_);
  while (true) {
    size_t close = std::string::npos;
    std::string_view tag;
    for (std::string_view t : {kParamClose, kFunctionClose, kToolCallClose}) {
      const size_t at = buf_.find(t, from);
      if (at < close) close = at, tag = t;
    }
    if (close == std::string::npos) {
      if (eof_ || buf_.size() - pos_ > limits_.max_lookahead_bytes) return Tri::kYes;
      const size_t keep = kToolCallClose.size() - 1;  // a close tag may be arriving in pieces
      lookahead_scanned_ = std::max(from, buf_.size() > keep ? buf_.size() - keep : 0) - pos_;
      return Tri::kMore;
    }
    if (tag != kParamClose) return Tri::kYes;  // the parameter only lacked `</parameter>`
    size_t p = close + tag.size();
    const Tri w = skip_ws(p);
    if (w == Tri::kNo) return Tri::kYes;
    if (w == Tri::kMore) {
      lookahead_scanned_ = close - pos_;
      return Tri::kMore;
    }
    for (std::string_view t : {kParamOpen, kFunctionClose, kToolCallClose}) {
      const Tri m = match(p, t);
      if (m == Tri::kYes) return Tri::kYes;
      if (m == Tri::kMore) {
        lookahead_scanned_ = close - pos_;
        return Tri::kMore;
      }
    }
    return Tri::kNo;
  }
}

// The rest of the output is an unfinished `</function>`, `</tool_call>` or `<parameter=NAME`.
bool ToolCallParser::output_ends_in_a_tag(size_t p) const {
  const std::string_view rest = std::string_view(buf_).substr(p);
  for (std::string_view tag : {kFunctionClose, kToolCallClose, kParamOpen})
    if (rest.size() < tag.size() && tag.substr(0, rest.size()) == rest) return true;
  if (rest.substr(0, kParamOpen.size()) != kParamOpen) return false;
  const std::string_view name = rest.substr(kParamOpen.size());
  return name.size() <= limits_.max_name_bytes && name.find_first_of(">\n<") == std::string_view::npos;
}

// After a depth-0 `</function>` inside a value (the `</parameter>` is missing): real only when
// followed by the end of output or by a real `</tool_call>`.
ToolCallParser::Tri ToolCallParser::function_close_is_real(size_t after) const {
  size_t p = after;
  const Tri w = skip_ws(p);
  if (w != Tri::kYes) return w == Tri::kMore ? Tri::kMore : Tri::kYes;
  const Tri m = match(p, kToolCallClose);
  if (m != Tri::kYes) return m;
  return call_close_is_real(p + kToolCallClose.size());
}

// A `</tool_call>` met inside a value is real when the output ends or another call follows.
ToolCallParser::Tri ToolCallParser::call_close_is_real(size_t after) const {
  size_t p = after;
  const Tri w = skip_ws(p);
  if (w != Tri::kYes) return w == Tri::kMore ? Tri::kMore : Tri::kYes;
  return match(p, kToolCallOpen);
}

void ToolCallParser::emit_content(std::string_view s, std::vector<ToolEvent>& out) {
  if (s.empty()) return;
  content_line_start_ = s.back() == '\n';
  if (!out.empty() && out.back().kind == ToolEvent::kContent) {
    out.back().text.append(s);
    return;
  }
  out.push_back({ToolEvent::kContent, 0, std::string(s), {}, {}});
}

void ToolCallParser::emit_args(std::string_view s, std::vector<ToolEvent>& out) {
  if (muted_ || s.empty()) return;
  if (!out.empty() && out.back().kind == ToolEvent::kArguments && out.back().index == call_index_) {
    out.back().text.append(s);
    return;
  }
  out.push_back({ToolEvent::kArguments, call_index_, std::string(s), {}, {}});
}

void ToolCallParser::start_call(const std::string& name, std::vector<ToolEvent>& out) {
  muted_ = !parallel_ && emitted_calls_ >= 1;
  props_ = nullptr;
  if (tools_.is_array()) {
    for (const auto& t : tools_) {
      if (!t.is_object() || !t.contains("function") || !t["function"].is_object()) continue;
      const auto& f = t["function"];
      if (!f.contains("name") || f["name"] != name) continue;
      if (f.contains("parameters") && f["parameters"].is_object()) {
        const auto& params = f["parameters"];
        auto it = params.find("properties");
        if (it != params.end() && it->is_object() && !it->empty()) props_ = &*it;
      }
      break;
    }
  }
  seen_params_.clear();
  n_params_ = 0;
  if (muted_) return;
  call_index_ = emitted_calls_++;
  out.push_back({ToolEvent::kHeader, call_index_, {}, make_id_(), name});
}

void ToolCallParser::open_param(const std::string& name, std::vector<ToolEvent>& out) {
  std::string key = n_params_ == 0 ? "{" : ", ";
  key += json_quote(name);
  key += ": ";
  emit_args(key, out);
  ++n_params_;
  seen_params_.push_back(name);
  param_name_ = name;
  spec_ = param_spec(props_, name);
  value_fresh_ = true;
  value_has_call_tag_ = false;
  after_nl_ = true;
  held_nl_ = false;
  depth_ = 0;
  str_open_ = false;
  raw_.clear();
  value_bytes_ = 0;
  state_ = State::kValue;
}

void ToolCallParser::value_append(std::string_view s, std::vector<ToolEvent>& out) {
  if (overflow_) return;
  if (value_bytes_ + s.size() > limits_.max_value_bytes) {
    s = s.substr(0, limits_.max_value_bytes - value_bytes_);
    overflow_ = true;
  }
  value_bytes_ += s.size();
  if (spec_.kind != ParamKind::kString) {
    raw_.append(s);
    return;
  }
  std::string frag;
  if (!str_open_ && spec_.allows_null) {
    raw_.append(s);
    if (could_be_null_word(raw_)) return;  // might still be the word null / None
    s = raw_;
  }
  if (!str_open_) {
    frag.push_back('"');
    str_open_ = true;
  }
  json_escape_append(frag, s);
  raw_.clear();
  emit_args(frag, out);
}

void ToolCallParser::value_close(std::vector<ToolEvent>& out) {
  if (spec_.kind == ParamKind::kString && str_open_) {
    emit_args("\"", out);
  } else {
    emit_args(convert_param_value(raw_, spec_), out);
  }
  raw_.clear();
  str_open_ = false;
}

void ToolCallParser::close_function(std::vector<ToolEvent>& out) {
  emit_args(n_params_ == 0 ? "{}" : "}", out);
  n_params_ = 0;
  muted_ = false;
}

bool ToolCallParser::step(std::vector<ToolEvent>& out) {
  if (overflow_ && state_ == State::kValue) {
    error_ = "a tool-call parameter value ('" + param_name_ + "') exceeds " +
             std::to_string(limits_.max_value_bytes) + " bytes; the rest of the output was dropped";
    value_close(out);
    close_function(out);
    ended_inside_call_ = true;
    state_ = State::kDrain;
    buf_.clear();
    pos_ = 0;
    return false;
  }
  if (state_ == State::kDrain || pos_ >= buf_.size()) return false;
  const char c = buf_[pos_];
  switch (state_) {
    case State::kContent: {
      if (c != '<') {
        size_t e = buf_.find('<', pos_);
        if (e == std::string::npos) e = buf_.size();
        emit_content(std::string_view(buf_).substr(pos_, e - pos_), out);
        pos_ = e;
        return true;
      }
      const Tri mt = match(pos_, kToolCallOpen);
      const Tri mf = content_line_start_ ? match(pos_, kFunctionOpen) : Tri::kNo;
      if (mt == Tri::kYes) {
        raw_hold_ = kToolCallOpen;
        consume(kToolCallOpen.size());
        state_ = State::kAfterOpen;
        return true;
      }
      if (mf == Tri::kYes) {  // the model forgot `<tool_call>`
        raw_hold_ = kFunctionOpen;
        consume(kFunctionOpen.size());
        name_.clear();
        state_ = State::kFuncName;
        return true;
      }
      if (mt == Tri::kMore || mf == Tri::kMore) return false;
      emit_content("<", out);
      consume(1);
      return true;
    }
    case State::kAfterOpen: {
      if (is_ws(c)) {  // kept up to a cap (bounded memory), skipped beyond it
        if (raw_hold_.size() <= limits_.max_lookahead_ws + kToolCallOpen.size()) raw_hold_ += c;
        consume(1);
        return true;
      }
      const Tri m = match(pos_, kFunctionOpen);
      if (m == Tri::kMore) return false;
      if (m == Tri::kYes) {
        raw_hold_ += kFunctionOpen;
        consume(kFunctionOpen.size());
        name_.clear();
        state_ = State::kFuncName;
        return true;
      }
      emit_content(raw_hold_, out);  // `<tool_call>` not followed by a function: plain text
      raw_hold_.clear();
      state_ = State::kContent;
      return true;
    }
    case State::kFuncName: {
      if (c == '>' && !name_.empty()) {
        consume(1);
        raw_hold_.clear();
        start_call(name_, out);
        state_ = State::kFuncBody;
        return true;
      }
      if (c == '>' || bad_name_char(c) || name_.size() >= limits_.max_name_bytes) {
        emit_content(raw_hold_, out);  // a phantom / malformed call stays visible as text
        raw_hold_.clear();
        state_ = State::kContent;
        return true;
      }
      name_ += c;
      raw_hold_ += c;
      consume(1);
      return true;
    }
    case State::kFuncBody: {
      if (is_ws(c)) {
        consume(1);
        return true;
      }
      if (c != '<') {  // stray text between parameters (vLLM ignores it too)
        size_t e = buf_.find('<', pos_);
        pos_ = e == std::string::npos ? buf_.size() : e;
        return true;
      }
      const Tri mp = match(pos_, kParamOpen), mfc = match(pos_, kFunctionClose),
                mtc = match(pos_, kToolCallClose);
      const Tri mfo = match(pos_, kFunctionOpen), mto = match(pos_, kToolCallOpen);
      if (mp == Tri::kYes) {
        consume(kParamOpen.size());
        name_.clear();
        state_ = State::kParamName;
      } else if (mfc == Tri::kYes) {
        consume(kFunctionClose.size());
        close_function(out);
        state_ = State::kAfterFunc;
      } else if (mtc == Tri::kYes) {
        consume(kToolCallClose.size());
        close_function(out);
        state_ = State::kAfterCall;
      } else if (mfo == Tri::kYes) {
        close_function(out);
        consume(kFunctionOpen.size());
        raw_hold_ = kFunctionOpen;
        name_.clear();
        state_ = State::kFuncName;
      } else if (mto == Tri::kYes) {
        close_function(out);
        consume(kToolCallOpen.size());
        raw_hold_ = kToolCallOpen;
        state_ = State::kAfterOpen;
      } else if (mp == Tri::kMore || mfc == Tri::kMore || mtc == Tri::kMore || mfo == Tri::kMore ||
                 mto == Tri::kMore) {
        return false;
      } else {
        consume(1);
      }
      return true;
    }
    case State::kParamName: {
      if (c == '>' && !name_.empty()) {
        consume(1);
        open_param(name_, out);
        return true;
      }
      if (c == '>' || c == '\n' || c == '<' || name_.size() >= limits_.max_name_bytes) {
        state_ = State::kFuncBody;  // malformed parameter tag: skip it
        if (c == '>') consume(1);
        return true;
      }
      name_ += c;
      consume(1);
      return true;
    }
    case State::kValue:
      return step_value(out);
    case State::kAfterFunc:
    case State::kAfterCall: {
      if (is_ws(c) && ws_hold_.size() <= limits_.max_lookahead_ws) {
        ws_hold_ += c;
        consume(1);
        return true;
      }
      // After `</function>` this closes the call; right after a call it is a duplicate: dropped.
      const Tri mtc = match(pos_, kToolCallClose);
      const Tri mto = match(pos_, kToolCallOpen), mfo = match(pos_, kFunctionOpen);
      if (mtc == Tri::kYes) {
        consume(kToolCallClose.size());
        ws_hold_.clear();
        state_ = State::kAfterCall;
      } else if (mto == Tri::kYes || mfo == Tri::kYes) {
        const std::string_view tag = mto == Tri::kYes ? kToolCallOpen : kFunctionOpen;
        raw_hold_ = ws_hold_;
        raw_hold_ += tag;
        ws_hold_.clear();
        consume(tag.size());
        name_.clear();
        state_ = mto == Tri::kYes ? State::kAfterOpen : State::kFuncName;
      } else if (mtc == Tri::kMore || mto == Tri::kMore || mfo == Tri::kMore) {
        return false;
      } else {
        emit_content(ws_hold_, out);  // text after the calls is content, never dropped
        ws_hold_.clear();
        state_ = State::kContent;
      }
      return true;
    }
    case State::kDrain:
      return false;
  }
  return false;
}

bool ToolCallParser::step_value(std::vector<ToolEvent>& out) {
  const char c = buf_[pos_];
  if (value_fresh_) {  // one leading newline is not part of the value
    value_fresh_ = false;
    if (c == '\n') {
      consume(1);
      return true;
    }
  }
  auto flush_nl = [&] {
    if (held_nl_) value_append("\n", out);
    held_nl_ = false;
  };
  auto literal = [&](size_t n) {
    flush_nl();
    value_append(std::string_view(buf_).substr(pos_, n), out);
    consume(n);
    after_nl_ = false;
    return true;
  };
  if (c == '\n') {  // held: one trailing newline before the close tag is not part of the value
    flush_nl();
    held_nl_ = true;
    after_nl_ = true;
    consume(1);
    return true;
  }
  if (c != '<') {
    size_t e = buf_.find_first_of("<\n", pos_);
    if (e == std::string::npos) e = buf_.size();
    return literal(e - pos_);
  }
  if (after_nl_) {
    const Tri m = match(pos_, kParamOpen);
    if (m == Tri::kMore) return false;
    if (m == Tri::kYes) {
      std::string name;
      size_t end = 0;
      const Tri r = read_name(pos_ + kParamOpen.size(), &name, &end);
      if (r == Tri::kMore) return false;
      const bool unseen = std::find(seen_params_.begin(), seen_params_.end(), name) == seen_params_.end();
      Tri next_param = Tri::kNo;
      if (r == Tri::kYes && depth_ == 0 && unseen) {
        if (name_is_schema_param(name)) next_param = Tri::kYes;
        else if (!value_has_call_tag_) next_param = undeclared_param_closes_cleanly(end);
      }
      if (next_param == Tri::kMore) return false;
      if (next_param == Tri::kYes) {
        held_nl_ = false;  // the value lacked `</parameter>`: this tag starts the next parameter
        value_close(out);
        consume(end - pos_);
        open_param(name, out);
        return true;
      }
      if (r != Tri::kYes) return literal(kParamOpen.size());  // no `NAME>`: not a tag at all
      ++depth_;  // a literal nested parameter: its `</parameter>` is literal too
      return literal(end - pos_);
    }
  }
  const Tri mp = match(pos_, kParamClose), mf = match(pos_, kFunctionClose), mc = match(pos_, kToolCallClose);
  const Tri mfo = match(pos_, kFunctionOpen), mto = match(pos_, kToolCallOpen);
  if (mp == Tri::kMore || mf == Tri::kMore || mc == Tri::kMore || mfo == Tri::kMore || mto == Tri::kMore)
    return false;
  if (mfo == Tri::kYes || mto == Tri::kYes) {  // the value shows tool-call XML as text
    value_has_call_tag_ = true;
    return literal(mfo == Tri::kYes ? kFunctionOpen.size() : kToolCallOpen.size());
  }
  if (mp == Tri::kYes) {
    if (depth_ > 0) {
      --depth_;
      return literal(kParamClose.size());
    }
    const Tri real = param_close_is_real(pos_ + kParamClose.size());
    if (real == Tri::kMore) return false;
    if (real == Tri::kNo) return literal(kParamClose.size());
    held_nl_ = false;
    value_close(out);
    consume(kParamClose.size());
    state_ = State::kFuncBody;
    return true;
  }
  if ((mf == Tri::kYes || mc == Tri::kYes) && depth_ == 0) {
    const std::string_view tag = mf == Tri::kYes ? kFunctionClose : kToolCallClose;
    const Tri real =
        mf == Tri::kYes ? function_close_is_real(pos_ + tag.size()) : call_close_is_real(pos_ + tag.size());
    if (real == Tri::kMore) return false;
    if (real == Tri::kYes) {
      held_nl_ = false;
      value_close(out);
      consume(tag.size());
      close_function(out);
      state_ = mf == Tri::kYes ? State::kAfterFunc : State::kAfterCall;
      return true;
    }
    return literal(tag.size());
  }
  if (mf == Tri::kYes) return literal(kFunctionClose.size());
  if (mc == Tri::kYes) return literal(kToolCallClose.size());
  return literal(1);
}

}  // namespace ds::text
