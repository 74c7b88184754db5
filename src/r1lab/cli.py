"""The `r1lab` command: one subcommand per stage.

    r1lab zero     [recipe.yaml] [key=value ...] [--resume]   R1-Zero: GRPO from a base model
    r1lab pretrain [recipe.yaml] [key=value ...]              the tiny DeepSeek-V3 base (cached)
    r1lab config   {zero,pretrain}                             list every config key and default

A user mistake (missing file, malformed data, unknown key, impossible value) prints one line,
`r1lab: error: ...`, and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from r1lab.errors import UserError


def _split_args(args: list[str]) -> tuple[str | None, list[str]]:
    """The optional recipe file (first argument without '=') and the key=value overrides."""
    recipe = None
    if args and "=" not in args[0]:
        recipe, args = args[0], args[1:]
    for a in args:
        if "=" not in a:
            raise UserError(f"command line: expected key=value, got '{a}'")
    return recipe, args


def _configs():
    from r1lab.pretrain import PretrainConfig
    from r1lab.zero import ZeroConfig

    return {"zero": ZeroConfig, "pretrain": PretrainConfig}


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="r1lab", description="The DeepSeek-R1 recipe on a laptop CPU.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_zero = sub.add_parser("zero", help="R1-Zero: GRPO with rule-based rewards from a base model")
    p_zero.add_argument("args", nargs="*", help="[recipe.yaml] [key=value ...]")
    p_zero.add_argument("--resume", action="store_true", help="continue the run in run_dir from its last checkpoint")
    p_pre = sub.add_parser("pretrain", help="pretrain (or find cached) r1lab's tiny DeepSeek-V3 base model")
    p_pre.add_argument("args", nargs="*", help="[recipe.yaml] [key=value ...]")
    p_cfg = sub.add_parser("config", help="list every config key with its type and default")
    p_cfg.add_argument("stage", choices=["zero", "pretrain"])
    ns = parser.parse_args(argv)

    from r1lab.config import config_help, load_config

    if ns.command == "config":
        print(config_help(_configs()[ns.stage]))
        return 0
    recipe, overrides = _split_args(ns.args)
    cfg = load_config(_configs()[ns.command], recipe, overrides)
    if ns.command == "pretrain":
        from r1lab.pretrain import pretrain

        pretrain(cfg)
    else:
        from r1lab.zero import run_zero

        run_zero(cfg, resume=ns.resume)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        print(f"r1lab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("r1lab: interrupted", file=sys.stderr)
        return 130
