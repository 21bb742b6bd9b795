"""suanli serve against the official `openai` Python client and raw HTTP.

Run by crates/suanli/tests/server.rs, which starts the server:

    python3 openai_client.py BASE_URL API_KEY SECTION

SECTION: client | invariance | disconnect | errors. Every check asserts; any
failure exits non-zero with the reason.
"""

import concurrent.futures as cf
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

import openai

BASE, KEY, SECTION = sys.argv[1], sys.argv[2], sys.argv[3]
ROOT = BASE.rsplit("/v1", 1)[0]
client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=600)
MODEL = client.models.list().data[0].id
AUTH = {"Authorization": f"Bearer {KEY}"}


class Resp:
    def __init__(self, status, text, headers=None):
        self.status_code, self.text, self.headers = status, text, headers or {}

    def json(self):
        return json.loads(self.text)


def http(method, url, json_body=None, content=None, headers=None, timeout=60):
    """A raw request with the standard library; any status comes back."""
    data = content if content is not None else (
        json.dumps(json_body).encode() if json_body is not None else None)
    h = {"content-type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Resp(r.status, r.read().decode(), r.headers)
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.read().decode(), e.headers)


def post(url, **kw):
    return http("POST", url, **kw)


def get(url, **kw):
    return http("GET", url, **kw)


def metrics():
    text = get(f"{ROOT}/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^(\S+?)(\{.*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def wait_idle(what, timeout=20):
    """Until no sequence runs and no KV block is referenced."""
    t = time.time()
    while time.time() - t < timeout:
        m = metrics()
        if m["suanli_kv_blocks_used"] == 0 and m["suanli_running_sequences"] == 0:
            return m
        time.sleep(0.1)
    raise AssertionError(f"{what}: KV blocks still used after {timeout}s: {m}")


def tokenize(text, add_special=True):
    r = post(f"{ROOT}/tokenize", json_body={"content": text, "add_special": add_special})
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


def chat(content, **kw):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kw
    )


