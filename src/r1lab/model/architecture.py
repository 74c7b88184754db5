"""The tiny DeepSeek-V3 base model: the real architecture, a few million parameters.

`transformers.DeepseekV3ForCausalLM` with everything that makes it DeepSeek-V3 kept:
Multi-head Latent Attention (keys and values through a low-rank latent, decoupled RoPE dims),
DeepSeekMoE layers (fine-grained routed experts, top-k sigmoid routing, an always-on shared
expert) after `first_k_dense_replace` dense layers. Departures from the 671B model, for size:
no q low-rank compression (`q_lora_rank=None`), one routing group, no multi-token-prediction
module, tied embeddings. Expert load balance uses DeepSeek-V3's auxiliary-loss-free bias update
(`update_router_bias`), applied during pretraining.

`arch="qwen2"` or `"llama"` builds a dense model instead (grouped-query attention with
`num_kv_heads`, a SwiGLU MLP of `dense_intermediate`, tied embeddings): the small dense students
of distillation (stages/distill.py), pretrained on the same corpus as the DeepSeek-V3 base. The MoE and
MLA fields are then unused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from r1lab.errors import UserError
from r1lab.runtime.config import at_least

DENSE = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}


@dataclass
class ModelConfig:
    arch: str = "deepseek_v3"  # deepseek_v3 (MLA + MoE) | qwen2 | llama (dense)
    hidden_size: int = 128  # width of the residual stream
    num_layers: int = 4  # transformer blocks (depth)
    num_heads: int = 4  # attention heads per block
    first_dense_layers: int = 1  # blocks with a dense MLP before the MoE ones (DeepSeek-V3 keeps its first 3 of 61 dense)
    dense_intermediate: int = 512  # hidden width of a dense MLP (and of the dense archs' MLPs)
    routed_experts: int = 8  # MoE experts a router chooses from, per MoE block (DeepSeek-V3: 256)
    experts_per_token: int = 2  # routed experts each token uses (DeepSeek-V3: 8); <= routed_experts
    shared_experts: int = 1  # experts every token uses besides the routed ones (DeepSeek-V3: 1)
    expert_intermediate: int = 128  # hidden width of one expert's MLP
    kv_lora_rank: int = 64  # MLA: rank of the compressed key/value latent that the KV cache stores
    qk_rope_dim: int = 16  # MLA: per-head query/key dims that carry rotary position
    qk_nope_dim: int = 16  # MLA: per-head query/key dims without position
    v_head_dim: int = 32  # MLA: per-head value dims
    max_positions: int = 1024  # longest sequence (prompt + completion) the model takes, in tokens
    num_kv_heads: int = 0  # dense archs: key/value heads (grouped-query attention); 0 = num_heads

    def validate(self) -> None:
        at_least(self, 1, "hidden_size", "num_layers", "num_heads", "dense_intermediate", "routed_experts",
                 "experts_per_token", "expert_intermediate", "kv_lora_rank", "qk_rope_dim", "qk_nope_dim", "v_head_dim",
                 "max_positions")
        at_least(self, 0, "first_dense_layers", "shared_experts", "num_kv_heads")
        if self.arch not in ("deepseek_v3", *DENSE):
            raise UserError(f"model.arch: expected one of deepseek_v3, {', '.join(DENSE)}; got {self.arch!r}")
        if self.arch in DENSE:
            kv = self.num_kv_heads or self.num_heads
            if self.hidden_size % self.num_heads or self.num_heads % kv:
                raise UserError(f"model: hidden_size {self.hidden_size} must divide into num_heads {self.num_heads}, "
                                f"and num_heads into num_kv_heads {kv}")
            return

        if self.experts_per_token > self.routed_experts:
            raise UserError("experts_per_token: must be <= routed_experts")
        if self.first_dense_layers > self.num_layers:
            raise UserError("first_dense_layers: must be <= num_layers")


def build_model(cfg: ModelConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int, seed: int = 0):
    """A freshly initialised tiny `DeepseekV3ForCausalLM` (or a dense Qwen2 / Llama, `cfg.arch`)."""
    if cfg.arch in DENSE:
        config_class, model_class = DENSE[cfg.arch]
        hf_cfg = config_class(vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.dense_intermediate,
                              num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                              num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
                              max_position_embeddings=cfg.max_positions, tie_word_embeddings=True, pad_token_id=pad_id,
                              bos_token_id=bos_id, eos_token_id=eos_id, attn_implementation="sdpa")
        torch.manual_seed(seed)
        return model_class(hf_cfg)
    hf_cfg = DeepseekV3Config(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.dense_intermediate,
        moe_intermediate_size=cfg.expert_intermediate,
        num_hidden_layers=cfg.num_layers,
        first_k_dense_replace=cfg.first_dense_layers,
        n_routed_experts=cfg.routed_experts,
        num_experts_per_tok=cfg.experts_per_token,
        n_shared_experts=cfg.shared_experts,
        n_group=1,
        topk_group=1,
        routed_scaling_factor=1.0,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        q_lora_rank=None,
        kv_lora_rank=cfg.kv_lora_rank,
        qk_rope_head_dim=cfg.qk_rope_dim,
        qk_nope_head_dim=cfg.qk_nope_dim,
        v_head_dim=cfg.v_head_dim,
        head_dim=cfg.qk_rope_dim,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        attn_implementation="sdpa",
        experts_implementation="grouped_mm",
    )
    torch.manual_seed(seed)
    return DeepseekV3ForCausalLM(hf_cfg)


def count_parameters(model) -> tuple[int, int]:
    """(total, active per token) parameter counts; active counts only top-k routed experts."""
    total = sum(p.numel() for p in model.parameters())
    cfg = model.config
    if getattr(cfg, "n_routed_experts", None):
        n_moe = cfg.num_hidden_layers - cfg.first_k_dense_replace
        per_expert = 3 * cfg.hidden_size * cfg.moe_intermediate_size
        inactive = n_moe * (cfg.n_routed_experts - cfg.num_experts_per_tok) * per_expert
        return total, total - inactive
    return total, total


class RouterLoadTracker:
    """Counts how many tokens each routed expert receives, via forward hooks on the routers.

    Used by `update_router_bias` for DeepSeek-V3's auxiliary-loss-free balancing: after each
    step the selection bias of overloaded experts goes down and of underloaded ones goes up.
    """

    def __init__(self, model):
        self.counts: dict[torch.nn.Module, torch.Tensor] = {}
        self.handles = []
        for module in model.modules():
            if type(module).__name__ == "DeepseekV3TopkRouter":
                self.counts[module] = torch.zeros(module.num_experts, device=module.weight.device)
                self.handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module, inputs, output):
        _, _, topk_indices = output
        self.counts[module] += torch.bincount(topk_indices.flatten(), minlength=module.num_experts).float()

    def update_router_bias(self, rate: float = 1e-3) -> float:
        """Apply the bias update and reset the counts; returns max/mean expert load (1.0 = balanced)."""
        worst = 1.0
        with torch.no_grad():
            for router, load in self.counts.items():
                if load.sum() > 0:
                    router.e_score_correction_bias += rate * torch.sign(load.mean() - load)
                    worst = max(worst, float(load.max() / load.mean()))
                load.zero_()
        return worst

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
