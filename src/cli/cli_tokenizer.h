// Where the offline subcommands (generate, ppl, tokenize, parse) find a tokenizer, so that they work
// on the bundled fixtures, which ship no tokenizer.json, without --tokenizer.
#pragma once

#include <cstdint>
#include <string>

#include "deltaserve/core/status.h"
#include "deltaserve/text/tokenizer/tokenizer.h"

namespace ds::cli {

// --tokenizer PATH when given; else MODEL_DIR's tokenizer.json; else the Qwen3.5/3.6 tokenizer that
// tools/setup.sh builds beside the binary (<build>/tokenizers/qwen35), when its ids fit the model
// (model_vocab_size 0: unknown, assumed to fit); it says so on stderr. The error names both places.
Result<text::Tokenizer> load_cli_tokenizer(const std::string& flag_path, const std::string& model_dir,
                                           int64_t model_vocab_size = 0);

}  // namespace ds::cli
