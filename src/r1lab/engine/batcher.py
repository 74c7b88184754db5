"""Continuous batching: requests join and leave one running decode batch between steps (`r1lab serve`).

    batcher = Batcher(model, tokenizer).start()          # a thread that owns the model
    batcher.submit(Request(prompt_ids, n=2, params=SamplingParams(...), stop=("\\n\\n",), emit=callback))
    ...                                                  # emit(events) after each step, from that thread
    batcher.close()

Each loop of the thread: requests that arrived since the last admission (every ADMIT_EVERY steps
while rows are decoding, at once when none are) are prefilled together, one forward over their
prompts (its fixed cost, ~9 ms for one R1-Zero prompt of r1lab's model on this CPU, is paid once
for several; a request waits at most 3 steps, ~11 ms, for it), and join the batch
(`StaticCacheDecoder.join`: their rows decode from the next step on, their attention masked to
their own columns); every live row draws its next token with its own request's temperature, top-p
and seeded generator; rows that stop (a stop token, a stop string, `max_new_tokens`, or a request
cancelled because its client went away) leave the batch (`keep`); one decode step runs for the
rows left. So a request never waits for another to finish, and the step's cost is shared by every
row in it: throughput grows with the number of clients.

A request's draws come from its own generator (seeded by `params.seed`), in row order, so a seeded
request alone in the batch is reproducible, and one sharing the batch draws the same numbers
(its tokens can still differ where batched matmuls round differently). Text is decoded per row as
it grows (engine/stream.TextStream); a stop string ends its row and is not in the text, and text
that might be the start of a stop string is held back until it cannot be.

Models the static-cache decoder does not cover (StaticCacheDecoder.supports) decode through the
model's own forward (DynamicCacheDecoder), which cannot take rows mid-batch: new requests wait for
the running batch to end (batching by cohort).
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from r1lab.engine.hf import DynamicCacheDecoder
from r1lab.engine.params import SamplingParams
from r1lab.engine.sampler import model_stop_ids, uniforms
from r1lab.engine.static_cache import StaticCacheDecoder
from r1lab.engine.stream import TextStream
from r1lab.runtime.loading import load


@dataclass
class Event:
    """One choice's progress in one step: new text, tokens generated, and why it ended (or None)."""
    index: int
    text: str
    tokens: int
    finish: str | None = None  # "stop" (a stop token or string) | "length" (max_new_tokens)


@dataclass
class Request:
    prompt_ids: list[int]
    n: int
    params: SamplingParams  # temperature, top_p, max_new_tokens, stop_token_ids (besides the model's), seed
    emit: Callable[[list[Event]], None]  # its events after each step it took part in (see Batcher.deliver)
    stop: tuple[str, ...] = ()  # stop strings
    cancelled: bool = False  # set by Batcher.cancel (its client went away): the rows leave at the next step
    finished: int = 0  # choices that have ended
    id: int = -1  # BatcherProcess's name for it
    generator: torch.Generator = field(init=False, repr=False)  # set by Batcher.submit
    stop_ids: set[int] = field(init=False, repr=False)  # the model's and params.stop_token_ids


class Row:
    """One choice of a request, decoding."""

    def __init__(self, request: Request, index: int, tokenizer):
        self.request, self.index, self.text = request, index, TextStream(tokenizer)
        self.sent, self.count = 0, 0  # characters given out; tokens generated

    def add(self, token: int, stops: set[int]) -> Event:
        """The event for this row after `token` (its finish set when the row is done)."""
        r = self.request
        self.count += 1
        if token in stops:
            self.text.finish()
            return self.event(len(self.text.text), "stop")
        self.text.add(token)
        full = self.text.text
        for s in r.stop:
            at = full.find(s, max(0, self.sent - len(s) + 1))
            if at >= 0:
                return self.event(at, "stop")
        if self.count >= r.params.max_new_tokens:
            self.text.finish()
            return self.event(len(self.text.text), "length")
        held = max((k for s in r.stop for k in range(1, len(s)) if full.endswith(s[:k])), default=0)
        return self.event(len(full) - held, None)

    def event(self, end: int, finish: str | None) -> Event:
        text, self.sent = self.text.text[self.sent:end], max(self.sent, end)
        return Event(self.index, text, 1, finish)


ADMIT_EVERY = 4  # steps between two admissions while the batch runs (at once when it is empty)