def section_client():
    # Chat, greedy, with logprobs; the stream spells the same text.
    r = chat("Write a haiku about the sea.", temperature=0, max_tokens=32, logprobs=True, top_logprobs=3)
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content, r
    assert c.finish_reason in ("stop", "length"), c.finish_reason
    lps = c.logprobs.content
    assert len(lps) == r.usage.completion_tokens, (len(lps), r.usage)
    for e in lps:
        assert len(e.top_logprobs) == 3 and e.logprob <= 0
        # Greedy: the chosen token is the most likely one.
        assert abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6, e
    assert "".join(e.token for e in lps).strip() == c.message.content.strip()
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    text, usage, finish = "", None, None
    stream = chat(
        "Write a haiku about the sea.", temperature=0, max_tokens=32,
        stream=True, stream_options={"include_usage": True},
    )
    for ch in stream:
        if ch.choices:
            text += ch.choices[0].delta.content or ""
            finish = ch.choices[0].finish_reason or finish
        else:
            usage = ch.usage
    assert text == c.message.content, (text, c.message.content)
    assert finish == c.finish_reason
    assert usage and usage.completion_tokens == r.usage.completion_tokens, usage
    # The second identical prompt found its prefix cached.
    assert usage.prompt_tokens_details.cached_tokens > 0, usage

    # max_tokens, stop strings, n, seeds.
    r = chat("Count from 1 to 20, separated by commas.", temperature=0, max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5, r
    full = chat("Count from 1 to 20, separated by commas.", temperature=0, max_tokens=60)
    t = full.choices[0].message.content
    assert "5" in t, t
    r = chat("Count from 1 to 20, separated by commas.", temperature=0, max_tokens=60, stop=["5", "zzz"])
    assert r.choices[0].finish_reason == "stop", r
    assert r.choices[0].message.content == t[: t.index("5")], (r.choices[0].message.content, t)
    r = chat("Name a color.", temperature=1.0, max_tokens=8, n=3, seed=42)
    assert [c.index for c in r.choices] == [0, 1, 2]
    again = chat("Name a color.", temperature=1.0, max_tokens=8, n=3, seed=42)
    assert [c.message.content for c in r.choices] == [c.message.content for c in again.choices]

    # Completions: echo + logprobs aligned with the prompt, as lm-eval reads them.
    prompt = "The capital of France is"
    ids = tokenize(prompt)
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, echo=True, logprobs=1, temperature=0)
    c = r.choices[0]
    lp = c.logprobs
    assert r.usage.prompt_tokens == len(ids), (r.usage, ids)
    assert len(lp.tokens) == len(ids) + 1 == len(lp.token_logprobs) == len(lp.top_logprobs)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x <= 0 for x in lp.token_logprobs[1:])
    assert c.text.startswith(prompt) and c.text == prompt + lp.tokens[-1], (c.text, lp.tokens)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    # The same prompt as token ids, and max_tokens=0 (score only).
    r2 = client.completions.create(model=MODEL, prompt=ids, max_tokens=0, echo=True, logprobs=1, temperature=0)
    lp2 = r2.choices[0].logprobs
    assert len(lp2.tokens) == len(ids) and r2.usage.completion_tokens == 0, r2
    for a, b in zip(lp.token_logprobs[1 : len(ids)], lp2.token_logprobs[1:]):
        assert abs(a - b) < 1e-5, (a, b)
    # A list of prompts: choices in prompt order.
    r = client.completions.create(model=MODEL, prompt=["1, 2, 3,", "a, b, c,"], max_tokens=4, temperature=0)
    assert [c.index for c in r.choices] == [0, 1] and "4" in r.choices[0].text, r
    r = client.completions.create(model=MODEL, prompt=[ids, ids[:3]], max_tokens=2, temperature=0)
    assert len(r.choices) == 2, r
    # Streaming completion with echo.
    text = "".join(
        ch.choices[0].text
        for ch in client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=6, temperature=0, stream=True, echo=True)
        if ch.choices
    )
    r = client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=6, temperature=0, echo=True)
    assert text == r.choices[0].text, (text, r.choices[0].text)

    # tokenize / detokenize round trip, with Chinese.
    s = "算力 means compute."
    back = post(f"{ROOT}/detokenize", json_body={"tokens": tokenize(s, add_special=False)}).json()
    assert back["content"] == s, back
    assert get(f"{ROOT}/health").json()["status"] == "ok"

    # lm-evaluation-harness's remote tokenizer: /tokenizer_info, then vLLM's
    # request shapes ('prompt', 'add_special_tokens'; the text in 'prompt').
    info = get(f"{ROOT}/tokenizer_info").json()
    assert info["eos_token"] == "<|im_end|>" and "<|im_start|>" in info["chat_template"], info
    assert info["model_max_length"] > 0 and info["add_bos_token"] is False, info
    r = post(f"{ROOT}/tokenize", json_body={"prompt": info["eos_token"], "add_special_tokens": False}).json()
    assert len(r["tokens"]) == 1, r
    r = post(f"{ROOT}/tokenize", json_body={"prompt": s, "add_special_tokens": False}).json()
    assert r["tokens"] == tokenize(s, add_special=False), r
    assert post(f"{ROOT}/detokenize", json_body={"tokens": r["tokens"]}).json()["prompt"] == s


def section_invariance():
    # 16 greedy requests of mixed lengths: together exactly as alone.
    prompts = [
        "Count from 1 to %d:" % (i + 1) if i % 3 == 0
        else ("Explain briefly what a hash table is. " * (1 + i % 5)) if i % 3 == 1
        else "用一句话介绍长城。" * (1 + i % 4)
        for i in range(16)
    ]
    lengths = [8 + 5 * (i % 5) for i in range(16)]

    def one(i):
        r = client.completions.create(
            model=MODEL, prompt=prompts[i], max_tokens=lengths[i], temperature=0, logprobs=1
        )
        c = r.choices[0]
        return c.text, c.logprobs.token_logprobs

    alone = [one(i) for i in range(16)]
    wait_idle("alone")
    with cf.ThreadPoolExecutor(16) as ex:
        together = list(ex.map(one, range(16)))
    for i, (a, b) in enumerate(zip(alone, together)):
        assert a[0] == b[0], f"request {i}: alone {a[0]!r}, batched {b[0]!r}"
        assert a[1] == b[1], f"request {i}: logprobs differ: {a[1]} vs {b[1]}"
    m = wait_idle("together")
    assert m['suanli_requests_total{route="/v1/completions",status="200"}'] >= 32, m
    assert m["suanli_generation_tokens_total"] >= 2 * sum(1 for _ in lengths), m
    print("16 concurrent requests equal to their single runs")


