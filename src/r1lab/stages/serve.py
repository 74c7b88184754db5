"""`r1lab serve MODEL_DIR`: an OpenAI-compatible HTTP API that streams the model's thinking.

    r1lab serve runs/zero-20261206-120000/checkpoint-200 [--host 127.0.0.1] [--port 8000]
                [--api-key KEY] [--name NAME] [--max-rows 256] [--device auto] [--dtype float32]

Routes (FastAPI on uvicorn):
    GET  /                      a chat page: the thinking folded above the answer, a field for the key
    GET  /health                {"status": "ok"}
    GET  /v1/models             the one model served, as NAME (default: the directory's name)
    POST /v1/chat/completions   messages -> the reply, split as DeepSeek's API splits R1's:
                                `reasoning_content` (the thinking, up to `</think>`) and `content`
    POST /v1/completions        prompt -> raw text (no template, no split)
Both POST routes take `n`, `temperature` (default 0.6: R1 §5's evaluation setting, where OpenAI's
default is 1), `top_p` (default 0.95), `max_tokens` (or `max_completion_tokens`; default: the rest
of the model's context, at most 1024), `min_tokens` (vLLM's extension: no stop token before
then), `stop` (a string or up to 4), `seed`, `stream`
(server-sent events, `stream_options.include_usage`), and give `usage` counts. A stop token
(the tokenizer's EOS, the model's generation EOS ids, and `</answer>` for r1lab's R1-Zero models,
as `r1lab eval` stops them) and a stop string end a choice and are not in its text.

Messages are rendered through the model's chat template, which every r1lab checkpoint carries
(data/prompting.py); a model directory without one gets r1lab's R1-Zero template, as `r1lab chat`
does. R1-Zero's template is single-turn in the paper; r1lab's renders earlier turns as
" User: ... Assistant: ..." text with each earlier reply's thinking dropped (tasks/prompts.py), so
a multi-turn conversation reaches an R1-Zero model as one longer prompt it was never trained on.

Every request joins one running batch (engine/batcher.py: continuous batching), decoded by a
thread that owns the model; the event loop only renders, validates and writes. A seeded request
samples from its own generator: alone it is reproducible.

Safe by default: binds 127.0.0.1; `--api-key KEY` (or R1LAB_API_KEY) makes every route except the
page and /health demand `Authorization: Bearer KEY` (401); a bad request gets one JSON error,
`{"error": {"message", "type", "param", "code"}}`, with a 4xx status (400 malformed JSON, a field
unknown, of the wrong type or out of range, a prompt longer than the context; 404 an unknown model
or route; 405; 413 a body over 1 MiB), and the server keeps serving; a client that disconnects
frees its rows at the next decode step; SIGTERM (or Ctrl-C) stops taking connections, lets the
requests under way finish, then exits.

Not done (departures from OpenAI's API): no logprobs, tools, response_format or penalties (a
non-zero penalty is refused); `n` at most 16; `echo`, `best_of`, `suffix` are refused.
"""

import asyncio
import contextlib
import importlib.util
import os
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from r1lab.data.prompting import answer_stop_ids, chat_template_for, own_template
from r1lab.engine.api import MAX_N, ApiError, Reply, parse_body, schemas, sse
from r1lab.engine.batcher import BatcherProcess, Event, Request
from r1lab.engine.params import SamplingParams
from r1lab.errors import UserError
from r1lab.runtime.device import check as check_device
from r1lab.runtime.loading import load_tokenizer, resolve_model

MAX_BODY = 1 << 20  # bytes
# how long a thread holding the GIL keeps it while another waits (Python's default: 5 ms); the
# event loop's handlers, the pipe reader and the uvicorn workers take turns in 0.5 ms slices
SWITCH_INTERVAL = 0.0005
DEFAULT_MAX_TOKENS = 1024
PAGE = Path(__file__).with_name("serve_page.html")


@dataclass
class ServeConfig:
    model: str = ""  # a Hugging Face causal LM directory
    host: str = "127.0.0.1"  # loopback only, unless told otherwise
    port: int = 8000
    api_key: str = ""  # non-empty: every API route demands `Authorization: Bearer <api_key>`
    name: str = ""  # the model's id in the API (default: the directory's name)
    max_rows: int = 256  # sequences decoded together; more requests wait
    threads: int = max(1, (os.cpu_count() or 2) - 1)  # torch's threads for decoding: a core left for HTTP
    device: str = "auto"
    dtype: Literal["float32", "bfloat16"] = "float32"

    def validate(self) -> None:
        if not self.model:
            raise UserError("model: give a Hugging Face model directory")
        if not 0 <= self.port <= 65535:
            raise UserError(f"--port: expected 0..65535, got {self.port}")
        if self.max_rows < MAX_N:
            raise UserError(f"--max-rows: expected >= {MAX_N}, got {self.max_rows}")
        if self.threads < 1:
            raise UserError(f"--threads: expected >= 1, got {self.threads}")
        check_device(self, "--")


