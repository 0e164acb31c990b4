// deltaserve_test_server: `deltaserve serve` with the scripted model (scripted_model.h) in place of a
// checkpoint, for the Python server tests. The serve code is the production one
// (ds::server::serve_main); only the model factory differs.
//
//   DS_ENABLE_TEST_SCRIPTED_OUTPUT=1 deltaserve_test_server serve MODEL_DIR --test-scripted-output FILE [serve flags]
//
// MODEL_DIR gives the served name, generation_config.json, the chat template and, when it has a
// tokenizer.json (or --tokenizer is given), the tokenizer; otherwise a byte-level codec. Without the
// environment variable it refuses, so it is never mistaken for the real server.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "deltaserve/core/log.h"
#include "deltaserve/engine/kv_cache.h"
#include "deltaserve/server/serve.h"
#include "deltaserve/server/tokenizer_codec.h"
#include "deltaserve/text/tokenizer/tokenizer.h"
#include "tests/support/scripted_model.h"

namespace {

using ds::Result;
using ds::server::ServedModel;

// Takes --test-scripted-output FILE (or =FILE, or with underscores) out of args.
std::string take_script_flag(std::vector<std::string>* args) {
  std::string path;
  for (size_t i = 0; i < args->size();) {
    std::string a = (*args)[i];
    for (char& c : a)
      if (c == '_') c = '-';
    if (a == "--test-scripted-output" && i + 1 < args->size()) {
      path = (*args)[i + 1];
      args->erase(args->begin() + i, args->begin() + i + 2);
    } else if (a.rfind("--test-scripted-output=", 0) == 0) {
      path = (*args)[i].substr(std::strlen("--test-scripted-output="));
      args->erase(args->begin() + i);
    } else {
      ++i;
    }
  }
  return path;
}

Result<ServedModel> make_scripted_model(const std::string& script_path, const ds::server::ServeArgs& a,
                                        const ds::server::Environment& env, ds::server::ServerConfig* sc) {
  if (script_path.empty())
    return ds::invalid_argument("deltaserve_test_server serves only the scripted model: pass --test-scripted-output FILE");
  if (a.tensor_parallel_size != 1)
    return ds::invalid_argument("the scripted test model runs on one rank: --tensor-parallel-size must be 1");
  DS_WARN << "TEST ONLY: serving the scripted model from " << script_path << " (no real weights are loaded)";
  ServedModel served;
  served.model_dir = a.model;
  const std::string tok_dir = a.tokenizer.empty() ? a.model : a.tokenizer;
  if (!a.tokenizer.empty() || std::ifstream(tok_dir + "/tokenizer.json")) {
    auto tok = ds::text::Tokenizer::load(tok_dir);
    if (!tok) return ds::invalid_argument("tokenizer: " + tok.status().message());
    served.codec = std::make_unique<ds::server::TokenizerCodec>(std::move(*tok), 0);
  } else {
    served.codec = std::make_unique<ds::engine::ByteCodec>();
  }
  DS_ASSIGN_OR_RETURN(ds::engine::Script script, ds::engine::load_script(script_path, *served.codec));
  if (!a.max_model_len) sc->max_model_len = 4096;
  if (auto e = served.codec->token_to_id("<|im_end|>")) script.eos_token_id = *e;
  ds::engine::CachePlanInput in;
  in.budget_bytes = ds::server::cache_budget_bytes(a, env);
  in.kv_block_bytes = script.kv_block_bytes;
  in.state_slot_bytes = script.state_slot_bytes;
  in.block_size = script.block_size;
  in.max_num_seqs = a.max_num_seqs;
  in.max_model_len = sc->max_model_len;
  DS_ASSIGN_OR_RETURN(ds::engine::CachePlan plan, ds::engine::plan_cache_config(in));
  for (const auto& w : plan.warnings) DS_WARN << w;
  served.max_num_seqs = plan.max_num_seqs;
  served.model = std::make_unique<ds::engine::ScriptedModel>(std::move(script), plan.config, served.codec.get());
  return served;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] != "serve") {
    std::fprintf(stderr, "usage: deltaserve_test_server serve MODEL_DIR --test-scripted-output FILE [serve flags]\n");
    return 2;
  }
  args.erase(args.begin());
  const std::string script_path = take_script_flag(&args);
  const char* enabled = std::getenv("DS_ENABLE_TEST_SCRIPTED_OUTPUT");
  if (!script_path.empty() && (!enabled || std::string(enabled) != "1")) {
    std::fprintf(stderr,
                 "deltaserve_test_server: error: --test-scripted-output is a test-only model and needs "
                 "DS_ENABLE_TEST_SCRIPTED_OUTPUT=1 in the environment\n");
    return 2;
  }
  return ds::server::serve_main(args, [&](const ds::server::ServeArgs& a, const ds::server::Environment& env,
                                          ds::server::ServerConfig* sc) {
    return make_scripted_model(script_path, a, env, sc);
  });
}