def section_preempt():
    # A KV pool too small for four sequences at once: some are preempted
    # and recomputed, and still return what they return alone.
    prompts = [f"List the first {10 + i} prime numbers, comma separated:" for i in range(4)]

    def one(p):
        r = client.completions.create(model=MODEL, prompt=p, max_tokens=60, temperature=0, extra_body={"ignore_eos": True})
        return r.choices[0].text, r.usage.completion_tokens

    alone = [one(p) for p in prompts]
    with cf.ThreadPoolExecutor(4) as ex:
        together = list(ex.map(one, prompts))
    assert together == alone, (together, alone)
    assert all(n == 60 for _, n in together), together
    m = wait_idle("after preemption")
    assert m["suanli_preemptions_total"] > 0, m
    print(f"{m['suanli_preemptions_total']:.0f} preemptions, outputs unchanged")


def section_disconnect():
    base = metrics()
    # Clients that read a little of a long stream, then hang up.
    def hang_up(i):
        body = {
            "model": MODEL, "stream": True, "max_tokens": 400, "temperature": 0.7, "seed": i,
            "messages": [{"role": "user", "content": f"Tell a long story about dragon number {i}."}],
        }
        req = urllib.request.Request(
            f"{BASE}/chat/completions", data=json.dumps(body).encode(),
            headers={**AUTH, "content-type": "application/json"}, method="POST")
        got = 0
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 200, r.status
            for line in r:
                if line.startswith(b"data: "):
                    got += 1
                if got >= 3:
                    break
        return got

    with cf.ThreadPoolExecutor(6) as ex:
        assert all(g >= 3 for g in ex.map(hang_up, range(6)))
    m = wait_idle("after disconnects")
    # They were cancelled, not run to the end: far fewer than 6 × 400 tokens.
    gen = m["suanli_generation_tokens_total"] - base.get("suanli_generation_tokens_total", 0)
    assert gen < 6 * 400 / 2, gen
    # And the server still serves.
    r = chat("Say hi.", temperature=0, max_tokens=4)
    assert r.choices[0].message.content is not None
    print(f"disconnects freed every block ({gen:.0f} tokens generated)")


def expect(status, resp, contains=None):
    assert resp.status_code == status, (status, resp.status_code, resp.text)
    err = resp.json()["error"]
    assert err["message"] and err["type"], err
    if contains:
        assert contains in err["message"], (contains, err["message"])
    return err


