"""`r1lab serve` as its users meet it: the real `openai` client, bad requests, a load, SIGTERM.

One server (a subprocess, `r1lab serve` as typed) runs for the module, on a tiny model trained to
answer QUESTION with a known thinking and answer (tests/stages/serving.py), behind an API key."""

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.stages.serving import ANSWER, QUESTION, THINKING, save_tiny_reasoner, served

openai = pytest.importorskip("openai")

KEY, NAME = "secret", "reasoner"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def reasoner(tmp_path_factory):
    return save_tiny_reasoner(tmp_path_factory.mktemp("reasoner") / "model")


@pytest.fixture(scope="module")
def server(reasoner):
    with served(reasoner, "--api-key", KEY, "--name", NAME, "--max-rows", "128") as (proc, url):
        yield proc, url


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key=KEY, max_retries=0)


def extra(obj, name):
    """A field the OpenAI types do not declare (DeepSeek's `reasoning_content`)."""
    return (obj.model_extra or {}).get(name)


def reply_tokens(reasoner):
    from r1lab.runtime.loading import load_tokenizer

    tok = load_tokenizer(reasoner)
    prompt = tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False)
    return len(tok(prompt, add_special_tokens=False)["input_ids"]), tok


def test_chat_gives_the_thinking_apart_from_the_answer(client, reasoner):
    r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}], temperature=0)
    msg = r.choices[0].message
    assert (msg.content, extra(msg, "reasoning_content"), r.choices[0].finish_reason) == (ANSWER, THINKING, "stop")
    prompt_tokens, tok = reply_tokens(reasoner)
    reply = tok(" <think>\n" + THINKING + "\n</think>\n<answer>" + ANSWER + "</answer>", add_special_tokens=False)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (prompt_tokens, len(reply["input_ids"]))
    assert r.model == NAME and r.id.startswith("chatcmpl-")
    assert [m.id for m in client.models.list().data] == [NAME]


def test_streaming_chat_sends_reasoning_content_deltas_then_content(client):
    stream = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}],
                                            temperature=0, stream=True, stream_options={"include_usage": True})
    kinds, thinking, answer, finish, usage = [], "", "", None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for c in chunk.choices:
            if extra(c.delta, "reasoning_content"):
                thinking += extra(c.delta, "reasoning_content")
                kinds.append("thinking")
            if c.delta.content:
                answer += c.delta.content
                kinds.append("answer")
            finish = c.finish_reason or finish
    assert (thinking, answer, finish) == (THINKING, ANSWER, "stop")
    # the thinking first; how many deltas depends on how far decoding outruns the reader (merged then)
    assert kinds.index("answer") > kinds.index("thinking") and kinds[-1] == "answer"
    assert usage.completion_tokens > 0


def test_n_choices_and_seeds(client):
    def ask(seed, n=3):
        r = client.completions.create(model=NAME, prompt="hello there", n=n, temperature=1.5, max_tokens=24,
                                      seed=seed, extra_body={"min_tokens": 24})
        assert sorted(c.index for c in r.choices) == list(range(n))
        assert r.usage.completion_tokens == 24 * n
        return [c.text for c in sorted(r.choices, key=lambda c: c.index)]

    first = ask(7)
    assert len(set(first)) == 3  # each choice its own sample
    assert ask(7) == first  # a seeded request, alone, is reproducible
    assert ask(8) != first
    chat = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}], n=2,
                                          temperature=0)
    assert [c.message.content for c in chat.choices] == [ANSWER, ANSWER]


def test_stop_strings_and_max_tokens(client):
    r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}], temperature=0,
                                       stop=["forty", "never said"])
    msg = r.choices[0].message
    assert (extra(msg, "reasoning_content"), msg.content, r.choices[0].finish_reason) == ("add", "", "stop")
    r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}], temperature=0,
                                       max_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3


