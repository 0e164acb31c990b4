// Request fuzz target: a /v1/chat/completions or /v1/completions body through the server's schema
// path (openai_schema.h: parse_gen_request, then finalize_for_prompt for a prompt length), with
// the tool-choice and reasoning settings the header byte picks. Bad bodies must become ApiErrors;
// an exception or a crash is a finding (the HTTP layer would answer 500).
#include <cstdint>
#include <string>

#include "deltaserve/server/openai_schema.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;
  ds::fuzz::Bytes in(data, size);
  const uint8_t flags = in.u8();
  const uint8_t plen = in.u8();
  const std::string_view body_text = in.rest();
  const auto body = nlohmann::json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;

  ds::server::ServerConfig cfg;
  cfg.served_model_names = {"Qwen/Qwen3.5-0.8B", "qwen"};
  cfg.max_model_len = (flags & 4) ? 64 : 4096;
  cfg.vocab_size = 248320;
  cfg.eos_token_ids = {248044, 248046};
  if (flags & 8) {
    cfg.enable_auto_tool_choice = true;
    cfg.tool_call_parser = (flags & 16) ? "qwen3_xml" : "qwen3_coder";
  }
  if (flags & 32) cfg.reasoning_parser = "qwen3";
  if (flags & 64)
    cfg.generation_defaults = {{"temperature", 0.6}, {"top_p", 0.95}, {"top_k", 20}, {"max_new_tokens", 32}};
  cfg.exclude_tools_when_tool_choice_none = flags & 128;

  ds::server::GenRequest req;
  const bool chat = flags & 1;
  if (auto err = ds::server::parse_gen_request(body, chat, cfg, &req)) return 0;
  ds::engine::SamplingParams sp;
  auto err = ds::server::finalize_for_prompt(&req, (flags & 2) ? plen * 40 : plen, cfg, &sp);
  (void)err;
  return 0;
}
