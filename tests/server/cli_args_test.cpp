#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "deltaserve/server/cli_args.h"

using ds::server::parse_human_int;
using ds::server::parse_serve_args;
using ds::server::ServeArgs;

namespace {
ServeArgs parse_ok(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  auto r = parse_serve_args(args, env);
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r.is_ok() ? *r : ServeArgs{};
}
std::string parse_err(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  auto r = parse_serve_args(args, env);
  EXPECT_FALSE(r.is_ok());
  return r.is_ok() ? "" : r.status().message();
}
}  // namespace

TEST(HumanInt, VllmSuffixes) {
  EXPECT_EQ(parse_human_int("32768"), 32768);
  EXPECT_EQ(parse_human_int("32k"), 32000);
  EXPECT_EQ(parse_human_int("32K"), 32768);
  EXPECT_EQ(parse_human_int("1m"), 1000000);
  EXPECT_EQ(parse_human_int("1M"), 1048576);
  EXPECT_EQ(parse_human_int("25.6k"), 25600);
  EXPECT_EQ(parse_human_int("2G"), 2LL << 30);
  EXPECT_FALSE(parse_human_int("abc"));
  EXPECT_FALSE(parse_human_int(""));
  EXPECT_FALSE(parse_human_int("12x"));
}

TEST(ServeArgs, SeedCommandLine) {
  auto a = parse_ok({"/models/q", "--gpu-memory-utilization", "0.95", "--max-model-len", "32768",
                     "--tensor-parallel-size", "1", "--reasoning-parser", "qwen3", "--enable-auto-tool-choice",
                     "--tool-call-parser", "qwen3_coder", "--dtype", "float16", "--skip-mm-profiling",
                     "--limit-mm-per-prompt", "{\"image\": 2}"});
  EXPECT_EQ(a.model, "/models/q");
  EXPECT_DOUBLE_EQ(a.gpu_memory_utilization, 0.95);
  EXPECT_EQ(a.max_model_len, 32768);
  EXPECT_EQ(a.server.max_model_len, 32768);
  EXPECT_EQ(a.server.reasoning_parser, "qwen3");
  EXPECT_TRUE(a.server.enable_auto_tool_choice);
  EXPECT_EQ(a.server.tool_call_parser, "qwen3_coder");
  EXPECT_EQ(a.dtype, "float16");
  EXPECT_EQ(a.server.limit_mm_per_prompt.at("image"), 2);
  EXPECT_EQ(a.server.served_model_names, std::vector<std::string>{"/models/q"});
  EXPECT_TRUE(a.warnings.empty());
  EXPECT_EQ(a.non_default.at("max_model_len"), "32768");
}

