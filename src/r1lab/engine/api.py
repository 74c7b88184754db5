"""The OpenAI-compatible wire format of `r1lab serve`: request bodies, errors, and replies.

    Chat, Completion = schemas()                    # pydantic models: strict types, unknown fields refused
    req = parse_body(Chat, raw)                     # or ApiError(400, "temperature: ...", param="temperature")
    reply = Reply(req, prompt, prompt_tokens, chat=True, model="name")
    for chunk in reply.chunks(events): send(sse(chunk))       # streamed: chat.completion.chunk objects
    reply.whole()                                   # or one chat.completion / text_completion object

A chat reply is split as DeepSeek's API splits R1's: the thinking (up to `</think>`, engine/stream.py)
as `reasoning_content`, the rest as `content`, each trimmed of the white space around its tags, in
the message and in the streamed deltas alike. Errors are OpenAI's shape: {"error": {"message",
"type", "param", "code"}}, the message one line naming the field.
"""

import json
import time
import uuid
from typing import Annotated, Literal

from r1lab.engine.batcher import Event
from r1lab.engine.stream import ThinkingSplitter, prompt_opens_thinking

MAX_N, MAX_STOPS = 16, 4


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def schemas():
    """The request models (pydantic imported only when serving)."""
    from pydantic import BaseModel, ConfigDict, Field

    strict = ConfigDict(extra="forbid", strict=True)

    class TextPart(BaseModel):
        model_config = strict
        type: Literal["text"]
        text: str

    class Message(BaseModel):
        model_config = strict
        role: Literal["system", "user", "assistant"]
        content: str | list[TextPart]
        name: str | None = None

        def text(self) -> str:
            return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    class StreamOptions(BaseModel):
        model_config = strict
        include_usage: bool = False

    class Common(BaseModel):
        model_config = strict
        model: str
        n: Annotated[int, Field(ge=1, le=MAX_N)] = 1
        temperature: Annotated[float, Field(ge=0, le=2)] = 0.6
        top_p: Annotated[float, Field(gt=0, le=1)] = 0.95
        max_tokens: Annotated[int, Field(ge=1, le=1 << 20)] | None = None
        max_completion_tokens: Annotated[int, Field(ge=1, le=1 << 20)] | None = None
        stop: Annotated[str, Field(min_length=1)] | Annotated[list[Annotated[str, Field(min_length=1)]],
                                                              Field(max_length=MAX_STOPS)] | None = None
        seed: Annotated[int, Field(ge=0, lt=1 << 63)] | None = None
        min_tokens: Annotated[int, Field(ge=0, le=1 << 20)] = 0  # vLLM's extension: no stop token before
        stream: bool = False
        stream_options: StreamOptions | None = None
        user: str | None = None
        presence_penalty: Annotated[float, Field(ge=0, le=0)] = 0.0  # only 0: not implemented
        frequency_penalty: Annotated[float, Field(ge=0, le=0)] = 0.0

    class Chat(Common):
        messages: Annotated[list[Message], Field(min_length=1, max_length=1024)]

    class Completion(Common):
        prompt: Annotated[str, Field(min_length=1)]

    return Chat, Completion


def validation_error(e) -> ApiError:
    """A pydantic ValidationError as one line naming the field."""
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "json_invalid":
        return ApiError(400, f"malformed JSON: {first['msg']}", code="json_invalid")
    if first["type"] == "extra_forbidden":
        return ApiError(400, f"{loc}: unknown field", param=loc, code="unknown_field")
    if first["type"] == "missing":
        return ApiError(400, f"{loc}: required", param=loc, code="missing")
    got = json.dumps(first.get("input"))[:60] if first["type"] != "model_type" else "not an object"
    return ApiError(400, f"{loc or 'body'}: {first['msg'][0].lower() + first['msg'][1:]}, got {got}",
                    param=loc or None, code="invalid_value")


def parse_body(schema, raw: bytes):
    """The request body as `schema`, or ApiError(400) naming the field."""
    from pydantic import ValidationError

    try:
        return schema.model_validate_json(raw)
    except ValidationError as e:
        raise validation_error(e) from None


def sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


