"""The `r1lab` command: one subcommand per stage.

    r1lab zero     [recipe.yaml] [key=value ...] [--resume]   R1-Zero: GRPO from a base model
    r1lab pretrain [recipe.yaml] [key=value ...]              the tiny DeepSeek-V3 base (cached)
    r1lab sft      [recipe.yaml] data=FILE.jsonl [key=value] [--resume]  supervised fine-tuning (stages 1, 3)
    r1lab sample   MODEL_DIR [recipe.yaml] [key=value ...]    rejection sampling into SFT data (stage 3)
    r1lab rm       [recipe.yaml] [data=PAIRS.jsonl] [key=value] [--resume]  a Bradley-Terry reward model (stage 4)
    r1lab pipeline [recipe.yaml] [key=value ...]              the four R1 stages next to R1-Zero, report.md
    r1lab distill  [recipe.yaml] [--teacher DIR] [--student SPEC] [--data FILE] [--compare-rl] [key=value ...]
                                                              a small dense student from a teacher's traces
    r1lab ablate   [recipe.yaml] ['variants=[grpo,dapo]'] [key=value ...]  RL algorithms side by side, seeds x variants
    r1lab config   {zero,pretrain,sft,sample,rm,pipeline,distill,ablate} [SECTION]  every config key: type, default, meaning
    r1lab eval     MODEL_DIR --data SPEC [--k 4 ...]          pass@1 / pass@k / cons@k on a math or code benchmark
    r1lab grade    INPUT.jsonl [--task code] [--out FILE]      grade predictions against gold answers (or tests)
    r1lab push     RUN_DIR REPO_ID [--private] [--dry-run]     a run's final model and its card to the hub
    r1lab chat     MODEL_DIR [--temperature 0.6] [--top-p 0.95]  talk to a model: its thinking, then its answer
    r1lab serve    MODEL_DIR [--port 8000] [--api-key KEY]    an OpenAI-compatible API and chat page that stream the thinking

key=value overrides may come anywhere among a command's flags (`r1lab zero --resume grpo.lr=1e-5`).
A user mistake (missing file, malformed data, unknown key, impossible value, a full disk, a run
directory in use by another run) prints one line, `r1lab: error: ...`, and exits with status 2.
SIGTERM during training (preemption; runtime/preempt.py) ends the command once the current step
is done and checkpointed, with one line naming the checkpoint and the command that continues the
run, and exit status 143 (128 + SIGTERM, as a shell reports it). Ctrl-C: exit status 130.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from r1lab.errors import Preempted, UserError


def _split_args(args: list[str]) -> tuple[str | None, list[str]]:
    """The optional recipe file (first argument without '=') and the key=value overrides."""
    recipe = None
    if args and "=" not in args[0]:
        recipe, args = args[0], args[1:]
    for a in args:
        if "=" not in a:
            raise UserError(f"command line: expected key=value, got '{a}'")
    return recipe, args


def _commands() -> dict:
    """Each training command: (its config class, its run function), from its stage module."""
    from r1lab.stages import ablate, distill, pipeline, pretrain, rm, sample, sft, zero

    return {"zero": (zero.ZeroConfig, zero.run_zero), "pretrain": (pretrain.PretrainConfig, pretrain.run_pretrain),
            "sft": (sft.SFTConfig, sft.run_sft), "sample": (sample.SampleConfig, sample.run_sample),
            "rm": (rm.RMConfig, rm.run_rm), "pipeline": (pipeline.PipelineConfig, pipeline.run_pipeline),
            "distill": (distill.DistillConfig, distill.run_distill), "ablate": (ablate.AblateConfig, ablate.run_ablate)}


RESUMABLE = ("zero", "sft", "rm")  # the commands that take --resume


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit status 2 like every other user error."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def _keys_epilog(command: str) -> str:
    return (f"Recipe keys: `r1lab config {command}` lists every key with its type, default and meaning; "
            f"`r1lab config {command} SECTION` one section (e.g. `grpo`) or the keys whose name holds it. "
            "key=value overrides may come anywhere among the flags.")


def _run(argv: list[str]) -> int:
    from r1lab import __version__

    parser = _Parser(prog="r1lab", description="The DeepSeek-R1 recipe on a laptop CPU.")
    parser.add_argument("--version", action="version", version=f"r1lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser = sub.add_parser

    def add_training(name: str, **kw):  # a training command: its help points to its recipe keys
        return add_parser(name, epilog=_keys_epilog(name), **kw)

    sub.add_parser = add_training
    p_zero = sub.add_parser("zero", help="R1-Zero: GRPO with rule-based rewards from a base model")
    p_zero.add_argument("args", nargs="*", help="[recipe.yaml] [key=value ...]")
    p_zero.add_argument("--resume", action="store_true", help="continue the run in run_dir from its last checkpoint")
    p_pre = sub.add_parser("pretrain", help="pretrain (or find cached) r1lab's tiny DeepSeek-V3 base model")
    p_pre.add_argument("args", nargs="*", help="[recipe.yaml] [key=value ...]")
    p_sft = sub.add_parser("sft", help="supervised fine-tuning on {prompt, completion} or {messages} JSONL")
    p_sft.add_argument("args", nargs="*", help="[recipe.yaml] data=FILE.jsonl [key=value ...]")
    p_sft.add_argument("--resume", action="store_true", help="continue the run in run_dir from its last checkpoint")
    p_smp = sub.add_parser("sample", help="rejection sampling: sample a checkpoint, filter, write SFT data")
    p_smp.add_argument("model", help="the checkpoint to sample (a Hugging Face model directory)")
    p_smp.add_argument("args", nargs="*", help="[recipe.yaml] [key=value ...]")
    p_rm = sub.add_parser("rm", help="train a Bradley-Terry reward model on preference pairs")
    p_rm.add_argument("args", nargs="*", help="[recipe.yaml] [data=PAIRS.jsonl] [key=value ...]")
    p_rm.add_argument("--resume", action="store_true", help="continue the run in run_dir from its last checkpoint")
    p_pipe = sub.add_parser("pipeline", help="R1-Zero and the four DeepSeek-R1 stages end to end, with report.md")
    p_pipe.add_argument("args", nargs="*", help="[recipe.yaml] [key=value ...]")
    p_abl = sub.add_parser("ablate", help="GRPO, Dr. GRPO, DAPO, GSPO, CISPO, RLOO, REINFORCE++ side by side, "
                                          "several seeds each, with report.md")
    p_abl.add_argument("args", nargs="*", help="[recipe.yaml] ['variants=[grpo,dr_grpo]'] ['seeds=[0,1]'] [key=value ...]")
    p_dst = sub.add_parser("distill", help="distil a teacher into a small dense student by SFT on its traces")
    p_dst.add_argument("args", nargs="*", help="[recipe.yaml] [key=value ...]")
    p_dst.add_argument("--teacher", metavar="DIR", help="the teacher (default: train the R1-Zero default first)")
    p_dst.add_argument("--student", metavar="SPEC", help="a preset (qwen2-tiny, llama-tiny) or a model directory")
    p_dst.add_argument("--data", metavar="FILE", help="prompts with gold answers (JSONL/parquet; data.* fields) "
                       "instead of the built-in arithmetic task")
    p_dst.add_argument("--compare-rl", action="store_true",
                       help="also train the student by RL alone for the same wall-clock time, and compare")
    sub.add_parser = add_parser
    p_cfg = sub.add_parser("config", help="list every config key with its type, default and meaning")
    p_cfg.add_argument("stage", choices=["zero", "pretrain", "sft", "sample", "rm", "pipeline", "distill", "ablate"])
    p_cfg.add_argument("section", nargs="?", default="",
                       help="only the keys under this dotted prefix (grpo, eval.sampling) or whose name holds it")
    p_push = sub.add_parser("push", help="upload a run's final model, with its model card, to the Hugging Face hub")
    p_push.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (its final checkpoint) or a model directory")
    p_push.add_argument("repo_id", metavar="REPO_ID", help="user/name on the hub")
    p_push.add_argument("--private", action="store_true", help="create the repository private")
    p_push.add_argument("--dry-run", action="store_true", help="print what would be uploaded; upload nothing")
    _add_eval_parser(sub)
    _add_grade_parser(sub)
    _add_chat_parser(sub)
    _add_serve_parser(sub)
    ns, extra = parser.parse_known_args(argv)
    if extra:  # key=value after a flag: argparse leaves it over; anything else is a real mistake
        stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(ns, "args")]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        ns.args = [*ns.args, *extra]

    if ns.command == "eval":
        from r1lab.stages.eval import run_eval

        run_eval(_eval_config(ns))
        return 0
    if ns.command == "push":
        from r1lab.stages.push import PushConfig, run_push

        run_push(PushConfig(ns.run_dir, ns.repo_id, ns.private, ns.dry_run))
        return 0
    if ns.command == "serve":
        from r1lab.stages.serve import ServeConfig, run_serve

        cfg = ServeConfig(ns.model, ns.host, ns.port, ns.api_key or "", ns.name or "", ns.max_rows,
                          device=ns.device, dtype=ns.dtype)
        if ns.threads is not None:
            cfg.threads = ns.threads
        run_serve(cfg)
        return 0
    if ns.command == "chat":
        from r1lab.stages.chat import run_chat

        run_chat(_chat_config(ns))
        return 0
    if ns.command == "grade":
        from r1lab.stages.grade import GradeConfig, grade_file

        grade_file(GradeConfig(ns.input, ns.gold_field, ns.pred_field, ns.out, ns.task))
        return 0

    from r1lab.runtime.config import config_help, load_config

    if ns.command == "config":
        print(config_help(_commands()[ns.stage][0], ns.section))
        return 0
    recipe, overrides = _split_args(ns.args)
    if ns.command == "distill":  # the flags are shorthands for keys
        flags = {"teacher": ns.teacher, "student": ns.student, "data.path": ns.data}
        overrides += [f"{k}={v}" for k, v in flags.items() if v is not None]
        overrides += ["data.task=file"] * (ns.data is not None) + ["compare_rl=true"] * ns.compare_rl
    config_class, run = _commands()[ns.command]
    cfg = load_config(config_class, recipe, overrides)
    if ns.command == "sample":
        cfg.model = ns.model  # the positional argument (a path: not parsed as YAML)
    if ns.command in RESUMABLE:
        run(cfg, resume=ns.resume)
    else:
        run(cfg)
    return 0


def _add_eval_parser(sub) -> None:
    from r1lab.eval.benchmarks import PRESETS
    from r1lab.stages.eval import EvalRunConfig

    d = EvalRunConfig()  # the defaults live in the config class; help shows them
    ds = d.sampling
    p = sub.add_parser("eval", help="sample, grade and score a model on a math or code benchmark (pass@1, pass@k, cons@k)",
                       description="Evaluate as DeepSeek-R1 §5 does; rerun with the same --out to resume.")
    p.add_argument("model", help="a Hugging Face causal LM directory (an r1lab checkpoint, Qwen, Llama, ...)")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help=f"a preset ({', '.join(PRESETS)}), a .jsonl/.parquet file, a saved datasets dir, or a hub id")
    p.add_argument("--preset", choices=list(PRESETS), help="use this preset's field names for SPEC")
    p.add_argument("--question-field", help="default: the preset's, else problem|question|prompt")
    p.add_argument("--answer-field", help="default: the preset's, else answer|final_answer|solution")
    p.add_argument("--split", help="split of a hub dataset or saved DatasetDict (default: the preset's, else test)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N problems")
    p.add_argument("--k", type=int, default=d.k, help="samples per problem (default %(default)s)")
    p.add_argument("--temperature", type=float, default=ds.temperature, help="(default %(default)s)")
    p.add_argument("--top-p", type=float, default=ds.top_p, help="(default %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=ds.max_new_tokens,
                   help="(default %(default)s; the paper: 32768)")
    p.add_argument("--template", choices=["auto", "chat", "r1zero", "plain"], default=d.template,
                   help="prompt format (default %(default)s: chat if the tokenizer has a chat template, else r1zero)")
    p.add_argument("--seed", type=int, default=d.seed, help="(default %(default)s)")
    p.add_argument("--batch-rows", type=int, default=d.batch_rows,
                   help="sequences decoded together; a chunk is batch-rows // k problems (default %(default)s)")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/eval-<data>-<time>)")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N (default %(default)s: CUDA if present)")
    p.add_argument("--dtype", default=d.dtype, help="float32 or bfloat16 (default %(default)s)")


def _eval_config(ns):
    from r1lab.engine.params import SamplingConfig
    from r1lab.eval.benchmarks import DataSpec
    from r1lab.stages.eval import EvalRunConfig

    data = DataSpec(ns.data, ns.preset, ns.question_field, ns.answer_field, ns.split, ns.limit)
    return EvalRunConfig(ns.model, data, ns.k, SamplingConfig(ns.temperature, ns.top_p, ns.max_new_tokens), ns.template,
                         ns.seed, ns.batch_rows, ns.out, ns.device, ns.dtype)


def _add_chat_parser(sub) -> None:
    p = sub.add_parser("chat", help="talk to a model in the terminal: its thinking streamed (dimmed), then its answer",
                       description="Commands in the chat: /reset, /think on|off, /temperature X, /top_p X, /quit. "
                                   "Ctrl-C stops a reply; Ctrl-C or Ctrl-D at the prompt leaves.")
    p.add_argument("model", help="a Hugging Face causal LM directory (an r1lab checkpoint, an R1 distill, ...)")
    p.add_argument("--temperature", type=float, help="(default 0.6, as R1 is evaluated)")
    p.add_argument("--top-p", type=float, help="(default 0.95)")
    p.add_argument("--max-new-tokens", type=int, help="per reply, thinking included (default 1024)")
    p.add_argument("--seed", type=int, default=0, help="reply i samples with seed + i (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default %(default)s: CUDA if present)")
    p.add_argument("--dtype", default="float32", help="float32 or bfloat16 (default %(default)s)")


def _add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible API (and a chat page) that streams the model's thinking",
                       description="Routes: / (chat page), /v1/models, /v1/chat/completions (reasoning_content "
                                   "and content), /v1/completions. SIGTERM or Ctrl-C: requests under way finish, "
                                   "then it exits.")
    p.add_argument("model", help="a Hugging Face causal LM directory (an r1lab checkpoint, an R1 distill, ...)")
    p.add_argument("--host", default="127.0.0.1", help="(default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="(default %(default)s; 0: any free port)")
    p.add_argument("--api-key", help="demand 'Authorization: Bearer KEY' on every API route (or set R1LAB_API_KEY)")
    p.add_argument("--name", help="the model's id in the API (default: the directory's name)")
    p.add_argument("--max-rows", type=int, default=256, help="sequences decoded together (default %(default)s)")
    p.add_argument("--threads", type=int, help="torch threads for decoding (default: the cores less one, at least 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default %(default)s: CUDA if present)")
    p.add_argument("--dtype", default="float32", help="float32 or bfloat16 (default %(default)s)")


def _chat_config(ns):
    from r1lab.stages.chat import ChatConfig

    cfg = ChatConfig(ns.model, seed=ns.seed, device=ns.device, dtype=ns.dtype)  # its sampling defaults, unless given
    for name in ("temperature", "top_p", "max_new_tokens"):
        if getattr(ns, name) is not None:
            setattr(cfg.sampling, name, getattr(ns, name))
    return cfg


def _add_grade_parser(sub) -> None:
    from r1lab.stages.grade import GRADE_TASKS, PRED_FIELDS

    p = sub.add_parser("grade", help="grade a JSONL file of predictions against gold answers (or code against tests)",
                       description="Writes each input line with `extracted` and `correct` added, in input order.")
    p.add_argument("input", metavar="INPUT.jsonl")
    p.add_argument("--task", choices=list(GRADE_TASKS), default="math",
                   help="math: answers vs --gold-field; code: programs vs each line's `tests` (or HumanEval's "
                        "`test` + `entry_point`), run in a sandbox (default %(default)s)")
    p.add_argument("--gold-field", default="answer", help="(default %(default)s)")
    p.add_argument("--pred-field",
                   help=f"a completion or a bare answer (default: the first of {', '.join(PRED_FIELDS)})")
    p.add_argument("--out", metavar="FILE", help="write here (atomically) instead of to stdout")


def _continue_command(argv: list[str], run) -> str:
    """The command line that continues a preempted run: the same, on its run directory, with --resume
    for the commands that take it (the pipeline and distill skip their finished stages and continue
    the preempted one from its checkpoint instead);
    with no run directory (pretraining the built-in base), the same command as it was."""
    if run is None:
        return shlex.join(["r1lab", *argv])
    args = [a for a in argv if a != "--resume" and not a.startswith("run_dir=")]
    if args and args[0] in RESUMABLE:
        args.append("--resume")
    return shlex.join(["r1lab", *args, f"run_dir={run}"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run(argv)
    except UserError as e:
        print(f"r1lab: error: {e}", file=sys.stderr)
        return 2
    except Preempted as e:
        print(f"r1lab: {e}; continue with: {_continue_command(argv, e.run)}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("r1lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `r1lab config zero | head`: the reader left; nothing to report
        sys.stderr.close()
        return 0
    finally:  # leave the process group of a torchrun / accelerate launch, if a command joined one
        distributed = sys.modules.get("r1lab.runtime.distributed")  # not loaded: no group (and no torch import)
        if distributed is not None:
            distributed.shutdown()
