"""LoRA adapters (and QLoRA, unverified) for SFT and RL, through PEFT.

    r1lab zero lora.r=16 grpo.beta=0.04        # GRPO on low-rank adapters
    r1lab sft data=traces.jsonl lora.r=16      # SFT on low-rank adapters

LoRA (Hu et al. 2021, arXiv 2106.09685) freezes every base weight W and trains a low-rank update
in its place, W + (alpha / r) B A with A (r, d_in) and B (d_out, r), B starting at zero so the
adapted model starts as the base. Only A and B get gradients and AdamW moments, which is where
the memory goes (bench/lora_memory.py measures it). `lora.r=0` (the default) is a full fine-tune.

The reference policy of GRPO's KL term (DeepSeek-R1 §2.2.1, β > 0) is the base model, and with
adapters the base is already in memory: `DisabledAdapters(model)` runs the same model with its
adapters switched off (PEFT's `disable_adapter()`), so no second copy of the weights is made.

Checkpoints: `save_weights` writes the *merged* model (W + (alpha / r) B A, a plain Hugging Face
directory that `AutoModelForCausalLM.from_pretrained` loads, so evaluation, sampling and the next
stage read it unchanged) and, in `adapter/`, the adapters themselves, which `load_weights` puts
back onto the base on `--resume`. The merged weights are computed into a new state dict, not by
merging in place and un-merging afterwards, which would leave the base weights (the reference)
off by rounding.

Sampling: r1lab's static-cache decoder (engine/static_cache.py) reads the layers' weights directly and would
silently ignore the adapters, so the sampler of a LoRA model runs the model's own forward
(`StaticCacheDecoder.supports` refuses a PEFT model): rollouts are several times slower than for
a full fine-tune. The final evaluation of `r1lab zero` runs on the merged model, on the fast path.

QLoRA (Dettmers et al. 2023, arXiv 2305.14314), `lora.quantize=4bit`: the base in 4-bit NF4
through bitsandbytes, which needs a CUDA GPU. On a machine without both the setting fails at
config time with a one-line error; the code path that loads the 4-bit base (`quantized_base`) has
not been run here (no GPU), and its reference is the *quantized* base with adapters off.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from r1lab.errors import UserError

# The layers to adapt, by `config.model_type`. Dense models: every linear map of attention and
# MLP. r1lab's DeepSeek-V3: MLA's projections only (q_a/q_b exist only with q_lora_rank). PEFT
# 0.21 turns a gate_proj / up_proj / down_proj target on a transformers-v5 MoE model into LoRA on
# the fused 3-D expert parameters (its v4-adapter compatibility) and then adapts neither the dense
# nor the shared-expert MLPs, whose layers have those names too; `add_adapters` refuses that.
# Other architectures: PEFT's "all-linear" (every Linear but the head).
DEFAULT_TARGETS: dict[str, list[str]] = {
    **{t: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
       for t in ("llama", "qwen2", "qwen3", "mistral")},
    "deepseek_v3": ["q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"],
}
ADAPTER_DIR = "adapter"  # inside a checkpoint: the adapters that --resume loads


@dataclass
class LoRAConfig:
    r: int = 0  # adapter rank; 0: no adapters (full fine-tune)
    alpha: float = 32.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # on the adapters' input; GRPO's ratio assumes none (old log-probs are detached)
    target_modules: list[str] = field(default_factory=list)  # module name suffixes; []: DEFAULT_TARGETS
    quantize: Literal["none", "4bit"] = "none"  # 4bit: QLoRA, needs bitsandbytes + CUDA (unverified)

    def validate(self) -> None:
        if self.r < 0:
            raise UserError(f"r: expected a rank >= 0 (0: no adapters), got {self.r}")
        if not self.alpha > 0:
            raise UserError(f"alpha: expected > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout: expected a fraction in [0, 1), got {self.dropout}")
        if self.r == 0:
            if self.quantize != "none" or self.target_modules:
                raise UserError("r: quantize and target_modules need adapters; set r > 0 (e.g. lora.r=16)")
            return
        if importlib.util.find_spec("peft") is None:
            raise UserError("r: LoRA needs the peft package: pip install 'r1lab[lora]'")
        if self.quantize == "4bit":
            missing = [name for name, ok in (("bitsandbytes", importlib.util.find_spec("bitsandbytes") is not None),
                                             ("a CUDA GPU", torch.cuda.is_available())) if not ok]
            if missing:
                raise UserError(f"quantize: 4bit (QLoRA) needs bitsandbytes and a CUDA GPU; missing "
                                f"{' and '.join(missing)} (use quantize=none for LoRA on this machine)")


def target_modules(model, cfg: LoRAConfig) -> list[str] | str:
    return cfg.target_modules or DEFAULT_TARGETS.get(getattr(model.config, "model_type", ""), "all-linear")


def check_targets(model, cfg: LoRAConfig) -> None:
    """Raise a UserError unless every target names a layer of `model` (before any work is done)."""
    targets = target_modules(model, cfg)
    if isinstance(targets, str):
        return
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    # the defaults list every variant of an architecture (q_proj, or q_a_proj + q_b_proj): one hit is enough there
    if missing and (cfg.target_modules or len(missing) == len(targets)):
        raise UserError(f"lora.target_modules: no layer of this {type(model).__name__} is called "
                        f"{', '.join(missing)} (name suffixes, e.g. q_proj)")


def quantized_base(path: str | Path):
    """The base at `path` in 4-bit NF4, ready for adapters (QLoRA). Unverified: needs CUDA."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=q, device_map={"": 0})
    return prepare_model_for_kbit_training(model)


