// `deltaserve serve MODEL [flags]`: the `vllm serve` drop-in. The serve code (vLLM's flags, the
// engine thread, the HTTP server, clean shutdown on SIGINT / SIGTERM) is ds::server::serve_main;
// this file gives it the model: the checkpoint, its tokenizer and the runtime (serve_model.cpp).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "deltaserve/core/cli.h"
#include "deltaserve/core/log.h"
#include "deltaserve/core/timer.h"
#include "deltaserve/model/loader.h"
#include "deltaserve/dist/mpi_comm.h"
#include "deltaserve/model/qwen35.h"
#include "deltaserve/model/tp_steps.h"
#include "deltaserve/server/serve.h"
#include "deltaserve/server/tokenizer_codec.h"
#include "deltaserve/text/tokenizer/tokenizer.h"
#include "model_factory.h"
#include "selftest_cli.h"
#include "serve_model.h"
#include "tp_launch.h"

namespace {

// --max-model-len against the checkpoint's max_position_embeddings, as vLLM checks it.
ds::Result<int64_t> max_model_len(const ds::model::ModelConfig& mc, const ds::server::ServeArgs& a,
                                  const ds::server::Environment& env) {
  const int64_t derived = mc.max_position_embeddings > 0 ? mc.max_position_embeddings : 4096;
  int64_t max_len = a.max_model_len.value_or(derived);
  const bool allow_long = env.count("VLLM_ALLOW_LONG_MAX_MODEL_LEN") && env.at("VLLM_ALLOW_LONG_MAX_MODEL_LEN") == "1";
  if (max_len > derived && !allow_long)
    return ds::invalid_argument("User-specified max_model_len (" + std::to_string(max_len) +
                                ") is greater than the derived max_model_len (max_position_embeddings=" +
                                std::to_string(derived) + " in model's config.json). To allow overriding this "
                                "maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.");
  return max_len;
}

// How long one tensor-parallel step may take before the ranks are declared dead (vLLM's
// VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS, default 300 s).
std::chrono::milliseconds step_deadline(const ds::server::Environment& env) {
  double s = 300;
  if (auto it = env.find("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"); it != env.end()) s = std::atof(it->second.c_str());
  return std::chrono::milliseconds(static_cast<int64_t>((s > 0 ? s : 300) * 1000));
}

// Loads the checkpoint, its tokenizer and the model with cache pools sized for its device; with
// tensor parallelism, this is rank 0's share, driving the other ranks step by step.
ds::Result<ds::server::ServedModel> load_real_model(const ds::server::ServeArgs& a, const ds::server::Environment& env,
                                                    ds::server::ServerConfig* sc,
                                                    const std::shared_ptr<ds::dist::Communicator>& ranks) {
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

  DS_ASSIGN_OR_RETURN(const int64_t max_len, max_model_len(mc, a, env));
  sc->max_model_len = max_len;
  ds::Timer t;
  DS_ASSIGN_OR_RETURN(ds::cli::ServingModel sm, ds::cli::load_model_for_serving(*desc_ptr, a, env, max_len, ranks));
  served.max_num_seqs = sm.max_num_seqs;
  served.max_num_batched_tokens = sm.max_num_batched_tokens;
  std::unique_ptr<ds::model::Qwen35Model> m = std::move(sm.model);
  DS_INFO << "Loaded " << desc_ptr->path << " (" << mc.model_type << ", " << mc.num_layers << " layers, quant "
          << desc_ptr->quant_method << ") on " << m->backend_name() << " in " << t.seconds() << " s"
          << (ranks->size() > 1 ? " (rank 0 of " + std::to_string(ranks->size()) + ")" : "");
  if (ranks->size() > 1) {
    auto leader = std::make_unique<ds::model::TpLeaderModel>(std::move(m), ranks, step_deadline(env));
    leader->report_collectives(sm.collectives);
    served.model = std::move(leader);
  } else {
    served.model = std::move(m);
  }
  served.model_dir = desc_ptr->path;
  for (int64_t e : desc_ptr->generation.eos_token_ids) served.eos_token_ids.push_back(static_cast<int32_t>(e));
  if (served.eos_token_ids.empty())
    for (int64_t e : mc.eos_token_ids) served.eos_token_ids.push_back(static_cast<int32_t>(e));
  return served;
}

// A rank other than 0: the same model load (same flags, same collectives), then the steps rank 0
// broadcasts until it stops. SIGINT / SIGTERM are rank 0's to handle (mpirun forwards them to all).
int follow_rank_0(const ds::server::ServeArgs& a, const ds::server::Environment& env,
                  const std::shared_ptr<ds::dist::Communicator>& ranks) {
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGTERM, SIG_IGN);
  auto run = [&]() -> ds::Status {
    ds::model::LoadOptions lo;
    lo.revision = a.revision;
    DS_ASSIGN_OR_RETURN(ds::model::ModelDesc desc, ds::model::load_model(a.model, lo));
    DS_ASSIGN_OR_RETURN(const int64_t max_len, max_model_len(desc.config, a, env));
    DS_ASSIGN_OR_RETURN(ds::cli::ServingModel sm, ds::cli::load_model_for_serving(desc, a, env, max_len, ranks));
    DS_INFO << "rank " << ranks->rank() << " of " << ranks->size() << " ready on " << sm.model->backend_name();
    return ds::model::follow_tp_steps(*sm.model, *ranks);
  };
  const ds::Status s = run();
  if (s.is_ok()) return 0;
  std::fprintf(stderr, "deltaserve serve: rank %d: error: %s\n", ranks->rank(), s.message().c_str());
  ranks->abort("rank " + std::to_string(ranks->rank()) + ": " + s.message());
  return 1;
}

int serve_command(const std::vector<std::string>& argv) {
  const ds::server::Environment env = ds::server::read_env();
  auto parsed = ds::server::parse_serve_args(argv, env);  // bad flags: serve_main reports them
  std::shared_ptr<ds::dist::Communicator> ranks = ds::dist::single_rank();
  if (parsed && !parsed->help && parsed->tensor_parallel_size > 1) {
    auto joined = ds::cli::join_tp_ranks(*parsed, argv);  // may replace this process with mpirun
    if (!joined) {
      std::fprintf(stderr, "deltaserve serve: error: %s\n", joined.status().message().c_str());
      return 1;
    }
    ranks = *joined;
  }
  int rc = 0;
  if (ranks->rank() == 0) {
    rc = ds::server::serve_main(argv, [&](const auto& a, const auto& e, auto* sc) { return load_real_model(a, e, sc, ranks); });
  } else {
    rc = follow_rank_0(*parsed, env, ranks);
  }
  if (ranks->size() > 1) {
    ranks.reset();
    ds::dist::mpi_finalize();
  }
  return rc;
}

}  // namespace

DS_COMMAND(serve, "serve", "Start the OpenAI-compatible server (flag-compatible with `vllm serve`)", serve_command);
