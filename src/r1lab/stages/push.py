"""`r1lab push RUN_DIR REPO_ID`: a run's final model, with its model card, to the Hugging Face hub.

    r1lab push runs/zero-20261206-120000 me/r1lab-zero-signs [--private] [--dry-run]

RUN_DIR is a run directory (its final model is the checkpoint `final` or `latest` names, or
`model/` for `r1lab rm`) or a model directory itself. The upload is the model directory without
trainer_state.pt (the optimizer state: for --resume, not for the hub), through huggingface_hub.
Every model r1lab's commands finish carries its card (README.md; runtime/card.py); a model
without one is refused rather than pushed bare. `--dry-run` prints the plan (repository, each
file and its size) and uploads nothing. Offline (HF_HUB_OFFLINE=1, or no network), the push is
refused in one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from r1lab.errors import UserError
from r1lab.runtime.card import CARD_NAME

LEFT_OUT = ("trainer_state.pt",)  # resume state, not the model


@dataclass
class PushConfig:
    run_dir: str = ""  # a run directory or a model directory
    repo_id: str = ""  # the hub repository, user/name
    private: bool = False  # create the repository private
    dry_run: bool = False  # print the upload plan, upload nothing


def final_model(run_dir: Path) -> Path:
    """The model directory a run finished with (see the module docstring)."""
    if (run_dir / "config.json").exists():
        return run_dir
    for pointer in ("final", "latest"):
        if (run_dir / pointer).is_file():
            return run_dir / (run_dir / pointer).read_text().strip()
    if (run_dir / "model" / "config.json").exists():
        return run_dir / "model"
    raise UserError(f"{run_dir}: no model in it (expected a model directory, or a run directory with final, latest "
                    "or model/)")


def upload_plan(cfg: PushConfig) -> tuple[Path, list[tuple[str, int]]]:
    """(the model directory, [(file, bytes)] to upload); UserError for anything that would fail."""
    run_dir = Path(cfg.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    if cfg.repo_id.count("/") != 1 or not all(cfg.repo_id.split("/")):
        raise UserError(f"repo_id: expected user/name (or org/name), got {cfg.repo_id!r}")
    model = final_model(run_dir)
    if not (model / CARD_NAME).exists():
        raise UserError(f"{model}: no model card ({CARD_NAME}); r1lab writes one when a command finishes")
    files = sorted(p for p in model.rglob("*") if p.is_file() and p.name not in LEFT_OUT)
    return model, [(str(p.relative_to(model)), p.stat().st_size) for p in files]


def run_push(cfg: PushConfig, log=print) -> str | None:
    """Upload (or with dry_run, only plan); returns the repository's URL."""
    model, files = upload_plan(cfg)
    log(f"push: {model} -> {cfg.repo_id}{' (private)' if cfg.private else ''}, {len(files)} files, "
        f"{sum(size for _, size in files) / 2**20:.1f} MiB")
    for name, size in files:
        log(f"  {name}  {size:,} bytes")
    if cfg.dry_run:
        return None
    import huggingface_hub  # the hub client (a transformers dependency), only for a real push

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False") or huggingface_hub.constants.HF_HUB_OFFLINE:
        raise UserError("push: offline (HF_HUB_OFFLINE is set); unset it to upload, or use --dry-run")
    api = huggingface_hub.HfApi()
    try:
        url = api.create_repo(cfg.repo_id, private=cfg.private, exist_ok=True)
        api.upload_folder(repo_id=cfg.repo_id, folder_path=str(model), ignore_patterns=list(LEFT_OUT),
                          commit_message="r1lab push")
    except Exception as e:  # network, authentication, permissions: the hub's own message, on one line
        raise UserError(f"push: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    log(f"push: uploaded to {url}")
    return str(url)
