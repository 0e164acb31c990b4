// Byte-level BPE model of a tokenizer.json (HF "BPE" with the GPT-2 byte alphabet): vocabulary,
// merge ranks, and the merge loop for one pre-tokenized word, with a per-thread word cache.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "deltaserve/core/status.h"

namespace ds::text {

// GPT-2 bytes_to_unicode: the printable character that stands for each byte in vocab strings.
char32_t byte_to_char(uint8_t b);
// Inverse; returns -1 for a character outside the 256-character alphabet.
int char_to_byte(char32_t c);
// Raw bytes of a byte-level token string; false if some character is outside the alphabet.
bool byte_level_decode(std::string_view token, std::string* bytes);
std::string byte_level_encode(std::string_view bytes);

// The bulky parts of a BPE "model" object, read by a streaming parser (tokenizer_json.cpp).
struct BpeTables {
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool has_vocab = false, has_merges = false;
};

class BpeModel {
 public:
  // options: the "model" object of tokenizer.json without vocab and merges (type BPE, ...).
  static Result<BpeModel> build(const nlohmann::json& options, BpeTables tables);

  // Appends the ids of one word (raw bytes, not byte-level characters).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  // Number of vocabulary entries and the largest id + 1.
  size_t size() const { return token_strings_.size(); }
  int32_t id_limit() const { return static_cast<int32_t>(token_strings_.size()); }
  // Vocab string (byte-level form) of an id, or empty if unused.
  const std::string& token_string(int32_t id) const { return token_strings_[id]; }
  // -1 if absent.
  int32_t find(std::string_view token_string) const;

 private:
  struct MergeTable {
    std::vector<uint64_t> keys;  // (left << 32 | right) + 1; 0 = empty
    std::vector<uint64_t> vals;  // rank << 32 | new id
    uint64_t mask = 0;
    void insert(uint64_t key, uint64_t val);
    // Returns false if absent.
    bool lookup(int32_t left, int32_t right, uint32_t* rank, int32_t* new_id) const;
  };

  void merge_word(std::vector<int32_t>& ids) const;

  std::vector<std::string> token_strings_;  // id -> vocab string
  // Open-addressing index over token_strings_ for find(): slot -> id, -1 empty.
  std::vector<int32_t> index_;
  uint64_t index_mask_ = 0;
  int32_t byte_ids_[256] = {};
  MergeTable merges_;
  uint64_t instance_ = 0;  // distinguishes models in the per-thread cache
};

}  // namespace ds::text
