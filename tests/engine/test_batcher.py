"""Continuous batching: rows that join a running batch, and leave it, decode what they would alone.

Greedy tokens of every request equal `model.generate` on its prompt alone, whatever joined or left
the batch around it, for r1lab's DeepSeek-V3 (absorbed MLA), a DeepSeek-V3 variant, Qwen2 and
Llama: this pins the joined rows' masks, prompts of different widths merged, finished prompts
dropped, and the generated columns compacted when the cache is full."""

import threading

import pytest
import torch

from r1lab.engine import static_cache
from r1lab.engine.batcher import Batcher, Request
from r1lab.engine.params import SamplingParams
from r1lab.engine.static_cache import StaticCacheDecoder
from tests.engine.test_sampler import MODELS
from tests.tiny_models import greedy_reference

PROMPTS = ["abc", "x y z cab ba abc", "b", "cab cab xyz", "ba"]


class Client:
    """A request's events collected; `after` (steps, action) runs an action once it has had that many."""

    def __init__(self, batcher, prompt_ids, n=1, max_new=10, stop=(), seed=0, temperature=0.0, after=None):
        self.done, self.steps, self.after = threading.Event(), 0, after
        self.texts, self.tokens, self.finish = [""] * n, [0] * n, [None] * n
        params = SamplingParams(temperature=temperature, top_p=1.0, max_new_tokens=max_new, seed=seed)
        self.request = Request(prompt_ids, n, params, self.emit, stop=tuple(stop))
        batcher.submit(self.request)

    def emit(self, events):
        self.steps += 1
        for e in events:
            self.texts[e.index] += e.text
            self.tokens[e.index] += e.tokens
            if e.finish:
                self.finish[e.index] = e.finish
        if self.after and self.steps == self.after[0]:
            self.after[1]()
        if all(self.finish):
            self.done.set()

    def wait(self):
        assert self.done.wait(60), "the request did not finish"
        return self


@pytest.fixture(scope="module")
def tok():
    from tests.engine.test_sampler import tok as make

    return make.__wrapped__()


@pytest.mark.parametrize("name", list(MODELS))
def test_requests_that_join_and_leave_decode_as_alone(name, tok, monkeypatch):
    monkeypatch.setattr(StaticCacheDecoder, "FIRST_ROOM", 4)  # columns run out: compaction and growth
    monkeypatch.setattr(static_cache.MoE, "DENSE_BELOW", 3)  # both MoE paths as the batch changes size
    seen = {"join": 0, "compact": 0}
    join, grow = StaticCacheDecoder.join, StaticCacheDecoder.grow

    def spy_join(self, other):
        seen["join"] += 1
        join(self, other)

    def spy_grow(self):
        seen["compact"] += self.born is not None and int(self.born.min()) > 0
        grow(self)

    monkeypatch.setattr(StaticCacheDecoder, "join", spy_join)
    monkeypatch.setattr(StaticCacheDecoder, "grow", spy_grow)
    model = MODELS[name](tok)
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    alone = [greedy_reference(model, tok, p, 12, [tok.eos_token_id]) for p in PROMPTS]
    batcher = Batcher(model, tok, add_special_tokens=True, admit_every=1).start()
    assert batcher.joins
    late = []
    # prompt 0 starts alone; 1 and 2 join at its 3rd step, 3 when 1 has had 5 steps, 4 when 3 has had 2
    join_4 = lambda: late.append(Client(batcher, ids[4], max_new=12))  # noqa: E731
    join_3 = lambda: late.append(Client(batcher, ids[3], n=2, max_new=12, after=(2, join_4)))  # noqa: E731
    join_12 = lambda: late.extend([Client(batcher, ids[1], max_new=12, after=(5, join_3)),  # noqa: E731
                                   Client(batcher, ids[2], n=3, max_new=7)])
    first = Client(batcher, ids[0], n=2, max_new=12, after=(3, join_12)).wait()
    for c in late[:2]:
        c.wait()
    for c in late[2:]:
        c.wait()
    batcher.close()
    assert seen["join"] == 3 and seen["compact"] >= 1, seen
    clients = [first, late[0], late[1], late[2], late[3]]
    for i, (c, max_new) in enumerate(zip(clients, (12, 12, 7, 12, 12))):
        expected = alone[i][:max_new]
        for text, count in zip(c.texts, c.tokens):
            assert count == len(expected), (name, i)
            assert text == tok.decode(expected, skip_special_tokens=True), (name, i)


def test_stop_strings_end_a_row_and_are_not_in_its_text(tok):
    model = MODELS["deepseek"](tok)
    ids = tok(PROMPTS[1])["input_ids"]
    batcher = Batcher(model, tok, add_special_tokens=True, admit_every=1).start()
    free = Client(batcher, ids, max_new=12).wait()
    text = free.texts[0]
    assert len(text) > 6, text
    stop = text[3:6]  # a stop string inside the free text
    cut = Client(batcher, ids, max_new=12, stop=[stop, "never there"]).wait()
    batcher.close()
    assert cut.texts[0] == text[: text.find(stop)] and cut.finish == ["stop"]
    assert free.finish[0] in ("stop", "length")