def add_adapters(model, cfg: LoRAConfig):
    """`model` with trainable LoRA adapters on `target_modules` and every base weight frozen (a
    PEFT model; the adapters are injected into `model` itself). With quantize=4bit the base is
    reloaded from its directory in 4 bits first."""
    from peft import LoraConfig, get_peft_model

    check_targets(model, cfg)
    if cfg.quantize == "4bit":
        model = quantized_base(model.name_or_path)
    peft_cfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=target_modules(model, cfg), task_type="CAUSAL_LM")
    try:
        wrapped = get_peft_model(model, peft_cfg)
    except ValueError as e:  # PEFT: "Target modules {...} not found in the base model ..."
        first = (str(e).splitlines() or [""])[0]
        raise UserError(f"lora.target_modules: {first}") from None
    if wrapped.peft_config["default"].target_parameters:  # see DEFAULT_TARGETS
        raise UserError(f"lora.target_modules: PEFT maps {sorted(peft_cfg.target_modules)} onto this MoE model's "
                        "fused experts, which r1lab cannot merge; target attention layers only")
    return wrapped


def is_lora(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


class DisabledAdapters:
    """The base under a PEFT model, called like a model: the same weights with the adapters off.

    GRPO's reference policy without a second copy in memory: rl.update_policy calls it (and reads
    its `config`) exactly as it would a frozen copy of the base."""

    def __init__(self, model):
        self.model = model

    @property
    def config(self):
        return self.model.config

    def __call__(self, *args, **kwargs):
        with self.model.disable_adapter():
            return self.model(*args, **kwargs)


def reference_model(model):
    """GRPO's frozen reference (the policy's starting point): a view of the base with the adapters
    disabled for a LoRA model, else a frozen copy."""
    import copy

    if is_lora(model):
        return DisabledAdapters(model)
    return copy.deepcopy(model).eval().requires_grad_(False)


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """The base model's state dict with each adapted weight replaced by W + (alpha / r) B A: the
    weights `merge_and_unload` would give, computed without touching the model."""
    from peft.tuners.lora import LoraLayer

    inner = model.get_base_model()
    state = {name.replace(".base_layer.", "."): t for name, t in inner.state_dict().items() if ".lora_" not in name}
    for name, module in inner.named_modules():
        if isinstance(module, LoraLayer):
            for adapter in module.active_adapters:
                key = f"{name}.weight"
                state[key] = state[key] + module.get_delta_weight(adapter).to(state[key].dtype)
    return state


def save_weights(model, out: Path, state_dict: dict | None = None) -> None:
    """`model` in Hugging Face format to `out`; for a LoRA model the merged weights there and the
    adapters in `out/adapter`. `state_dict`: a plain model's weights to write instead of its own
    (an FSDP2 model's gathered ones)."""
    if not is_lora(model):
        model.save_pretrained(out, state_dict=state_dict)
        return
    with torch.no_grad():
        model.get_base_model().save_pretrained(out, state_dict=merged_state_dict(model))
    model.save_pretrained(Path(out) / ADAPTER_DIR)


def load_weights(model, ckpt: Path, saved) -> None:
    """Put a checkpoint's weights into `model` for --resume: the adapters of `ckpt/adapter` onto a
    LoRA model's base, else the state of `saved` (the checkpoint's model). Raises if missing."""
    if not is_lora(model):
        model.load_state_dict(saved.state_dict())
        return
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(ckpt) / ADAPTER_DIR / "adapter_model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{ADAPTER_DIR}/adapter_model.safetensors is missing (not a LoRA checkpoint?)")
    result = set_peft_model_state_dict(model, load_file(path))
    if result.unexpected_keys:
        raise ValueError(f"adapter weights that fit no adapter: {result.unexpected_keys[:3]}")


def merge(model):
    """The plain model with the adapters merged into its weights (in place); other models as they are."""
    return model.merge_and_unload() if is_lora(model) else model
