"""What the `r1lab serve` tests share: a tiny model that reasons on cue, and a real server process.

`save_tiny_reasoner` trains r1lab's DeepSeek-V3 at its smallest, for a few seconds, to answer one
question, rendered through its R1-Zero chat template, with a fixed thinking and answer: greedy
decoding then gives `<think>` ... `</think>` `<answer>42</answer>` token for token, so the split
into `reasoning_content` and `content` is checked against known text. `served` starts
`r1lab serve` as a user would (a subprocess on a free port) and stops it with SIGTERM.
"""

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from r1lab.data.prompting import chat_template_for
from r1lab.model.architecture import ModelConfig, build_model
from r1lab.model.tokenizer import train_tokenizer
from r1lab.tasks.prompts import apply_template

QUESTION = "What is 40 + 2?"
THINKING, ANSWER = "add forty and two: 42", "42"
REPLY = f"<think>\n{THINKING}\n</think>\n<answer>{ANSWER}</answer>"
ROOT = Path(__file__).resolve().parents[2]


def save_tiny_reasoner(out: Path) -> Path:
    tok = train_tokenizer([apply_template(QUESTION) + " " + REPLY] * 20, vocab_size=400)
    tok.chat_template = chat_template_for("r1zero", tok)
    config = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, dense_intermediate=64, routed_experts=4,
                         experts_per_token=2, expert_intermediate=32, kv_lora_rank=16, qk_rope_dim=8, qk_nope_dim=8,
                         v_head_dim=8, max_positions=2048)
    model = build_model(config, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, seed=0)
    prompt = tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tok(" " + REPLY, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + r_ids])
    labels = torch.tensor([[-100] * len(p_ids) + r_ids])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(300):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.01:
            break
    model.eval()
    with torch.no_grad():
        out_ids = model.generate(torch.tensor([p_ids]), attention_mask=torch.ones(1, len(p_ids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=len(r_ids), pad_token_id=tok.pad_token_id)
    assert out_ids[0, len(p_ids):].tolist() == r_ids, "the tiny reasoner did not learn its reply"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@contextmanager
def served(model_dir: Path, *args: str, timeout: float = 120):
    """`r1lab serve model_dir --port 0 *args` running: yields (process, base URL); SIGTERM at the end."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "r1lab", "serve", str(model_dir), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    url, seen, deadline = None, [], time.time() + timeout
    while url is None and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        url = m.group(1) if m else None
    if url is None:
        proc.kill()
        raise AssertionError("r1lab serve did not start:\n" + "".join(seen) + (proc.stdout.read() or ""))
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.stdout.close()
