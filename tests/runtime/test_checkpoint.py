"""Crash safety of every training command (runtime/checkpoint.py): a run killed with SIGKILL mid-training
and resumed ends with the same per-step metrics and bit-identical weights as an uninterrupted run
with the same seed, and a truncated or incomplete checkpoint is named and skipped for the previous
one. `r1lab zero`, `sft` and `rm` resume with --resume; pretraining resumes when the same config is
pretrained again."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import r1lab
from r1lab.data.preferences import preference_pairs
from r1lab.data.prompting import chat_template_for, chat_template_to_save
from r1lab.errors import UserError
from r1lab.model.architecture import build_model
from r1lab.model.base import PretrainConfig, base_dir, pretrain
from r1lab.model.tokenizer import train_tokenizer
from r1lab.runtime.checkpoint import save_model
from r1lab.runtime.config import load_config, save_config
from r1lab.stages.rm import RMConfig, run_rm
from r1lab.stages.sft import SFTConfig, run_sft
from r1lab.stages.zero import run_zero
from r1lab.tasks import apply_template
from tests.tiny_models import TINY_DEEPSEEK, tiny_policy, tiny_zero_config

# The subprocess pauses (without touching any state) once the given step's metrics line is flushed
# (every trainer logs through runtime.runlog.RunLog), e.g. after checkpoint-2 and before checkpoint-4,
# so the SIGKILL below always lands mid-run. argv = module, config class, entry point, config file,
# the step after whose line to pause.
CHILD = """
import importlib, sys, time
import r1lab.runtime.runlog as runlog
from r1lab.runtime.config import load_config

module, cls, entry, path, pause = sys.argv[1:]
log_step = runlog.RunLog.log
def log(self, record):
    log_step(self, record)
    if record["step"] == int(pause):
        time.sleep(600)
