"""LoRA: GRPO trains only the adapters against the base with adapters off (no second copy), the
merged export is a plain HF model with the adapted model's outputs, LoRA SFT learns, and a bad
LoRA setting is one line and exit 2."""

import gc
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

pytest.importorskip("peft")

import r1lab.stages.zero  # noqa: E402
from r1lab.cli import main  # noqa: E402
from r1lab.engine.params import SamplingConfig, SamplingParams
from r1lab.engine.sampler import HFSampler  # noqa: E402
from r1lab.errors import UserError  # noqa: E402
from r1lab.model.architecture import ModelConfig, build_model  # noqa: E402
from r1lab.model.tokenizer import train_tokenizer  # noqa: E402
from r1lab.rl.grpo import group_advantages  # noqa: E402
from r1lab.rl.step import GRPOConfig  # noqa: E402
from r1lab.rl.update import completion_logprobs, prompt_pass, update_policy
from r1lab.runtime.config import load_config  # noqa: E402
from r1lab.runtime.loading import load
from r1lab.runtime.lora import (  # noqa: E402
    DisabledAdapters,
    LoRAConfig,
    add_adapters,
    reference_model,
    save_weights,
)
from r1lab.stages.sft import SFTConfig, run_sft  # noqa: E402
from r1lab.stages.zero import ZeroConfig, run_zero  # noqa: E402


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """A random-weight Qwen2 (hidden 32, 2 layers, grouped-query attention) with r1lab's tokenizer.
    Weights drawn with std 0.2: at transformers' 0.02 the frozen head caps every logit near ±0.6
    (|head row| x the final norm's sqrt(32)), so no adapter below it could fit any data."""
    out = tmp_path_factory.mktemp("qwen")
    tok = train_tokenizer(["Compute: 1234+5678 <think> 4+8=12 </think> <answer>6912</answer> 计算 자리 abc"] * 30,
                          vocab_size=300)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=1024, initializer_range=0.2,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def logprobs_of(model, gen, pad):
    batch = list(range(len(gen.completion_ids)))
    with torch.no_grad():
        return completion_logprobs(model, prompt_pass(model, gen, pad), gen, batch, pad)[0]


def test_lora_grpo_trains_only_the_adapters_and_the_reference_is_the_base(qwen_dir):
    """A few GRPO steps with β > 0 on a trivially learnable reward (share of even token ids): the
    base weights stay bit-identical, the adapters move, and the reference log-probs (adapters
    off) are those of a separately loaded base while the policy's have moved away from them."""
    torch.manual_seed(0)
    model, tok = load(qwen_dir)
    model = add_adapters(model, LoRAConfig(r=4, alpha=8))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = reference_model(model)
    assert isinstance(ref, DisabledAdapters) and ref.model is model  # a view, not a copy
    g = GRPOConfig(prompts_per_step=4, group_size=8, lr=2e-2, micro_batch=16, beta=0.05,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=8))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=g.lr)
    sampler = HFSampler(model, tok)
    kls = []
    for step in range(6):
        gen = sampler.generate(["ab", "cd", "12", "xy"], g.group_size, SamplingParams(max_new_tokens=8, seed=step))
        r = torch.tensor([sum(t % 2 == 0 for t in c) / len(c) for c in gen.completion_ids])
        adv = group_advantages(r.view(4, g.group_size)).flatten()
        kls.append(update_policy(model, ref, opt, gen, adv, list(range(len(r))), g, tok.pad_token_id, step)["kl"])
    assert kls[0] == 0.0 and kls[-1] > 0  # the policy starts at the reference and moves off it
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".lora_" in n for n in changed), sorted(changed)[:5]
    assert any(".lora_B." in n for n in changed)

    base, _ = load(qwen_dir)
    gen = sampler.generate(["ab", "12"], 4, SamplingParams(max_new_tokens=8, seed=99))
    ref_lp, base_lp, policy_lp = (logprobs_of(m, gen, tok.pad_token_id) for m in (ref, base, model))
    # the plain base's MLPs run fused (fused.py), the LoRA-wrapped ones as PEFT builds them: rounding apart
    torch.testing.assert_close(ref_lp, base_lp, rtol=0, atol=1e-5)
    assert (policy_lp - base_lp).abs().max() > 1e-3


