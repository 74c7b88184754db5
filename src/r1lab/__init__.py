"""r1lab: the DeepSeek-R1 training recipe, small enough to read and to run on a laptop CPU.

The Python API is the commands' own functions, exported lazily (`import r1lab.tasks` loads no
trainer, and `import r1lab` loads nothing else):

    from r1lab import ZeroConfig, evaluate_model, load_config, run_zero

    cfg = load_config(ZeroConfig, "recipes/zero.yaml", ["grpo.steps=20"])  # or ZeroConfig(...): checked the same way
    summary = run_zero(cfg)                       # summary.json: base and final metrics, the checkpoints
    print(summary["final"]["pass@1"], summary["final"]["self_check_rate"])
    results = evaluate_model(summary["final_model"], "task:signs", k=8, limit=200, max_new_tokens=768)

Each `run_*` takes its command's config (`r1lab config <command>` lists the keys) and returns
what the command writes; a user mistake raises `r1lab.errors.UserError` before anything loads.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {  # name → the module that defines it
    "load_config": "r1lab.runtime.config", "config_help": "r1lab.runtime.config", "check_config": "r1lab.runtime.config",
    "UserError": "r1lab.errors",
    "ZeroConfig": "r1lab.stages.zero", "run_zero": "r1lab.stages.zero",
    "PretrainConfig": "r1lab.model.base", "pretrain": "r1lab.model.base",
    "SFTConfig": "r1lab.stages.sft", "run_sft": "r1lab.stages.sft",
    "SampleConfig": "r1lab.stages.sample", "run_sample": "r1lab.stages.sample",
    "RMConfig": "r1lab.stages.rm", "run_rm": "r1lab.stages.rm",
    "PipelineConfig": "r1lab.stages.pipeline", "run_pipeline": "r1lab.stages.pipeline",
    "DistillConfig": "r1lab.stages.distill", "run_distill": "r1lab.stages.distill",
    "evaluate_model": "r1lab.stages.eval",
    "Problem": "r1lab.tasks.base", "make_task": "r1lab.tasks",
    "get_reward": "r1lab.rl.rewards", "for_trl": "r1lab.rl.rewards",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'r1lab' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
