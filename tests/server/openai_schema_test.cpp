#include <gtest/gtest.h>

#include "deltaserve/server/openai_schema.h"

using namespace ds::server;
using nlohmann::json;

namespace {
ServerConfig cfg() {
  ServerConfig c;
  c.served_model_names = {"m", "alias"};
  c.max_model_len = 100;
  c.max_logprobs = 5;
  c.vocab_size = 1000;
  c.eos_token_ids = {7};
  return c;
}
std::optional<ApiError> parse(const json& body, bool chat, GenRequest* out, const ServerConfig& c = cfg()) {
  return parse_gen_request(body, chat, c, out);
}
json chat_body(json extra = json::object()) {
  json b = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  for (auto& [k, v] : extra.items()) b[k] = v;
  return b;
}
}  // namespace

TEST(Schema, DefaultsAndModelResolution) {
  GenRequest g;
  ASSERT_FALSE(parse(chat_body(), true, &g));
  EXPECT_EQ(g.model_name, "m");
  EXPECT_EQ(g.n, 1);
  EXPECT_DOUBLE_EQ(g.params.temperature, 1.0);
  ASSERT_FALSE(parse(chat_body({{"model", "alias"}, {"unknown_field", 1}}), true, &g));
  EXPECT_EQ(g.model_name, "m");
  auto e = parse(chat_body({{"model", "nope"}}), true, &g);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 404);
  EXPECT_EQ(e->message, "The model `nope` does not exist.");
  EXPECT_EQ(e->to_json()["error"]["code"], 404);
  EXPECT_EQ(e->to_json()["error"]["type"], "NotFoundError");
}

TEST(Schema, GenerationConfigDefaultsApplyOnlyWhenFieldMissing) {
  ServerConfig c = cfg();
  c.generation_defaults = {{"temperature", 0.6}, {"top_k", 20}, {"top_p", 0.95}};
  GenRequest g;
  ASSERT_FALSE(parse(chat_body(), true, &g, c));
  EXPECT_DOUBLE_EQ(g.params.temperature, 0.6);
  EXPECT_EQ(g.params.top_k, 20);
  ASSERT_FALSE(parse(chat_body({{"temperature", 0.0}}), true, &g, c));
  EXPECT_DOUBLE_EQ(g.params.temperature, 0.0);
  EXPECT_DOUBLE_EQ(g.params.top_p, 0.95);
}

TEST(Schema, ValidationMessages) {
  GenRequest g;
  struct Case {
    json extra;
    const char* needle;
  };
  const Case cases[] = {
      {{{"n", 0}}, "n must be at least 1, got 0."},
      {{{"temperature", -1}}, "temperature must be non-negative"},
      {{{"top_p", 0}}, "top_p must be in (0, 1]"},
      {{{"top_k", -5}}, "top_k must be 0 (disable), or at least 1"},
      {{{"min_p", 2}}, "min_p must be in [0, 1]"},
      {{{"presence_penalty", 3}}, "presence_penalty must be in [-2, 2]"},
      {{{"repetition_penalty", 0}}, "repetition_penalty must be greater than zero"},
      {{{"max_tokens", 0}}, "max_tokens must be at least 1"},
      {{{"stream_options", {{"include_usage", true}}}}, "Stream options can only be defined when `stream=True`."},
      {{{"top_logprobs", 2}}, "`logprobs` must be set to true"},
      {{{"logprobs", true}, {"top_logprobs", 6}}, "greater than max allowed: 5"},
      {{{"stream", true}, {"prompt_logprobs", 1}}, "not available when `stream=True`"},
      {{{"logit_bias", {{"5000", 1}}}}, "out-of-vocab"},
      {{{"temperature", "hot"}}, "valid number"},
      {{{"stop", 5}}, "stop"},
      {{{"tool_choice", "auto"}}, "`tools` must be set"},
      {{{"add_generation_prompt", true}, {"continue_final_message", true}}, "Cannot set both"},
      {{{"chat_template", "{{x}}"}}, "--trust-request-chat-template"},
      {{{"response_format", {{"type", "json_object"}}}}, "not supported"},
      {{{"use_beam_search", true}}, "Beam search"},
  };
  for (const auto& c : cases) {
    auto e = parse(chat_body(c.extra), true, &g);
    ASSERT_TRUE(e) << c.extra.dump();
    EXPECT_EQ(e->status, 400);
    EXPECT_NE(e->message.find(c.needle), std::string::npos) << e->message;
  }
  auto e = parse(json::object(), true, &g);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("messages"), std::string::npos);
  ServerConfig c = cfg();
  auto tools = json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}});
  e = parse(chat_body({{"tools", tools}}), true, &g, c);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("--enable-auto-tool-choice"), std::string::npos);
}