def test_the_api_key_is_demanded(server):
    for key in ("wrong", ""):
        bad = openai.OpenAI(base_url=server[1] + "/v1", api_key=key or "none", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    assert httpx.get(server[1] + "/").status_code == 200  # the page asks for the key itself
    assert httpx.get(server[1] + "/health").json()["status"] == "ok"


BIG = "word " * 3000
CHAT = {"model": NAME, "messages": [{"role": "user", "content": QUESTION}]}
# (what is wrong, method, path, body (dict: JSON; bytes: as is), headers beyond the key, status, field named)
BAD = [
    ("malformed JSON", "POST", "/v1/chat/completions", b'{"model": "reasoner", ', {}, 400, None),
    ("a list, not an object", "POST", "/v1/chat/completions", b"[1, 2]", {}, 400, None),
    ("no model", "POST", "/v1/chat/completions", {"messages": CHAT["messages"]}, {}, 400, "model"),
    ("no messages", "POST", "/v1/chat/completions", {"model": NAME}, {}, 400, "messages"),
    ("empty messages", "POST", "/v1/chat/completions", {**CHAT, "messages": []}, {}, 400, "messages"),
    ("unknown role", "POST", "/v1/chat/completions", {**CHAT, "messages": [{"role": "robot", "content": "x"}]}, {},
     400, "messages.0.role"),
    ("content a number", "POST", "/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": 5}]}, {},
     400, "messages.0.content"),
    ("only a system message", "POST", "/v1/chat/completions",
     {**CHAT, "messages": [{"role": "system", "content": "be brief"}]}, {}, 400, "messages"),
    ("unknown field", "POST", "/v1/chat/completions", {**CHAT, "temprature": 0.5}, {}, 400, "temprature"),
    ("temperature a string", "POST", "/v1/chat/completions", {**CHAT, "temperature": "hot"}, {}, 400, "temperature"),
    ("temperature negative", "POST", "/v1/chat/completions", {**CHAT, "temperature": -1}, {}, 400, "temperature"),
    ("temperature too high", "POST", "/v1/chat/completions", {**CHAT, "temperature": 5}, {}, 400, "temperature"),
    ("top_p 0", "POST", "/v1/chat/completions", {**CHAT, "top_p": 0}, {}, 400, "top_p"),
    ("top_p above 1", "POST", "/v1/chat/completions", {**CHAT, "top_p": 1.5}, {}, 400, "top_p"),
    ("max_tokens negative", "POST", "/v1/chat/completions", {**CHAT, "max_tokens": -5}, {}, 400, "max_tokens"),
    ("max_tokens 0", "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 0}, {}, 400, "max_tokens"),
    ("max_tokens absurd", "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 10**12}, {}, 400, "max_tokens"),
    ("max_tokens past the context", "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 5000}, {}, 400,
     "max_tokens"),
    ("max_tokens a float", "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 5.5}, {}, 400, "max_tokens"),
    ("prompt past the context", "POST", "/v1/chat/completions",
     {**CHAT, "messages": [{"role": "user", "content": BIG}]}, {}, 400, "messages"),
    ("n 0", "POST", "/v1/chat/completions", {**CHAT, "n": 0}, {}, 400, "n"),
    ("n 1000", "POST", "/v1/chat/completions", {**CHAT, "n": 1000}, {}, 400, "n"),
    ("five stop strings", "POST", "/v1/chat/completions", {**CHAT, "stop": list("abcde")}, {}, 400, "stop"),
    ("an empty stop string", "POST", "/v1/chat/completions", {**CHAT, "stop": ""}, {}, 400, "stop"),
    ("seed negative", "POST", "/v1/chat/completions", {**CHAT, "seed": -1}, {}, 400, "seed"),
    ("stream a string", "POST", "/v1/chat/completions", {**CHAT, "stream": "yes"}, {}, 400, "stream"),
    ("stream_options without stream", "POST", "/v1/chat/completions",
     {**CHAT, "stream_options": {"include_usage": True}}, {}, 400, "stream_options"),
    ("a penalty", "POST", "/v1/chat/completions", {**CHAT, "presence_penalty": 0.5}, {}, 400, "presence_penalty"),
    ("min_tokens over max_tokens", "POST", "/v1/chat/completions", {**CHAT, "min_tokens": 9, "max_tokens": 4}, {}, 400,
     "min_tokens"),
    ("unknown model", "POST", "/v1/chat/completions", {**CHAT, "model": "gpt-4"}, {}, 404, "model"),
    ("completions without a prompt", "POST", "/v1/completions", {"model": NAME}, {}, 400, "prompt"),
    ("completions with a list of prompts", "POST", "/v1/completions", {"model": NAME, "prompt": ["a", "b"]}, {}, 400,
     "prompt"),
    ("no such route", "GET", "/v1/nothing", None, {}, 404, None),
    ("wrong method", "GET", "/v1/chat/completions", None, {}, 405, None),
    ("body over 1 MiB", "POST", "/v1/chat/completions", b"x" * (2 << 20), {}, 413, None),
    ("no API key", "POST", "/v1/chat/completions", CHAT, {"Authorization": ""}, 401, None),
    ("wrong API key", "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer guess"}, 401, None),
]


@pytest.mark.parametrize("why, method, path, body, headers, status, field", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_one_json_error_and_the_server_goes_on(server, why, method, path, body, headers, status,
                                                                 field):
    url = server[1] + path
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    r = httpx.request(method, url, content=content, headers={**AUTH, "Content-Type": "application/json", **headers},
                      timeout=30)
    assert r.status_code == status, (why, r.text)
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"] and "\n" not in error["message"], why
    if field:
        assert error["param"] == field or error["message"].startswith(field), (why, error)
    ok = httpx.post(server[1] + "/v1/chat/completions", json={**CHAT, "temperature": 0, "max_tokens": 4}, headers=AUTH,
                    timeout=30)
    assert ok.status_code == 200  # and it goes on serving


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` and its children (the batcher's process), in KiB."""
    total = 0
    for p in [pid] + [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]:
        status = Path(f"/proc/{p}/status").read_text()
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return total


async def load(url: str, clients: int, rounds: int) -> list[str]:
    """`clients` concurrent clients, `rounds` requests each, three kinds in turn; what each got, checked."""
    async def one(http: httpx.AsyncClient, c: int, i: int) -> str:
        kind = (c + i) % 3
        if kind == 0:  # greedy chat, streamed: the known answer
            body = {**CHAT, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
            thinking, answer, finish, usage, done = "", "", None, None, False
            async with http.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line == "data: [DONE]":
                        done = True
                    elif line.startswith("data: "):
                        chunk = json.loads(line[6:])
                        usage = chunk.get("usage") or usage
                        for ch in chunk["choices"]:
                            thinking += ch["delta"].get("reasoning_content") or ""
                            answer += ch["delta"].get("content") or ""
                            finish = ch["finish_reason"] or finish
            assert (thinking, answer, finish, done) == (THINKING, ANSWER, "stop", True) and usage["completion_tokens"] > 0
            return "stream"
        if kind == 1:  # greedy chat, whole
            r = await http.post(url + "/v1/chat/completions", json={**CHAT, "temperature": 0, "n": 2}, headers=AUTH)
            assert r.status_code == 200
            assert [c["message"]["content"] for c in r.json()["choices"]] == [ANSWER, ANSWER]
            return "chat"
        r = await http.post(url + "/v1/completions", headers=AUTH, json={  # sampled, a fixed length
            "model": NAME, "prompt": f"client {c} round {i}", "max_tokens": 40, "min_tokens": 40, "temperature": 1.0})
        assert r.status_code == 200
        body = r.json()
        assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 40
        return "completion"

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        async def client(c):
            return [await one(http, c, i) for i in range(rounds)]

        done = await asyncio.wait_for(asyncio.gather(*[client(c) for c in range(clients)]), timeout=240)
    return [k for kinds in done for k in kinds]


def test_64_concurrent_clients_all_answered_and_memory_comes_back(server):
    proc, url = server
    asyncio.run(load(url, 8, 2))  # warm-up: the first requests of each kind
    time.sleep(1)
    idle = rss_kib(proc.pid)
    t0 = time.time()
    kinds = asyncio.run(load(url, 64, 3))
    seconds = time.time() - t0
    assert len(kinds) == 192 and {"stream", "chat", "completion"} == set(kinds)
    peak = rss_kib(proc.pid)
    for _ in range(20):  # the batch empties, then the memory comes back
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        if after <= 1.1 * idle and httpx.get(url + "/health").json()["requests"] == 0:
            break
    print(f"64 clients x 3 requests: {seconds:.1f} s; RSS idle {idle} KiB, peak {peak} KiB, after {after} KiB")
    assert httpx.get(url + "/health").json() == {"status": "ok", "requests": 0}
    assert after <= 1.1 * idle, (idle, peak, after)


def test_a_client_that_goes_away_frees_its_rows(server):
    proc, url = server
    body = {"model": NAME, "prompt": "go on", "max_tokens": 1800, "min_tokens": 1800, "temperature": 1.0,
            "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, headers=AUTH, timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ") and next(lines) == ""
        assert httpx.get(url + "/health").json()["requests"] == 1
    deadline = time.time() + 10
    while httpx.get(url + "/health").json()["requests"] and time.time() < deadline:
        time.sleep(0.1)
    assert httpx.get(url + "/health").json()["requests"] == 0


def test_sigterm_lets_the_requests_under_way_finish_then_exits(reasoner):
    with served(reasoner, "--name", NAME) as (proc, url):
        body = {"model": NAME, "prompt": "go on", "max_tokens": 1500, "min_tokens": 1500, "temperature": 1.0,
                "stream": True, "stream_options": {"include_usage": True}}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            proc.send_signal(signal.SIGTERM)
            sent = time.time()
            time.sleep(0.2)
            with pytest.raises(httpx.ConnectError):  # no new connections
                httpx.get(url + "/health", timeout=5)
            rest = list(lines)
            drained = time.time() - sent
        assert rest[-2:] == ["data: [DONE]", ""]
        usage = json.loads(rest[-4][6:])["usage"]
        assert usage["completion_tokens"] == 1500  # the whole reply ...
        assert drained > 0.3  # ... decoded after SIGTERM, not only sent
        assert proc.wait(30) == 0


def test_bad_command_lines_get_one_line_and_status_2(reasoner, tmp_path):
    import socket
    import subprocess
    import sys

    from tests.stages.serving import ROOT

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    cases = [([str(tmp_path / "none")], "model: "), ([str(reasoner), "--port", "70000"], "--port: expected"),
             ([str(reasoner), "--port", str(taken.getsockname()[1])], "--port: cannot listen"),
             ([str(reasoner), "--threads", "0"], "--threads: expected"),
             ([str(reasoner), "--max-rows", "4"], "--max-rows: expected")]
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")}
    for args, says in cases:
        done = subprocess.run([sys.executable, "-m", "r1lab", "serve", *args], capture_output=True, text=True, env=env,
                              timeout=120)
        lines = [line for line in done.stderr.splitlines() if not line.startswith("Loading")]
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"r1lab: error: {says}"), (args, done)
    taken.close()
