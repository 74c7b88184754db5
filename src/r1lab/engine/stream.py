"""A completion as it streams: its text, piece by piece, and its thinking split from its answer.

    text = TextStream(tokenizer)
    split = ThinkingSplitter(thinking=prompt_opens_thinking(prompt))
    for token in sampler.stream(prompt, params):
        for kind, piece in split.feed(text.add(token)):    # kind: "thinking" | "answer"
            show(kind, piece)
    for kind, piece in split.flush(): ...
    history_content = drop_thinking(text.text, prompt_opens_thinking(prompt))

The split is what R1 reasoning parsers (vLLM's deepseek_r1) and DeepSeek's API
(`reasoning_content` beside `content`) make: the thinking is everything before `</think>`, the
answer what follows. It starts in the thinking when the prompt ends with `<think>` (R1's own
template prefills it); otherwise `<think>` in the output opens it (r1lab's models write it
themselves after "Assistant:"), and a model that never thinks gives an answer only. The tags
`<think>`, `</think>`, `<answer>`, `</answer>` are not shown; a tag split across tokens is held
back until it is complete.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"
HIDDEN_TAGS = (OPEN, CLOSE, "<answer>", "</answer>")


def prompt_opens_thinking(prompt: str) -> bool:
    """Whether the generation prompt itself opens the thinking (R1's template ends with `<think>`)."""
    return prompt.rstrip().endswith(OPEN)


def drop_thinking(completion: str, thinking: bool = False) -> str:
    """The completion without its thinking, as R1's chat template keeps an earlier turn: the text
    after the last `</think>`; empty if the thinking never closed (it was cut off)."""
    if CLOSE in completion:
        return completion.rsplit(CLOSE, 1)[1]
    return "" if thinking or completion.lstrip().startswith(OPEN) else completion


class TextStream:
    """Token ids in, new text out: the text decoded so far (special tokens skipped), less what was
    already given out. A token that ends mid-character (byte-level BPE) gives nothing until the
    character is complete. Each token decodes a short window, not the whole completion (the way
    TGI and vLLM detokenize): the window from the last token already read back, whose own text is
    subtracted, so a tokenizer that spells a word's start differently mid-text still adds up."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.text = tokenizer, [], ""
        self.prefix, self.read = 0, 0  # the window's start; the tokens read into `text`

    def add(self, token: int) -> str:
        self.ids.append(token)
        return self._advance(final=False)

    def finish(self) -> str:
        """At the end of the completion: the text held back for an incomplete character (shown as
        U+FFFD, as a decoder shows it), if any."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        text = decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(text) <= len(before) or (text.endswith("\ufffd") and not final):  # an incomplete UTF-8 sequence
            return ""
        new = text[len(before):]
        self.prefix, self.read = self.read, len(self.ids)
        self.text += new
        return new


class ThinkingSplitter:
    """Text pieces in, (kind, text) pieces out, kind "thinking" or "answer", tags removed."""

    def __init__(self, thinking: bool = False):
        self.thinking = thinking  # inside <think> ... </think>
        self.pending = ""  # text not given out yet: it may be the start of a tag

    def feed(self, text: str) -> list[tuple[str, str]]:
        self.pending += text
        out = []
        while True:
            found = [(self.pending.find(t), t) for t in HIDDEN_TAGS if t in self.pending]
            if not found:
                break
            at, tag = min(found)
            out.append(self._piece(self.pending[:at]))
            self.pending = self.pending[at + len(tag):]
            if tag in (OPEN, CLOSE):
                self.thinking = tag == OPEN
        held = max((n for t in HIDDEN_TAGS for n in range(1, len(t)) if self.pending.endswith(t[:n])), default=0)
        ready, self.pending = self.pending[: len(self.pending) - held], self.pending[len(self.pending) - held:]
        out.append(self._piece(ready))
        return [p for p in out if p[1]]

    def flush(self) -> list[tuple[str, str]]:
        """What was held back, at the end of the completion."""
        rest, self.pending = self.pending, ""
        return [self._piece(rest)] if rest else []

    def _piece(self, text: str) -> tuple[str, str]:
        return ("thinking" if self.thinking else "answer", text)
