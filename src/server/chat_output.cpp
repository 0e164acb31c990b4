#include "chat_output.h"

namespace ds::server {

namespace {
const std::string kOpen = "<think>", kClose = "</think>";

// Length of the longest suffix of s that is a proper prefix of tag.
size_t partial_suffix(const std::string& s, const std::string& tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.compare(s.size() - n, n, tag, 0, n) == 0) return n;
  return 0;
}
}  // namespace

ChatOutput::ChatOutput(ChatOutputOptions opts)
    : opts_(opts), in_reasoning_(opts.reasoning_parser && opts.start_in_reasoning) {}

void ChatOutput::route(std::string text, ChatDelta* d) {
  if (text.empty()) return;
  if (in_reasoning_) {
    reasoning_ += text;
    if (opts_.include_reasoning) d->reasoning += text;
  } else {
    content_ += text;
    d->content += text;
  }
}

ChatDelta ChatOutput::feed(const std::string& text) {
  ChatDelta d;
  if (!in_reasoning_) {
    route(text, &d);
    return d;
  }
  std::string s = hold_ + text;
  hold_.clear();
  for (size_t open; (open = s.find(kOpen)) != std::string::npos && open < s.find(kClose);)
    s.erase(open, kOpen.size());  // `<think>` inside the thought is dropped
  const size_t close = s.find(kClose);
  if (close != std::string::npos) {
    route(s.substr(0, close), &d);
    in_reasoning_ = false;
    route(s.substr(close + kClose.size()), &d);
    return d;
  }
  const size_t keep = std::max(partial_suffix(s, kClose), partial_suffix(s, kOpen));
  hold_ = s.substr(s.size() - keep);
  route(s.substr(0, s.size() - keep), &d);
  return d;
}

ChatDelta ChatOutput::finish() {
  ChatDelta d;
  std::string s;
  s.swap(hold_);
  route(s, &d);
  return d;
}

std::optional<std::string> ChatOutput::reasoning() const {
  if (!opts_.reasoning_parser || !opts_.include_reasoning || reasoning_.empty()) return std::nullopt;
  return reasoning_;
}

std::optional<std::string> ChatOutput::content() const {
  if (content_.empty()) return std::nullopt;
  return content_;
}

}  // namespace ds::server
