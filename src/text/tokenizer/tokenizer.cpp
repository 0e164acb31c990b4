#include "deltaserve/text/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "deltaserve/text/tokenizer/unicode.h"
#include "src/text/tokenizer/bpe.h"
#include "src/text/tokenizer/pretokenize.h"
#include "src/text/tokenizer/tokenizer_json.h"

namespace ds::text {

using json = nlohmann::json;

namespace {

// Added tokens matched leftmost-longest (as HF's Aho-Corasick with MatchKind::LeftmostLongest).
class AddedMatcher {
 public:
  void add(const AddedToken* t) {
    if (t->content.empty()) return;
    by_first_[static_cast<unsigned char>(t->content[0])].push_back(t);
    first_[static_cast<unsigned char>(t->content[0])] = true;
  }
  void finish() {
    for (auto& v : by_first_) {
      std::stable_sort(v.begin(), v.end(), [](const AddedToken* a, const AddedToken* b) {
        return a->content.size() > b->content.size();
      });
    }
  }
  bool empty() const {
    return std::none_of(std::begin(first_), std::end(first_), [](bool b) { return b; });
  }
  // Next match at or after `from`: returns the token and sets *start, or nullptr.
  const AddedToken* find(std::string_view s, size_t from, size_t* start, bool skip_special) const {
    for (size_t i = from; i < s.size(); ++i) {
      const unsigned char b = static_cast<unsigned char>(s[i]);
      if (!first_[b]) continue;
      for (const AddedToken* t : by_first_[b]) {
        if (skip_special && t->special) continue;
        if (s.compare(i, t->content.size(), t->content) == 0) {
          *start = i;
          return t;
        }
      }
    }
    return nullptr;
  }

 private:
  bool first_[256] = {};
  std::vector<const AddedToken*> by_first_[256];
};

// Rust char::is_alphanumeric() || '_' (HF single_word); letters and numbers stand in for
// Alphabetic + Numeric.
bool is_word_char(char32_t c) {
  return c == '_' || (unicode::char_class(c) & (unicode::kLetter | unicode::kNumber));
}

char32_t last_char(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i > 0) --i;
  size_t len;
  return s.empty() ? 0 : unicode::decode_utf8(s.data() + i, s.size() - i, &len);
}

char32_t first_char(std::string_view s) {
  size_t len;
  return s.empty() ? 0 : unicode::decode_utf8(s.data(), s.size(), &len);
}

bool is_space(char32_t c) {
  return unicode::char_class(c) & unicode::kWhiteSpace;
}

struct Segment {
  const AddedToken* token;  // nullptr: plain text
  size_t begin, end;
};

}  // namespace

struct Tokenizer::Impl {
  BpeModel bpe;
  PreTokenizer pre;
  bool nfc = false;
  std::vector<AddedToken> added;
  std::unordered_map<int32_t, size_t> added_by_id;
  AddedMatcher raw_matcher, normalized_matcher;
  std::vector<std::string> bytes;  // id -> raw bytes
  std::vector<uint8_t> flags;      // id -> kAdded | kSpecial
  static constexpr uint8_t kAdded = 1, kSpecial = 2;

  // HF AddedVocabulary::find_matches.
  void find_matches(std::string_view s, const AddedMatcher& m, bool skip_special,
                    std::vector<Segment>& out) const {
    size_t offset = 0, pos = 0, start = 0;
    while (const AddedToken* t = m.find(s, pos, &start, skip_special)) {
      size_t b = start, e = start + t->content.size();
      pos = e;
      if (t->single_word) {
        const bool start_ok = b == 0 || !is_word_char(last_char(s.substr(0, b)));
        const bool stop_ok = e == s.size() || !is_word_char(first_char(s.substr(e)));
        if (!start_ok || !stop_ok) continue;
      }
      if (t->lstrip) {
        size_t nb = b;
        while (nb > 0) {
          const std::string_view left = s.substr(0, nb);
          const char32_t c = last_char(left);
          if (!is_space(c)) break;
          std::string tmp;
          unicode::append_utf8(tmp, c);
          nb -= tmp.size();
        }
        b = std::max(nb, offset);
      }
      if (t->rstrip) {
        while (e < s.size()) {
          size_t len;
          const char32_t c = unicode::decode_utf8(s.data() + e, s.size() - e, &len);
          if (!is_space(c)) break;
          e += len;
        }
      }
      if (offset < b) out.push_back({nullptr, offset, b});
      out.push_back({t, b, e});
      offset = e;
    }
    if (offset < s.size()) out.push_back({nullptr, offset, s.size()});
  }

  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const {
    thread_local std::vector<std::string_view> pieces;
    pieces.clear();
    pre.split(text, pieces);
    for (std::string_view p : pieces) bpe.encode_word(p, ids);
  }

