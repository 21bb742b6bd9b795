"""Structured output and tool calling against suanli serve, with the
official `openai` client and a JSON-schema validator (`jsonschema`).

Run by crates/suanli/tests/server.rs, which starts the server:

    python3 structured.py BASE_URL API_KEY SECTION

SECTION: json | tools. Every check asserts; any failure exits non-zero
with the reason.
"""

import concurrent.futures as cf
import json
import re
import sys
import urllib.error
import urllib.request
from typing import List, Literal

import jsonschema
import openai
import pydantic

BASE, KEY, SECTION = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=600)
MODEL = client.models.list().data[0].id


def post(path, body):
    """A raw POST; any status comes back as (status, parsed body)."""
    req = urllib.request.Request(
        f"{BASE}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json", "Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def expect_400(body, param, contains, path="/chat/completions"):
    status, out = post(path, body)
    assert status == 400, (status, out)
    err = out["error"]
    assert err["param"] == param, (param, err)
    assert contains in err["message"], (contains, err["message"])


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"type": "string", "enum": ["admin", "editor", "viewer"]},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 1, "maxItems": 4},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "country": {"type": "string", "enum": ["FR", "CN", "US", "BR"]},
                "geo": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            },
            "required": ["city", "country", "geo"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "role", "skills", "address"],
    "additionalProperties": False,
}

ASK = [{"role": "user", "content": "Invent a software engineer and describe them as JSON."}]


def person(i, strict, stream):
    kw = dict(model=MODEL, messages=ASK, max_tokens=400, temperature=0.8, seed=i,
              response_format={"type": "json_schema",
                               "json_schema": {"name": "person", "schema": PERSON, "strict": strict}})
    if not stream:
        r = client.chat.completions.create(**kw)
        return r.choices[0].message.content, r.choices[0].finish_reason
    text, finish = "", None
    for ch in client.chat.completions.create(stream=True, **kw):
        if ch.choices:
            text += ch.choices[0].delta.content or ""
            finish = ch.choices[0].finish_reason or finish
    return text, finish


def section_json():
    # 16 at once (strict and not, streamed and not): every one validates.
    with cf.ThreadPoolExecutor(16) as ex:
        outs = list(ex.map(lambda i: person(i, i % 2 == 0, i % 4 >= 2), range(16)))
    for text, finish in outs:
        assert finish == "stop", (finish, text)
        jsonschema.validate(json.loads(text), PERSON)
    print("16 concurrent schema outputs validate; e.g.", outs[0][0])

    # parse() with a pydantic model.
    class Step(pydantic.BaseModel):
        explanation: str
        output: str

    class Math(pydantic.BaseModel):
        steps: List[Step]
        final_answer: str
        confidence: Literal["low", "medium", "high"]

    r = client.chat.completions.parse(
        model=MODEL, temperature=0, max_tokens=400, response_format=Math,
        messages=[{"role": "user", "content": "Solve 8x + 7 = -23 step by step."}])
    m = r.choices[0].message.parsed
    assert isinstance(m, Math) and m.final_answer, r
    print("parse():", m)

    # json_object: any JSON object, chat and completions.
    r = client.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=200, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "List three colors in JSON."}])
    assert isinstance(json.loads(r.choices[0].message.content), dict), r
    r = client.completions.create(model=MODEL, prompt="A JSON object describing a cat:", max_tokens=200,
                                  temperature=0, extra_body={"response_format": {"type": "json_object"}})
    assert r.choices[0].finish_reason == "stop", r
    assert isinstance(json.loads(r.choices[0].text), dict), r

    # The grammar field: a regex and a Lark grammar, obeyed.
    r = client.completions.create(model=MODEL, prompt="Call me at", max_tokens=20, temperature=1.0,
                                  extra_body={"grammar": {"type": "regex", "value": r" \d{3}-\d{4}"}})
    assert re.fullmatch(r" \d{3}-\d{4}", r.choices[0].text), r
    lark = 'start: answer " because " reason\nanswer: "yes" | "no"\nreason: /[a-z ]{1,40}/'
    for stream in (False, True):
        kw = dict(model=MODEL, messages=[{"role": "user", "content": "Is the sea blue?"}],
                  max_tokens=40, temperature=0.7, extra_body={"grammar": lark})
        if stream:
            text = "".join(ch.choices[0].delta.content or ""
                           for ch in client.chat.completions.create(stream=True, **kw) if ch.choices)
        else:
            text = client.chat.completions.create(**kw).choices[0].message.content
        assert re.fullmatch(r"(yes|no) because [a-z ]{1,40}", text), text
    # Cut short by max_tokens: "length", not "stop".
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=5,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})
    assert r.choices[0].finish_reason == "length", r

    # Bad input: 400 naming the field and the reason.
    base = {"model": MODEL, "messages": ASK}
    expect_400({**base, "response_format": {"type": "json_schema",
                                            "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
               "response_format", "nonsense")
    expect_400({**base, "response_format": {"type": "yaml"}}, "response_format", "unknown type")
    expect_400({**base, "grammar": "start: foo\nfoo: bar"}, "grammar", "bar")
    expect_400({"model": MODEL, "prompt": "x", "grammar": {"type": "regex", "value": "[a-"}},
               "grammar", "regex", path="/completions")
    # Still serving.
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=3)
    assert r.choices[0].message.content is not None


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "The current time in a time zone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 40}},
                       "required": ["tz"], "additionalProperties": False}}},
]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
WEATHER = [{"role": "user", "content": "What is the weather in Paris right now?"}]