def section_errors():
    url = f"{BASE}/chat/completions"
    msgs = [{"role": "user", "content": "hi"}]
    # 401: no key, wrong key.
    expect(401, post(url, json_body={"messages": msgs}))
    expect(401, post(url, json_body={"messages": msgs}, headers={"Authorization": "Bearer nope"}))
    # 400: malformed JSON, wrong field types, out-of-range values.
    e = expect(400, post(url, content=b'{"messages": [', headers={**AUTH, "content-type": "application/json"}), "malformed JSON")
    expect(400, post(url, json_body={"messages": "hi"}, headers=AUTH))
    expect(400, post(url, json_body={"messages": msgs, "temperature": 7}, headers=AUTH), "temperature")
    expect(400, post(url, json_body={"messages": []}, headers=AUTH))
    expect(400, post(f"{BASE}/completions", json_body={"prompt": [10**12]}, headers=AUTH))
    # Limits and types: each a 400 naming the field.
    expect(400, post(url, json_body={"messages": msgs, "max_tokens": 10**12}, headers=AUTH), "max_completion_tokens")
    expect(400, post(f"{BASE}/completions", json_body={"prompt": "x", "max_tokens": 10**12}, headers=AUTH), "max_tokens")
    expect(400, post(url, json_body={"messages": msgs, "stop": "x" * 2000}, headers=AUTH), "stop")
    expect(400, post(url, json_body={"messages": msgs, "tools": "get_weather"}, headers=AUTH), "tools")
    expect(400, post(url, json_body={"messages": msgs, "tool_choice": 5}, headers=AUTH), "tool_choice")
    expect(400, post(url, json_body={"messages": msgs, "response_format": "json"}, headers=AUTH), "response_format")
    expect(400, post(url, json_body={"messages": [{"role": "wizard", "content": "hi"}]}, headers=AUTH), "messages[0].role")
    expect(400, post(url, json_body={"messages": msgs, "top_p": -1}, headers=AUTH), "top_p")
    deep = b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    expect(400, post(url, content=deep, headers={**AUTH, "content-type": "application/json"}))
    expect(400, post(url, content=b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
                     headers={**AUTH, "content-type": "application/json"}))
    # 400: prompt over the context, saying by how much.
    long = "word " * 2000
    e = expect(400, post(f"{BASE}/completions", json_body={"prompt": long}, headers=AUTH), "more than the context")
    assert re.search(r"\d+ more than the context of \d+", e["message"]), e
    # The official client raises the matching exceptions.
    c = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0)
    try:
        c.chat.completions.create(model="no-such-model", messages=msgs)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError:
        pass
    try:
        openai.OpenAI(base_url=BASE, api_key="wrong", max_retries=0).models.list()
        raise AssertionError("bad key accepted")
    except openai.AuthenticationError:
        pass
    expect(404, get(f"{ROOT}/v1/nothing", headers=AUTH))
    # 413: body over --max-body.
    expect(413, post(url, json_body={"messages": [{"role": "user", "content": "x" * 20000}]}, headers=AUTH))
    # 503: one slot, a queue of one; a third concurrent request is refused.
    body = {"messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 64, "temperature": 0}

    def send(_):
        r = post(url, json_body=body, headers=AUTH, timeout=300)
        return r.status_code, r.headers.get("Retry-After")

    with cf.ThreadPoolExecutor(4) as ex:
        got = sorted(ex.map(send, range(4)), key=lambda x: x[0])
    codes = [c for c, _ in got]
    assert 503 in codes and 200 in codes, codes
    assert all(ra == "1" for c, ra in got if c == 503), got
    # Still serving, nothing left behind, errors counted by status.
    assert get(f"{ROOT}/health").status_code == 200
    m = wait_idle("after errors")
    for status in ("400", "401", "404", "413", "503"):
        assert any(k.startswith("suanli_requests_total") and f'status="{status}"' in k and v > 0 for k, v in m.items()), (status, m)
    print("error statuses:", codes)


def section_slow():
    """Started with --max-connections 2 --header-timeout 2 --body-timeout 2."""
    import socket
    host, port = ROOT.split("//")[1].split(":")
    port = int(port)

    def conn():
        s = socket.create_connection((host, port), timeout=30)
        return s

    def trickle_headers(s, seconds):
        # One byte a second: a per-read timeout would never fire.
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
        t0 = time.time()
        for b in head:
            try:
                s.sendall(bytes([b]))
            except OSError:
                return time.time() - t0, b""
            if time.time() - t0 > seconds:
                break
            time.sleep(0.25)
        s.settimeout(10)
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        return time.time() - t0, data

    # Headers trickled past the deadline: the connection is closed, not served.
    s = conn()
    took, data = trickle_headers(s, 20)
    assert took < 8, f"a trickling client was kept {took:.1f}s"
    assert b"200 OK" not in data, data
    s.close()
    # A body trickled past the deadline: 408 naming it.
    s = conn()
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    t0 = time.time()
    reply = b""
    for b in body:
        try:
            s.sendall(bytes([b]))
        except OSError:
            break
        time.sleep(0.25)
        s.setblocking(False)
        try:
            reply += s.recv(4096)
        except OSError:
            pass
        s.setblocking(True)
        if reply:
            break
    s.settimeout(10)
    try:
        reply += s.recv(4096)
    except OSError:
        pass
    assert b" 408 " in reply.split(b"\r\n")[0] and b"did not arrive" in reply, reply[:300]
    assert time.time() - t0 < 8
    s.close()
    # Oversized headers: a 1 MB header block and a single 100 KB header
    # line are answered 431 (or, while the client is still sending, the
    # connection is closed), never served; 60 KB is within the limit.
    def headers_of(extra):
        s = conn()
        s.settimeout(10)
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
            reply = s.recv(4096)
        except OSError:  # reset: the server closed with the headers unread
            reply = b""
        s.close()
        return reply.split(b"\r\n")[0]

    block = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"b" * 1000) for i in range(1000))
    for what, extra in [("1 MB header block", block), ("100 KB header line", b"X-Big: " + b"a" * 100_000 + b"\r\n")]:
        status = headers_of(extra)
        assert status in (b"", b"HTTP/1.1 431 Request Header Fields Too Large"), (what, status)
        assert get(f"{ROOT}/health").status_code == 200, f"not serving after a {what}"
    assert headers_of(b"X-Big: " + b"a" * 60_000 + b"\r\n") == b"HTTP/1.1 200 OK"
    # The connection cap: two connections held by long streams (in flight,
    # so no deadline frees them however slowly a loaded machine runs), a
    # third is refused at once with 503 and Retry-After.
    body = json.dumps({"model": MODEL, "stream": True, "max_tokens": 3000, "ignore_eos": True,
                       "messages": [{"role": "user", "content": "Count."}]}).encode()
    held = [conn(), conn()]
    for h in held:
        h.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (KEY.encode(), len(body), body))
        h.settimeout(60)
        assert h.recv(4096).startswith(b"HTTP/1.1 200"), "a held stream did not start"
    t = conn()
    t.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    t.settimeout(10)
    r = t.recv(4096)
    assert r.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in r, r[:300]
    t.close()
    for h in held:
        h.close()
    # Still serving once they are gone.
    deadline = time.time() + 10
    while True:
        try:
            if get(f"{ROOT}/health").status_code == 200:
                break
        except Exception:
            pass
        assert time.time() < deadline, "not serving after the cap"
        time.sleep(0.2)
    r = chat("Say hi.", max_tokens=4)
    assert r.choices[0].message.content is not None
    print("slow clients, oversized headers and the connection cap: ok")