  void encode_normalized(std::string_view text, const EncodeOptions& opts, std::vector<int32_t>& ids) const {
    std::string normalized_storage;
    std::string_view norm = text;
    if (nfc && !unicode::is_nfc_quick(text)) {
      normalized_storage = unicode::nfc(text);
      norm = normalized_storage;
    }
    if (normalized_matcher.empty()) {
      encode_plain(norm, ids);
      return;
    }
    std::vector<Segment> segs;
    find_matches(norm, normalized_matcher, opts.split_special_tokens, segs);
    for (const Segment& sg : segs) {
      if (sg.token) {
        ids.push_back(sg.token->id);
      } else {
        encode_plain(norm.substr(sg.begin, sg.end - sg.begin), ids);
      }
    }
  }
};

Result<Tokenizer> Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) file = (fs::path(path) / "tokenizer.json").string();
  std::ifstream in(file, std::ios::binary);
  if (!in) return not_found("tokenizer: cannot open " + file);
  std::stringstream ss;
  ss << in.rdbuf();
  auto r = from_json(ss.str());
  if (!r) return Status(r.status().code(), file + ": " + r.status().message());
  return r;
}

Result<Tokenizer> Tokenizer::from_json(std::string_view json_text) {
  // nlohmann throws on a value of the wrong type; a malformed file becomes a Status here.
  try {
    return build(json_text);
  } catch (const std::exception& e) {
    return corrupt(std::string("tokenizer.json: ") + e.what());
  }
}