TEST(Schema, CompletionPromptsAndDefaults) {
  GenRequest g;
  ASSERT_FALSE(parse({{"prompt", json::array({"a", "b"})}}, false, &g));
  EXPECT_EQ(g.prompt_texts.size(), 2u);
  ASSERT_FALSE(parse({{"prompt", json::array({1, 2, 3})}}, false, &g));
  EXPECT_EQ(g.prompt_ids.size(), 1u);
  ASSERT_FALSE(parse({{"prompt", json::array({json::array({1}), json::array({2, 3})})}}, false, &g));
  EXPECT_EQ(g.prompt_ids.size(), 2u);
  EXPECT_TRUE(parse({{"prompt", json::array({1, "x"})}}, false, &g));
  EXPECT_TRUE(parse({{"prompt", json::array({5000})}}, false, &g));  // out of vocab
  EXPECT_TRUE(parse(json::object(), false, &g));
  ASSERT_FALSE(parse({{"prompt", "x"}, {"logprobs", 3}, {"echo", true}}, false, &g));
  EXPECT_EQ(g.params.logprobs, 3);
  EXPECT_EQ(g.params.prompt_logprobs, 3);  // echo + logprobs asks for prompt logprobs too
  ds::engine::SamplingParams p;
  ASSERT_FALSE(finalize_for_prompt(&g, 10, cfg(), &p));
  EXPECT_EQ(p.max_tokens, 16);  // completions default
  EXPECT_EQ(p.eos_token_ids, std::vector<int32_t>{7});
}

TEST(Schema, ContextLengthErrorsKeepVllmWording) {
  GenRequest g;
  ds::engine::SamplingParams p;
  ASSERT_FALSE(parse(chat_body(), true, &g));
  ASSERT_FALSE(finalize_for_prompt(&g, 30, cfg(), &p));
  EXPECT_EQ(p.max_tokens, 70);  // chat default: max_model_len - prompt
  auto e = finalize_for_prompt(&g, 100, cfg(), &p);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("maximum context length is 100 tokens"), std::string::npos);
  ASSERT_FALSE(parse(chat_body({{"max_completion_tokens", 80}, {"max_tokens", 1}}), true, &g));
  e = finalize_for_prompt(&g, 30, cfg(), &p);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->message,
            "This model's maximum context length is 100 tokens. However, you requested 80 output tokens and your "
            "prompt contains 30 input tokens, for a total of 110 tokens. Please reduce the length of the input "
            "prompt or the number of requested output tokens.");
  EXPECT_EQ(e->param, "input_tokens");
  ServerConfig c = cfg();
  c.generation_defaults = {{"max_new_tokens", 5}};
  ASSERT_FALSE(parse(chat_body(), true, &g, c));
  ASSERT_FALSE(finalize_for_prompt(&g, 30, c, &p));
  EXPECT_EQ(p.max_tokens, 5);
}

TEST(Schema, TruncatePromptTokens) {
  GenRequest g;
  ASSERT_FALSE(parse({{"prompt", "x"}, {"truncate_prompt_tokens", -1}}, false, &g));
  EXPECT_EQ(g.truncate_prompt_tokens, 100);
  auto e = parse({{"prompt", "x"}, {"truncate_prompt_tokens", 101}}, false, &g);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("greater than max_model_len (100)"), std::string::npos);
}

TEST(Schema, FuzzedBodiesNeverCrash) {
  const json seeds[] = {chat_body(), json{{"prompt", "x"}}, json::array(), json(nullptr), json("s"), json(3)};
  const json values[] = {nullptr, -1, 0, 1e308, -1e308, "", "x", json::array(), json::object(), true, 1.5,
                         json::array({nullptr}), 9223372036854775807LL};
  const char* keys[] = {"messages", "prompt", "n", "temperature", "top_p", "top_k", "max_tokens", "stop", "logprobs",
                        "top_logprobs", "logit_bias", "stream", "stream_options", "seed", "tools", "tool_choice",
                        "model", "prompt_logprobs", "min_tokens", "echo", "chat_template_kwargs", "stop_token_ids"};
  GenRequest g;
  for (const auto& s : seeds)
    for (const char* k : keys)
      for (const auto& v : values)
        for (bool chat : {true, false}) {
          json b = s;
          if (b.is_object()) b[k] = v;
          (void)parse(b, chat, &g);
        }
  SUCCEED();
}
