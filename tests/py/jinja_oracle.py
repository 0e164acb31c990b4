"""Reference for `deltaserve chat-template`: what `vllm serve` + transformers render for a request.

Written with jinja2 only (transformers and vLLM are not installed in CI), replicating:
- transformers' chat-template environment (utils/chat_template_utils.py `_compile_jinja_template`):
  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loopcontrols + the
  `generation` tag), `tojson` = json.dumps(x, ensure_ascii=False, indent, separators, sort_keys),
  `raise_exception`, `strftime_now`, `dict`, `namespace`;
- transformers' render_jinja_template: reasoning aliases and continue_final_message (v5 tag method);
- vLLM's parse_chat_messages (entrypoints/chat_utils.py): content parts, the "string"/"openai"
  content formats and their auto-detection from the template AST (renderers/hf.py, with the
  `for x in content` fallback of vllm#42660), tool-call argument decoding, tool `model_dump`.
`cross_check_with_transformers` compares this oracle with the real transformers code when present.
"""

import functools
import json
from collections import deque
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"


class OracleError(Exception):
    """A request or template error (vLLM answers these with HTTP 400)."""


class _GenerationTag(jinja2.ext.Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def hf_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    class TemplateDict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError("underscore-prefixed namespace attribute")

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


_ENV = hf_environment()


@functools.lru_cache(maxsize=64)
def _compiled(template):
    return _ENV.from_string(template)


def render_raw(template, variables):
    """Renders `template` with `variables` exactly as transformers' environment does."""
    return _compiled(template).render(**variables)


# ---- vLLM content-format detection (renderers/hf.py) ----

def _is_var_access(node, varname):
    return isinstance(node, jinja2.nodes.Name) and node.ctx == "load" and node.name == varname


def _is_attr_access(node, varname, key):
    if isinstance(node, jinja2.nodes.Getitem):
        return (_is_var_access(node.node, varname) and isinstance(node.arg, jinja2.nodes.Const)
                and node.arg.value == key)
    if isinstance(node, jinja2.nodes.Getattr):
        return _is_var_access(node.node, varname) and node.attr == key
    return False


def _is_var_or_elems_access(node, varname, key=None):
    if isinstance(node, jinja2.nodes.Filter):
        return node.node is not None and _is_var_or_elems_access(node.node, varname, key)
    if isinstance(node, jinja2.nodes.Test):
        return _is_var_or_elems_access(node.node, varname, key)
    if isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Slice):
        return _is_var_or_elems_access(node.node, varname, key)
    return _is_attr_access(node, varname, key) if key else _is_var_access(node, varname)


@functools.lru_cache(maxsize=64)
def detect_content_format(template):
    ast = _ENV.parse(template)
    names = ["messages"]
    queue = deque(["messages"])
    while queue:
        related = queue.popleft()
        for assign in ast.find_all(jinja2.nodes.Assign):
            if isinstance(assign.target, jinja2.nodes.Name) and _is_var_or_elems_access(assign.node, related):
                names.append(assign.target.name)
                if assign.target.name != related:
                    queue.append(assign.target.name)
    message_vars = [loop.target.name for loop in ast.find_all(jinja2.nodes.For)
                    if any(_is_var_or_elems_access(loop.iter, n) for n in names)
                    and isinstance(loop.target, jinja2.nodes.Name)]
    for loop in ast.find_all(jinja2.nodes.For):
        if any(_is_var_or_elems_access(loop.iter, v, "content") for v in message_vars):
            return "openai"
        if isinstance(loop.iter, jinja2.nodes.Name) and loop.iter.name == "content":
            return "openai"
    return "string"


# ---- vLLM parse_chat_messages ----

def _parse_part(part):
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise OracleError("content part must be a string or an object")
    ptype = part.get("type")
    if ptype is None:
        for key in ("image_url", "video_url", "audio_url", "input_audio"):
            if key in part:
                ptype = key
                break
        else:
            raise OracleError("Missing 'type' field in multimodal part.")
    if ptype in ("text", "input_text", "output_text", "refusal", "thinking"):
        field = {"refusal": "refusal", "thinking": "thinking"}.get(ptype, "text")
        text = part.get(field)
        return None if text is None else {"type": "text", "text": text}
    if ptype in ("image_url", "input_image"):
        return {"type": "image"}
    if ptype == "video_url":
        return {"type": "video"}
    raise OracleError(f"Unsupported chat content part type: {ptype!r}")


def _string_content(parts):
    texts = [p["text"] for p in parts if p["type"] == "text"]
    text = "\n".join(texts)
    missing = []
    for kind, placeholder in (("image", IMAGE_PLACEHOLDER), ("video", VIDEO_PLACEHOLDER)):
        n = sum(1 for p in parts if p["type"] == kind)
        if n:
            left = n - text.count(placeholder)
            if left < 0:
                raise OracleError("more placeholders than items")
            missing += [placeholder] * left
    if not missing:
        return text
    return "\n".join(missing + [text]) if text else "\n".join(missing)