def check_calls(calls, only=None):
    assert calls, "no tool call"
    for c in calls:
        assert c.type == "function" and c.id, c
        assert c.function.name in PARAMS and (only is None or c.function.name == only), c
        jsonschema.validate(json.loads(c.function.arguments), PARAMS[c.function.name])


def streamed_calls(**kw):
    """Accumulate delta.tool_calls by index: the id and name come once."""
    calls, finish, content = {}, None, ""
    for ch in client.chat.completions.create(stream=True, **kw):
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        content += d.content or ""
        for tc in d.tool_calls or []:
            c = calls.setdefault(tc.index, {"id": None, "name": None, "args": "", "fragments": 0})
            if tc.id:
                assert c["id"] is None, "id sent twice"
                c["id"] = tc.id
            if tc.function and tc.function.name:
                assert c["name"] is None, "name sent twice"
                c["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                c["args"] += tc.function.arguments
                c["fragments"] += 1
        finish = ch.choices[0].finish_reason or finish
    return calls, finish, content


def section_tools():
    # Named and required: always a valid call, whatever the sampling.
    for i in range(4):
        r = client.chat.completions.create(
            model=MODEL, messages=WEATHER, tools=TOOLS, temperature=1.0, seed=i, max_tokens=200,
            tool_choice={"type": "function", "function": {"name": "get_time"}})
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c
        assert len(c.message.tool_calls) == 1, c
        check_calls(c.message.tool_calls, only="get_time")
        r = client.chat.completions.create(
            model=MODEL, messages=WEATHER, tools=TOOLS, temperature=1.0, seed=i, max_tokens=300,
            tool_choice="required", parallel_tool_calls=i % 2 == 0)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c
        check_calls(c.message.tool_calls)
        if i % 2:
            assert len(c.message.tool_calls) == 1, c
    # Streamed: the name once, the arguments in fragments.
    calls, finish, _ = streamed_calls(
        model=MODEL, messages=WEATHER, tools=TOOLS, temperature=0, max_tokens=200,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert finish == "tool_calls" and list(calls) == [0], (finish, calls)
    c = calls[0]
    assert c["name"] == "get_weather" and c["id"] and c["fragments"] > 1, c
    jsonschema.validate(json.loads(c["args"]), PARAMS["get_weather"])

    # Two steps: the call, its result through the template, the answer;
    # streamed and not.
    for stream in (False, True):
        r = client.chat.completions.create(
            model=MODEL, messages=WEATHER, tools=TOOLS, temperature=0, max_tokens=200,
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
        call = r.choices[0].message.tool_calls[0]
        msgs = WEATHER + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 23, "sky": "sunny"})},
        ]
        kw = dict(model=MODEL, messages=msgs, tools=TOOLS, temperature=0, max_tokens=80, tool_choice="none")
        if stream:
            _, finish, text = streamed_calls(**kw)
        else:
            r = client.chat.completions.create(**kw)
            text, finish = r.choices[0].message.content, r.choices[0].finish_reason
        assert finish in ("stop", "length") and "23" in text, (finish, text)
        print("answer after the tool result:", text)

    # Bad input: 400 naming the field.
    base = {"model": MODEL, "messages": WEATHER, "tools": TOOLS}
    expect_400({**base, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "nope")
    expect_400({**base, "tool_choice": "sometimes"}, "tool_choice", "sometimes")
    bad = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "nonsense"}}}}}]
    expect_400({**base, "tools": bad}, "tools[0].function.parameters", "nonsense")
    expect_400({**base, "tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name", "letters")
    r = client.chat.completions.create(model=MODEL, messages=WEATHER, max_tokens=3)
    assert r.choices[0].message.content is not None


{"json": section_json, "tools": section_tools}[SECTION]()
print(f"{SECTION}: ok")
