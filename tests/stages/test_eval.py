"""`r1lab eval` end to end on tiny random-weight models, closed-form metrics, and resumption."""

import json
import shutil
from dataclasses import replace
from math import comb
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from r1lab.cli import main
from r1lab.data.prompting import MATH_INSTRUCTION, render_prompt, resolve_template
from r1lab.engine.params import SamplingParams
from r1lab.engine.sampler import Generation, HFSampler, model_stop_ids
from r1lab.errors import UserError
from r1lab.eval.benchmarks import DataSpec
from r1lab.model.architecture import build_model
from r1lab.model.tokenizer import train_tokenizer
from r1lab.stages.eval import EvalRunConfig, chunk_bounds, finished_samples, format_table, run_eval
from r1lab.tasks import R1_ZERO_TEMPLATE
from tests.tiny_models import TINY_DEEPSEEK

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GSM8K, MATH500 = DATA / "gsm8k_test.jsonl", DATA / "math500.jsonl"
needs_data = pytest.mark.skipif(not MATH500.exists(), reason="../shared/data not present")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TINY_DEEPSEEK = replace(TINY_DEEPSEEK, max_positions=2048)  # prompts longer than the default's


pytestmark = pytest.mark.usefixtures("empty_registry")  # each test starts with no task registered


def tiny_tokenizer():
    texts = ["Janet's ducks lay 16 eggs per day. Convert the point $(0,3)$ to polar coordinates \\frac{\\pi}{2}."] * 10
    return train_tokenizer(texts, vocab_size=300)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two saved models: a Qwen2 whose tokenizer has a chat template, and r1lab's tiny DeepSeek-V3 without."""
    root = tmp_path_factory.mktemp("models")
    tok = tiny_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=2048,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(root / "qwen")
    tok.save_pretrained(root / "qwen")
    tok = tiny_tokenizer()
    deepseek = build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    deepseek.save_pretrained(root / "ds")
    tok.save_pretrained(root / "ds")
    return {"qwen": root / "qwen", "ds": root / "ds"}


@pytest.fixture
def generate_calls(monkeypatch):
    """Counts HFSampler.generate calls (each one is one chunk of problems)."""
    calls = []
    real = HFSampler.generate

    def counting(self, prompts, n, params):
        calls.append(params.seed)
        return real(self, prompts, n, params)

    monkeypatch.setattr(HFSampler, "generate", counting)
    return calls


def eval_args(model, data, out, *extra):
    return ["eval", str(model), "--data", str(data), "--limit", "3", "--k", "2", "--max-new-tokens", "8",
            "--out", str(out), *extra]


def read_samples(out):
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def without(d: dict, *keys):
    return {k: v for k, v in d.items() if k not in keys}


# --- end to end ----------------------------------------------------------------------------------


@needs_data
def test_eval_gsm8k_on_deepseek_then_rerun_does_not_regenerate(models, tmp_path, generate_calls, capsys):
    out = tmp_path / "out"
    assert main(eval_args(models["ds"], GSM8K, out, "--batch-rows", "2")) == 0  # 1 problem per chunk
    results = json.loads((out / "results.json").read_text())
    for key in ("pass@1", "pass@k", "cons@k", "mean_length", "truncation_rate", "tokens_per_s", "verifier_timeouts"):
        assert key in results, key
    assert set(results["pass@k"]) == {"1", "2"} and results["template"] == "r1zero"
    assert results["problems"] == 3 and results["k"] == 2 and results["mean_length"] <= 8
    samples = read_samples(out)
    assert len(samples) == 6 and len(generate_calls) == 3
    assert [(s["id"], s["sample"]) for s in samples] == [(f"gsm8k-test-000{i}", j) for i in range(3) for j in range(2)]
    assert samples[0]["prompt"] == R1_ZERO_TEMPLATE.format(prompt=json.loads(GSM8K.open().readline())["problem"])
    assert samples[0]["gold"] == "18" and all(0 < s["tokens"] <= 8 for s in samples)
    table = capsys.readouterr().out
    assert "gsm8k_test" in table and "pass@2" in table and "cons@2" in table

    before = (out / "samples.jsonl").read_bytes(), (out / "results.json").read_bytes()
    assert main(eval_args(models["ds"], GSM8K, out, "--batch-rows", "2")) == 0
    assert len(generate_calls) == 3  # nothing regenerated
    assert ((out / "samples.jsonl").read_bytes(), (out / "results.json").read_bytes()) == before