class Batcher:
    def __init__(self, model, tokenizer, max_rows: int = 256, add_special_tokens: bool = False,
                 deliver: Callable[[list[tuple[Request, list[Event]]]], None] | None = None,
                 admit_every: int = ADMIT_EVERY):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_rows = max_rows  # rows decoded together; more requests wait
        self.add_special_tokens = add_special_tokens  # False: prompts rendered by a chat template hold their BOS
        self.stop_ids = model_stop_ids(model, tokenizer)
        # each step's events, all requests at once (a server hands them to its event loop in one
        # call); by default each request's `emit`, from this thread
        self.deliver = deliver or (lambda items: [r.emit(evs) for r, evs in items])
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.joins = StaticCacheDecoder.supports(model)  # else: batching by cohort (module docstring)
        self.waiting: queue.Queue[Request | None] = queue.Queue()
        self.deferred: Request | None = None  # taken from `waiting` but too many rows for the room left
        self.thread = threading.Thread(target=self.loop, name="r1lab-batcher", daemon=True)
        self.closed = False
        self.steps = 0  # decode steps taken (for tests and logs)
        self.admitted = 0  # the step at which waiting requests were last let in
        self.admit_every = admit_every

    def start(self) -> Batcher:
        self.thread.start()
        return self

    def submit(self, request: Request) -> None:
        if request.n > self.max_rows:
            raise ValueError(f"n: at most {self.max_rows} rows at once, got {request.n}")
        request.generator = torch.Generator().manual_seed(request.params.seed)
        request.stop_ids = self.stop_ids | set(request.params.stop_token_ids)
        self.waiting.put(request)

    def cancel(self, request: Request) -> None:
        """Its rows leave at the next step and it gets no more events (its client went away)."""
        request.cancelled = True

    def alive(self) -> bool:
        return self.thread.is_alive()

    def close(self) -> None:
        """Stop the thread after its current step (requests still decoding end there)."""
        self.closed = True
        self.waiting.put(None)
        self.thread.join()

    def take(self, room: int, block: bool) -> list[Request]:
        """Waiting requests that fit in `room` rows, in order (blocking for the first when the batch is empty)."""
        taken: list[Request] = []
        while True:
            if self.deferred is not None:
                r, self.deferred = self.deferred, None
            else:
                try:
                    r = self.waiting.get(block=block and not taken)
                except queue.Empty:
                    return taken
            if r is None:  # close()
                return taken
            if r.cancelled:
                continue
            if r.n > room:  # it goes first once rows have left
                self.deferred = r
                return taken
            taken.append(r)
            room -= r.n

    def loop(self) -> None:
        """The thread's body. If decoding fails the thread ends: `alive()` turns False, and the
        server answers the requests under way with a 500."""
        with torch.inference_mode():
            self.decode()

    def decode(self) -> None:
        decoder, logits, rows = None, None, []
        while not self.closed:
            if rows and (not self.joins or self.steps - self.admitted < self.admit_every):
                new = []
            else:
                new = self.take(self.max_rows - len(rows), block=not rows)
                self.admitted = self.steps
            if new:
                longest = max(len(r.prompt_ids) + r.params.max_new_tokens for r in new)
                if self.joins:
                    dec, first = StaticCacheDecoder.prefill(self.model, [r.prompt_ids for r in new], [r.n for r in new],
                                                            self.pad, longest, fused=False)
                else:  # each row its own prompt (a fallback: prefill repeated per sample)
                    dec, first = DynamicCacheDecoder.prefill(self.model, [r.prompt_ids for r in new for _ in range(r.n)],
                                                             1, self.pad, longest)
                if decoder is None:
                    decoder, logits = dec, first
                else:
                    decoder.join(dec)
                    logits = torch.cat([logits, first])
                rows += [Row(r, i, self.tokenizer) for r in new for i in range(r.n)]
            if not rows:
                continue
            early = [i for i, row in enumerate(rows) if row.count < row.request.params.min_new_tokens]
            for i in early:  # no stop token before min_new_tokens
                logits[i, list(rows[i].request.stop_ids)] = float("-inf")
            tokens = self.sample(rows, logits)
            live, events = [], {}
            for i, (row, token) in enumerate(zip(rows, tokens.tolist())):
                r = row.request
                if r.cancelled:
                    continue
                event = row.add(token, r.stop_ids)
                events.setdefault(id(r), (r, []))[1].append(event)
                if event.finish is None:
                    live.append(i)
                else:
                    r.finished += 1
            self.deliver(list(events.values()))
            self.steps += 1
            if not live:
                decoder, logits, rows = None, None, []
                continue
            if len(live) < len(rows):
                keep = torch.tensor(live, device=tokens.device)
                decoder.keep(keep)
                rows, tokens = [rows[i] for i in live], tokens[keep]
            logits = decoder.step(tokens)

    def sample(self, rows: list[Row], logits: torch.Tensor) -> torch.Tensor:
        """Every row's next token in one batched draw, each with its request's temperature, top-p
        and generator (a request's rows are contiguous: one draw of uniforms per request)."""
        greedy = [row.request.params.temperature == 0 for row in rows]
        if all(greedy):
            return logits.argmax(-1)
        spans, start = [], 0
        while start < len(rows):
            r, end = rows[start].request, start + 1
            while end < len(rows) and rows[end].request is r:
                end += 1
            spans.append((r, end - start))
            start = end
        u = torch.cat([uniforms(r.generator, count) for r, count in spans]).view(-1)
        temperature = torch.tensor([r.params.temperature for r, count in spans for _ in range(count)], dtype=torch.float64)
        top_p = torch.tensor([r.params.top_p for r, count in spans for _ in range(count)], dtype=torch.float64)
        return nucleus(logits, temperature.to(logits.device), top_p.to(logits.device), u.to(logits.device))


