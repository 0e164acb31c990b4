#include "src/text/tokenizer/tokenizer_json.h"

#include <nlohmann/json.hpp>

namespace ds::text {
namespace {

using json = nlohmann::json;

// Streams tokenizer.json: model.vocab and model.merges (hundreds of thousands of entries) go
// straight into BpeTables; every other event is forwarded to nlohmann's DOM builder. This makes
// loading the 20 MB Qwen3.5 file several times faster than building a full DOM.
class Sax {
 public:
  Sax(json& root, BpeTables& tables) : dom_(root, /*allow_exceptions=*/false), t_(tables) {}

  bool null() { return capture_ ? fail("null in vocab/merges") : dom_.null(); }
  bool boolean(bool v) { return capture_ ? fail("boolean in vocab/merges") : dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) {
    if (capture_ == kVocab && depth_ == capture_depth_) {
      t_.vocab.emplace_back(std::move(key_), v);
      return true;
    }
    return capture_ ? fail("number in merges") : dom_.number_integer(v);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (capture_ == kVocab && depth_ == capture_depth_) {
      t_.vocab.emplace_back(std::move(key_), v > (1u << 31) ? -1 : static_cast<int64_t>(v));
      return true;
    }
    return capture_ ? fail("number in merges") : dom_.number_unsigned(v);
  }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return capture_ ? fail("float in vocab/merges") : dom_.number_float(v, s);
  }
  bool string(json::string_t& s) {
    if (capture_ == kMerges && depth_ == capture_depth_) {  // "left right"
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) return fail("merge \"" + s + "\" has no space");
      t_.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      return true;
    }
    if (capture_ == kMerges && depth_ == capture_depth_ + 1) {  // ["left", "right"]
      pair_.push_back(std::move(s));
      return true;
    }
    return capture_ ? fail("string in vocab") : dom_.string(s);
  }
  bool binary(json::binary_t& b) { return capture_ ? fail("binary") : dom_.binary(b); }
  bool start_object(std::size_t n) {
    ++depth_;
    if (capture_) return depth_ == capture_depth_ && capture_ == kVocab ? true : fail("object");
    if (pending_ == kVocab) return begin_capture(kVocab);
    if (pending_ == kMerges) return fail("model.merges is not an array");
    if (depth_ == 2 && last_top_key_ == "model") in_model_ = true;
    return dom_.start_object(n);
  }
  bool end_object() {
    --depth_;
    if (capture_) return end_capture();
    if (depth_ == 1) in_model_ = false;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    ++depth_;
    if (capture_ == kMerges && depth_ == capture_depth_ + 1) {
      pair_.clear();
      return true;
    }
    if (capture_) return fail("nested array");
    if (pending_ == kMerges) return begin_capture(kMerges);
    if (pending_ == kVocab) return fail("model.vocab is not an object");
    return dom_.start_array(n);
  }
  bool end_array() {
    --depth_;
    if (capture_ == kMerges && depth_ == capture_depth_) {
      if (pair_.size() != 2) return fail("a merge is not a pair of strings");
      t_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      return true;
    }
    if (capture_) return end_capture();
    return dom_.end_array();
  }
  bool key(json::string_t& k) {
    if (capture_ == kVocab) {
      key_ = std::move(k);
      return true;
    }
    if (depth_ == 1) last_top_key_ = k;
    if (in_model_ && depth_ == 2 && (k == "vocab" || k == "merges")) {
      pending_ = k == "vocab" ? kVocab : kMerges;
      return true;
    }
    return dom_.key(k);
  }
  bool parse_error(std::size_t pos, const std::string& tok, const json::exception& e) {
    error_ = e.what();
    return dom_.parse_error(pos, tok, e);
  }

  const std::string& error() const { return error_; }

 private:
  enum Capture { kNone, kVocab, kMerges };
  bool begin_capture(Capture c) {
    capture_ = c;
    capture_depth_ = depth_;
    pending_ = kNone;
    (c == kVocab ? t_.has_vocab : t_.has_merges) = true;
    return true;
  }
  bool end_capture() {
    if (depth_ + 1 != capture_depth_) return fail("unbalanced vocab/merges");
    capture_ = kNone;
    return true;
  }
  bool fail(const std::string& why) {
    error_ = "tokenizer.json: malformed model.vocab/merges: " + why;
    return false;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  BpeTables& t_;
  int depth_ = 0, capture_depth_ = 0;
  bool in_model_ = false;
  Capture capture_ = kNone, pending_ = kNone;
  std::string key_, last_top_key_, error_;
  std::vector<std::string> pair_;
};

}  // namespace

Status parse_tokenizer_json(std::string_view text, nlohmann::json* rest, BpeTables* tables) {
  Sax sax(*rest, *tables);
  const bool ok = json::sax_parse(text.begin(), text.end(), &sax, json::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (!ok || rest->is_discarded()) {
    return corrupt(sax.error().empty() ? "tokenizer.json is not valid JSON" : sax.error());
  }
  if (!rest->is_object()) return corrupt("tokenizer.json is not a JSON object");
  return Status::ok();
}

}  // namespace ds::text
