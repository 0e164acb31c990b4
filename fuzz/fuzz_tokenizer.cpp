// Tokenizer fuzz target (Qwen3.5 tokenizer.json): encode arbitrary bytes, decode the ids back
// (ASCII without special-token text must round-trip exactly: NFC and byte-level BPE leave it
// alone), decode arbitrary ids, and check the incremental detokenizer against decode().
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "deltaserve/text/tokenizer/detokenizer.h"
#include "deltaserve/text/tokenizer/tokenizer.h"
#include "fuzz/fuzz_common.h"

namespace {

const ds::text::Tokenizer& tokenizer() {
  static std::unique_ptr<ds::text::Tokenizer> tok = [] {
    auto r = ds::text::Tokenizer::load(ds::fuzz::qwen35_tokenizer_path());
    if (!r.is_ok()) {
      std::fprintf(stderr,
                   "fuzz_tokenizer: %s (tools/setup.sh builds it; DS_QWEN35_TOKENIZER or DS_FUZZ_DATA point "
                   "elsewhere)\n",
                   r.status().message().c_str());
      std::exit(1);
    }
    return std::make_unique<ds::text::Tokenizer>(std::move(r).value());
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // long inputs only slow the search down; BPE cost is per word
  const auto& tok = tokenizer();
  ds::fuzz::Bytes in(data, size);
  const uint8_t mode = in.u8();
  const std::string_view text = in.rest();

  if (mode & 1) {  // arbitrary ids, including unknown and negative ones
    std::vector<int32_t> ids;
    for (size_t i = 0; i + 4 <= text.size(); i += 4) {
      uint32_t v = 0;
      for (int k = 0; k < 4; ++k) v = (v << 8) | static_cast<uint8_t>(text[i + k]);
      ids.push_back((mode & 2) ? static_cast<int32_t>(v) : static_cast<int32_t>(v % (tok.vocab_size() + 16)));
    }
    const bool skip = mode & 4;
    const std::string whole = tok.decode(ids, skip);
    ds::text::IncrementalDetokenizer detok(tok, {skip, true});
    std::string streamed;
    for (int32_t id : ids) streamed += detok.step(id);
    streamed += detok.finish();
    DS_FUZZ_CHECK(streamed == whole, "incremental detokenizer '%s' != decode '%s'", streamed.c_str(),
                  whole.c_str());
    return 0;
  }

  ds::text::EncodeOptions opts;
  opts.split_special_tokens = mode & 2;
  const std::vector<int32_t> ids = tok.encode(text, opts);
  for (int32_t id : ids) DS_FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "id %d out of range", id);
  const std::string back = tok.decode(ids);
  bool ascii = true;
  for (char c : text) ascii = ascii && static_cast<unsigned char>(c) < 0x80 && c != 0;
  if (ascii) DS_FUZZ_CHECK(back == text, "round trip: '%s' -> '%s'", std::string(text).c_str(), back.c_str());
  return 0;
}
