// Chat assembly tests: request -> conversation (vLLM's rules) -> template variables
// (transformers' rules) -> prompt. The Qwen3.5 expectation was produced by tests/py/jinja_oracle.py
// (jinja2 + transformers' environment + vLLM's message parsing, itself cross-checked against
// transformers 5.23); the small templates below print the variables so each rule is visible.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "deltaserve/text/chat.h"

namespace {

using ds::text::ChatTemplate;
using ds::text::ChatTemplateOptions;
using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

std::string test_data_dir() {
  if (const char* d = std::getenv("DS_SHARED_DATA")) return d;
  return std::string(DS_SOURCE_DIR) + "/tests/data";
}

ds::Result<std::string> render(const std::string& tmpl, const std::string& request_json,
                               ChatTemplateOptions opts = {}) {
  opts.chat_template = tmpl;
  return ds::text::render_chat_prompt(ojson::parse(request_json), opts);
}

// Prints each message as JSON, so tests see exactly what the template receives.
const char* kDump = "{% for m in messages %}{{ m|tojson }}\n{% endfor %}{{ tools|tojson }}|{{ add_generation_prompt }}";
const char* kDumpOpenAI =
    "{% for m in messages %}{% if m.content is not string %}{% for p in m['content'] %}{% endfor %}{% endif %}"
    "{{ m|tojson }}\n{% endfor %}";

TEST(Chat, Qwen35OfficialTemplateMatchesPython) {
  std::ifstream f(test_data_dir() + "/qwen35-templates/qwen3.5_official_chat_template.jinja");
  ASSERT_TRUE(f.good()) << "test data not found under " << test_data_dir();
  std::stringstream ss;
  ss << f.rdbuf();
  ChatTemplateOptions opts;
  opts.special_tokens = {{"eos_token", "<|im_end|>"}};
  auto out = render(ss.str(), R"J({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Weather in Z\u00fcrich?"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, {"role": "assistant", "content": null, "reasoning": "Need the tool.", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Z\\u00fcrich\", \"days\": 2, \"opts\": {\"unit\": \"C\", \"hourly\": [1.0, 2]}}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 21}"}, {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "second"}]}], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}], "chat_template_kwargs": {"add_vision_id": true}})J", opts);
  ASSERT_TRUE(out.is_ok()) << out.status().message();
  EXPECT_EQ(*out, R"J(<|im_start|>system
# Tools

You have access to the following functions:

<tools>
{"type": "function", "function": {"name": "get_weather", "description": null, "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
</tools>

If you choose to call a function ONLY reply in the following format with NO suffix:

<tool_call>
<function=example_function_name>
<parameter=example_parameter_1>
value_1
</parameter>
<parameter=example_parameter_2>
This is the value for the second parameter
that can span
multiple lines
</parameter>
</function>
</tool_call>

<IMPORTANT>
Reminder:
- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags
- Required parameters MUST be specified
- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after
- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls
</IMPORTANT>

Be brief.<|im_end|>
<|im_start|>user
Weather in Zürich?Picture 1: <|vision_start|><|image_pad|><|vision_end|><|im_end|>
<|im_start|>assistant
<think>
Need the tool.
</think>

<tool_call>
<function=get_weather>
<parameter=city>
Zürich
</parameter>
<parameter=days>
2
</parameter>
<parameter=opts>
{"unit": "C", "hourly": [1.0, 2]}
</parameter>
</function>
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
{"temp": 21}
</tool_response>
<tool_response>
second
</tool_response><|im_end|>
<|im_start|>assistant
<think>
)J");
  auto cont = render(ss.str(), R"J({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello the","reasoning_content":"r"}],"add_generation_prompt":false,"continue_final_message":true})J");
  ASSERT_TRUE(cont.is_ok()) << cont.status().message();
  EXPECT_EQ(*cont, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\nHello the");
  auto no_think = render(ss.str(), R"({"messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"enable_thinking":false}})");
  EXPECT_EQ(*no_think, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  auto no_user = render(ss.str(), R"({"messages":[{"role":"system","content":"s"}]})");
  ASSERT_FALSE(no_user.is_ok());
  EXPECT_EQ(no_user.status().message(), "No user query found in messages.");
}

