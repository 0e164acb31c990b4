#include "deltaserve/engine/text_codec.h"

#include <algorithm>

namespace ds::engine {

namespace {
const char kReplacement[] = "\xEF\xBF\xBD";

// Replaces invalid / truncated UTF-8 sequences with U+FFFD.
std::string sanitize_utf8(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}
}  // namespace

ByteCodec::ByteCodec()
    : specials_{"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>",
                "</tool_call>", "<tool_response>", "</tool_response>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"} {}

Result<std::vector<int32_t>> ByteCodec::encode(const std::string& text, bool) const {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    bool matched = false;
    if (text[i] == '<') {
      for (size_t k = 0; k < specials_.size(); ++k) {
        if (text.compare(i, specials_[k].size(), specials_[k]) == 0) {
          ids.push_back(256 + static_cast<int32_t>(k));
          i += specials_[k].size();
          matched = true;
          break;
        }
      }
    }
    if (!matched) ids.push_back(static_cast<unsigned char>(text[i++]));
  }
  return ids;
}

std::string ByteCodec::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string raw;
  for (int32_t id : ids) {
    if (id >= 0 && id < 256) {
      raw.push_back(static_cast<char>(id));
    } else if (id >= 256 && id - 256 < static_cast<int32_t>(specials_.size())) {
      if (!skip_special_tokens || !is_special(id)) raw += specials_[id - 256];
    }
  }
  return sanitize_utf8(raw);
}

std::optional<int32_t> ByteCodec::token_to_id(const std::string& token) const {
  for (size_t k = 0; k < specials_.size(); ++k)
    if (specials_[k] == token) return 256 + static_cast<int32_t>(k);
  if (token.size() == 1) return static_cast<unsigned char>(token[0]);
  return std::nullopt;
}

std::string IncrementalDetokenizer::add(int32_t id) {
  ids_.push_back(id);
  const std::vector<int32_t> window(ids_.begin() + prefix_offset_, ids_.end());
  const std::vector<int32_t> prefix(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
  const std::string prefix_text = codec_->decode(prefix, skip_special_);
  const std::string new_text = codec_->decode(window, skip_special_);
  const bool incomplete =
      new_text.size() >= 3 && new_text.compare(new_text.size() - 3, 3, kReplacement) == 0;
  if (new_text.size() <= prefix_text.size() || incomplete) {
    // A special token skipped or an unfinished character: nothing final yet. Keep the window short
    // when nothing is pending so decode stays O(window).
    if (!incomplete && new_text.size() == prefix_text.size()) {
      prefix_offset_ = read_offset_ = ids_.size();
    }
    return {};
  }
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return new_text.substr(prefix_text.size());
}

StopStringTracker::StopStringTracker(std::vector<std::string> stops, bool include_stop_str)
    : stops_(std::move(stops)), include_(include_stop_str) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
  for (const auto& s : stops_) hold_ = std::max(hold_, s.size() - 1);
}

int StopStringTracker::add(const std::string& delta, bool match) {
  if (stopped_ || delta.empty()) return -1;
  const size_t old_len = text_.size();
  text_ += delta;
  if (!match) return -1;
  size_t best_pos = std::string::npos;
  int best = -1;
  for (size_t k = 0; k < stops_.size(); ++k) {
    const std::string& s = stops_[k];
    const size_t from = old_len >= s.size() - 1 ? old_len - (s.size() - 1) : 0;
    const size_t pos = text_.find(s, from);
    if (pos != std::string::npos && pos < best_pos) {
      best_pos = pos;
      best = static_cast<int>(k);
    }
  }
  if (best >= 0) {
    text_.resize(include_ ? best_pos + stops_[best].size() : best_pos);
    if (sent_ > text_.size()) sent_ = text_.size();
    stopped_ = true;
  }
  return best;
}

std::string StopStringTracker::take(bool final) {
  size_t end = text_.size();
  if (!final && !stopped_) {
    end = end > hold_ ? end - hold_ : 0;
    // Never split a UTF-8 character.
    while (end > sent_ && end < text_.size() && (static_cast<unsigned char>(text_[end]) & 0xC0) == 0x80) --end;
  }
  if (end <= sent_) return {};
  std::string out = text_.substr(sent_, end - sent_);
  sent_ = end;
  return out;
}

}  // namespace ds::engine