TEST(ServeArgs, SpellingsUnderscoresEqualsNoFlagAndAliases) {
  auto a = parse_ok({"--model=/m", "--max_model_len=32K", "--no-enable-prefix-caching", "-tp", "1",
                     "--served-model-name", "a", "b", "--api-key", "k1", "--disable-log-stats", "--port=9000",
                     "--allowed-origins", "[\"http://x\"]"});
  EXPECT_EQ(a.model, "/m");
  EXPECT_EQ(a.server.max_model_len, 32768);
  EXPECT_EQ(a.server.served_model_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(a.server.api_keys, std::vector<std::string>{"k1"});
  EXPECT_TRUE(a.server.disable_log_stats);
  EXPECT_EQ(a.server.port, 9000);
  EXPECT_EQ(a.server.allowed_origins, std::vector<std::string>{"http://x"});
}

TEST(ServeArgs, ListFlagLeavesTheModelPositional) {
  auto a = parse_ok({"--served-model-name", "name1", "/path/model"});
  EXPECT_EQ(a.server.served_model_names, std::vector<std::string>{"name1"});
  EXPECT_EQ(a.model, "/path/model");
}

TEST(ServeArgs, UnknownFlagsWarnAndDoNotEatTheModel) {
  auto a = parse_ok({"--some-new-flag", "/m", "--other-flag", "3", "--speculative-config.method", "mtp"});
  EXPECT_EQ(a.model, "/m");
  ASSERT_EQ(a.warnings.size(), 2u);
  EXPECT_NE(a.warnings[1].find("other-flag"), std::string::npos);
  EXPECT_NE(a.warnings[1].find("'3'"), std::string::npos);
}

TEST(ServeArgs, AcceptedFlagsAreLogged) {
  auto a = parse_ok({"/m", "--enable-chunked-prefill", "--swap-space", "4", "--block-size", "528"});
  EXPECT_EQ(a.infos.size(), 3u);
  EXPECT_TRUE(a.warnings.empty());
}

TEST(ServeArgs, EnvApiKeyAndFlagWins) {
  auto a = parse_ok({"/m"}, {{"VLLM_API_KEY", "envk"}});
  EXPECT_EQ(a.server.api_keys, std::vector<std::string>{"envk"});
  a = parse_ok({"/m", "--api-key", "flagk"}, {{"VLLM_API_KEY", "envk"}});
  EXPECT_EQ(a.server.api_keys, std::vector<std::string>{"flagk"});
}

TEST(ServeArgs, UdsPathIsHonoured) {
  EXPECT_EQ(parse_ok({"/m", "--uds", "/tmp/s"}).server.uds_path, "/tmp/s");
  EXPECT_EQ(parse_ok({"/m"}).server.uds_path, "");
}

TEST(ServeArgs, RefusalsAndErrorsNameTheFlag) {
  EXPECT_NE(parse_err({"/m", "--enable-auto-tool-choice"}).find("--tool-call-parser"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--tool-call-parser", "hermes"}).find("invalid tool call parser"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "-tp", "0"}).find("tensor-parallel-size"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "-tp", "2", "--distributed-executor-backend", "ray"}).find("'ray' is not used"),
            std::string::npos);
  EXPECT_NE(parse_err({"/m", "--distributed-executor-backend", "torch"}).find("invalid choice"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--master-port", "70000"}).find("master-port"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--max-model-len", "lots"}).find("max-model-len"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--ssl-keyfile", "k.pem"}).find("TLS"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--kv-cache-dtype", "fp8"}).find("fp8"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--gpu-memory-utilization", "1.5"}).find("gpu-memory-utilization"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--limit-mm-per-prompt", "{bad"}).find("limit-mm-per-prompt"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--port"}).find("expected one argument"), std::string::npos);
  EXPECT_NE(parse_err({}).find("model"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--enable-log-outputs"}).find("--enable-log-requests"), std::string::npos);
}

TEST(ServeArgs, ConfigYamlCommandLineWins) {
  const std::string path = testing::TempDir() + "/ds_cfg.yaml";
  {
    std::ofstream f(path);
    f << "model: /from/yaml\nmax_model_len: 8k\nserved-model-name: [x, y]\nenable_prefix_caching: true\n"
         "port: 7000\ndefault_chat_template_kwargs: {enable_thinking: false}\n";
  }
  auto a = parse_ok({"--config", path, "--port", "7001"});
  EXPECT_EQ(a.model, "/from/yaml");
  EXPECT_EQ(a.server.max_model_len, 8000);
  EXPECT_EQ(a.server.served_model_names, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(a.server.port, 7001);
  EXPECT_EQ(a.server.default_chat_template_kwargs["enable_thinking"], false);
  std::remove(path.c_str());
  EXPECT_FALSE(parse_serve_args({"--config", "/nonexistent.yaml"}, {}).is_ok());
}

TEST(ServeArgs, LanguageModelOnlyZeroesMediaLimits) {
  auto a = parse_ok({"/m", "--language-model-only"});
  EXPECT_EQ(a.server.limit_mm_per_prompt.at("image"), 0);
}

TEST(ServeArgs, MalformedInputNeverCrashes) {
  // Every prefix of a tricky command line parses or fails cleanly.
  std::vector<std::string> args = {"--config=", "-", "--", "--=", "--no-", "--max-model-len=", "/m",
                                   "--served-model-name", "--api-key", "--limit-mm-per-prompt", "[]", "-q"};
  for (size_t n = 0; n <= args.size(); ++n) {
    std::vector<std::string> sub(args.begin(), args.begin() + n);
    (void)parse_serve_args(sub, {});
  }
  SUCCEED();
}

// Decode graph sizes as vLLM derives its CUDA graph capture sizes.
TEST(DecodeGraphPlan, VllmDefaultsAndOverrides) {
  using ds::server::decode_graph_plan;
  auto plan = [](const std::vector<std::string>& args, int max_num_seqs, int64_t max_len = 32768) {
    auto p = decode_graph_plan(parse_ok(args), max_num_seqs, max_len);
    EXPECT_TRUE(p.is_ok()) << p.status().message();
    return p.is_ok() ? *p : ds::server::DecodeGraphPlan{};
  };
  // Default: [1, 2, 4] + 8..248 step 8 + 256..max step 16, max = min(2 x max_num_seqs, 512), then at
  // most max_num_seqs (a decode step has no more sequences).
  auto d = plan({"/m"}, 1024);
  ASSERT_EQ(d.sizes.size(), 3u + 31u + 17u);
  EXPECT_EQ(d.sizes[3], 8);
  EXPECT_EQ(d.sizes[33], 248);
  EXPECT_EQ(d.sizes[34], 256);
  EXPECT_EQ(d.sizes.back(), 512);
  EXPECT_EQ(d.max_context, 8192);
  EXPECT_EQ(plan({"/m"}, 20).sizes, (std::vector<int>{1, 2, 4, 8, 16}));
  EXPECT_EQ(plan({"/m", "--max-seq-len-to-capture", "16k"}, 4, 4096).max_context, 4096);
  // Explicit lists, in every spelling.
  EXPECT_EQ(plan({"/m", "--compilation-config", R"({"cudagraph_capture_sizes": [4, 1, 2]})"}, 64).sizes,
            (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(plan({"/m", "-O", R"({"cudagraph_capture_sizes": [1, 3]})"}, 64).sizes, (std::vector<int>{1, 3}));
  EXPECT_EQ(plan({"/m", "-O.cudagraph_capture_sizes=[2,6]"}, 64).sizes, (std::vector<int>{2, 6}));
  EXPECT_EQ(plan({"/m", "--cuda-graph-sizes", "1", "5", "9"}, 64).sizes, (std::vector<int>{1, 5, 9}));
  EXPECT_EQ(plan({"/m", "--cuda-graph-sizes", "16"}, 64).sizes, (std::vector<int>{1, 2, 4, 8, 16}));
  EXPECT_EQ(plan({"/m", "--max-cudagraph-capture-size", "8"}, 64).sizes, (std::vector<int>{1, 2, 4, 8}));
  EXPECT_EQ(plan({"/m", "--compilation-config.max_cudagraph_capture_size", "2"}, 64).sizes,
            (std::vector<int>{1, 2}));
  // Off.
  for (const auto& off : std::vector<std::vector<std::string>>{{"/m", "--enforce-eager"},
                                                               {"/m", "-O0"},
                                                               {"/m", "-O", "0"},
                                                               {"/m", "-O.cudagraph_mode=NONE"},
                                                               {"/m", "--compilation-config", R"({"cudagraph_mode": "none"})"}}) {
    auto p = plan(off, 64);
    EXPECT_TRUE(p.sizes.empty()) << off[1];
    EXPECT_FALSE(p.reason_none.empty()) << off[1];
  }
  EXPECT_FALSE(plan({"/m", "-O3"}, 64).sizes.empty());
  // Bad values are errors that name the key.
  auto bad = decode_graph_plan(parse_ok({"/m", "-O", R"({"cudagraph_capture_sizes": [0]})"}), 64, 4096);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("cudagraph_capture_sizes"), std::string::npos);
  bad = decode_graph_plan(parse_ok({"/m", "-O.cudagraph_mode=SOMETIMES"}), 64, 4096);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("cudagraph_mode"), std::string::npos);
  EXPECT_NE(parse_err({"/m", "--compilation-config", "[1, 2]"}).find("compilation-config"), std::string::npos);
}

TEST(ServeArgs, TensorParallelAndMultiNodeFlags) {
  auto a = parse_ok({"/m", "-tp", "4", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1",
                     "--master-port", "29501", "--distributed-executor-backend", "mpi"});
  EXPECT_EQ(a.tensor_parallel_size, 4);
  EXPECT_EQ(a.nnodes, 2);
  EXPECT_EQ(a.node_rank, 1);
  EXPECT_EQ(a.master_addr, "10.0.0.1");
  EXPECT_EQ(a.master_port, 29501);
  EXPECT_EQ(a.distributed_executor_backend, "mpi");
}