Result<Tokenizer> Tokenizer::build(std::string_view json_text) {
  json j;
  BpeTables tables;
  DS_RETURN_IF_ERROR(parse_tokenizer_json(json_text, &j, &tables));
  auto impl = std::make_shared<Impl>();

  // normalizer: NFC (Qwen), null, or a Sequence of those.
  const json* norm = j.contains("normalizer") ? &j["normalizer"] : nullptr;
  if (norm && norm->is_object() && norm->value("type", "") == "Sequence" && norm->contains("normalizers") &&
      (*norm)["normalizers"].is_array()) {
    const json& seq = (*norm)["normalizers"];
    if (seq.empty())
      norm = nullptr;
    else if (seq.size() == 1)
      norm = &seq[0];
  }
  if (norm && !norm->is_null()) {
    if (!norm->is_object() || norm->value("type", "") != "NFC") {
      return unsupported("tokenizer.json: only the NFC normalizer is supported, got " +
                         norm->dump().substr(0, 80));
    }
    impl->nfc = true;
  }

  // pre_tokenizer: Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)].
  std::string pattern;
  const json& pt = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json();
  std::vector<const json*> steps;
  if (pt.is_object() && pt.value("type", "") == "Sequence" && pt.contains("pretokenizers") &&
      pt["pretokenizers"].is_array()) {
    for (const auto& s : pt["pretokenizers"]) steps.push_back(&s);
  } else if (pt.is_object()) {
    steps.push_back(&pt);
  }
  bool byte_level = false;
  for (const json* s : steps) {
    const std::string type = s->is_object() ? s->value("type", "") : "";
    if (type == "Split" && !byte_level && pattern.empty() && (*s).contains("pattern") &&
        (*s)["pattern"].is_object() && (*s)["pattern"].contains("Regex") &&
        (*s)["pattern"]["Regex"].is_string() && s->value("behavior", "") == "Isolated" &&
        !s->value("invert", false)) {
      pattern = (*s)["pattern"]["Regex"].get<std::string>();
    } else if (type == "ByteLevel" && !s->value("use_regex", true) && !s->value("add_prefix_space", false)) {
      byte_level = true;
    } else {
      return unsupported("tokenizer.json: unsupported pre-tokenizer step " + s->dump().substr(0, 120) +
                         " (supported: Split Regex Isolated, then ByteLevel use_regex=false)");
    }
  }
  if (!byte_level || pattern.empty()) {
    return unsupported("tokenizer.json: expected a Split regex and a ByteLevel pre-tokenizer");
  }
  DS_ASSIGN_OR_RETURN(impl->pre, PreTokenizer::create(pattern));
  if (j.contains("decoder") && !j["decoder"].is_null() &&
      (!j["decoder"].is_object() || j["decoder"].value("type", "") != "ByteLevel")) {
    return unsupported("tokenizer.json: only the ByteLevel decoder is supported");
  }
  if (!j.contains("model")) return corrupt("tokenizer.json: no model");
  DS_ASSIGN_OR_RETURN(impl->bpe, BpeModel::build(j["model"], std::move(tables)));

  int32_t limit = impl->bpe.id_limit();
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
          !a["content"].is_string() || a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() > (1 << 30)) {
        return corrupt("tokenizer.json: malformed added token " + a.dump().substr(0, 80));
      }
      AddedToken t;
      t.id = a["id"].get<int32_t>();
      t.content = a["content"].get<std::string>();
      t.special = a.value("special", false);
      t.single_word = a.value("single_word", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.normalized = a.value("normalized", !t.special);
      limit = std::max(limit, t.id + 1);
      impl->added.push_back(std::move(t));
    }
  }
  for (size_t i = 0; i < impl->added.size(); ++i) impl->added_by_id[impl->added[i].id] = i;
  for (const AddedToken& t : impl->added) {
    (t.normalized && impl->nfc ? impl->normalized_matcher : impl->raw_matcher).add(&t);
  }
  impl->raw_matcher.finish();
  impl->normalized_matcher.finish();

  impl->bytes.assign(limit, std::string());
  impl->flags.assign(limit, 0);
  for (int32_t id = 0; id < impl->bpe.id_limit(); ++id) {
    const std::string& s = impl->bpe.token_string(id);
    if (!byte_level_decode(s, &impl->bytes[id])) impl->bytes[id] = s;
  }
  for (const AddedToken& t : impl->added) {
    std::string b;
    // The ByteLevel decoder maps every token; a token with a character outside the byte
    // alphabet is kept as its UTF-8.
    impl->bytes[t.id] = byte_level_decode(t.content, &b) ? b : t.content;
    impl->flags[t.id] = static_cast<uint8_t>(Impl::kAdded | (t.special ? Impl::kSpecial : 0));
  }
  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& opts) const {
  std::vector<int32_t> ids;
  std::string sanitized;
  if (!unicode::is_valid_utf8(text)) {
    sanitized = unicode::to_valid_utf8(text);
    text = sanitized;
  }
  ids.reserve(text.size() / 3 + 4);
  const Impl& im = *impl_;
  if (im.raw_matcher.empty()) {
    im.encode_normalized(text, opts, ids);
    return ids;
  }
  std::vector<Segment> segs;
  im.find_matches(text, im.raw_matcher, opts.split_special_tokens, segs);
  for (const Segment& sg : segs) {
    if (sg.token) {
      ids.push_back(sg.token->id);
    } else {
      im.encode_normalized(text.substr(sg.begin, sg.end - sg.begin), opts, ids);
    }
  }
  return ids;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  const Impl& im = *impl_;
  std::string s = unicode::to_valid_utf8(text);
  if (im.nfc) s = unicode::nfc(s);
  std::vector<std::string_view> pieces;
  im.pre.split(s, pieces);
  return {pieces.begin(), pieces.end()};
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& im = *impl_;
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(im.bytes.size())) continue;
    if (skip_special_tokens && (im.flags[id] & Impl::kSpecial)) continue;
    bytes += im.bytes[id];
  }
  return unicode::is_valid_utf8(bytes) ? bytes : unicode::to_valid_utf8(bytes);
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(impl_->bytes.size())) return {};
  return impl_->bytes[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < static_cast<int32_t>(impl_->flags.size()) && (impl_->flags[id] & Impl::kSpecial);
}

bool Tokenizer::is_added(int32_t id) const {
  return id >= 0 && id < static_cast<int32_t>(impl_->flags.size()) && (impl_->flags[id] & Impl::kAdded);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  const Impl& im = *impl_;
  if (auto it = im.added_by_id.find(id); it != im.added_by_id.end()) {
    return im.added[it->second].content;
  }
  if (id < 0 || id >= im.bpe.id_limit() || im.bpe.token_string(id).empty()) return std::nullopt;
  return im.bpe.token_string(id);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& t : impl_->added) {
    if (t.content == token) return t.id;
  }
  const int32_t id = impl_->bpe.find(token);
  if (id < 0) return std::nullopt;
  return id;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->bytes.size());
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const {
  return impl_->added;
}

std::string Tokenizer::pre_tokenizer_engine() const {
  switch (impl_->pre.engine()) {
    case PreTokenizer::Engine::kQwen2:
      return "qwen2";
    case PreTokenizer::Engine::kQwen35:
      return "qwen35";
    case PreTokenizer::Engine::kPcre2:
      return "pcre2";
  }
  return "pcre2";
}

}  // namespace ds::text