# ---- the service: model, batcher, rendering ---------------------------------------------------

class Service:
    """What the routes share: the tokenizer (rendering, counting), the context, the batcher."""

    def __init__(self, tok, config, cfg: ServeConfig):
        self.tok, self.cfg = tok, cfg
        self.name = cfg.name or Path(cfg.model.rstrip("/")).name
        self.note = ""
        if not tok.chat_template:
            tok.chat_template = chat_template_for("r1zero", tok)
            self.note = " (no chat template in it: r1lab's R1-Zero one)"
        self.stop_ids = answer_stop_ids(tok) if own_template(tok) == "r1zero" else ()
        self.context = int(getattr(config, "max_position_embeddings", 0) or 1 << 20)
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, once it runs
        self.submitted = self.ended = 0
        # the model decodes in a process of its own (engine/batcher.py: BatcherProcess)
        self.batcher = BatcherProcess(cfg.model, cfg.device, cfg.dtype, cfg.max_rows, cfg.threads, self.deliver)
        self.Chat, self.Completion = schemas()
        self.created = int(time.time())

    def end(self, request: Request, reply: Reply) -> None:
        """A request is over: answered, or its client went away (then its rows leave the batch)."""
        self.ended += 1
        if not reply.done():
            self.batcher.cancel(request)

    def in_flight(self) -> int:
        """Requests submitted and not yet finished or cancelled."""
        return self.submitted - self.ended

    def deliver(self, items) -> None:
        """From the batcher's thread: one step's events into the requests' queues, in one call on the loop."""
        self.loop.call_soon_threadsafe(lambda: [r.emit(evs) for r, evs in items])

    def parse(self, schema, raw: bytes):
        req = parse_body(schema, raw)
        if req.model != self.name:
            raise ApiError(404, f"model: no model named {req.model!r}; this server serves {self.name!r}",
                           param="model", code="model_not_found")
        if req.stream_options is not None and not req.stream:
            raise ApiError(400, "stream_options: only with stream=true", param="stream_options")
        return req

    def prompt_of(self, req) -> str:
        if hasattr(req, "prompt"):
            return req.prompt
        if not any(m.role == "user" for m in req.messages):
            raise ApiError(400, "messages: expected at least one user message", param="messages")
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as e:  # a template's own raise_exception, e.g. roles out of order
            raise ApiError(400, f"messages: the model's chat template refused them: {e}", param="messages") from None

    def request(self, req, prompt: str, emit) -> tuple[Request, int]:
        """The batcher's request for `req`, checked against the context: (request, prompt tokens)."""
        ids = self.tok(prompt, add_special_tokens=not hasattr(req, "messages"))["input_ids"]
        room = self.context - len(ids)
        if room < 1:
            raise ApiError(400, f"prompt: {len(ids)} tokens; the model's context is {self.context}",
                           param="messages" if hasattr(req, "messages") else "prompt", code="context_length_exceeded")
        asked = req.max_completion_tokens or req.max_tokens
        if asked is not None and asked > room:
            field = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            raise ApiError(400, f"{field}: {asked} with a prompt of {len(ids)} tokens exceeds the model's context "
                           f"of {self.context}", param=field, code="context_length_exceeded")
        stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
        seed = req.seed if req.seed is not None else secrets.randbits(62)
        max_new = asked or min(room, DEFAULT_MAX_TOKENS)
        if req.min_tokens > max_new:
            raise ApiError(400, f"min_tokens: {req.min_tokens} is more than max_tokens ({max_new})", param="min_tokens")
        params = SamplingParams(req.temperature, req.top_p, max_new, self.stop_ids, seed, req.min_tokens)
        return Request(ids, req.n, params, emit, stop=stop), len(ids)


