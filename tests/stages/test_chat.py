"""`r1lab chat` (stages/chat.py) driven through its input: a scripted model checks what the chat
renders, keeps and shows; a real tiny checkpoint checks the command end to end."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import r1lab
from r1lab.data.prompting import chat_template_to_save
from r1lab.engine.sampler import HFSampler
from r1lab.runtime.checkpoint import save_model
from r1lab.stages.chat import DIM, RESET, ChatConfig, run_chat
from r1lab.tasks.prompts import apply_template
from tests.tiny_models import tiny_policy

REPLIES = ["<think>\n12+34=46\n</think>\n<answer>46</answer>", "<think>\nagain\nstill\n</think>\n<answer>7</answer>"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model, tok = tiny_policy()
    out = tmp_path_factory.mktemp("chat") / "model"
    return save_model(model, tok, out, chat_template=chat_template_to_save("r1zero", tok))


class TTY(io.StringIO):
    def isatty(self):
        return True


def chat(model_dir, monkeypatch, lines: list[str], replies=REPLIES, tty=False, interrupt_at=None, **cfg):
    """Run the chat on `lines` with a model that writes `replies` in turn (a KeyboardInterrupt
    after `interrupt_at` tokens of the first); (what it printed, [(prompt, params)] it was asked)."""
    asked = []

    def stream(self, prompt, params):
        asked.append((prompt, params))
        ids = self.tokenizer(replies[(len(asked) - 1) % len(replies)], add_special_tokens=False)["input_ids"]
        for i, token in enumerate(ids + [self.tokenizer.eos_token_id]):
            if i == interrupt_at and len(asked) == 1:
                raise KeyboardInterrupt
            yield token

    monkeypatch.setattr(HFSampler, "stream", stream)
    out = TTY() if tty else io.StringIO()
    run_chat(ChatConfig(str(model_dir), device="cpu", **cfg), io.StringIO("".join(f"{x}\n" for x in lines)), out)
    return out.getvalue(), asked


def test_replies_show_thinking_then_answer_and_history_keeps_answers_only(model_dir, monkeypatch):
    out, asked = chat(model_dir, monkeypatch, ["Compute: 12+34", "and again?"])
    bos = "<|bos|>"
    assert asked[0][0] == bos + apply_template("Compute: 12+34")  # the prompt training used
    assert asked[1][0] == bos + apply_template("Compute: 12+34") + "<answer>46</answer> User: and again?. Assistant:"
    assert "12+34=46\n" not in asked[1][0]  # the earlier thinking is dropped
    assert ">>> | 12+34=46\n46\n>>> | again\n| still\n7\n>>> \n" in out  # thinking prefixed, answer plain, no tags
    params = asked[0][1]
    assert (params.temperature, params.top_p, params.max_new_tokens) == (0.6, 0.95, 1024)  # the paper's
    assert asked[1][1].seed == asked[0][1].seed + 1 and params.stop_token_ids  # `</answer>` stops an R1-Zero model


def test_reset_think_off_and_sampling_commands(model_dir, monkeypatch):
    lines = ["Compute: 1+2", "/reset", "/think off", "/temperature -1", "/top_p 2", "/temperature x", "/bogus",
             "/temperature 0", "/top_p 0.5", "Compute: 3+4", "/think on", "/quit", "never read"]
    out, asked = chat(model_dir, monkeypatch, lines)
    assert asked[1][0] == "<|bos|>" + apply_template("Compute: 3+4")  # /reset forgot the first exchange
    assert (asked[1][1].temperature, asked[1][1].top_p) == (0.0, 0.5)  # the bad values changed nothing
    shown = out.splitlines()
    for error in ("error: temperature: expected >= 0, got -1.0", "error: top_p: expected 0 < top_p <= 1, got 2.0",
                  "error: temperature: expected a number, got 'x'"):
        assert f">>> {error}" in shown  # one line each, and the chat goes on
    assert any(line.startswith(">>> error: unknown command '/bogus'") for line in shown)
    assert ">>> (thinking hidden)" in shown and ">>> again" not in out and ">>> 7" in shown  # /think off: answer only
    assert len(asked) == 2 and out.endswith(">>> (thinking shown)\n>>> ")  # /quit leaves at once


def test_a_model_without_chat_template_gets_r1lab_s_and_a_thought_without_answer_is_named(model_dir, monkeypatch,
                                                                                            tmp_path):
    old = tmp_path / "old"  # a checkpoint from before chat templates
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (old / name).parent.mkdir(exist_ok=True)
        (old / name).write_bytes((model_dir / name).read_bytes())
    out, asked = chat(old, monkeypatch, ["Compute: 9+9"], replies=["<think>\n9+9=1"])
    assert "it has no chat template: r1lab's R1-Zero one" in out.splitlines()[0]
    assert asked[0][0] == "<|bos|>" + apply_template("Compute: 9+9")
    assert ">>> | 9+9=1\n(no answer: the reply ended inside its thinking)\n" in out


R1_STYLE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
            "{% else %}<｜Assistant｜>{{ m['content'].split('</think>')[-1] }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}")  # R1's, cut down: it opens the thinking


def test_a_model_whose_template_opens_the_thinking(monkeypatch, tmp_path):
    """An R1 distill's template ends with `<think>`: the reply is thinking until `</think>`, and
    a chat template that is not r1lab's gets no `</answer>` stop."""
    model, tok = tiny_policy()
    tok.chat_template = R1_STYLE
    save_model(model, tok, tmp_path / "r1")
    out, asked = chat(tmp_path / "r1", monkeypatch, ["What is 2+2?", "And 3+3?"],
                      replies=["Let me see: 2+2=4.\n</think>\n\nIt is 4.", "6\n</think>\n\n6."])
    assert ">>> | Let me see: 2+2=4.\nIt is 4.\n>>> | 6\n6.\n" in out
    assert asked[1][0] == ("<|bos|><｜User｜>What is 2+2?<｜Assistant｜>\n\nIt is 4.<｜end▁of▁sentence｜>"
                           "<｜User｜>And 3+3?<｜Assistant｜><think>\n")
    assert asked[0][1].stop_token_ids == ()


