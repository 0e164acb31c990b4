// Jinja fuzz target. Even first byte: the rest is a template, rendered with a small fixed context
// (messages, tools, flags) under tight limits. Odd first byte: the rest is a chat-completions body,
// rendered through the official Qwen3.5 chat template as a request would be. Errors are values;
// only crashes, hangs and sanitizer reports are findings.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "deltaserve/text/chat.h"
#include "deltaserve/text/jinja/jinja.h"
#include "fuzz/fuzz_common.h"

namespace {

ds::text::JinjaLimits fuzz_limits() {
  ds::text::JinjaLimits l;
  l.max_steps = 200'000;
  l.max_output_bytes = 1u << 20;
  l.max_list_items = 100'000;
  return l;
}

const ds::text::ChatTemplate& qwen35_template() {
  static std::unique_ptr<ds::text::ChatTemplate> t = [] {
    const std::string path = ds::fuzz::qwen35_template_path();
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    ds::text::ChatTemplateOptions o;
    o.chat_template = ss.str();
    o.special_tokens = {{"bos_token", nullptr}, {"eos_token", "<|im_end|>"}};
    o.limits = fuzz_limits();
    auto r = ds::text::ChatTemplate::create(o);
    if (o.chat_template.empty() || !r.is_ok()) {
      std::fprintf(stderr, "fuzz_jinja: cannot load %s\n", path.c_str());
      std::exit(1);
    }
    return std::make_unique<ds::text::ChatTemplate>(std::move(r).value());
  }();
  return *t;
}

const nlohmann::ordered_json& fixed_vars() {
  static const nlohmann::ordered_json v = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": [{"type": "text", "text": "Hi <b>"}, {"type": "image"}]},
      {"role": "assistant", "content": "", "reasoning_content": "hmm",
       "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1, "b": [1, "x"]}}}]},
      {"role": "tool", "content": "42"}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
               "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}],
    "add_generation_prompt": true, "enable_thinking": false, "bos_token": "", "eos_token": "<|im_end|>",
    "n": 3, "x": 2.5, "s": "héllo", "none": null, "d": {"k": [1, 2, {"z": true}]}
  })");
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  qwen35_template();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8192) return 0;
  ds::fuzz::Bytes in(data, size);
  const uint8_t mode = in.u8();
  const std::string src(in.rest());
  if (mode & 1) {
    auto r = qwen35_template().render_body(src);
    (void)r;
    return 0;
  }
  auto t = ds::text::JinjaTemplate::compile(src);
  if (!t.is_ok()) return 0;
  auto r = t.value().render(fixed_vars(), fuzz_limits());
  (void)r;
  return 0;
}
