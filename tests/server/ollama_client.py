"""suanli serve's Ollama API against the `ollama` Python client.

Run by crates/suanli/tests/server.rs, which starts the server:

    python3 ollama_client.py BASE_URL API_KEY ollama

Every check asserts; any failure exits non-zero with the reason.
"""

import json
import sys
import urllib.error
import urllib.request

import ollama

BASE, KEY, SECTION = sys.argv[1], sys.argv[2], sys.argv[3]
ROOT = BASE.rsplit("/v1", 1)[0]
AUTH = {"Authorization": f"Bearer {KEY}"}
client = ollama.Client(host=ROOT, headers=AUTH, timeout=600)
GREEDY = {"temperature": 0, "seed": 1}


def raw(path, body):
    req = urllib.request.Request(ROOT + path, data=body, method="POST",
                                 headers={"content-type": "application/json", **AUTH})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def section_ollama():
    # The model list, its details and what is loaded.
    models = client.list().models
    assert len(models) == 1, models
    m = models[0].model
    assert models[0].details.family == "qwen2" and models[0].size > 0, models[0]
    show = client.show(m)
    assert "completion" in show.capabilities and "tools" in show.capabilities, show.capabilities
    assert show.modelinfo["qwen2.context_length"] == 32768, show.modelinfo
    assert "<|im_start|>" in show.template
    ps = client.ps().models
    assert ps and ps[0].model == m and ps[0].context_length > 0, ps
    assert client.show(m + ":latest").modelinfo["general.architecture"] == "qwen2"

    # Chat, English and Chinese: streamed pieces add up to the whole answer.
    for prompt in ["Name three primary colors.", "用一句话介绍长城。"]:
        msgs = [{"role": "user", "content": prompt}]
        whole = client.chat(model=m, messages=msgs, options={**GREEDY, "num_predict": 40})
        assert whole.done and whole.message.role == "assistant", whole
        assert whole.message.content.strip(), whole
        assert whole.eval_count > 0 and whole.prompt_eval_count > 0
        assert whole.total_duration >= whole.eval_duration > 0, whole
        parts = list(client.chat(model=m, messages=msgs, stream=True,
                                 options={**GREEDY, "num_predict": 40}))
        assert len(parts) > 2 and parts[-1].done and not parts[0].done
        assert "".join(p.message.content for p in parts) == whole.message.content
        assert parts[-1].done_reason == whole.done_reason
        if prompt.startswith("用"):
            assert any("\u4e00" <= ch <= "\u9fff" for ch in whole.message.content), whole.message.content

    # num_predict ends with done_reason "length"; a stop string with "stop".
    r = client.chat(model=m, messages=[{"role": "user", "content": "Count from 1 to 50."}],
                    options={**GREEDY, "num_predict": 5})
    assert r.done_reason == "length" and r.eval_count == 5, r
    g = client.generate(model=m, prompt="1, 2, 3, 4, 5,", raw=True,
                        options={**GREEDY, "num_predict": 30, "stop": ["9"]})
    assert g.done_reason == "stop" and "9" not in g.response and "8" in g.response, g

    # Generate, templated and streamed.
    whole = client.generate(model=m, prompt="Write one word: a fruit.", options={**GREEDY, "num_predict": 12})
    parts = list(client.generate(model=m, prompt="Write one word: a fruit.", stream=True,
                                 options={**GREEDY, "num_predict": 12}))
    assert "".join(p.response for p in parts) == whole.response and whole.response.strip()
    assert parts[-1].done and parts[-1].eval_count == whole.eval_count

    # format: any JSON, and a schema.
    r = client.chat(model=m, messages=[{"role": "user", "content": "A person as JSON with name and age."}],
                    format="json", options={**GREEDY, "num_predict": 60})
    assert isinstance(json.loads(r.message.content), dict), r.message.content
    schema = {"type": "object", "properties": {"city": {"type": "string"},
              "population": {"type": "integer"}}, "required": ["city", "population"]}
    r = client.chat(model=m, messages=[{"role": "user", "content": "The largest city of Japan, as JSON."}],
                    format=schema, options={**GREEDY, "num_predict": 80})
    v = json.loads(r.message.content)
    assert isinstance(v["city"], str) and isinstance(v["population"], int), v

    # Tools: the definitions and an earlier call (Ollama's shape, arguments
    # an object) with its result go through the template, and the answer
    # uses the result. (Qwen2.5-Coder-0.5B, greedy, writes its own calls as
    # markdown JSON rather than in <tool_call> tags, so the parsing of calls
    # into tool_calls is checked by the server's unit tests.)
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    msgs = [{"role": "user", "content": "What is the weather in Paris right now?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": '{"temp_c": 18, "sky": "clear"}', "tool_name": "get_weather"}]
    r = client.chat(model=m, messages=msgs, tools=tools, options={**GREEDY, "num_predict": 60})
    assert r.done and r.message.content, r.message
    # The call and its result are in the prompt: each adds its tokens.
    n = [client.chat(model=m, messages=msgs[:k], tools=tools, options={**GREEDY, "num_predict": 1}).prompt_eval_count
         for k in (1, 2, 3)]
    assert n[0] < n[1] < n[2] == r.prompt_eval_count, n
    without = client.chat(model=m, messages=msgs[:1], options={**GREEDY, "num_predict": 1}).prompt_eval_count
    assert without + 50 < n[0], (without, n)  # the tool definitions are rendered
    parts = list(client.chat(model=m, messages=msgs, tools=tools, stream=True,
                             options={**GREEDY, "num_predict": 60}))
    assert parts[-1].done and parts[-1].prompt_eval_count == r.prompt_eval_count

    # Errors: Ollama's {"error": ...} with the status.
    try:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("an unknown model was served")
    except ollama.ResponseError as e:
        assert e.status_code == 404 and "no-such-model" in e.error, e
    try:
        client.embed(model=m, input="hello")
        raise AssertionError("embeddings answered")
    except ollama.ResponseError as e:
        assert e.status_code == 501, e
    status, body = raw("/api/chat", b"{not json")
    assert status == 400 and "invalid JSON" in json.loads(body)["error"], body
    status, body = raw("/api/generate", json.dumps({"model": m, "prompt": "x",
                       "options": {"temperature": -1}}).encode())
    assert status == 400 and "temperature" in json.loads(body)["error"], body
    status, body = raw("/api/chat", json.dumps({"model": m, "messages": [{"role": "user", "content": "x"}],
                       "format": 7}).encode())
    assert status == 400 and "format" in json.loads(body)["error"], body
    status, body = raw("/api/chat", json.dumps({"model": m, "messages": [{"role": "user", "content": "x"}],
                       "options": {"temprature": 0.2}}).encode())
    assert status == 400 and "options.temprature" in json.loads(body)["error"], body
    # The inference gateway's metric names, for routing across replicas.
    req = urllib.request.Request(ROOT + "/metrics")
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    for name in ["vllm:num_requests_waiting", "vllm:num_requests_running",
                 "vllm:kv_cache_usage_perc", "vllm:cache_config_info"]:
        assert any(line.startswith(name + "{") for line in text.splitlines()), name
    # The key is needed here as on /v1.
    req = urllib.request.Request(ROOT + "/api/tags")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("no key, yet served")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    print("ollama: ok")


{"ollama": section_ollama}[SECTION]()