runlog.RunLog.log = log
mod = importlib.import_module(module)
getattr(mod, entry)(load_config(getattr(mod, cls), path), log=lambda *a: None)
"""


def kill_after_step(code: str, args: list[str], metrics: Path, step: int) -> None:
    """Run `code` in a child, wait until `metrics` holds step `step`'s line (where the child
    pauses), SIGKILL it."""
    src = str(Path(r1lab.__file__).parents[1])  # the r1lab under test, not whichever one is installed
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), src])})
    try:
        deadline = time.time() + 120
        while not (metrics.exists() and f'"step": {step},' in metrics.read_text()):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.time() < deadline, f"the child never reached step {step}"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


WALL_CLOCK = ("time_", "gen_tokens_per_s", "seconds")


def records(run):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(WALL_CLOCK)} for r in rows]


def weights(ckpt):
    return load_file(ckpt / "model.safetensors")


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_zero_sigkill_mid_training_then_resume_equals_an_uninterrupted_run(tmp_path):
    over = {"grpo.steps": 6, "save_every": 2, "eval.pass_k": 0,
            "rewards": "{accuracy: 1.0, format: 0.1, tests.tiny_models.length_reward: 1.0}"}
    ref_run, run = tmp_path / "run", tmp_path / "killed"
    run_zero(tiny_zero_config(tmp_path, **over), log=lambda *a: None)  # also creates the pretrained base

    cfg = tiny_zero_config(tmp_path, run_dir=str(run), **over)
    save_config(cfg, tmp_path / "killed.yaml")
    kill_after_step(CHILD, ["r1lab.stages.zero", "ZeroConfig", "run_zero", str(tmp_path / "killed.yaml"), "3"],
                    run / "metrics.jsonl", 3)
    assert (run / "latest").read_text().strip() == "checkpoint-2" and not (run / "checkpoint-4").exists()
    assert [r["step"] for r in records(run)] == [1, 2, 3]  # step 3 will be redone
    with (run / "metrics.jsonl").open("a") as f:  # and a line torn by a crash mid-write is dropped
        f.write('{"step": 4, "rew')

    run_zero(tiny_zero_config(tmp_path, run_dir=str(run), **over), resume=True, log=lambda *a: None)
    assert records(run) == records(ref_run)
    assert [r["step"] for r in records(run)] == [1, 2, 3, 4, 5, 6]
    assert_same_weights(run / "checkpoint-6", ref_run / "checkpoint-6")
    state = torch.load(run / "checkpoint-6" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 6 and state["optimizer"]["state"] and {"python", "torch"} <= state["rng"].keys()
    w2, w6 = weights(ref_run / "checkpoint-2"), weights(ref_run / "checkpoint-6")
    assert any(not torch.equal(w2[k], w6[k]) for k in w2)  # the run really trained

    # A truncated checkpoint (weights cut in half) is named and skipped for the previous one;
    # resuming from checkpoint-4 redoes steps 5-6 and again lands on the same weights.
    st = run / "checkpoint-6" / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    lines = []
    run_zero(tiny_zero_config(tmp_path, run_dir=str(run), **over), resume=True, log=lines.append)
    unusable = [x for x in lines if "unusable" in x]
    assert len(unusable) == 1 and "checkpoint-6" in unusable[0], lines
    assert any("resume: from" in x and "checkpoint-4 at step 4" in x for x in lines), lines
    assert records(run) == records(ref_run)
    assert_same_weights(run / "checkpoint-6", ref_run / "checkpoint-6")

    # A truncated trainer_state.pt and a checkpoint missing a file: both skipped; none left -> one-line error.
    for n in (2, 4, 6):
        ts = run / f"checkpoint-{n}" / "trainer_state.pt"
        ts.write_bytes(ts.read_bytes()[:100])
    (run / "checkpoint-4" / "config.json").unlink()
    lines = []
    with pytest.raises(UserError, match="no loadable checkpoint"):
        run_zero(tiny_zero_config(tmp_path, run_dir=str(run), **over), resume=True, log=lines.append)
    assert [x.split()[2] for x in lines if "unusable" in x] == [str(run / f"checkpoint-{n}") for n in (6, 4, 2)]


# --- sft, rm, pretrain ------------------------------------------------------------------------


def run_child_and_kill(tmp_path, cfg, entry: str, metrics: Path, step: int) -> None:
    module = type(cfg).__module__
    save_config(cfg, tmp_path / "killed.yaml")
    kill_after_step(CHILD, [module, type(cfg).__name__, entry, str(tmp_path / "killed.yaml"), str(step)],
                    metrics, step)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random-weight tiny DeepSeek-V3 (routers, expert biases) whose tokenizer knows the data."""
    pairs = preference_pairs("train")[:12]
    tok = train_tokenizer([apply_template(p.prompt) + p.chosen + p.rejected for p in pairs] * 3, vocab_size=400)
    d = tmp_path_factory.mktemp("base")
    build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, seed=0).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_sft_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path, base):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{a}?", "completion": f"<answer>{2 * a}</answer>"}) + "\n"
                            for a in range(12)))
    # 6 steps an epoch, 2 epochs: checkpoints 4, 6 (epoch end), 8, 12; killed after step 9, so the
    # resume starts mid-way through epoch 2, whose order depends on epoch 1's shuffle
    cfg = lambda run: SFTConfig(base=str(base), data=str(data), run_dir=str(run), epochs=2, lr=1e-2,  # noqa: E731
                                template="plain", pack=False, rows_per_step=2, micro_rows=2, warmup_steps=2,
                                save_every=4, seq_len=64)
    ref_run, run = tmp_path / "ref", tmp_path / "killed"
    ref_out = run_sft(cfg(ref_run), log=lambda *a: None)
    run_child_and_kill(tmp_path, cfg(run), "run_sft", run / "metrics.jsonl", 9)
    assert (run / "latest").read_text() == "checkpoint-8" and not (run / "final").exists()
    with pytest.raises(UserError, match="already holds a run"):  # a killed run is not restarted over itself
        run_sft(cfg(run), log=lambda *a: None)

    lines = []
    out = run_sft(cfg(run), resume=True, log=lines.append)
    assert any("resume: from" in x and "checkpoint-8 at step 8" in x for x in lines), lines
    assert records(run) == records(ref_run) and len(records(run)) == 12
    assert out.name == ref_out.name == "checkpoint-12" and (run / "final").read_text() == "checkpoint-12"
    assert_same_weights(out, ref_out)
    w4 = weights(ref_run / "checkpoint-4")
    assert any(not torch.equal(w4[k], weights(ref_out)[k]) for k in w4)  # the run really trained
    # a finished run resumes to itself, rewriting nothing
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert run_sft(cfg(run), resume=True, log=lambda *a: None) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_rm_sigkill_then_resume_past_a_truncated_checkpoint(tmp_path, base):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                             for p in preference_pairs("train")[:12]))
    # 3 batches an epoch, 3 epochs: checkpoints 2, 4, 6, 8, 9; killed after batch 5
    cfg = lambda run: RMConfig(base=str(base), data=str(pairs), run_dir=str(run), epochs=3, batch_pairs=4,  # noqa: E731
                               lr=1e-3, save_every=2)
    ref_run, run = tmp_path / "ref", tmp_path / "killed"
    run_rm(cfg(ref_run), log=lambda *a: None)
    run_child_and_kill(tmp_path, cfg(run), "run_rm", run / "metrics.jsonl", 5)
    assert (run / "latest").read_text() == "checkpoint-4" and not (run / "model").exists()

    st = run / "checkpoint-4" / "model.safetensors"  # the newest checkpoint, truncated: skipped, named
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    lines = []
    run_rm(cfg(run), resume=True, log=lines.append)
    unusable = [x for x in lines if "unusable" in x]
    assert len(unusable) == 1 and "checkpoint-4" in unusable[0], lines
    assert any("resume: from" in x and "checkpoint-2 at step 2" in x for x in lines), lines
    assert records(run) == records(ref_run) and len(records(run)) == 9
    assert_same_weights(run / "model", ref_run / "model")
    strip = lambda info: {**info, "history": [{k: v for k, v in r.items() if k != "seconds"} for r in info["history"]]}  # noqa: E731
    info, ref_info = (json.loads((d / "rm.json").read_text()) for d in (run, ref_run))
    assert strip(info) == strip(ref_info) and len(info["history"]) == 3