def nucleus(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """sampler.sample_tokens with per-row settings: logits (B, V), temperature, top_p and one uniform
    number per row (B,) -> tokens (B,); greedy where the temperature is 0. The draw inverts the CDF
    of the tokens in the nucleus, sorted by probability (as sample_tokens does when top_p < 1)."""
    greedy = temperature == 0
    probs = torch.softmax(logits.double() / torch.where(greedy, 1.0, temperature)[:, None], dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    outside = sorted_p.cumsum(-1) - sorted_p > top_p[:, None]  # tokens after the nucleus is full
    cdf = sorted_p.masked_fill(outside, 0.0).cumsum(-1)
    pick = torch.searchsorted(cdf, u[:, None] * cdf[:, -1:], right=True).clamp(max=logits.shape[-1] - 1)
    return torch.where(greedy, logits.argmax(-1), order.gather(-1, pick).squeeze(-1))


class BatcherProcess:
    """A `Batcher` in a process of its own, with the model, fed over a pipe: `submit`, `cancel`,
    `alive`, `close` as Batcher's, `deliver` called from a reader thread here. A server's event loop
    and the decode loop then hold two GILs, not one: under load the decode thread otherwise waits for
    the GIL at every operator it returns from (engine-only 3.8k tokens/s at 16 clients here, through
    one shared GIL ~2.5k; docs/perf.md). The child ignores SIGINT and SIGTERM (the server drains
    first, then closes it) and exits when the pipe closes, so it never outlives its parent."""

    def __init__(self, model: str, device: str, dtype: str, max_rows: int, threads: int,
                 deliver: Callable[[list[tuple[Request, list[Event]]]], None]):
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch threads
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve_batcher, args=(child, model, device, dtype, max_rows, threads),
                                name="r1lab-batcher", daemon=True)
        self.proc.start()
        child.close()
        self.deliver, self.requests, self.next_id = deliver, {}, 0
        self.lock = threading.Lock()  # sends come from the event loop and from close()
        kind, message = self.conn.recv()  # ("ready", "") or ("error", why)
        if kind != "ready":
            self.proc.join()
            raise RuntimeError(message)
        self.reader = threading.Thread(target=self.read, name="r1lab-batcher-reader", daemon=True)
        self.reader.start()

    def submit(self, request: Request) -> None:
        with self.lock:
            request.id, self.next_id = self.next_id, self.next_id + 1
            self.requests[request.id] = request
            p = request.params
            self.conn.send(("submit", request.id, request.prompt_ids, request.n,
                            (p.temperature, p.top_p, p.max_new_tokens, p.stop_token_ids, p.seed, p.min_new_tokens),
                            request.stop))

    def cancel(self, request: Request) -> None:
        request.cancelled = True
        with self.lock:
            if self.requests.pop(getattr(request, "id", None), None) is not None:
                self.conn.send(("cancel", request.id))

    def read(self) -> None:
        try:
            while True:
                steps = self.conn.recv()
                items = []
                for rid, events in steps:
                    request = self.requests.get(rid)
                    if request is not None:
                        items.append((request, [Event(*e) for e in events]))
                        request.finished += sum(1 for e in events if e[3])
                        if request.finished == request.n:
                            self.requests.pop(rid, None)
                if items:
                    self.deliver(items)
        except (EOFError, OSError):  # the child ended (close(), or it died: alive() says so)
            return

    def alive(self) -> bool:
        return self.proc.is_alive() and self.reader.is_alive()

    def close(self) -> None:
        with self.lock:
            try:
                self.conn.send(("close",))
            except OSError:
                pass
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
        self.conn.close()


def serve_batcher(conn, model: str, device: str, dtype: str, max_rows: int, threads: int) -> None:
    """The child of BatcherProcess: load the model, run a Batcher, relay requests in and events out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        torch.set_num_threads(threads)
        m, tok = load(model, device, dtype, field="model")
    except Exception as e:  # noqa: BLE001 (reported to the parent as one line)
        conn.send(("error", str(e)))
        return
    send = threading.Lock()

    def deliver(items):
        with send:
            conn.send([(r.id, [(e.index, e.text, e.tokens, e.finish) for e in evs]) for r, evs in items])

    batcher = Batcher(m, tok, max_rows=max_rows, deliver=deliver).start()
    conn.send(("ready", ""))
    live: dict[int, Request] = {}
    try:
        while batcher.alive():
            msg = conn.recv()
            if msg[0] == "close":
                break
            if msg[0] == "cancel":
                r = live.pop(msg[1], None)
                if r is not None:
                    batcher.cancel(r)
                continue
            _, rid, prompt_ids, n, params, stop = msg
            r = Request(prompt_ids, n, SamplingParams(*params), emit=None, stop=stop)
            r.id = rid
            live[rid] = r
            batcher.submit(r)
            if len(live) > 4 * max_rows:  # forget finished requests now and then
                live = {k: v for k, v in live.items() if not v.cancelled and v.finished < v.n}
    except EOFError:  # the parent is gone
        pass
    batcher.close()