def test_merged_export_is_a_plain_model_with_the_adapted_outputs(qwen_dir, tmp_path):
    """Adapters with random (non-zero) B: the saved directory loads with AutoModelForCausalLM as a
    plain Qwen2 whose logits are the adapted model's; greedy sampling of the LoRA model (the
    model's own forward) gives the tokens of the merged model on r1lab's static-cache decoder."""
    torch.manual_seed(1)
    model, tok = load(qwen_dir)
    model = add_adapters(model, LoRAConfig(r=4, alpha=8))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.2)
    save_weights(model, tmp_path / "out")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert type(merged) is Qwen2ForCausalLM
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    ids = torch.randint(3, len(tok), (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapted, plain, base = model(input_ids=ids).logits, merged(input_ids=ids).logits, None
        with model.disable_adapter():
            base = model(input_ids=ids).logits
    torch.testing.assert_close(plain, adapted, rtol=0, atol=1e-5)
    assert (adapted - base).abs().max() > 0.1  # the adapters do change the outputs
    params = SamplingParams(temperature=0, max_new_tokens=12)
    lora_sampler, merged_sampler = HFSampler(model, tok), HFSampler(merged, tok)
    assert not lora_sampler.static_cache and merged_sampler.static_cache
    prompts = ["ab", "Compute: 12"]
    assert lora_sampler.generate(prompts, 1, params).completion_ids == \
        merged_sampler.generate(prompts, 1, params).completion_ids


def tiny_lora_zero(tmp_path, qwen_dir, **over):
    overrides = [f"base={qwen_dir}", f"run_dir={tmp_path / 'run'}", "data.n_train=50", "data.n_test=2",
                 "eval.k=2", "eval.sampling.max_new_tokens=12", "eval.pass_k=0", "grpo.sampling.max_new_tokens=12",
                 "grpo.prompts_per_step=2", "grpo.group_size=4", "grpo.steps=2", "grpo.lr=1e-2", "grpo.beta=0.05",
                 "save_every=1", "gate=false", "lora.r=4", "rewards={tests.tiny_models.length_reward: 1.0}",
                 ] + [f"{k}={v}" for k, v in over.items()]
    return load_config(ZeroConfig, None, overrides)


def test_lora_zero_holds_one_model_saves_merged_checkpoints_and_resumes(tmp_path, qwen_dir, monkeypatch):
    from safetensors.torch import load_file

    seen = []
    real_step = r1lab.stages.zero.grpo_step

    def spy(model, ref, opt, *args, **kwargs):
        gc.collect()
        models = sum(type(o) is Qwen2ForCausalLM for o in gc.get_objects())
        adapters = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" in n}
        sampler = args[0]  # rollouts from the adapted model (the static decoder would read the base weights only)
        assert sampler.model is model and not sampler.static_cache
        seen.append((kwargs["step"], models, ref, model, adapters))
        return real_step(model, ref, opt, *args, **kwargs)

    monkeypatch.setattr(r1lab.stages.zero, "grpo_step", spy)
    run = tmp_path / "run"
    run_zero(tiny_lora_zero(tmp_path, qwen_dir), log=lambda *a: None)
    for step, models, ref, model, _ in seen:
        assert models == 1, f"step {step}: {models} Qwen2 models in memory"  # no reference copy
        assert isinstance(ref, DisabledAdapters) and ref.model is model
    ckpt = run / "checkpoint-2"
    merged = AutoModelForCausalLM.from_pretrained(ckpt)
    base = AutoModelForCausalLM.from_pretrained(qwen_dir)
    assert type(merged) is Qwen2ForCausalLM
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], base.state_dict()[q])  # trained, and merged in
    torch.testing.assert_close(merged.state_dict()["model.embed_tokens.weight"], base.state_dict()["model.embed_tokens.weight"])
    saved = load_file(ckpt / "adapter" / "adapter_model.safetensors")

    seen.clear()
    run_zero(tiny_lora_zero(tmp_path, qwen_dir, **{"grpo.steps": 3}), resume=True, log=lambda *a: None)
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    (step, _, _, _, adapters), = seen
    assert step == 2 and len(adapters) == len(saved)  # resumed with checkpoint-2's adapters, not fresh ones
    for name, value in saved.items():  # PEFT saves the adapters without their name ("default")
        assert torch.equal(adapters[name.replace(".weight", ".default.weight")], value), name
    assert (run / "checkpoint-3" / "config.json").is_file()