TEST(Chat, ToolCallArgumentsAreDecodedAsVllmDoes) {
  auto out = render(kDump, R"({"messages":[{"role":"assistant","content":null,"tool_calls":[
      {"id":"a","type":"function","function":{"name":"f","arguments":"{\"z\": 1, \"a\": [1.0, \"\\u00e9\"]}"}},
      {"id":"b","type":"function","function":{"name":"g","arguments":"not json"}},
      {"id":"c","type":"function","function":{"name":"h","arguments":{"k":"v"}}},
      {"id":"d","type":"function","function":{"name":"i"}}]},
    {"role":"assistant","content":"x","tool_calls":[]}]})");
  ASSERT_TRUE(out.is_ok()) << out.status().message();
  EXPECT_EQ(*out,
            R"({"role": "assistant", "content": "", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": {"z": 1, "a": [1.0, "é"]}}}, {"id": "b", "type": "function", "function": {"name": "g", "arguments": {}}}, {"id": "c", "type": "function", "function": {"name": "h", "arguments": {"k": "v"}}}, {"id": "d", "type": "function", "function": {"name": "i", "arguments": {}}}]})"
            "\n"
            R"({"role": "assistant", "content": "x"})"
            "\nnull|True");
}

TEST(Chat, ReasoningIsExposedUnderEveryName) {
  auto out = render(kDump, R"({"messages":[{"role":"assistant","content":"c","reasoning_content":"old"},
                                           {"role":"assistant","content":"c","reasoning":"new"}]})");
  ASSERT_TRUE(out.is_ok()) << out.status().message();
  EXPECT_EQ(*out,
            R"({"thinking": "old", "role": "assistant", "content": "c", "reasoning": "old", "reasoning_content": "old"})"
            "\n"
            R"({"thinking": "new", "role": "assistant", "content": "c", "reasoning": "new", "reasoning_content": "new"})"
            "\nnull|True");
}

TEST(Chat, ContentFormatsAndMedia) {
  const char* req = R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},
      {"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"b"},{"type":"video_url","video_url":{"url":"v"}}]},
      {"role":"tool","tool_call_id":"t","content":[{"type":"text","text":"r1"},{"type":"text","text":"r2"}]}]})";
  auto s = render(kDump, req);  // no loop over content: vLLM's "string" format
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  EXPECT_EQ(*s,
            R"({"role": "user", "content": "<|vision_start|><|image_pad|><|vision_end|>\n<|vision_start|><|video_pad|><|vision_end|>\na\nb"})"
            "\n"
            R"({"role": "tool", "content": "r1\nr2", "tool_call_id": "t"})"
            "\nnull|True");
  auto o = render(kDumpOpenAI, req);  // loops over m['content']: "openai" format
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  EXPECT_EQ(*o,
            R"({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}, {"type": "video"}]})"
            "\n"
            R"({"role": "tool", "content": "r1\nr2", "tool_call_id": "t"})"
            "\n");
}

TEST(Chat, ToolsAreDumpedLikePydantic) {
  auto out = render("{{ tools|tojson }}", R"({"messages":[],"tools":[{"function":{"name":"f","strict":true}},
      {"type":"function","function":{"parameters":{"type":"object"},"name":"g","description":"d"},"x":1}]})");
  ASSERT_TRUE(out.is_ok()) << out.status().message();
  EXPECT_EQ(*out,
            R"([{"type": "function", "function": {"name": "f", "description": null, "parameters": null, "strict": true}}, )"
            R"({"type": "function", "function": {"name": "g", "description": "d", "parameters": {"type": "object"}}, "x": 1}])");
}