def test_pretrain_killed_mid_run_continues_when_run_again(tmp_path):
    cfg = lambda cache: load_config(PretrainConfig, None, [  # noqa: E731
        f"cache_dir={cache}", "steps=8", "save_every=3", "corpus.n_docs=40", "corpus.signs.n_docs=20", "batch_size=4", "seq_len=128",
        "vocab_size=300", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.dense_intermediate=64", "model.expert_intermediate=32", "model.kv_lora_rank=16"])
    ref = pretrain(cfg(tmp_path / "ref"), log=lambda *a: None)
    killed = cfg(tmp_path / "killed")
    out = base_dir(killed)
    partial = out.with_name(out.name + ".partial")
    run_child_and_kill(tmp_path, killed, "pretrain", partial / "metrics.jsonl", 5)  # checkpoints 3, 6
    assert (partial / "latest").read_text() == "checkpoint-3" and not out.exists()

    lines = []
    assert pretrain(killed, log=lines.append) == out
    assert any("resume: from" in x and "checkpoint-3 at step 3" in x for x in lines), lines
    assert not partial.exists()  # a finished pretraining's checkpoints are gone
    assert records(out) == records(ref) and len(records(out)) == 8
    assert_same_weights(out, ref)
    info, ref_info = (json.loads((d / "pretrain.json").read_text()) for d in (out, ref))
    for d in (info, ref_info):
        d.pop("seconds"), d["config"].pop("cache_dir")
    assert info == ref_info
    card = (out / "README.md").read_text()  # the base's model card
    assert "# r1lab pretrain" in card and f"{info['final_loss']:.4f}" in card and "after 8 steps" in card


def test_every_model_directory_carries_a_chat_template_that_transformers_chats_with(tmp_path):
    """A tokenizer without a chat template, or with r1lab's of another format, is saved with the one
    of its training format (here r1zero), the tokenizer in memory unchanged; a chat model's own
    template is kept. transformers' own chat
    path (AutoTokenizer, AutoModelForCausalLM, apply_chat_template, generate) then works on the
    checkpoint and prompts it with the tokens r1lab trains on."""
    model, tok = tiny_policy()
    r1zero = tok.chat_template
    for before in (None, chat_template_for("plain", tok)):  # a checkpoint from before chat templates, or a user's
        tok.chat_template = before                          # base model; r1lab's tokenizer after plain SFT
        save_model(model, tok, tmp_path / "m", chat_template=chat_template_to_save("r1zero", tok))
        assert tok.chat_template == before and (tmp_path / "m" / "chat_template.jinja").read_text() == r1zero
    tok.chat_template = "{{ messages[-1]['content'] }}"
    save_model(model, tok, tmp_path / "own", chat_template=chat_template_to_save("r1zero", tok))
    assert AutoTokenizer.from_pretrained(tmp_path / "own").chat_template == tok.chat_template

    hf_tok, hf_model = AutoTokenizer.from_pretrained(tmp_path / "m"), AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    question = "Compute: 12+7"
    inputs = hf_tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    assert inputs["input_ids"][0].tolist() == hf_tok(apply_template(question))["input_ids"]
    out = hf_model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                            pad_token_id=hf_tok.pad_token_id)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4


def test_transformers_serve_and_the_openai_client_chat_with_a_checkpoint(tmp_path):
    """`transformers serve` (its OpenAI-compatible API) renders a conversation with an r1lab
    checkpoint's chat template: the prompt it counts is the R1-Zero prompt's tokens; and
    `transformers chat`, its terminal client, gets a reply from it."""
    openai = pytest.importorskip("openai")
    pytest.importorskip("fastapi")
    _, tok = tiny_policy()  # the R1-Zero prompt is ~380 of its tokens: a model that takes 1024
    model = build_model(dataclasses.replace(TINY_DEEPSEEK, max_positions=1024), len(tok), tok.pad_token_id,
                        tok.bos_token_id, tok.eos_token_id)
    model_dir = save_model(model, tok, tmp_path / "m")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve",
                               str(model_dir), "--port", str(port), "--host", "127.0.0.1", "--device", "cpu",
                               "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=30)
        deadline = time.time() + 90
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                reply = client.chat.completions.create(model=str(model_dir), max_tokens=4, temperature=0.0,
                                                       messages=[{"role": "user", "content": "Compute: 12+7"}])
                break
            except openai.APIConnectionError:
                assert time.time() < deadline, "transformers serve never answered"
                time.sleep(0.5)
        assert reply.usage.prompt_tokens == len(tok(apply_template("Compute: 12+7"))["input_ids"])
        assert reply.choices[0].message.role == "assistant" and reply.usage.completion_tokens >= 1
        # `transformers chat`, the terminal client of `transformers serve`, on the same checkpoint
        chat = subprocess.run([sys.executable, "-c", "from transformers.cli.transformers import main; main()", "chat",
                               str(model_dir), f"http://127.0.0.1:{port}", "max_new_tokens=4", "do_sample=False"],
                              input="Compute: 12+7\nN\n!exit\n", capture_output=True, text=True, timeout=120)
        assert chat.returncode == 0, chat.stderr[-2000:]  # (N: no, do not continue past the 4 tokens)
        assert "Generation stopped after reaching the token limit" in chat.stdout, chat.stdout[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stderr.close()
