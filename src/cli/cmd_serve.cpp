// `deltaserve serve MODEL [flags]`: the `vllm serve` drop-in. The serve code (vLLM's flags, the
// engine thread, the HTTP server, clean shutdown on SIGINT / SIGTERM) is ds::server::serve_main;
// this file gives it the model: the checkpoint, its tokenizer and the runtime (serve_model.cpp).
#include <memory>
#include <string>
#include <vector>

#include "deltaserve/core/cli.h"
#include "deltaserve/core/log.h"
#include "deltaserve/core/timer.h"
#include "deltaserve/model/loader.h"
#include "deltaserve/model/qwen35.h"
#include "deltaserve/server/serve.h"
#include "deltaserve/server/tokenizer_codec.h"
#include "deltaserve/text/tokenizer/tokenizer.h"
#include "model_factory.h"
#include "selftest_cli.h"
#include "serve_model.h"

namespace {

// Loads the checkpoint, its tokenizer and the model with cache pools sized for its device.
ds::Result<ds::server::ServedModel> load_real_model(const ds::server::ServeArgs& a, const ds::server::Environment& env,
                                                    ds::server::ServerConfig* sc) {
  ds::server::ServedModel served;
  if (a.selftest) {
    DS_ASSIGN_OR_RETURN(ds::model::DeviceKind kind, ds::model::parse_device(a.device));
    DS_ASSIGN_OR_RETURN(ds::model::DeviceChoice choice, ds::model::choose_device(kind, ds::cli::device_availability()));
    if (choice.kind == ds::model::DeviceKind::kCpu) {
      DS_INFO << "--selftest: serving on the CPU backend, no GPU kernels to check";
    } else if (ds::cli::run_selftest_command(ds::model::device_kind_name(choice.kind), "all", "", 5) != 0) {
      return ds::internal_error("--selftest: a GPU kernel disagrees with the CPU backend (table above); not serving");
    }
  }
  ds::model::LoadOptions lo;
  lo.revision = a.revision;
  DS_ASSIGN_OR_RETURN(ds::model::ModelDesc desc, ds::model::load_model(a.model, lo));
  auto desc_ptr = std::make_shared<ds::model::ModelDesc>(std::move(desc));
  const ds::model::ModelConfig& mc = desc_ptr->config;
  const std::string tok_path = a.tokenizer.empty() ? desc_ptr->path : a.tokenizer;
  auto tok = ds::text::Tokenizer::load(tok_path);
  if (!tok)
    return ds::not_found("no usable tokenizer at " + tok_path + " (" + tok.status().message() +
                         "); pass --tokenizer DIR with a tokenizer.json");
  served.codec = std::make_unique<ds::server::TokenizerCodec>(std::move(*tok), mc.vocab_size);

  const int64_t derived = mc.max_position_embeddings > 0 ? mc.max_position_embeddings : 4096;
  int64_t max_len = a.max_model_len.value_or(derived);
  const bool allow_long = env.count("VLLM_ALLOW_LONG_MAX_MODEL_LEN") && env.at("VLLM_ALLOW_LONG_MAX_MODEL_LEN") == "1";
  if (max_len > derived && !allow_long)
    return ds::invalid_argument("User-specified max_model_len (" + std::to_string(max_len) +
                                ") is greater than the derived max_model_len (max_position_embeddings=" +
                                std::to_string(derived) + " in model's config.json). To allow overriding this "
                                "maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.");
  sc->max_model_len = max_len;
  ds::Timer t;
  DS_ASSIGN_OR_RETURN(ds::cli::ServingModel sm, ds::cli::load_model_for_serving(*desc_ptr, a, env, max_len));
  served.max_num_seqs = sm.max_num_seqs;
  served.max_num_batched_tokens = sm.max_num_batched_tokens;
  std::unique_ptr<ds::model::Qwen35Model> m = std::move(sm.model);
  DS_INFO << "Loaded " << desc_ptr->path << " (" << mc.model_type << ", " << mc.num_layers << " layers, quant "
          << desc_ptr->quant_method << ") on " << m->backend_name() << " in " << t.seconds() << " s";
  served.model = std::move(m);
  served.model_dir = desc_ptr->path;
  for (int64_t e : desc_ptr->generation.eos_token_ids) served.eos_token_ids.push_back(static_cast<int32_t>(e));
  if (served.eos_token_ids.empty())
    for (int64_t e : mc.eos_token_ids) served.eos_token_ids.push_back(static_cast<int32_t>(e));
  return served;
}

int serve_command(const std::vector<std::string>& argv) { return ds::server::serve_main(argv, load_real_model); }

}  // namespace

DS_COMMAND(serve, "serve", "Start the OpenAI-compatible server (flag-compatible with `vllm serve`)", serve_command);