class Reply:
    """A request's choices as they grow: text split into thinking and answer (chat), finish reasons, usage."""

    def __init__(self, req, prompt: str, prompt_tokens: int, chat: bool, model: str):
        self.req, self.chat, self.model, self.prompt_tokens = req, chat, model, prompt_tokens
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        opens = prompt_opens_thinking(prompt)
        self.split = [ThinkingSplitter(thinking=opens) for _ in range(req.n)]
        self.parts = [{"thinking": "", "answer": ""} for _ in range(req.n)]
        self.finish: list[str | None] = [None] * req.n
        self.started = [set() for _ in range(req.n)]  # kinds with text given out: later pieces keep their spaces
        self.held = [{} for _ in range(req.n)]  # per kind, trailing white space not given out (yet)
        self.tokens = 0

    def done(self) -> bool:
        return all(self.finish)

    def pieces(self, e: Event) -> dict[str, str]:
        """The event's text by kind (chat: thinking and answer; completions: raw text as "answer")."""
        self.tokens += e.tokens
        if e.finish:
            self.finish[e.index] = e.finish
        if not self.chat:  # raw text, as it came
            self.parts[e.index]["answer"] += e.text
            return {"thinking": "", "answer": e.text}
        out = {"thinking": "", "answer": ""}
        for kind, piece in self.split[e.index].feed(e.text) + (self.split[e.index].flush() if e.finish else []):
            out[kind] += piece
        started, held = self.started[e.index], self.held[e.index]
        for kind in out:  # each section trimmed: no space after the tag that opens it, none before its end
            text = out[kind] if kind in started else out[kind].lstrip()
            body = text.rstrip()
            if body:  # the white space held before it goes out with it; its own trailing space waits
                started.add(kind)
                out[kind], held[kind] = held.get(kind, "") + body, text[len(body):]
            else:
                out[kind], held[kind] = "", held.get(kind, "") + text
            self.parts[e.index][kind] += out[kind]
        return out

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.tokens,
                "total_tokens": self.prompt_tokens + self.tokens}

    def head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self) -> dict:
        if self.chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": p["answer"],
                                                "reasoning_content": p["thinking"] or None},
                        "finish_reason": f, "logprobs": None} for i, (p, f) in enumerate(zip(self.parts, self.finish))]
            return {**self.head("chat.completion"), "choices": choices, "usage": self.usage()}
        choices = [{"index": i, "text": p["answer"], "finish_reason": f, "logprobs": None}
                   for i, (p, f) in enumerate(zip(self.parts, self.finish))]
        return {**self.head("text_completion"), "choices": choices, "usage": self.usage()}

    def chunk_start(self) -> dict:
        if not self.chat:
            return {**self.head("text_completion"), "choices": [
                {"index": i, "text": "", "finish_reason": None, "logprobs": None} for i in range(self.req.n)]}
        return {**self.head("chat.completion.chunk"), "choices": [
            {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None}
            for i in range(self.req.n)]}

    def chunks(self, events: list[Event]) -> list[dict]:
        """One chunk per choice with news: its thinking and answer since the last chunk, merged."""
        merged: dict[int, dict] = {}
        for e in events:
            m = merged.setdefault(e.index, {"thinking": "", "answer": "", "finish": None})
            for kind, text in self.pieces(e).items():
                m[kind] += text
            m["finish"] = m["finish"] or e.finish
        out = []
        for i, m in sorted(merged.items()):
            if not (m["thinking"] or m["answer"] or m["finish"]):
                continue
            if self.chat:
                delta = {}
                if m["thinking"]:
                    delta["reasoning_content"] = m["thinking"]
                if m["answer"]:
                    delta["content"] = m["answer"]
                choice = {"index": i, "delta": delta, "finish_reason": m["finish"], "logprobs": None}
                out.append({**self.head("chat.completion.chunk"), "choices": [choice]})
            else:
                choice = {"index": i, "text": m["answer"], "finish_reason": m["finish"], "logprobs": None}
                out.append({**self.head("text_completion"), "choices": [choice]})
        return out

    def chunk_usage(self) -> dict:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self.head(kind), "choices": [], "usage": self.usage()}