def section_spec():
    # A server decoding speculatively (prompt lookup) answers what a plain
    # one (REF, same model and numerics) answers: greedy, streamed or not,
    # alone or two at once (no drafting then), with a penalty (no
    # speculation for it); /metrics counts the drafts and the acceptance.
    ref = openai.OpenAI(base_url=os.environ["REF"], api_key=KEY, max_retries=0, timeout=600)
    code = ("Add type hints to this Python function and return it whole:\n\n"
            "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n"
            "    return total / len(values)\n")
    asks = [
        dict(messages=[{"role": "user", "content": code}], temperature=0, max_tokens=96),
        dict(messages=[{"role": "user", "content": "用三句话介绍长城，然后把这三句话原样再写一遍。"}],
             temperature=0, max_tokens=96),
        dict(messages=[{"role": "user", "content": code}], temperature=0, max_tokens=64,
             frequency_penalty=0.5),
    ]

    def one(c, kw):
        return c.chat.completions.create(model=MODEL, **kw).choices[0].message.content

    def streamed(c, kw):
        parts = c.chat.completions.create(model=MODEL, stream=True, **kw)
        return "".join(ch.choices[0].delta.content or "" for ch in parts if ch.choices)

    want = [one(ref, kw) for kw in asks]
    before = metrics()
    for kw, w in zip(asks, want):
        assert one(client, kw) == w, (kw, one(client, kw), w)
        assert streamed(client, kw) == w, kw
    m = metrics()
    drafted = m["suanli_spec_decode_draft_tokens_total"] - before.get("suanli_spec_decode_draft_tokens_total", 0)
    accepted = m["suanli_spec_decode_accepted_tokens_total"] - before.get("suanli_spec_decode_accepted_tokens_total", 0)
    assert drafted > 0 and 0 < accepted <= drafted, m
    assert 0 < m["suanli_spec_decode_acceptance_rate"] <= 1, m
    assert m["suanli_spec_decode_mean_accepted_length"] > 1, m
    with cf.ThreadPoolExecutor(2) as ex:
        together = list(ex.map(lambda kw: one(client, kw), asks[:2]))
    assert together == want[:2], (together, want[:2])
    wait_idle("after speculation")
    print(f"speculative outputs equal the plain ones; {accepted:.0f} of {drafted:.0f} drafts kept")


{"client": section_client, "spec": section_spec, "slow": section_slow, "invariance": section_invariance, "preempt": section_preempt,
 "disconnect": section_disconnect, "errors": section_errors}[SECTION]()
print(f"{SECTION}: ok")
