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


{"json": section_json}[SECTION]()
print(f"{SECTION}: ok")