def test_a_seeded_request_is_reproducible_and_its_samples_differ(tok):
    model = MODELS["deepseek"](tok)
    ids = tok(PROMPTS[3])["input_ids"]
    batcher = Batcher(model, tok, add_special_tokens=True, admit_every=1).start()
    a = Client(batcher, ids, n=3, max_new=12, seed=7, temperature=1.0).wait()
    b = Client(batcher, ids, n=3, max_new=12, seed=7, temperature=1.0).wait()
    c = Client(batcher, ids, n=3, max_new=12, seed=8, temperature=1.0).wait()
    batcher.close()
    assert a.texts == b.texts
    assert len(set(a.texts)) > 1 and a.texts != c.texts


def test_a_cancelled_request_leaves_and_the_others_go_on(tok):
    model = MODELS["deepseek"](tok)
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    alone = greedy_reference(model, tok, PROMPTS[1], 12, [tok.eos_token_id])
    batcher = Batcher(model, tok, add_special_tokens=True, admit_every=1).start()
    gone = []
    cancel = lambda: setattr(gone[0].request, "cancelled", True)  # noqa: E731
    gone.append(Client(batcher, ids[0], n=2, max_new=200, after=(2, cancel)))
    stays = Client(batcher, ids[1], max_new=12).wait()
    batcher.close()
    assert gone[0].steps == 2 and not gone[0].done.is_set()
    assert stays.texts[0] == tok.decode(alone, skip_special_tokens=True)


def test_a_model_without_the_static_cache_serves_by_cohort(tok):
    from tests.engine.test_sampler import GPT2Config, GPT2LMHeadModel, special_ids

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, **special_ids(tok))).eval()
    batcher = Batcher(model, tok, add_special_tokens=True, admit_every=1).start()
    assert not batcher.joins
    clients = [Client(batcher, tok(p)["input_ids"], n=2, max_new=6) for p in PROMPTS[:3]]
    for c, p in zip(clients, PROMPTS):
        c.wait()
        expected = greedy_reference(model, tok, p, 6, [tok.eos_token_id])
        assert c.texts == [tok.decode(expected, skip_special_tokens=True)] * 2
    batcher.close()


def test_nucleus_draws_what_sample_tokens_draws_row_by_row():
    """The batched draw with per-row settings equals sampler.sample_tokens on each row with its own
    settings and the same uniform number (greedy rows: argmax)."""
    from r1lab.engine.batcher import nucleus
    from r1lab.engine.sampler import sample_tokens

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 50, generator=g) * 3
    temperature = torch.tensor([0.0, 0.6, 1.0, 1.7] * 16, dtype=torch.float64)
    top_p = torch.tensor([0.95] * 32 + [0.5] * 16 + [0.999] * 16, dtype=torch.float64)
    u = torch.rand(64, generator=g, dtype=torch.float64)
    got = nucleus(logits, temperature, top_p, u)
    import r1lab.engine.sampler as sampler

    expected = []
    for i in range(64):
        orig = sampler.uniforms
        sampler.uniforms = lambda gen, count, x=u[i]: x.view(1, 1)  # this row's uniform number
        try:
            expected.append(int(sample_tokens(logits[i:i + 1], float(temperature[i]), float(top_p[i]), None)[0]))
        finally:
            sampler.uniforms = orig
    assert got.tolist() == expected
    assert len(set(got[1::4].tolist())) > 3  # sampled rows are not all the argmax


def test_a_request_too_big_for_the_rows_left_waits_its_turn(tok, monkeypatch):
    sizes, step = [], StaticCacheDecoder.step
    monkeypatch.setattr(StaticCacheDecoder, "step", lambda self, tokens: sizes.append(len(tokens)) or step(self, tokens))
    model = MODELS["deepseek"](tok)
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    batcher = Batcher(model, tok, max_rows=4, add_special_tokens=True, admit_every=1).start()
    first = Client(batcher, ids[0], n=3, max_new=10)
    second = Client(batcher, ids[1], n=3, max_new=10)  # 3 + 3 rows > 4: after the first
    third = Client(batcher, ids[2], n=1, max_new=10)  # in order: not before the second
    for c, p in zip((first.wait(), second.wait(), third.wait()), PROMPTS):
        expected = greedy_reference(model, tok, p, 10, [tok.eos_token_id])
        assert c.texts == [tok.decode(expected, skip_special_tokens=True)] * c.request.n
    batcher.close()
    assert max(sizes) <= 4 and 3 in sizes  # never more rows than max_rows
