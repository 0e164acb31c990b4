#include "src/text/tokenizer/bpe.h"

#include <atomic>
#include <cstring>
#include <nlohmann/json.hpp>
#include <queue>

#include "deltaserve/text/tokenizer/unicode.h"

namespace ds::text {
namespace {

struct ByteAlphabet {
  char32_t to_char[256];
  int16_t to_byte[324];  // the alphabet spans U+0021..U+0143
  ByteAlphabet() {
    for (auto& b : to_byte) b = -1;
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_char[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      to_byte[to_char[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

std::atomic<uint64_t> g_next_instance{1};

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < s.size(); ++i) h = (h ^ static_cast<unsigned char>(s[i])) * 0x100000001b3ull;
  h ^= h >> 32;
  return h * 0x9E3779B97F4A7C15ull;
}

// Direct-mapped per-thread cache of word -> ids for short words. A thread serving several models
// keeps one cache and clears it when the model changes (instance ids are never reused).
struct WordCache {
  static constexpr int kSlots = 1 << 14, kMaxKey = 22, kMaxIds = 7;
  struct Slot {
    uint64_t hash = 0;
    uint8_t key_len = 0, n_ids = 0;
    char key[kMaxKey];
    int32_t ids[kMaxIds];
  };
  uint64_t owner = 0;
  std::vector<Slot> slots;
};
thread_local WordCache t_cache;

}  // namespace

char32_t byte_to_char(uint8_t b) {
  return alphabet().to_char[b];
}

int char_to_byte(char32_t c) {
  return c < 324 ? alphabet().to_byte[c] : -1;
}

bool byte_level_decode(std::string_view token, std::string* bytes) {
  size_t i = 0;
  while (i < token.size()) {
    size_t len;
    const char32_t c = unicode::decode_utf8(token.data() + i, token.size() - i, &len);
    const int b = c == unicode::kInvalidUtf8 ? -1 : char_to_byte(c);
    if (b < 0) return false;
    bytes->push_back(static_cast<char>(b));
    i += len;
  }
  return true;
}

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) unicode::append_utf8(out, byte_to_char(b));
  return out;
}

void BpeModel::MergeTable::insert(uint64_t key, uint64_t val) {
  uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 20;
  while (true) {
    const uint64_t slot = h & mask;
    if (keys[slot] == 0 || keys[slot] == key) {
      keys[slot] = key;
      vals[slot] = val;
      return;
    }
    ++h;
  }
}

bool BpeModel::MergeTable::lookup(int32_t left, int32_t right, uint32_t* rank, int32_t* new_id) const {
  const uint64_t key = ((uint64_t(uint32_t(left)) << 32) | uint32_t(right)) + 1;
  uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 20;
  while (true) {
    const uint64_t slot = h & mask;
    if (keys[slot] == key) {
      *rank = static_cast<uint32_t>(vals[slot] >> 32);
      *new_id = static_cast<int32_t>(vals[slot] & 0xFFFFFFFFu);
      return true;
    }
    if (keys[slot] == 0) return false;
    ++h;
  }
}

Result<BpeModel> BpeModel::build(const nlohmann::json& model, BpeTables tables) {
  BpeModel m;
  if (!model.is_object() || model.value("type", "") != "BPE") {
    return unsupported("tokenizer.json: only BPE models are supported (model.type is not \"BPE\")");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      return unsupported(std::string("tokenizer.json: BPE ") + key + " is not supported");
    }
  }
  if (model.contains("dropout") && !model["dropout"].is_null()) {
    return unsupported("tokenizer.json: BPE dropout is not supported");
  }
  if (model.value("ignore_merges", false)) {
    return unsupported("tokenizer.json: BPE ignore_merges=true is not supported");
  }
  if (!tables.has_vocab || !tables.has_merges) {
    return corrupt("tokenizer.json: model.vocab (object) and model.merges (array) are required");
  }
  int64_t max_id = -1;
  for (const auto& [tok, id] : tables.vocab) {
    if (id < 0 || id > (1 << 30)) {
      return corrupt("tokenizer.json: vocab id of \"" + tok + "\" is not a valid id");
    }
    max_id = std::max(max_id, id);
  }
  m.token_strings_.assign(static_cast<size_t>(max_id + 1), std::string());
  size_t cap = 16;
  while (cap < tables.vocab.size() * 2) cap <<= 1;
  m.index_.assign(cap, -1);
  m.index_mask_ = cap - 1;
  for (auto& [tok, id] : tables.vocab) {
    if (tok.empty() || !m.token_strings_[id].empty() || m.find(tok) >= 0) {
      return corrupt("tokenizer.json: vocab entry \"" + tok + "\" (id " + std::to_string(id) +
                     ") is empty or repeats a token or an id");
    }
    m.token_strings_[id] = std::move(tok);
    uint64_t slot = hash_bytes(m.token_strings_[id]) & m.index_mask_;
    while (m.index_[slot] >= 0) slot = (slot + 1) & m.index_mask_;
    m.index_[slot] = static_cast<int32_t>(id);
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    unicode::append_utf8(s, byte_to_char(static_cast<uint8_t>(b)));
    const int32_t id = m.find(s);
    if (id < 0) {
      return unsupported("tokenizer.json: the vocabulary lacks byte token \"" + s +
                         "\"; only byte-level BPE is supported");
    }
    m.byte_ids_[b] = id;
  }
  cap = 1;
  while (cap < tables.merges.size() * 2 + 16) cap <<= 1;
  m.merges_.keys.assign(cap, 0);
  m.merges_.vals.assign(cap, 0);
  m.merges_.mask = cap - 1;
  uint32_t rank = 0;
  std::string joined;
  for (const auto& [left, right] : tables.merges) {
    joined.assign(left).append(right);
    const int32_t a = m.find(left), b = m.find(right), c = m.find(joined);
    if (a < 0 || b < 0 || c < 0) {
      return corrupt("tokenizer.json: merge \"" + left + " " + right + "\" uses unknown tokens");
    }
    const uint64_t key = ((uint64_t(uint32_t(a)) << 32) | uint32_t(b)) + 1;
    m.merges_.insert(key, (uint64_t(rank) << 32) | uint32_t(c));  // a repeat overwrites, as in HF
    ++rank;
  }
  m.instance_ = g_next_instance.fetch_add(1);
  return m;
}

int32_t BpeModel::find(std::string_view token_string) const {
  if (index_.empty()) return -1;
  for (uint64_t slot = hash_bytes(token_string) & index_mask_;; slot = (slot + 1) & index_mask_) {
    const int32_t id = index_[slot];
    if (id < 0) return -1;
    if (token_strings_[id] == token_string) return id;
  }
}

void BpeModel::merge_word(std::vector<int32_t>& ids) const {
  const size_t n = ids.size();
  if (n < 2) return;
  uint32_t rank;
  int32_t nid;
  if (n <= 48) {
    // Short words: rescan for the lowest-ranked pair each step (leftmost on ties).
    uint32_t ranks[48] = {};
    int32_t news[48] = {};
    size_t len = n;
    for (size_t i = 0; i + 1 < len; ++i) {
      ranks[i] = merges_.lookup(ids[i], ids[i + 1], &rank, &nid) ? rank : UINT32_MAX;
      news[i] = nid;
    }
    while (len > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < len; ++i) {
        if (ranks[i] < ranks[best]) best = i;
      }
      if (ranks[best] == UINT32_MAX) break;
      ids[best] = news[best];
      for (size_t i = best + 1; i + 1 < len; ++i) {
        ids[i] = ids[i + 1];
        ranks[i] = ranks[i + 1];
        news[i] = news[i + 1];
      }
      --len;
      if (best + 1 < len) {
        ranks[best] = merges_.lookup(ids[best], ids[best + 1], &rank, &nid) ? rank : UINT32_MAX;
        news[best] = nid;
      }
      if (best > 0) {
        ranks[best - 1] = merges_.lookup(ids[best - 1], ids[best], &rank, &nid) ? rank : UINT32_MAX;
        news[best - 1] = nid;
      }
    }
    ids.resize(len);
    return;
  }
  // Long words: HF's algorithm, a heap of candidate merges over a linked list of symbols.
  struct Sym {
    int32_t id;
    int32_t prev, next;
  };
  struct Cand {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Sym> sym(n);
  for (size_t i = 0; i < n; ++i) {
    sym[i] = {ids[i], static_cast<int32_t>(i) - 1, i + 1 < n ? static_cast<int32_t>(i + 1) : -1};
  }
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (merges_.lookup(sym[i].id, sym[i + 1].id, &rank, &nid)) {
      heap.push({rank, static_cast<uint32_t>(i), nid});
    }
  }
  std::vector<bool> dead(n, false);
  while (!heap.empty()) {
    const Cand top = heap.top();
    heap.pop();
    Sym& s = sym[top.pos];
    if (dead[top.pos] || s.next < 0) continue;
    if (!merges_.lookup(s.id, sym[s.next].id, &rank, &nid) || nid != top.new_id) continue;
    const int32_t right = s.next;
    s.id = top.new_id;
    s.next = sym[right].next;
    dead[right] = true;
    if (s.next >= 0) sym[s.next].prev = static_cast<int32_t>(top.pos);
    if (s.prev >= 0 && merges_.lookup(sym[s.prev].id, s.id, &rank, &nid)) {
      heap.push({rank, static_cast<uint32_t>(s.prev), nid});
    }
    if (s.next >= 0 && merges_.lookup(s.id, sym[s.next].id, &rank, &nid)) {
      heap.push({rank, top.pos, nid});
    }
  }
  size_t k = 0;
  for (int32_t i = 0; i >= 0; i = sym[i].next) ids[k++] = sym[i].id;
  ids.resize(k);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {
    out.push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  WordCache& cache = t_cache;
  const bool cacheable = word.size() <= WordCache::kMaxKey;
  uint64_t h = 0;
  WordCache::Slot* slot = nullptr;
  if (cacheable) {
    if (cache.owner != instance_) {
      cache.slots.assign(WordCache::kSlots, WordCache::Slot{});
      cache.owner = instance_;
    }
    h = hash_bytes(word) | 1;
    slot = &cache.slots[h & (WordCache::kSlots - 1)];
    if (slot->hash == h && slot->key_len == word.size() &&
        std::memcmp(slot->key, word.data(), word.size()) == 0) {
      out.insert(out.end(), slot->ids, slot->ids + slot->n_ids);
      return;
    }
  }
  thread_local std::vector<int32_t> ids;
  ids.resize(word.size());
  for (size_t i = 0; i < word.size(); ++i) ids[i] = byte_ids_[static_cast<unsigned char>(word[i])];
  merge_word(ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable && ids.size() <= WordCache::kMaxIds) {
    slot->hash = h;
    slot->key_len = static_cast<uint8_t>(word.size());
    std::memcpy(slot->key, word.data(), word.size());
    slot->n_ids = static_cast<uint8_t>(ids.size());
    std::copy(ids.begin(), ids.end(), slot->ids);
  }
}

}  // namespace ds::text