def test_lora_sft_learns_with_the_base_frozen(qwen_dir, tmp_path):
    data = tmp_path / "data.jsonl"
    rows = [{"prompt": f"Compute: {a}+{b}", "completion": f"<think> {a}+{b}={a + b} </think> <answer>{a + b}</answer>"}
            for a, b in [(12, 34), (20, 21), (33, 11), (40, 2)]]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = SFTConfig(base=str(qwen_dir), data=str(data), run_dir=str(tmp_path / "run"), epochs=15, lr=3e-2,
                    template="plain", pack=False, warmup_steps=2, seq_len=128, rows_per_step=2, micro_rows=2,
                    lora=LoRAConfig(r=8, alpha=16))
    cfg.validate()
    out = run_sft(cfg, log=lambda *_: None)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"], (history[0]["loss"], history[-1]["loss"])
    merged, base = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(qwen_dir)
    for name, p in base.state_dict().items():  # only the adapted layers' weights differ from the base
        adapted = name.endswith(("proj.weight",))
        assert torch.equal(merged.state_dict()[name], p) != adapted, name


def tiny_deepseek():
    return build_model(ModelConfig(hidden_size=32, num_layers=2, num_heads=2, dense_intermediate=64, routed_experts=4,
                                   experts_per_token=2, expert_intermediate=32, kv_lora_rank=16, qk_rope_dim=8,
                                   qk_nope_dim=8, v_head_dim=8, max_positions=128), 300, 0, 1, 2)


def test_lora_on_the_builtin_deepseek_v3_adapts_mla_and_merges(tmp_path):
    lora = add_adapters(tiny_deepseek(), LoRAConfig(r=2))
    adapted = {n.split(".")[-1] for n, m in lora.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"}
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.5)
    save_weights(lora, tmp_path / "out")
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(tmp_path / "out")(input_ids=ids).logits,
                                   lora(input_ids=ids).logits, rtol=0, atol=1e-5)
    # PEFT would turn MLP targets into adapters on the fused experts (and skip the dense MLPs)
    with pytest.raises(UserError, match="fused experts"):
        add_adapters(tiny_deepseek(), LoRAConfig(r=2, target_modules=["o_proj", "down_proj"]))


BAD = [
    (["zero", "lora.r=-1"], "lora.r: expected a rank >= 0"),
    (["zero", "lora.alpha=0", "lora.r=4"], "lora.alpha: expected > 0"),
    (["sft", "data=x.jsonl", "lora.dropout=1.0", "lora.r=4"], "lora.dropout"),
    (["zero", "lora.quantize=8bit", "lora.r=4"], "lora.quantize"),
    (["zero", "lora.target_modules=[q_proj]"], "set r > 0"),
    (["sft", "data={data}", "base={qwen}", "lora.r=4", "lora.target_modules=[q_proj,attn_qkv]"],
     "no layer of this Qwen2ForCausalLM is called attn_qkv"),
    (["zero", "base={qwen}", "lora.r=4", "lora.target_modules=[wq]"], "no layer of this Qwen2ForCausalLM is called wq"),
]


@pytest.mark.parametrize("argv, needle", BAD)
def test_bad_lora_settings_are_one_line_exit_2_and_write_nothing(argv, needle, tmp_path, qwen_dir, capsys,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    argv = [a.format(data=tmp_path / "data.jsonl", qwen=qwen_dir) for a in argv] + [f"run_dir={tmp_path}/run"]
    code = main(argv + (["gate=false", "eval.pass_k=0"] if argv[0] == "zero" else []))
    err = capsys.readouterr().err
    message = err[err.find("r1lab: error: "):]  # after transformers' progress bar when a model was loaded
    assert code == 2 and "r1lab: error: " in err and message.count("\n") == 1, err
    assert needle in message, err
    assert not (tmp_path / "run").exists()


def test_qlora_without_bitsandbytes_or_cuda_is_refused_in_one_line():
    import importlib.util

    if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes"):
        pytest.skip("bitsandbytes and CUDA are here: QLoRA may run")
    with pytest.raises(UserError, match=r"4bit \(QLoRA\) needs bitsandbytes and a CUDA GPU; missing"):
        load_config(ZeroConfig, None, ["lora.r=8", "lora.quantize=4bit"])