def build_app(service: Service):
    from fastapi import FastAPI, Request as HttpRequest
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title="r1lab serve", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: HttpRequest, e: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "invalid_request_error")
        error = ApiError(e.status_code, f"{request.method} {request.url.path}: {str(e.detail).lower()}", kind=kind)
        return JSONResponse(error.body(), status_code=e.status_code)

    app.add_middleware(Guard, service=service)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE.read_text()

    @app.get("/health")
    async def health():
        if not service.batcher.alive():
            return JSONResponse({"status": "down"}, status_code=503)
        return {"status": "ok", "requests": service.in_flight()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": service.name, "object": "model", "created": service.created,
                                            "owned_by": "r1lab", "max_model_len": service.context}]}

    @app.post("/v1/chat/completions")
    async def chat(http: HttpRequest):
        return await complete(http, service.Chat, chat=True)

    @app.post("/v1/completions")
    async def completions(http: HttpRequest):
        return await complete(http, service.Completion, chat=False)

    async def complete(http: HttpRequest, schema, chat: bool):
        raw = await http.body()
        if len(raw) > MAX_BODY:  # a chunked body declares no length
            raise ApiError(413, f"body: larger than {MAX_BODY} bytes", code="body_too_large")
        req = service.parse(schema, raw)
        service.loop = asyncio.get_running_loop()
        prompt = service.prompt_of(req)
        events = asyncio.Queue()
        request, prompt_tokens = service.request(req, prompt, events.put_nowait)
        reply = Reply(req, prompt, prompt_tokens, chat, service.name)
        service.batcher.submit(request)
        service.submitted += 1
        if req.stream:
            return StreamingResponse(stream(reply, request, events), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            while not reply.done():
                for ev in await next_events(events, http):
                    reply.pieces(ev)
        finally:
            service.end(request, reply)
        return reply.whole()

    async def next_events(events: asyncio.Queue, http: HttpRequest | None = None) -> list[Event]:
        """The events of every step since the last call (at least one), so a slow reader gets them merged."""
        while True:
            try:
                batch = await asyncio.wait_for(events.get(), timeout=1.0)
                break
            except TimeoutError:
                if not service.batcher.alive():
                    raise ApiError(500, "the decoder stopped (its process ended)", kind="server_error") from None
                if http is not None and await http.is_disconnected():
                    raise ApiError(499, "the client closed the request")
        while not events.empty():
            batch = batch + events.get_nowait()
        return batch

    async def stream(reply: Reply, request: Request, events: asyncio.Queue):
        try:
            yield sse(reply.chunk_start())
            while not reply.done():
                batch = await next_events(events)
                for chunk in reply.chunks(batch):
                    yield sse(chunk)
            if reply.req.stream_options is not None and reply.req.stream_options.include_usage:
                yield sse(reply.chunk_usage())
            yield "data: [DONE]\n\n"
        finally:  # the client went away (the response was cancelled) or it all went out
            service.end(request, reply)

    return app


class Guard:
    """ASGI middleware: the declared body size and the API key, before any route runs (a pure ASGI
    middleware: Starlette's BaseHTTPMiddleware would buffer and delay the event streams)."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from fastapi.responses import JSONResponse

        headers = dict(scope["headers"])
        error = None
        try:
            if int(headers.get(b"content-length", b"0")) > MAX_BODY:
                error = ApiError(413, f"body: larger than {MAX_BODY} bytes", code="body_too_large")
        except ValueError:
            error = ApiError(400, "Content-Length: not a number")
        key = self.service.cfg.api_key
        if error is None and key and scope["path"] not in ("/", "/health"):
            given = headers.get(b"authorization", b"")
            if not secrets.compare_digest(given, f"Bearer {key}".encode()):
                error = ApiError(401, "Authorization: expected 'Bearer <the server's API key>'",
                                 code="invalid_api_key", kind="authentication_error")
        if error is not None:
            return await JSONResponse(error.body(), status_code=error.status)(scope, receive, send)
        return await self.app(scope, receive, send)


def run_serve(cfg: ServeConfig, ready=print) -> None:
    """The `r1lab serve` command: load the model, start the batcher, serve until SIGTERM or Ctrl-C."""
    cfg.api_key = cfg.api_key or os.environ.get("R1LAB_API_KEY", "")
    cfg.validate()
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise UserError("r1lab serve needs fastapi and uvicorn: pip install 'r1lab[serve]'")
    import uvicorn
    tok = load_tokenizer(resolve_model(cfg.model, field="model"))
    sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as e:  # in use, or not this machine's address
        raise UserError(f"--port: cannot listen on {cfg.host}:{cfg.port}: {e.strerror}") from None
    from transformers import AutoConfig

    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        service = Service(tok, AutoConfig.from_pretrained(cfg.model), cfg)
    except RuntimeError as e:  # the model did not load in the batcher's process
        raise UserError(f"model: {e}") from None
    app = build_app(service)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            """SIGTERM and SIGINT start the drain (a second SIGINT forces the exit), and the command then
            exits 0; uvicorn's own handlers would re-raise the signal once drained (exit status -15)."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)

    server = Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                                   lifespan="off"))

    startup = server.startup

    async def announce(sockets=None):
        await startup(sockets)
        if server.started:
            port = sock.getsockname()[1]
            auth = "; API key required" if cfg.api_key else ""
            ready(f"r1lab serve: {service.name}{service.note} at http://{cfg.host}:{port} "
                  f"(OpenAI API under /v1, chat page at /{auth})", flush=True)

    server.startup = announce
    try:
        server.run(sockets=[sock])  # SIGTERM/SIGINT: no new connections, requests under way finish, then it returns
    finally:
        service.batcher.close()
