"""SFT: loss only on completion tokens, packing that never lets examples see each other, data
errors as FILE:LINE, and a short end-to-end run that learns its data and saves an HF model."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from r1lab.cli import main
from r1lab.data.prompting import own_template, render_prompt
from r1lab.model.architecture import build_model
from r1lab.model.tokenizer import train_tokenizer
from r1lab.runtime.loading import load_tokenizer
from r1lab.stages.sft import (
    IGNORE,
    Example,
    SFTConfig,
    collate,
    completion_loss,
    pack,
    read_pairs,
    run_sft,
    tokenize_examples,
)
from tests.tiny_models import TINY_DEEPSEEK


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["User: what is 12+34? Assistant: <think> 2+4=6 </think> <answer>46</answer>"] * 20,
                           vocab_size=300)


def tiny(kind: str, tok):
    torch.manual_seed(0)
    if kind == "deepseek":
        return build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return Qwen2ForCausalLM(config).float()


def examples(n=5):
    g = torch.Generator().manual_seed(3)
    out = []
    for i in range(n):
        p = torch.randint(5, 200, (3 + i,), generator=g).tolist()
        c = torch.randint(5, 200, (2 + 2 * i,), generator=g).tolist()
        out.append(Example(p, c, f"x:{i}"))
    return out


def test_prompt_tokens_carry_no_loss():
    """Changing the logits that predict prompt tokens (or padding) changes neither the loss nor its
    gradient; changing a logit that predicts a completion token does."""
    ex = Example([7, 8, 9], [10, 11], "x:1")
    ids, pos, labels = collate([[ex]], pad=0)
    assert labels.tolist() == [[IGNORE, IGNORE, IGNORE, 10, 11]]
    logits = torch.randn(1, 5, 20, requires_grad=True)
    loss, n = completion_loss(logits, labels)
    loss.backward()
    assert n == 2
    assert logits.grad[0, :2].abs().sum() == 0 and logits.grad[0, 4].abs().sum() == 0  # predict 8, 9 / nothing
    assert logits.grad[0, 2].abs().sum() > 0 and logits.grad[0, 3].abs().sum() > 0  # predict 10, 11
    manual = -(torch.log_softmax(logits[0, 2], -1)[10] + torch.log_softmax(logits[0, 3], -1)[11])
    assert float(loss.detach()) == pytest.approx(float(manual.detach()), rel=1e-5)


def test_pack_first_fit_decreasing_keeps_every_example_within_seq_len():
    exs = examples(6)  # lengths 5, 8, 11, 14, 17, 20
    rows = pack(exs, seq_len=22)
    assert sorted(ex.source for r in rows for ex in r) == sorted(ex.source for ex in exs)
    assert all(sum(map(len, r)) <= 22 for r in rows)
    assert [[len(ex) for ex in r] for r in rows] == [[20], [17, 5], [14, 8], [11]]


@pytest.mark.parametrize("kind", ["qwen2", "deepseek"])
def test_packed_rows_equal_each_example_alone(kind, tok):
    """Per-example completion losses from one packed row equal those of each example run alone:
    the block-diagonal mask and restarted positions leave no trace of the neighbours."""
    model = tiny(kind, tok).eval()
    exs = examples(3)
    ids, pos, labels = collate([exs], pad=tok.pad_token_id)
    packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    start = 0
    for ex in exs:
        alone_ids, alone_pos, alone_labels = collate([[ex]], pad=tok.pad_token_id)
        alone = model(input_ids=alone_ids, position_ids=alone_pos, use_cache=False).logits
        end = start + len(ex)
        torch.testing.assert_close(packed[:, start:end], alone, rtol=1e-4, atol=1e-5)
        start = end


def test_templates_and_eos(tok):
    pairs = [("a:1", "what is 1+1?", "<think>1+1=2</think> 2"),
             ("a:2", [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}], "4")]
    exs = tokenize_examples(pairs, "r1zero", tok)
    assert all(ex.completion_ids[-1] == tok.eos_token_id for ex in exs)
    text = tok.decode(exs[1].prompt_ids, skip_special_tokens=True)
    assert "2+2?" in text and "be brief" not in text and "Assistant:" in text  # r1zero around the last user turn
    assert render_prompt("hi", "plain", tok) == "hi"


BAD_DATA = {
    "malformed": ('{"prompt": "a", "completion": "b"}\n{"prompt": \n', ["data.jsonl:2", "malformed JSON"]),
    "missing completion": ('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', ["data.jsonl:2", "completion"]),
    "messages not ending with assistant": ('{"messages": [{"role": "user", "content": "a"}, '
                                          '{"role": "user", "content": "b"}]}\n', ["data.jsonl:1", "assistant"]),
    "empty": ("\n\n", ["data.jsonl", "no examples"]),
}


@pytest.mark.parametrize("name", BAD_DATA)
def test_bad_data_is_one_line_exit_2_and_writes_nothing(name, tmp_path, capsys):
    text, needles = BAD_DATA[name]
    (tmp_path / "data.jsonl").write_text(text)
    code = main(["sft", f"data={tmp_path}/data.jsonl", f"run_dir={tmp_path}/run", "base=/nonexistent"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("r1lab: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "run").exists()


def test_read_pairs_limit(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"prompt": str(i), "completion": "x"}) + "\n" for i in range(5)))
    assert [p for _, p, _ in read_pairs(path, limit=3)] == ["0", "1", "2"]


def test_sft_learns_its_data_and_saves_a_loadable_model(tok, tmp_path):
    base = tmp_path / "base"
    tiny("qwen2", tok).save_pretrained(base)
    tok.save_pretrained(base)
    data = tmp_path / "data.jsonl"
    rows = [{"prompt": f"what is {a}+{b}?", "completion": f"<think> {a}+{b}={a + b} </think> <answer>{a + b}</answer>"}
            for a, b in [(12, 34), (20, 21), (33, 11), (40, 2)]]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = SFTConfig(base=str(base), data=str(data), run_dir=str(tmp_path / "run"), epochs=25, lr=1e-2, template="plain", pack=False,
                    warmup_steps=2, seq_len=128, rows_per_step=1, micro_rows=1)
    cfg.validate()
    out = run_sft(cfg, log=lambda *_: None)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["loss"] < 0.2 * history[0]["loss"]
    assert out.name == f"checkpoint-{len(history)}" and (tmp_path / "run" / "final").read_text() == out.name
    assert not list((tmp_path / "run").glob(".tmp-*"))
    model = AutoModelForCausalLM.from_pretrained(out)
    assert json.loads((out / "sft.json").read_text())["examples"] == 4
    assert own_template(load_tokenizer(out)) == "plain"  # its chat template renders what it was trained on
    card = (out / "README.md").read_text()  # the model card: command, data, loss, recipe, citation
    assert "# r1lab sft" in card and "4 examples" in card and f"{history[-1]['loss']:.4f}" in card and "epochs: 25" in card
    # the saved model is the trained one: its loss on the data is the last step's, not the base's
    exs = tokenize_examples(read_pairs(data), "plain", tok)
    ids, pos, labels = collate(pack(exs, 128), tok.pad_token_id)
    with torch.no_grad():
        loss, n = completion_loss(model(input_ids=ids, position_ids=pos).logits, labels)
    assert float(loss) / n < 0.3 * history[0]["loss"]


def test_a_completion_without_prompt_is_never_predicted_from_its_packed_neighbour():
    first, second = Example([7, 8], [9, 2], "x:1"), Example([], [10, 11, 2], "x:2")
    _, pos, labels = collate([[first, second]], pad=0)
    assert pos.tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    assert labels.tolist() == [[IGNORE, IGNORE, 9, 2, IGNORE, 11, 2]]  # token 10 follows the neighbour's EOS
