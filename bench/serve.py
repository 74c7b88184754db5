"""`r1lab serve` against `transformers serve` on the same checkpoint, under the same streaming load.

    python bench/serve.py [--model DIR] [--clients 1,4,16] [--requests 8] [--max-tokens 128]
                          [--peer-mode cb|plain|both]

Each server is started alone on loopback (the other one stopped, so neither takes the CPU from
the other), warmed up by one request, then driven by 1, 4 and 16 concurrent clients, each sending
`--requests` streaming chat completions one after another (`max_tokens` 128, temperature 0, so
both servers generate the same tokens; a distinct held-out signs problem per request). Printed per
server and load: generated tokens (the servers' own `usage` counts), wall-clock seconds, tokens/s,
and the median and 95th percentile time to first token (the first chunk with text). Last lines:
r1lab's throughput at 16 clients over its own at 1, and `speedup X.XX`, r1lab over transformers in
tokens/s at 16 clients.

The peer: `transformers serve --continuous-batching` (its paged-attention continuous batching; the
fastest mode it has on this CPU: `--peer-mode both` measures its default mode too and keeps the
faster at 16 clients). The model: `--model`, or the zero section's final checkpoint
(runs/results/zero/run, `make results-zero`); it is copied with r1lab's chat template if it lacks
one (transformers serve needs one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS_RUN = ROOT / "runs" / "results" / "zero" / "run"


def default_model() -> Path:
    summary = RESULTS_RUN / "summary.json"
    if not summary.exists():
        sys.exit("bench/serve.py: no --model and no zero results run; run `make results-zero` or give --model DIR")
    return RESULTS_RUN / f"checkpoint-{json.loads(summary.read_text())['steps']}"


def servable(model: Path, tmp: Path) -> Path:
    """`model`, or a copy of it with r1lab's R1-Zero chat template when it has none."""
    from r1lab.runtime.loading import load_tokenizer

    if load_tokenizer(model).chat_template:
        return model
    from r1lab.data.prompting import chat_template_for
    from r1lab.runtime.checkpoint import save_model
    from r1lab.runtime.loading import load

    m, tok = load(str(model), "cpu", "float32", field="model")
    return save_model(m, tok, tmp / "model", chat_template=chat_template_for("r1zero", tok))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, model_id: str):
        self.name, self.port, self.model_id = name, port, model_id
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                sys.exit(f"bench/serve.py: {name} exited {self.proc.returncode}:\n{self.log.read().decode()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        sys.exit(f"bench/serve.py: {name} did not answer in 180 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def one(client: httpx.AsyncClient, server: Server, question: str, max_tokens: int) -> tuple[int, float]:
    """One streaming chat completion: (completion tokens, seconds to the first chunk with text)."""
    body = {"model": server.model_id, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    t0, first, tokens = time.perf_counter(), None, None
    async with client.stream("POST", f"http://127.0.0.1:{server.port}/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{server.name}: HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any((c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("reasoning_content")
                                     for c in chunk.get("choices", [])):
                first = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    if tokens is None:
        raise RuntimeError(f"{server.name}: no usage in the stream")
    return tokens, first if first is not None else time.perf_counter() - t0


async def load(server: Server, questions: list[str], clients: int, requests: int, max_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def worker(c: int):
            return [await one(client, server, questions[(c * requests + i) % len(questions)], max_tokens)
                    for i in range(requests)]

        t0 = time.perf_counter()
        done = await asyncio.gather(*[worker(c) for c in range(clients)])
        seconds = time.perf_counter() - t0
    results = [r for w in done for r in w]
    ttft = sorted(r[1] for r in results)
    tokens = sum(r[0] for r in results)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "ttft_p50": statistics.median(ttft), "ttft_p95": ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))]}


def questions(count: int) -> list[str]:
    from r1lab.data.problems import TEST_SEED
    from r1lab.tasks import make_task

    return [p.prompt for p in make_task("signs").problems("test", count, seed=TEST_SEED)]


def measure(server: Server, qs: list[str], loads: list[int], requests: int, max_tokens: int) -> dict[int, dict]:
    asyncio.run(load(server, qs, 1, 1, max_tokens))  # warm-up
    out = {}
    for c in loads:
        out[c] = asyncio.run(load(server, qs, c, requests, max_tokens))
        r = out[c]
        print(f"{server.name:<28} {c:>7} {c * requests:>8} {r['tokens']:>7} {r['seconds']:>8.1f} "
              f"{r['tokens_per_s']:>9.1f} {r['ttft_p50']:>9.3f} {r['ttft_p95']:>9.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--peer-mode", choices=["cb", "plain", "both", "none"], default="cb",
                    help="none: r1lab alone (no speedup line)")
    args = ap.parse_args()
    loads = [int(c) for c in args.clients.split(",")]
    top = max(loads)
    qs = questions(top * args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        model = servable(args.model or default_model(), Path(tmp))
        print(f"model: {model}; {len(qs)} distinct prompts; max_tokens {args.max_tokens}; temperature 0; "
              f"{args.requests} streaming requests per client\n")
        print(f"{'server':<28} {'clients':>7} {'requests':>8} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} "
              f"{'ttft p50':>9} {'ttft p95':>9}")
        port = free_port()
        r1 = Server("r1lab serve", [str(BIN / "python"), "-m", "r1lab", "serve", str(model), "--port", str(port),
                                    "--name", "bench"], port, "bench")
        try:
            ours = measure(r1, qs, loads, args.requests, args.max_tokens)
        finally:
            r1.stop()
        peers = {}
        modes = {"both": ["cb", "plain"], "none": []}.get(args.peer_mode, [args.peer_mode])
        transformers = shutil.which("transformers", path=str(BIN)) or "transformers"
        for mode in modes:
            port = free_port()
            flag = ["--continuous-batching"] if mode == "cb" else []
            peer = Server(f"transformers serve ({mode})", [transformers, "serve", str(model), "--port", str(port),
                                                          "--device", "cpu", "--log-level", "warning", *flag],
                          port, str(model))
            try:
                peers[mode] = measure(peer, qs, loads, args.requests, args.max_tokens)
            finally:
                peer.stop()
    print(f"\nr1lab at {top} clients over r1lab at {min(loads)}: "
          f"{ours[top]['tokens_per_s'] / ours[min(loads)]['tokens_per_s']:.2f}x")
    if not peers:
        return
    best = max(peers, key=lambda m: peers[m][top]["tokens_per_s"])
    print(f"peer: transformers serve ({best}); tokens generated at {top} clients: r1lab {ours[top]['tokens']}, "
          f"transformers {peers[best][top]['tokens']}")
    print(f"speedup {ours[top]['tokens_per_s'] / peers[best][top]['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
