"""Rejection sampling: graded samples through the filters into SFT data, and the CLI around it."""

import json
import re

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from r1lab.cli import main
from r1lab.data.coldstart import cold_start_completion
from r1lab.data.rejection import RejectionConfig, filter_candidates
from r1lab.engine.sampler import Generation
from r1lab.model.tokenizer import train_tokenizer
from r1lab.stages.sample import SampleConfig, candidates
from r1lab.tasks import make_task, register_task

pytestmark = pytest.mark.usefixtures("empty_registry")  # each test starts with no task registered


class Scripted:
    """A sampler that answers each prompt with the given texts."""

    def __init__(self, texts):
        self.texts = texts

    def generate(self, prompts, n, params):
        texts = [t for i in range(len(prompts)) for t in self.texts(i)]
        return Generation([[1]] * len(prompts), [[1]] * len(texts), texts, [False] * len(texts), n)


def test_candidates_are_graded_and_filtered_per_sample():
    import random

    task = register_task(make_task("arithmetic", digits=2, terms=2))
    problems = task.problems("train", 2, seed=0, langs=("zh",))
    rng = random.Random(0)
    good = [cold_start_completion(p, rng, slip_rate=0) for p in problems]
    mixed = [g.replace("位", "digit") for g in good]
    wrong = [re.sub(r"<answer>(\d+)</answer>", lambda m: f"<answer>{int(m[1]) + 1}</answer>", g) for g in good]
    sampler = Scripted(lambda i: [good[i], mixed[i], wrong[i], good[i]])
    cands = candidates(sampler, problems, SampleConfig(n=4), stop_ids=())
    assert [c.correct for c in cands] == [True, True, False, True] * 2
    kept, report = filter_candidates(cands, RejectionConfig())
    assert [c.completion for c in kept] == [good[0], good[1]]
    assert report.removed["incorrect"] == 2 and report.removed["mixed_language"] == 2 and report.duplicates == 2
    assert kept[0].meta["key"] == problems[0].key


def test_sample_cli_writes_sft_data_and_report(tmp_path):
    tok = train_tokenizer(["Compute: 12+34. Assistant: <think> 2+4=6 </think> <answer>46</answer>"] * 20, vocab_size=300)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=512,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    out = tmp_path / "s"
    args = ["sample", str(tmp_path / "m"), f"out={out}", "prompts=3", "n=2", "sampling.max_new_tokens=8"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["total"] == 6 and report["kept"] == 0  # a random model is never right
    assert report["removed"]["truncated"] + report["removed"]["incorrect"] + report["removed"]["bad_format"] == 6
    assert (out / "sft.jsonl").read_text() == ""
    assert main(args) == 2  # never overwrites sampled data