TEST(Chat, KwargsSpecialTokensAndFlags) {
  ChatTemplateOptions opts;
  opts.special_tokens = {{"eos_token", "</s>"}};
  opts.default_kwargs = {{"enable_thinking", false}, {"flavour", "a"}};
  const char* t = "{{ eos_token }}|{{ enable_thinking }}|{{ flavour }}|{{ add_generation_prompt }}";
  EXPECT_EQ(*render(t, R"({"messages":[]})", opts), "</s>|False|a|True");
  EXPECT_EQ(*render(t, R"({"messages":[],"chat_template_kwargs":{"enable_thinking":true},"add_generation_prompt":false})", opts),
            "</s>|True|a|False");
}

TEST(Chat, ContinueFinalMessageCutsAtTheMessage) {
  const char* t = "{% for m in messages %}<{{ m.role }}>{{ m.content|trim }}</{{ m.role }}>{% endfor %}";
  EXPECT_EQ(*render(t, R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Partial ans"}],
                           "add_generation_prompt":false,"continue_final_message":true})"),
            "<user>q</user><assistant>Partial ans");
  EXPECT_EQ(*render(t, R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"trailing  "}],
                           "add_generation_prompt":false,"continue_final_message":true})"),
            "<user>q</user><assistant>trailing");
}

TEST(Chat, RenderBodyKeepsClientKeyOrder) {
  ChatTemplateOptions opts;
  opts.chat_template = "{{ tools[0].function.parameters|tojson }}";
  auto t = ChatTemplate::create(opts);
  ASSERT_TRUE(t.is_ok());
  auto out = t->render_body(
      R"({"messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"zz":1,"aa":2}}}]})");
  ASSERT_TRUE(out.is_ok()) << out.status().message();
  EXPECT_EQ(*out, R"({"zz": 1, "aa": 2})");
  EXPECT_FALSE(t->render_body("{not json").is_ok());
}

TEST(Chat, BadRequestsAreErrors) {
  const char* bad[] = {
      R"({"messages":[{"role":"user","content":"x"}],"continue_final_message":true})",  // with add_generation_prompt
      R"({"messages":[{"content":"x"}]})",
      R"({"messages":"x"})",
      R"({})",
      R"({"messages":[{"role":"user","content":[{"type":"bogus"}]}]})",
      R"({"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]})",
      R"({"messages":[{"role":"user","content":[{"foo":1}]}]})",
      R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":"not-an-object"}]}]})",
      R"({"messages":[{"role":"user","content":5}]})",
      R"({"messages":[],"tools":[{"type":"function"}]})",
      R"({"messages":[],"chat_template_kwargs":{"chat_template":"x"}})",
      R"({"messages":[],"chat_template":"{{ 1 }}"})",
      R"({"messages":[{"role":"assistant","tool_calls":[{"id":"x"}]}]})",
      R"({"messages":[],"add_generation_prompt":"yes"})",
  };
  for (const char* r : bad) EXPECT_FALSE(render(kDump, r).is_ok()) << r;
}

TEST(Chat, TemplateSourcesFollowVllmPrecedence) {
  fs::path dir = fs::temp_directory_path() / ("ds_chat_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"chat_template": "CONFIG", "eos_token": {"content": "<E>"}, "bos_token": null, "model_specific_special_tokens": {"image_token": "<|image_pad|>"}})";
  auto o = ds::text::load_chat_template_options(dir.string());
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  EXPECT_EQ(o->chat_template, "CONFIG");
  EXPECT_EQ(o->special_tokens.dump(), R"({"eos_token":"<E>","image_token":"<|image_pad|>"})");
  std::ofstream(dir / "chat_template.jinja") << "FILE";
  EXPECT_EQ(ds::text::load_chat_template_options(dir.string())->chat_template, "FILE");
  EXPECT_EQ(ds::text::load_chat_template_options(dir.string(), "{{ inline }}")->chat_template, "{{ inline }}");
  EXPECT_FALSE(ds::text::load_chat_template_options(dir.string(), "missing.jinja").is_ok());
  fs::remove_all(dir);
  EXPECT_FALSE(ds::text::load_chat_template_options(dir.string()).is_ok());
}

}  // namespace
