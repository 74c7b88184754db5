"""`r1lab chat MODEL_DIR`: talk to a model in the terminal, as DeepSeek's chat shows R1.

    r1lab chat runs/zero-20261206-120000/checkpoint-200 [--temperature 0.6] [--top-p 0.95]
               [--max-new-tokens 1024] [--seed 0] [--device auto] [--dtype float32]

Each reply streams token by token: the thinking (up to `</think>`) dimmed on a terminal, each of
its lines prefixed "| " when the output is a pipe or a file, or hidden after `/think off`; then the
answer, plain; the `<think>`/`<answer>` tags are not shown (engine/stream.py splits them as R1
reasoning parsers do). Type at the `>>> ` prompt; commands:
    /reset              forget the conversation
    /think on|off       show or hide the thinking (it is generated either way)
    /temperature X      0 or more (0: greedy); /top_p X: in (0, 1]
    /quit               leave (so do Ctrl-D and Ctrl-C at the prompt)
A bad command or value is one line, and the chat goes on. Ctrl-C during a reply stops it; that
exchange is left out of the history.

The conversation is rendered through the model's chat template, which every r1lab checkpoint
carries (data/prompting.py; for r1lab's models the R1-Zero template, which renders earlier turns as
" User: ... Assistant:" text), and each earlier reply enters the history without its thinking, as
R1's template keeps it (engine/stream.drop_thinking): the model sees its earlier answers, not its
earlier reasoning. A model directory without a chat template (a checkpoint from before r1lab wrote
them) is given r1lab's R1-Zero one, with a note. An R1-Zero model's reply also stops at `</answer>`,
as `r1lab eval` stops it. Defaults: T = 0.6, top-p 0.95, the paper's evaluation settings (R1 §5).

Streaming: `HFSampler.stream`, r1lab's own decoders token by token (the static KV cache for r1lab's
DeepSeek-V3, Llama and Qwen2; the model's forward otherwise), so a reply is exactly the completion
`r1lab eval` would sample with the same seed, and no thread is needed (HF's `TextIteratorStreamer`
runs `generate` in another thread, which a Ctrl-C in the main thread does not stop by itself).
Each reply re-reads the whole conversation (no cache is kept between turns); a conversation
longer than the model's context is not cut.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from typing import Literal, TextIO

from r1lab.data.prompting import answer_stop_ids, chat_template_for, own_template
from r1lab.engine.params import SamplingConfig, sampling
from r1lab.engine.sampler import HFSampler
from r1lab.engine.stream import TextStream, ThinkingSplitter, drop_thinking, prompt_opens_thinking
from r1lab.errors import UserError
from r1lab.runtime.device import check as check_device
from r1lab.runtime.loading import load

DIM, RESET = "\x1b[2m", "\x1b[0m"
PROMPT, THINKING_PREFIX = ">>> ", "| "
HELP = "commands: /reset, /think on|off, /temperature X, /top_p X, /quit"


@dataclass
class ChatConfig:
    model: str = ""  # a Hugging Face causal LM directory (or hub id)
    sampling: SamplingConfig = sampling(0.6, 0.95, max_new_tokens=1024)  # the paper's T and top-p (R1 §5)
    seed: int = 0  # reply i samples with seed + i: a session replays exactly
    device: str = "auto"  # auto (CUDA if present, else cpu) | cpu | cuda | cuda:N (runtime/device.py)
    dtype: Literal["float32", "bfloat16"] = "float32"

    def validate(self) -> None:
        if not self.model:
            raise UserError("model: give a Hugging Face model directory")
        check_device(self, "--")
        try:
            self.sampling.validate()
        except UserError as e:  # named as the command line names them
            name, _, why = str(e).partition(":")
            raise UserError(f"--{name.replace('_', '-')}:{why}") from None


class Display:
    """Writes a reply as it streams (see the module docstring): sections start on their own line."""

    def __init__(self, out: TextIO, tty: bool, show_thinking: bool):
        self.out, self.tty, self.show_thinking = out, tty, show_thinking
        self.kind: str | None = None  # the section being written
        self.line_start, self.answered = True, False

    def write(self, kind: str, text: str) -> None:
        if kind == "thinking" and not self.show_thinking:
            return
        if kind != self.kind:
            text = text.lstrip()  # the blank lines around the tags
            if not text:
                return
            self.end()
            self.kind = kind
            self.answered |= kind == "answer"
            if self.tty and kind == "thinking":
                self.out.write(DIM)
        if kind == "thinking" and not self.tty:
            text = "".join(THINKING_PREFIX * (i > 0 or self.line_start) + line
                           for i, line in enumerate(text.splitlines(keepends=True)))
        self.out.write(text)
        self.out.flush()
        self.line_start = text.endswith("\n")

    def end(self) -> None:
        """Close the section under way (reset the dimming, end its line)."""
        if self.kind is None:
            return
        if self.tty and self.kind == "thinking":
            self.out.write(RESET)
        if not self.line_start:
            self.out.write("\n")
        self.kind, self.line_start = None, True
        self.out.flush()


class Chat:
    """One conversation: its history, its settings, and the replies it streams."""

    def __init__(self, model, tok, cfg: ChatConfig, out: TextIO, tty: bool):
        self.tok, self.cfg, self.out, self.tty = tok, cfg, out, tty
        self.sampler = HFSampler(model, tok, add_special_tokens=False)  # a rendered chat holds its BOS
        self.stop_ids = answer_stop_ids(tok) if own_template(tok) == "r1zero" else ()
        self.history: list[dict] = []
        self.show_thinking, self.replies = True, 0

    def command(self, line: str) -> bool:
        """Run a /command; False for /quit."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/reset":
            self.history = []
            self.say("(conversation cleared)")
        elif name == "/think" and arg in ("on", "off"):
            self.show_thinking = arg == "on"
            self.say(f"(thinking {'shown' if self.show_thinking else 'hidden'})")
        elif name in ("/temperature", "/top_p", "/top-p"):
            self.set_sampling(name[1:].replace("-", "_"), arg)
        elif name == "/help":
            self.say(HELP)
        else:
            self.say(f"error: unknown command {line!r}; {HELP}")
        return True

    def set_sampling(self, field: str, arg: str) -> None:
        """Set temperature or top_p, or say in one line why not (the setting stays as it was)."""
        new = copy.copy(self.cfg.sampling)
        try:
            value = float(arg)
            if not math.isfinite(value):
                raise ValueError(arg)
            setattr(new, field, value)
            new.validate()
        except (ValueError, UserError) as e:
            why = e if isinstance(e, UserError) else f"{field}: expected a number, got {arg!r}"
            self.say(f"error: {why}")
            return
        self.cfg.sampling = new
        self.say(f"({field} {getattr(new, field)})")

    def reply(self, text: str) -> None:
        """Stream the model's reply to `text`; a Ctrl-C stops it and leaves the exchange out."""
        messages = [*self.history, {"role": "user", "content": text}]
        prompt = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        opens = prompt_opens_thinking(prompt)
        params = self.cfg.sampling.params(self.stop_ids, seed=self.cfg.seed + self.replies)
        self.replies += 1
        decoded, split = TextStream(self.tok), ThinkingSplitter(thinking=opens)
        display = Display(self.out, self.tty, self.show_thinking)
        tokens = self.sampler.stream(prompt, params)
        try:
            for token in tokens:
                for kind, piece in split.feed(decoded.add(token)):
                    display.write(kind, piece)
        except KeyboardInterrupt:
            tokens.close()  # the decoding stops here
            display.end()
            self.say("(stopped; this exchange is not kept)")
            return
        for kind, piece in split.flush():
            display.write(kind, piece)
        display.end()
        if not display.answered:
            self.say("(no answer)" if not split.thinking else "(no answer: the reply ended inside its thinking)")
        self.history = [*messages, {"role": "assistant", "content": drop_thinking(decoded.text, opens)}]

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def read_line(stdin: TextIO, out: TextIO) -> str:
    """One line typed at the prompt; EOFError at the end of the input."""
    if stdin is sys.stdin and stdin.isatty():
        return input(PROMPT)  # line editing
    out.write(PROMPT)
    out.flush()
    line = stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def run_chat(cfg: ChatConfig, stdin: TextIO | None = None, out: TextIO | None = None) -> None:
    """The `r1lab chat` command: load the model, then read lines until /quit, EOF or a Ctrl-C at the prompt."""
    cfg.validate()  # the command line typed the values; its flags name the mistakes
    stdin, out = stdin or sys.stdin, out or sys.stdout
    model, tok = load(cfg.model, cfg.device, cfg.dtype, field="model")
    note = ""
    if not tok.chat_template:
        tok.chat_template = chat_template_for("r1zero", tok)
        note = "; it has no chat template: r1lab's R1-Zero one"
    s = cfg.sampling
    chat = Chat(model.eval(), tok, cfg, out, tty=out.isatty())
    chat.say(f"r1lab chat: {cfg.model}{note} (temperature {s.temperature}, top_p {s.top_p}, "
             f"max_new_tokens {s.max_new_tokens}); /help lists the commands")
    while True:
        try:
            line = read_line(stdin, out).strip()
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return
        if line.startswith("/"):
            if not chat.command(line):
                return
        elif line:
            chat.reply(line)
