"""The reward model: the Bradley-Terry loss, data errors, and a brief training run that ranks
held-out pairs (prompts it never saw) well above chance."""

import json
import math
from dataclasses import replace

import pytest
import torch

from r1lab.cli import main
from r1lab.data.preferences import preference_pairs
from r1lab.model.architecture import build_model
from r1lab.model.tokenizer import train_tokenizer
from r1lab.rl.reward_model import bt_loss, pair_accuracy, scores
from r1lab.runtime.loading import load
from r1lab.stages.rm import RMConfig, train_rm
from r1lab.tasks import apply_template
from r1lab.tasks.general import general_prompts
from tests.tiny_models import TINY_DEEPSEEK

TINY_DEEPSEEK = replace(TINY_DEEPSEEK, max_positions=512)  # prompts longer than the default's


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random-weight tiny DeepSeek-V3 whose tokenizer knows the general data's scripts."""
    pairs = preference_pairs("train") + preference_pairs("test")
    tok = train_tokenizer([apply_template(p.prompt) + p.chosen + p.rejected for p in pairs] * 3, vocab_size=600)
    d = tmp_path_factory.mktemp("base")
    build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, seed=0).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_bt_loss():
    assert float(bt_loss(torch.tensor([1.0]), torch.tensor([1.0]))) == pytest.approx(math.log(2))
    assert float(bt_loss(torch.tensor([20.0]), torch.tensor([0.0]))) < 1e-6
    assert float(bt_loss(torch.tensor([0.0]), torch.tensor([20.0]))) == pytest.approx(20.0, rel=1e-3)


def test_held_out_prompts_are_not_in_training():
    from r1lab.tasks.general import CAPITALS_L

    train, test = general_prompts("train"), general_prompts("test")
    assert {p.key for p in train}.isdisjoint({p.key for p in test}) and len(test) == 12
    assert {p.lang for p in test} == {"en", "zh", "ja", "ko"}
    # no training pair names a held-out country or capital, in any language
    held = {name for lang in CAPITALS_L for i, pair in enumerate(CAPITALS_L[lang])
            if CAPITALS_L["en"][i][0] in ("Italy", "Peru") for name in pair}
    train_text = " ".join(p.prompt + p.chosen + p.rejected for p in preference_pairs("train"))
    assert not [name for name in held if name in train_text]


def test_brief_training_ranks_held_out_pairs_above_chance(base):
    torch.manual_seed(0)
    model, tok = load(base, head="score")
    held_out = preference_pairs("test")
    train_rm(model, tok, preference_pairs("train"), RMConfig(epochs=6, lr=3e-3, batch_pairs=16), log=lambda *_: None)
    accuracy = pair_accuracy(model, tok, held_out)
    assert accuracy >= 0.65, accuracy  # 48 pairs: chance is 0.5 (and 0.65 is > 2 standard errors above it)
    harmful = [p for p in held_out if p.kind in ("harmful", "unhelpful")]
    assert pair_accuracy(model, tok, harmful) >= 0.8


def test_rm_cli_saves_a_loadable_model_and_rejects_bad_pairs(base, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "Hello!", "chosen": "Hi! How can I help?", "rejected": "No."}) + "\n")
    assert main(["rm", f"base={base}", f"data={pairs}", f"run_dir={tmp_path}/run", "epochs=1"]) == 0
    info = json.loads((tmp_path / "run" / "rm.json").read_text())
    assert info["pairs"] == 1 and 0 <= info["held_out_accuracy"] <= 1
    model, _ = load(tmp_path / "run" / "model", head="score")
    assert f"{info['held_out_accuracy']:.3f} after" in (tmp_path / "run" / "model" / "README.md").read_text()
    assert model.config.num_labels == 1
    pairs.write_text('{"prompt": "Hello!", "chosen": "Hi"}\n')
    capsys.readouterr()
    assert main(["rm", f"base={base}", f"data={pairs}", f"run_dir={tmp_path}/run2"]) == 2
    err = capsys.readouterr().err
    assert "pairs.jsonl:1" in err and "rejected" in err and err.count("\n") == 1
    assert not (tmp_path / "run2").exists()


def test_preference_reward_scores_general_prompts_only(base):
    from r1lab.grading.shape import summary_of
    from r1lab.rl.reward_model import preference_reward
    from r1lab.tasks.base import Problem

    model, tok = load(base, head="score")
    fn = preference_reward(model.eval(), tok)
    general = Problem("greeting [en]", "Hello!", "Hello! How can I help you today?", "general", "en")
    arithmetic = Problem("1+1", "Compute: 1+1", "2", "arithmetic", "en")
    text = "<think>\nhmm\n</think>\n<answer>Hello! How can I help you today?</answer>"
    out = fn([text, text], [general, arithmetic])
    with torch.no_grad():
        whole = scores(model, tok, ["Hello!"], [text])
        summary = scores(model, tok, ["Hello!"], [summary_of(text)])
    assert out[0] == pytest.approx(0.5 * float(torch.sigmoid(whole) + torch.sigmoid(summary)), rel=1e-5)
    assert out[1] == 0.0 and 0 < out[0] < 1
    assert summary_of(text) == "<think>\n</think>\n<answer>Hello! How can I help you today?</answer>"
    assert summary_of("no tags") == "no tags"