def test_a_terminal_gets_the_thinking_dimmed(model_dir, monkeypatch):
    out, _ = chat(model_dir, monkeypatch, ["Compute: 12+34"], tty=True)
    assert f">>> {DIM}12+34=46\n{RESET}46\n" in out


def test_ctrl_c_stops_a_reply_and_leaves_the_exchange_out(model_dir, monkeypatch):
    out, asked = chat(model_dir, monkeypatch, ["Compute: 12+34", "Compute: 5+6"], interrupt_at=4)
    assert "(stopped; this exchange is not kept)" in out
    assert asked[1][0] == "<|bos|>" + apply_template("Compute: 5+6")  # a new conversation, the chat went on


def test_r1lab_chat_end_to_end_on_a_tiny_checkpoint(model_dir):
    """The real command, on random weights: it loads, streams a reply, and leaves at EOF; a bad
    flag is one line and exit status 2."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(r1lab.__file__).parents[1])])}
    run = subprocess.run([sys.executable, "-m", "r1lab", "chat", str(model_dir), "--max-new-tokens", "6",
                          "--device", "cpu"], input="Compute: 1+2\n/temperature 0\nCompute: 1+2\n", text=True,
                         capture_output=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"r1lab chat: {model_dir} (temperature 0.6") and run.stdout.count(">>> ") == 4
    bad = subprocess.run([sys.executable, "-m", "r1lab", "chat", str(model_dir), "--top-p", "0"], text=True,
                         capture_output=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr == "r1lab: error: --top-p: expected 0 < top_p <= 1, got 0.0\n"
