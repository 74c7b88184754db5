"""`r1lab pretrain`: r1lab's own tiny DeepSeek-V3 base model (stage 0; not part of the R1 paper,
which starts from DeepSeek-V3-Base).

    r1lab pretrain [recipe.yaml] [key=value ...]

Trains a byte-level BPE tokenizer and a tiny `DeepseekV3ForCausalLM` on the synthetic corpus of the
task's train split and caches the result under `.cache/r1lab/base-<hash>`, keyed by the whole
configuration; a second run (or any stage whose `base` is "builtin") finds it there. The loop,
the corpus and the cache live in the library (model/base.py, model/corpus.py), because every
training stage needs the base; this command only runs it.
"""

from __future__ import annotations

from pathlib import Path

from r1lab.model.base import PretrainConfig, pretrain
from r1lab.runtime.config import check_config


def run_pretrain(cfg: PretrainConfig, log=print) -> Path:
    """Pretrain (or find in the cache) the base; returns its directory."""
    return pretrain(check_config(cfg), log=log)
