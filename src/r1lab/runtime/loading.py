"""Models and tokenizers from a directory or a Hugging Face hub id: the one loader.

    model, tok = load("Qwen/Qwen2.5-0.5B-Instruct", device="auto", dtype="float32")  # a causal LM
    model, tok = load(rm_dir, head="score")                                           # a reward model
    tok = load_tokenizer(path)                      # alone: `r1lab eval` reads it before any model
    model = load_model(path, device, dtype)

A spec is a directory holding a `config.json` (an r1lab checkpoint, a downloaded model) or a hub id
(`owner/name`, no such local path), downloaded once into the Hugging Face cache (`resolve_model`).
The tokenizer pads on the left (prompts end where generation starts), with EOS as its pad token
when it has none. The model is placed on `device` in `dtype` (device.py: `auto` is the GPU when
torch sees one). `head="score"` puts a one-output sequence-classification head on a causal LM
(the Bradley-Terry reward model: the score of the last token), or loads a saved reward model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from r1lab.errors import UserError
from r1lab.runtime.device import resolve_device, resolve_dtype
from r1lab.runtime.files import check_hub_reachable, is_hub_id


def resolve_model(spec: str | Path, field: str = "base") -> Path:
    """A model directory, or a hub id downloaded once into the Hugging Face cache: either way a
    local directory; UserError (naming `field`) for anything else."""
    p = Path(spec)
    if (p / "config.json").exists():
        return p
    if not is_hub_id(spec):
        if not p.exists():
            raise UserError(f"{field}: '{spec}': no such model directory (nor a hub id, owner/name)")
        raise UserError(f"{field}: '{spec}' is not a Hugging Face model directory (no config.json)")
    from huggingface_hub import constants, snapshot_download

    check_hub_reachable(str(spec))  # offline: one line at once, not retries
    try:
        return Path(snapshot_download(str(spec), local_files_only=constants.HF_HUB_OFFLINE))
    except Exception as e:  # noqa: BLE001 -- a typo, no such repo, no access: the user's to fix
        raise UserError(f"{field}: '{spec}' is neither a model directory (no config.json) nor a hub model "
                        f"that could be downloaded ({type(e).__name__})") from None


def load_tokenizer(path: str | Path):
    """The tokenizer of a model directory, padding on the left, EOS as pad token if it has none."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load its tokenizer ({' '.join(str(e).split())[:200]})") from None
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: str = "float32", head="causal"):
    """The model of a directory on `device` in `dtype`. `head`: "causal" (a causal LM), "score" (a
    reward model: one score per sequence), or a model class (a checkpoint of that very class)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    if head == "causal":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype))
    elif head == "score":
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "score.weight newly initialized" is expected from a causal LM
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=resolve_dtype(dtype))
        finally:
            hf_logging.set_verbosity(verbosity)
    else:
        model = head.from_pretrained(path, dtype=resolve_dtype(dtype))
    return model.to(resolve_device(device))


def load(spec: str | Path, device: str | torch.device = "cpu", dtype: str = "float32", head="causal",
         field: str = "base"):
    """(model, tokenizer) of a model directory or hub id (see the module docstring)."""
    path = resolve_model(spec, field)
    tok = load_tokenizer(path)
    model = load_model(path, device, dtype, head)
    if head == "score":  # the score is read at the last non-pad token
        model.config.pad_token_id = tok.pad_token_id
    return model, tok
