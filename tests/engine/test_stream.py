"""Streaming text and splitting the thinking from the answer (engine/stream.py), piece by piece."""

import pytest

from r1lab.engine.stream import TextStream, ThinkingSplitter, drop_thinking, prompt_opens_thinking
from r1lab.model.tokenizer import train_tokenizer

CASES = [  # (prompt opens the thinking, completion, thinking shown, answer shown, history content)
    (False, "<think>\n12+34=46\n</think>\n<answer>46</answer>", "\n12+34=46\n", "\n46", "\n<answer>46</answer>"),
    (True, "Let me see. 2+2=4.\n</think>\n\nIt is 4.", "Let me see. 2+2=4.\n", "\n\nIt is 4.", "\n\nIt is 4."),
    (False, "Just an answer, no <thinking>.", "", "Just an answer, no <thinking>.", "Just an answer, no <thinking>."),
    (False, "<think> cut off mid-thought", " cut off mid-thought", "", ""),
    (True, "cut off too", "cut off too", "", ""),
    (False, "a </answ", "", "a </answ", "a </answ"),  # a tag's start at the end is text after all
]


def split(opens, pieces):
    s, out = ThinkingSplitter(thinking=opens), []
    for p in pieces:
        out += s.feed(p)
    out += s.flush()
    return "".join(t for k, t in out if k == "thinking"), "".join(t for k, t in out if k == "answer")


@pytest.mark.parametrize("opens, completion, thinking, answer, kept", CASES)
def test_split_whatever_the_pieces(opens, completion, thinking, answer, kept):
    assert split(opens, [completion]) == (thinking, answer)
    assert split(opens, list(completion)) == (thinking, answer)  # tags cut across pieces
    assert split(opens, [completion[i:i + 3] for i in range(0, len(completion), 3)]) == (thinking, answer)
    assert drop_thinking(completion, opens) == kept


def test_held_back_text_waits_for_the_tag_to_complete():
    s = ThinkingSplitter()
    assert s.feed("<think>abc</th") == [("thinking", "abc")]
    assert s.feed("ink>x") == [("answer", "x")]


def test_prompt_opens_thinking():
    assert prompt_opens_thinking("<｜Assistant｜><think>\n") and not prompt_opens_thinking("... Assistant:")


def test_text_stream_gives_each_character_once():
    tok = train_tokenizer(["abc <think> 日本語 </think>"] * 5, vocab_size=280)
    text = "<think> 日本語 😀 </think> abc"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    stream = TextStream(tok)
    pieces = [stream.add(i) for i in ids]
    assert "".join(pieces) == text and all("\ufffd" not in p for p in pieces)
    assert "" in pieces  # a multi-byte character spans several byte-level tokens


def test_text_stream_adds_up_to_the_whole_decode():
    """Window by window, the text equals one decode of every token, whatever the tokens."""
    import random

    tok = train_tokenizer(["caf\u00e9 na\u00efve \u4e2d\u6587 12+34=46 <think> ok </think>"] * 20, vocab_size=320)
    rng = random.Random(0)
    for _ in range(20):
        ids = [rng.randrange(len(tok)) for _ in range(rng.randrange(1, 40))]
        stream = TextStream(tok)
        pieces = [stream.add(i) for i in ids] + [stream.finish()]
        assert "".join(pieces) == stream.text == tok.decode(ids, skip_special_tokens=True)