def build_conversation(messages, content_format):
    conversation = []
    for msg in messages:
        role = msg["role"]
        content = msg.get("content")
        if content is None:
            content = []
        elif isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = [p for p in (_parse_part(x) for x in content) if p is not None]
        out = {"role": role, "content": parts if content_format == "openai" else _string_content(parts)}
        if role == "assistant":
            if msg.get("tool_calls") is not None:
                out["tool_calls"] = [json.loads(json.dumps(tc)) for tc in msg["tool_calls"]]
            reasoning = msg.get("reasoning")
            if reasoning is None:
                reasoning = msg.get("reasoning_content")  # deltaserve also accepts the old name
            if reasoning is not None:
                out["reasoning"] = reasoning
                out["reasoning_content"] = reasoning
        elif role == "tool":
            if "tool_call_id" in msg:
                out["tool_call_id"] = msg["tool_call_id"]
            if isinstance(out["content"], list):
                if all(p["type"] == "text" for p in out["content"]):
                    out["content"] = "\n".join(p["text"] for p in out["content"])
        if isinstance(msg.get("name"), str):
            out["name"] = msg["name"]
        conversation.append(out)
    for message in conversation:  # _postprocess_messages
        if message["role"] == "assistant" and "tool_calls" in message:
            calls = message["tool_calls"]
            if not isinstance(calls, list):
                continue
            if not calls:
                message.pop("tool_calls")
                continue
            for item in calls:
                args = item["function"].get("arguments")
                if isinstance(args, str):
                    try:
                        item["function"]["arguments"] = json.loads(args)
                    except json.JSONDecodeError:
                        item["function"]["arguments"] = {}
                elif not isinstance(args, (dict, list)):
                    item["function"]["arguments"] = {}
    return conversation


def normalize_tools(tools):
    """pydantic model_dump of vLLM's ChatCompletionToolsParam (null defaults, extras last)."""
    out = []
    for tool in tools:
        fn = tool["function"]
        f = {"name": fn["name"], "description": fn.get("description"), "parameters": fn.get("parameters")}
        f.update({k: v for k, v in fn.items() if k not in f})
        t = {"type": "function", "function": f}
        t.update({k: v for k, v in tool.items() if k not in ("type", "function")})
        out.append(t)
    return out


def _alias_reasoning(chat):
    aliased = []
    for message in chat:
        reasoning = next((message[k] for k in ("reasoning_content", "thinking", "reasoning")
                          if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        aliased.append(message)
    return aliased


def template_variables(request, special_tokens, default_kwargs, content_format):
    add_generation_prompt = request.get("add_generation_prompt", True)
    kwargs = dict(default_kwargs or {})
    kwargs.update(request.get("chat_template_kwargs") or {})
    conversation = _alias_reasoning(build_conversation(request["messages"], content_format))
    tools = normalize_tools(request["tools"]) if request.get("tools") is not None else None
    variables = dict(special_tokens)
    variables.update(kwargs)
    variables.update(messages=conversation, tools=tools, documents=request.get("documents"),
                     add_generation_prompt=kwargs.get("add_generation_prompt", add_generation_prompt))
    return variables


def render_request(template, request, special_tokens=None, default_kwargs=None, content_format="auto"):
    """The prompt vLLM builds for `request`; raises OracleError / jinja2 errors like vLLM's 400s."""
    if content_format == "auto":
        content_format = detect_content_format(template)
    if request.get("add_generation_prompt", True) and request.get("continue_final_message", False):
        raise OracleError("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
    variables = template_variables(request, special_tokens or {}, default_kwargs, content_format)
    chat = variables["messages"]
    final = None
    if request.get("continue_final_message"):
        if not chat:
            raise OracleError("continue_final_message is set but the conversation is empty!")
        final = chat[-1].get("content")
        if final is None:
            raise OracleError("final message has no content")
        if "content" not in template:
            raise OracleError("content not in template")
        if isinstance(final, list):
            for block in reversed(final):
                if "text" in block:
                    final = block["text"]
                    block["text"] = block["text"] + CONTINUE_TAG
                    break
            else:
                raise OracleError("no text to continue")
        else:
            chat[-1]["content"] = chat[-1]["content"] + CONTINUE_TAG
    rendered = render_raw(template, variables)
    if final is not None:
        if final.strip() not in rendered or CONTINUE_TAG.strip() not in rendered:
            raise OracleError("final message not in rendered chat")
        loc = rendered.rindex(CONTINUE_TAG.strip())
        if rendered[loc:loc + len(CONTINUE_TAG)] == CONTINUE_TAG:
            rendered = rendered[:loc]
        else:
            rendered = rendered[:loc].rstrip()
    return rendered


def cross_check_with_transformers(template, request, special_tokens=None, default_kwargs=None):
    """Renders with transformers' own render_jinja_template from the same conversation, or returns
    None when transformers is not installed. Used to validate this oracle locally."""
    try:
        from transformers.utils.chat_template_utils import render_jinja_template
    except ImportError:
        return None
    content_format = detect_content_format(template)
    kwargs = dict(default_kwargs or {})
    kwargs.update(request.get("chat_template_kwargs") or {})
    conversation = build_conversation(request["messages"], content_format)
    tools = normalize_tools(request["tools"]) if request.get("tools") is not None else None
    template_kwargs = {**(special_tokens or {}), **kwargs}
    template_kwargs.setdefault("add_generation_prompt", request.get("add_generation_prompt", True))
    rendered, _ = render_jinja_template(
        conversations=[conversation], tools=tools, documents=request.get("documents"), chat_template=template,
        continue_final_message=request.get("continue_final_message", False), **template_kwargs)
    return rendered[0]
