"""GET /openapi.json (vLLM's FastAPI document) against the server itself: the document is valid
OpenAPI 3.1 JSON whose schemas are valid JSON Schema, it lists exactly the routes
src/server/http_server.cpp registers, each documented operation answers, and each request schema's
`required` list is what the server requires: the example body and its required fields alone are
accepted, and dropping any required field is a 400 that names it. Runs on the moe-gptq-int4 CPU
fixture with the Qwen3.5 tokenizer tools/setup.sh builds (as test_server_real_model.py)."""
import json
import os
import re
import urllib.error
import urllib.request

import pytest

from conftest import BINARY, REPO, ServerProcess

MODEL = os.path.join(REPO, "tests", "fixtures", "models", "moe-gptq-int4")
TOKENIZER = os.environ.get("DS_QWEN35_TOKENIZER", os.path.join(os.path.dirname(BINARY), "tokenizers", "qwen35"))
if TOKENIZER.endswith(".json"):
    TOKENIZER = os.path.dirname(TOKENIZER)
FLAGS = ["--tokenizer", TOKENIZER, "--max-model-len", "96", "--kv-cache-memory-bytes", "64M",
         "--reasoning-parser", "qwen3", "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder",
         "--served-model-name", "qwen-test"]


def start(tmp, extra=()):
    if not (os.path.exists(BINARY) and os.path.exists(os.path.join(TOKENIZER, "tokenizer.json"))):
        pytest.fail(f"needs {BINARY} and a Qwen3.5 tokenizer.json at {TOKENIZER} (run tools/setup.sh)")
    s = ServerProcess([MODEL, *FLAGS, *extra], log_path=str(tmp / "server.log"))
    try:
        return s.wait_ready(timeout=90)
    except Exception:
        s.stop()
        raise


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start(tmp_path_factory.mktemp("openapi"))
    yield s
    s.stop()


def http(server, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type", "")


@pytest.fixture(scope="module")
def doc(server):
    status, text, ctype = http(server, "GET", "/openapi.json")
    assert status == 200 and ctype.startswith("application/json")
    return json.loads(text)


def registered_routes():
    """(METHOD, path) for every route(...) call in http_server.cpp: the server's route table."""
    src = open(os.path.join(REPO, "src", "server", "http_server.cpp")).read()
    routes = set(re.findall(r'route\("(GET|POST)",\s*"([^"]+)"', src))
    assert ("POST", "/v1/chat/completions") in routes and len(routes) > 10, routes
    return routes


def resolve(doc, schema):
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def alternatives(doc, schema):
    """The object schemas a request body may take (anyOf expanded)."""
    schema = resolve(doc, schema)
    if "anyOf" in schema:
        return [alt for s in schema["anyOf"] for alt in alternatives(doc, s)]
    return [schema]


def test_document_is_openapi_31_with_valid_schemas(doc):
    jsonschema = pytest.importorskip("jsonschema")
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["info"]["version"]
    for name, s in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(s)
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["operationId"] and op["responses"], (method, path)
    op_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(op_ids) == len(set(op_ids))


def test_lists_every_registered_route(doc):
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert documented == registered_routes()


def test_every_documented_operation_answers(server, doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = None
            if "requestBody" in op:
                body = alternatives(doc, op["requestBody"]["content"]["application/json"]["schema"])[0]["example"]
            status, text, ctype = http(server, method.upper(), path, body)
            assert str(status) in op["responses"] and status == 200, (method, path, status, text)
            documented = op["responses"]["200"].get("content", {})
            if documented:
                assert ctype.split(";")[0] in documented, (path, ctype)


def test_required_fields_match_what_the_server_requires(server, doc):
    checked = 0
    for path, item in doc["paths"].items():
        op = item.get("post")
        if not op or "requestBody" not in op:
            continue
        for alt in alternatives(doc, op["requestBody"]["content"]["application/json"]["schema"]):
            required = alt.get("required", [])
            assert required, (path, alt.get("title"))
            assert set(required) <= set(alt["properties"]) and set(required) <= set(alt["example"])
            status, text, _ = http(server, "POST", path, alt["example"])
            assert status == 200, (path, alt["title"], text)
            status, text, _ = http(server, "POST", path, {k: alt["example"][k] for k in required})
            assert status == 200, (path, alt["title"], "only the required fields", text)
            for field in required:
                body = {k: v for k, v in alt["example"].items() if k != field}
                status, text, _ = http(server, "POST", path, body)
                assert status == 400, (path, alt["title"], field, status, text)
                err = json.loads(text)["error"]
                assert field in err["message"] or err.get("param") == field, err
                checked += 1
    assert checked >= 6  # chat, completions, tokenize (2 forms), detokenize, invocations (2 forms)


def test_docs_pages_point_at_the_document(server):
    for path in ("/docs", "/redoc"):
        status, text, ctype = http(server, "GET", path)
        assert status == 200 and ctype.startswith("text/html") and "/openapi.json" in text


def test_disable_fastapi_docs_removes_them(tmp_path):
    s = start(tmp_path, ["--disable-fastapi-docs"])
    try:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert http(s, "GET", path)[0] == 404
        assert http(s, "GET", "/version")[0] == 200
    finally:
        s.stop()
