// A Jinja2 engine for chat templates. It renders Hugging Face chat templates byte-for-byte as
// transformers' apply_chat_template does with Python jinja2: ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks and loop controls, HF's `tojson` (json.dumps, ensure_ascii=False),
// `raise_exception`, `strftime_now`, `namespace`, jinja2's default Undefined, Python str()/repr()
// of values and insertion-ordered dicts. Errors (syntax, raise_exception, undefined misuse, limits)
// come back as Status values, never as crashes; runaway templates are cut off by a step budget,
// an output/string size limit and a call-depth limit.
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "deltaserve/core/status.h"

namespace ds::text {

namespace jinja {
struct Program;
}

struct JinjaLimits {
  size_t max_steps = 10'000'000;         // expressions + statements + loop iterations (~1 s)
  size_t max_output_bytes = 32u << 20;   // any string the template builds, including the output
  size_t max_list_items = 1'000'000;     // range(), list repetition
  int max_call_depth = 64;               // macro recursion
};

class JinjaTemplate {
 public:
  // Parses the template; a syntax error becomes kInvalidArgument with the line number.
  static Result<JinjaTemplate> compile(const std::string& source);

  // `vars` must be a JSON object; its keys become template variables (next to the globals
  // raise_exception, strftime_now, namespace, dict, range). Errors are kInvalidArgument
  // (template raised or misused a value) or kResourceExhausted (a limit was hit).
  Result<std::string> render(const nlohmann::ordered_json& vars, const JinjaLimits& limits = {}) const;

  // vLLM's content-format detection (`--chat-template-content-format auto`): true when the
  // template loops over a message's content (`for x in message['content']`, or over a variable
  // named `content`, as Qwen3.5's render_content macro does), i.e. it expects OpenAI-style parts.
  bool iterates_message_content() const;

  const std::string& source() const { return source_; }

 private:
  std::shared_ptr<const jinja::Program> program_;
  std::string source_;
};

}  // namespace ds::text