@needs_data
def test_eval_math500_on_qwen_chat_has_breakdowns(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out is runs/eval-<data>-<time>
    args = [a for a in eval_args(models["qwen"], MATH500, "x") if a not in ("--out", "x")]
    assert main(args) == 0
    (out,) = (tmp_path / "runs").glob("eval-math500-*")
    results = json.loads((out / "results.json").read_text())
    assert results["template"] == "chat" and results["data"]["breakdowns"] == ["subject", "level"]
    # the first three MATH-500 problems: Precalculus 2, Intermediate Algebra 5, Algebra 3
    assert set(results["by_subject"]) == {"Precalculus", "Intermediate Algebra", "Algebra"}
    assert list(results["by_level"]) == ["2", "3", "5"]
    for by in (results["by_subject"], results["by_level"]):
        assert sum(m["problems"] for m in by.values()) == 3
        assert all({"pass@1", "pass@k", "cons@k", "mean_length", "truncation_rate"} <= set(m) for m in by.values())
    sample = read_samples(out)[0]
    assert sample["prompt"].startswith("<|user|>Convert the point")
    assert sample["prompt"].endswith(MATH_INSTRUCTION + "\n<|assistant|>")
    assert sample["meta"] == {"subject": "Precalculus", "level": "2"}


@needs_data
def test_interrupted_eval_resumes_to_the_samples_of_an_uninterrupted_one(models, tmp_path, generate_calls):
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = ["--batch-rows", "2", "--seed", "3"]
    assert main(eval_args(models["ds"], GSM8K, full, *args)) == 0
    lines = (full / "samples.jsonl").read_text().splitlines(keepends=True)
    cut.mkdir()
    shutil.copy(full / "eval_config.yaml", cut / "eval_config.yaml")
    (cut / "samples.jsonl").write_text("".join(lines[:2]) + lines[2][:25])  # chunk 0 + a partial line
    calls_before = len(generate_calls)
    assert main(eval_args(models["ds"], GSM8K, cut, *args)) == 0
    assert generate_calls[calls_before:] == [3 * 1_000_003 + 1, 3 * 1_000_003 + 2]  # chunks 1 and 2 only
    strip = lambda rows: [without(s, "chunk_seconds") for s in rows]  # noqa: E731
    assert strip(read_samples(cut)) == strip(read_samples(full))
    timing = ("seconds", "tokens_per_s")
    a, b = (json.loads((d / "results.json").read_text()) for d in (full, cut))
    assert without(a, *timing) == without(b, *timing)


@needs_data
def test_resume_refuses_other_settings(models, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(eval_args(models["ds"], GSM8K, out)) == 0
    before = (out / "samples.jsonl").read_bytes()
    capsys.readouterr()
    assert main(eval_args(models["ds"], GSM8K, out, "--temperature", "1.0")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "temperature: 0.6 -> 1.0" in err and str(out) in err
    assert (out / "samples.jsonl").read_bytes() == before


# --- metrics through the whole pipeline, with chosen completions ---------------------------------


class ScriptedSampler:
    """A Sampler whose completions are chosen by the test: texts[question] per problem."""

    def __init__(self, texts: dict[str, list[str]], tokens: dict[str, list[int]]):
        self.texts, self.tokens, self.calls = texts, tokens, []

    def generate(self, prompts, n, params):
        self.calls.append((len(prompts), params.seed))
        keys = [p.split("\n")[0] for p in prompts]  # the plain template: question, then the instruction
        texts = [t for key in keys for t in self.texts[key][:n]]
        ids = [[7] * m for key in keys for m in self.tokens[key][:n]]
        return Generation([[1]] * len(prompts), ids, texts, [len(c) >= 5 for c in ids], n, seconds=2.0)


def test_metrics_match_closed_form_on_scripted_completions(models, tmp_path):
    rows = [
        {"id": "A", "problem": "qa", "answer": "0.5", "subject": "x", "level": 1},
        {"id": "B", "problem": "qb", "answer": "0.5", "subject": "x", "level": 10},
        {"id": "C", "problem": "qc", "answer": "2", "subject": "y", "level": 2},
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = {
        # c = 1 of 4; votes 3 / 0.5 / 7 tie, the first class (3) wins: wrong
        "qa": ["\\boxed{3}", "\\boxed{0.5}", "the answer is 7", "no idea"],
        # c = 3; 1/2, \frac{1}{2} and 0.5 are one class of 3 votes: right (by string, 7 would win)
        "qb": ["\\boxed{7}", "\\boxed{1/2}", "\\boxed{\\frac{1}{2}}", "<answer>0.5</answer>"],
        # c = 1; 5, 5.0 and 10/2 out-vote the correct 2: wrong (by string, 2 would win)
        "qc": ["\\boxed{2}", "\\boxed{5}", "\\boxed{5.0}", "#### 10/2"],
    }
    tokens = {"qa": [1, 2, 3, 6], "qb": [4, 4, 4, 4], "qc": [5, 1, 1, 1]}
    sampler = ScriptedSampler(texts, tokens)
    cfg = EvalRunConfig(model=str(models["qwen"]), data=DataSpec(str(data)), k=4, template="plain",
                        batch_rows=8, out=str(tmp_path / "out"))
    r = run_eval(cfg, log=lambda *a: None, sampler=sampler)

    assert sampler.calls == [(2, 0), (1, 1)]  # chunks of 8 // 4 = 2 problems, seeded by chunk
    pass_k = lambda c, k: 1 - comb(4 - c, k) / comb(4, k)  # noqa: E731
    assert r["pass@1"] == pytest.approx((1 + 3 + 1) / 12)
    for k in (2, 3, 4):
        assert r["pass@k"][str(k)] == pytest.approx((pass_k(1, k) + pass_k(3, k) + pass_k(1, k)) / 3), k
    assert r["pass@k"]["2"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert r["cons@k"] == pytest.approx(1 / 3)
    assert r["mean_length"] == pytest.approx(36 / 12) and r["truncation_rate"] == pytest.approx(2 / 12)
    assert r["tokens"] == 36 and r["seconds"] == 4.0 and r["tokens_per_s"] == pytest.approx(9.0)
    assert r["by_subject"]["x"]["pass@1"] == pytest.approx(4 / 8) and r["by_subject"]["x"]["cons@k"] == 0.5
    assert r["by_subject"]["y"]["pass@1"] == pytest.approx(1 / 4) and r["by_subject"]["y"]["cons@k"] == 0.0
    assert list(r["by_level"]) == ["1", "2", "10"] and r["by_level"]["10"]["pass@1"] == 0.75
    samples = read_samples(tmp_path / "out")
    assert [s["extracted"] for s in samples[:4]] == ["3", "0.5", "7", None]
    assert [s["correct"] for s in samples[4:12]] == [False, True, True, True, True, False, False, False]


# --- the pieces ----------------------------------------------------------------------------------


def test_prompts_per_template():
    tok = tiny_tokenizer()
    assert resolve_template("auto", tok, "m's") == "r1zero"  # its chat template is r1lab's R1-Zero one
    tok.chat_template = None
    assert resolve_template("auto", tok, "m's") == "r1zero"
    with pytest.raises(UserError, match="no chat template"):
        resolve_template("chat", tok, "m's")
    assert render_prompt("What is 1+1?", "plain", tok, MATH_INSTRUCTION) == "What is 1+1?\n" + MATH_INSTRUCTION
    assert render_prompt("What is 1+1?", "r1zero", tok, MATH_INSTRUCTION).endswith("User: What is 1+1?. Assistant:")
    tok.chat_template = CHAT_TEMPLATE
    assert resolve_template("auto", tok, "m's") == "chat"
    assert render_prompt("Q", "chat", tok, MATH_INSTRUCTION) == f"<|user|>Q\n{MATH_INSTRUCTION}\n<|assistant|>"
    assert MATH_INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."


def test_chunk_bounds():
    assert chunk_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunk_bounds(2, 4) == [(0, 2)]


def sample_line(problem, sample, chunk, id_=None):
    return json.dumps({"problem": problem, "id": id_ or f"p{problem}", "sample": sample, "chunk": chunk, "prompt": "",
                       "completion": "", "extracted": None, "correct": False, "gold": "1", "tokens": 1,
                       "truncated": False, "meta": {}, "chunk_seconds": 1.0, "verifier_timeouts": 0}) + "\n"


def test_finished_samples_keeps_whole_chunks_only(tmp_path):
    path = tmp_path / "samples.jsonl"
    chunks, ids = [(0, 1), (1, 2), (2, 3)], ["p0", "p1", "p2"]
    whole = sample_line(0, 0, 0) + sample_line(0, 1, 0)
    path.write_text(whole + sample_line(1, 0, 1) + sample_line(1, 1, 1)[:-10])  # chunk 1 cut mid-line
    samples, keep = finished_samples(path, chunks, 2, ids)
    assert [(s.problem, s.sample) for s in samples] == [(0, 0), (0, 1)] and keep == len(whole.encode())
    path.write_text(whole + sample_line(1, 0, 1))  # chunk 1 has 1 of its 2 samples
    assert finished_samples(path, chunks, 2, ids)[1] == len(whole.encode())
    path.write_text(whole + "{not json}\n" + sample_line(1, 0, 1) + sample_line(1, 1, 1))
    assert finished_samples(path, chunks, 2, ids)[1] == len(whole.encode())
    assert finished_samples(tmp_path / "none.jsonl", chunks, 2, ids) == ([], 0)
    path.write_text(sample_line(0, 0, 0, id_="other") + sample_line(0, 1, 0, id_="other"))
    with pytest.raises(UserError, match="does not match the data"):
        finished_samples(path, chunks, 2, ids)


def test_table_has_one_aligned_row_per_breakdown_value():
    m = {"problems": 2, "k": 4, "pass@1": 0.5, "pass@k": {"4": 0.75}, "cons@k": 0.5, "mean_length": 10.0,
         "truncation_rate": 0.25}
    results = {**m, "data": {"name": "bench"}, "by_level": {"1": {**m, "problems": 1}, "12": {**m, "problems": 1}},
               "tokens": 80, "seconds": 2.0, "tokens_per_s": 40.0, "verifier_timeouts": 0}
    lines = format_table(results, ["level"]).splitlines()
    assert lines[0].split() == ["problems", "pass@1", "pass@4", "cons@4", "length", "truncated"]
    assert lines[1].split() == ["bench", "2", "0.500", "0.750", "0.500", "10.0", "25.0%"]
    assert [line.split()[:2] for line in lines[2:4]] == [["level", "1"], ["level", "12"]]
    assert len({len(line) for line in lines[:4]}) == 1  # aligned
    assert "40.0 tokens/s" in lines[-1]


def test_sampler_stops_at_generation_config_eos_and_skips_bos_for_chat_prompts(models):
    tok = AutoTokenizer.from_pretrained(models["ds"])
    model = Qwen2ForCausalLM.from_pretrained(models["qwen"])
    model.generation_config.eos_token_id = [tok.eos_token_id, 42]
    assert model_stop_ids(model, tok) == {tok.eos_token_id, 42}
    params = SamplingParams(max_new_tokens=3, seed=0)
    assert HFSampler(model, tok).generate(["ab"], 1, params).prompt_ids[0][0] == tok.bos_token_id
    chat_sampler = HFSampler(model, tok, add_special_tokens=False)  # a chat template writes its own BOS
    assert chat_sampler.generate(["ab"], 1, params).prompt_ids[0][0] != tok.bos_token_id
