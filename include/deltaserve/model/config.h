// Reading a checkpoint's JSON side: config.json (text_config / top level, layer pattern, rope incl.
// mrope lists, vision), generation_config.json, and which tokenizer / preprocessor files are present.
// Turns them into ModelConfig / GenerationDefaults; the quantization block is handed to quant_rules.h.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/model/model_desc.h"

namespace ds::model {

// Key order matters (GPTQ `dynamic` is first-match-wins in file order), so configs keep it.
using ordered_json = nlohmann::ordered_json;

// Reads and parses a JSON file; `what` names it in errors.
Result<ordered_json> read_json_file(const std::string& path);

// Parses a config.json object. Unknown model types are kUnsupported.
Result<ModelConfig> parse_model_config(const ordered_json& config);

// generation_config.json; a missing file gives empty defaults.
Result<GenerationDefaults> read_generation_defaults(const std::string& dir);

// Tokenizer files present in dir (tokenizer.json, tokenizer_config.json, vocab.json, merges.txt,
// special_tokens_map.json, added_tokens.json, chat_template.jinja, chat_template.json).
std::vector<std::string> list_tokenizer_files(const std::string& dir);

// Small side files kept verbatim: preprocessor_config.json, video_preprocessor_config.json,
// chat_template.jinja, generation_config.json (name -> text).
std::map<std::string, std::string> read_extra_files(const std::string& dir);

const char* layer_kind_name(LayerKind k);  // "linear_attention" / "full_attention"

}  // namespace ds::model
