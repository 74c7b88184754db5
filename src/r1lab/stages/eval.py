"""`r1lab eval`: sample, grade and score a Hugging Face causal LM on a math or code benchmark (R1 §5).

    r1lab eval MODEL_DIR --data SPEC [--k 4] [--temperature 0.6] [--top-p 0.95]
               [--max-new-tokens 2048] [--template auto] [--limit N] [--out DIR] [--seed 0]

MODEL_DIR is any causal LM directory `transformers` can load: an r1lab checkpoint (written by
runtime/checkpoint.py) or a local Qwen / Llama / DeepSeek model, or a hub id. SPEC is a benchmark preset, a local
file or a hub dataset id (r1lab.eval.benchmarks).

Protocol, as DeepSeek-R1 §5 (../shared/R1.md) has it: no greedy decoding; k samples per problem
at temperature 0.6 and top-p 0.95; pass@1 = the correctness averaged over the k samples, the
unbiased pass@k' = 1 − C(n−c, k')/C(n, k') for every k' <= k, and cons@k, the majority vote with
answers grouped by mathematical equivalence. Departures, for a laptop CPU:
  * max_new_tokens defaults to 2048, not the paper's 32,768. A long reasoner cut off before its
    answer is graded wrong, so read pass@1 next to the truncation rate, and raise the limit for
    a model that thinks at length;
  * k defaults to 4, the low end of the paper's 4-64 (it picks k by test-set size; cons@64 on AIME).

Prompting (`--template`), zero-shot as the paper advises:
  * chat: one user message, the problem + "\\nPlease reason step by step, and put your final
    answer within \\boxed{}." (DeepSeek-R1's recommended math prompt), with the generation prompt;
  * r1zero: the R1-Zero template (tasks.prompts.apply_template), which r1lab's own models are
    trained on; generation also stops at `</answer>`;
  (data/prompting.py renders all of them, as for SFT)
  * plain: the problem + the same instruction, no template;
  * auto (default): chat if the tokenizer has a chat template, else r1zero.
Generation goes through `engine.sampler.HFSampler`, the sampler of the RL stage; grading through
`extract.extract_answer` + the problem's task `grade` (`tasks.MathTask`), the path of the RL
accuracy reward, except that eval also reads an answer stated in prose ("so she has 18 apples.",
`prose=True`; extract.py says how), which the RL reward does only with `accuracy_prose`; not in a
completion that hit --max-new-tokens, which stated no last word (read as prose, a looping reply's
last number joined cons@k's vote: the R1-Zero policy's cons@8 read 0.790 instead of 0.870).

Code benchmarks (HumanEval, MBPP, `task:code`; benchmarks.Benchmark.kind): the instruction is
CODE_INSTRUCTION ("Write your solution as one ```python code block.") instead; the extracted
answer is the code (tasks.code.extract_code, as the `code` reward extracts it), run against the
problem's tests in r1lab.grading.sandbox, a chunk's samples in parallel; a sample is correct when every
test passes, and pass@1 / pass@k count those, as HumanEval's paper does. cons@k is not reported:
programs have no final answer to vote on.

Output, in --out (default runs/eval-<data name>-<time>):
  eval_config.yaml   the settings, paths resolved;
  samples.jsonl      one `eval.metrics.Sample` per line (id, prompt, completion, extracted answer,
                     verdict, sample index, tokens, truncated, ...);
  results.json       pass@1, pass@k, cons@k (math only), mean length, truncation rate, tokens/s,
                     verifier timeouts, and by_<field> (e.g. by_subject, by_level) with the same metrics.
A table of the same is printed.

Resumption is automatic: rerun the same command with the same --out. Problems are generated in
chunks of max(1, batch_rows // k) problems, one sampler call each, seeded by (seed, chunk), and
each finished chunk is appended to samples.jsonl and flushed. A rerun keeps the chunks the file
holds completely, cuts off a partial chunk or line left by a crash, and generates only the rest,
so its samples equal those of an uninterrupted run. It refuses, in one line, an --out whose saved
settings differ. Everything the user can get wrong is checked before the model loads or anything
is written.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import yaml

from r1lab import tasks
from r1lab.data.prompting import MATH_INSTRUCTION, adds_special_tokens, answer_stop_ids, render_prompt, resolve_template
from r1lab.engine.params import SamplingConfig, SamplingParams, sampling
from r1lab.errors import UserError
from r1lab.eval.benchmarks import Benchmark, DataSpec, load_benchmark
from r1lab.eval.metrics import Sample, benchmark_metrics
from r1lab.grading import verify
from r1lab.grading.extract import extract_answer
from r1lab.runtime.config import check_config, config_to_dict
from r1lab.runtime.files import write_atomically
from r1lab.runtime.runlog import progress
from r1lab.tasks.code import CODE_INSTRUCTION, extract_code, problem_tests, run_codes

if TYPE_CHECKING:
    from r1lab.engine.sampler import Sampler

CONFIG_FILE, SAMPLES_FILE, RESULTS_FILE = "eval_config.yaml", "samples.jsonl", "results.json"


@dataclass
class EvalRunConfig:
    model: str = ""  # a Hugging Face causal LM directory (or hub id)
    data: DataSpec = field(default_factory=DataSpec)
    k: int = 4  # samples per problem (the paper: 4-64 by test-set size)
    sampling: SamplingConfig = sampling(0.6, 0.95, max_new_tokens=2048)  # the paper's T, top-p; its 32,768 tokens
    template: Literal["auto", "chat", "r1zero", "plain"] = "auto"
    seed: int = 0
    batch_rows: int = 16  # sequences decoded together; a chunk is max(1, batch_rows // k) problems
    out: str | None = None  # default runs/eval-<data name>-<time>
    device: str = "auto"  # auto (CUDA if present, else cpu) | cpu | cuda | cuda:N (runtime/device.py)
    dtype: Literal["float32", "bfloat16"] = "float32"
    FLAGS: ClassVar[dict[str, str]] = {"temperature": "--temperature", "top_p": "--top-p",
                                       "max_new_tokens": "--max-new-tokens"}  # the command line's names

    def validate(self) -> None:
        from r1lab.runtime.device import check

        self.data.validate()
        check(self, "--")
        if not self.model:
            raise UserError("model: give a Hugging Face model directory")
        for name in ("k", "batch_rows"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(self, name)}")
        try:
            self.sampling.validate()
        except UserError as e:  # named as the command line names them
            field_name, _, message = str(e).partition(":")
            flag = self.FLAGS[field_name]
            raise UserError(f"{flag}:{message.replace(field_name, flag[2:])}") from None


def evaluate_model(model: str, data: str, k: int = 4, limit: int | None = None, max_new_tokens: int = 2048,
                   out: str | None = None, log=print, **settings) -> dict:
    """`r1lab eval MODEL --data DATA` from Python: sample `k` answers per problem at the paper's
    T = 0.6 / top-p 0.95, grade them and return results.json's content (pass@1, pass@k, cons@k,
    mean_length, ...). `data` is a preset, a file, a `task:<name>` or a hub id; `settings` are
    other EvalRunConfig fields (seed, batch_rows, template, device, dtype)."""
    sampling_ = SamplingConfig(0.6, 0.95, max_new_tokens)
    cfg = EvalRunConfig(model, DataSpec(data, limit=limit), k, sampling_, out=out, **settings)
    return run_eval(check_config(cfg), log)


def run_eval(cfg: EvalRunConfig, log=print, sampler: Sampler | None = None) -> dict:
    """Evaluate (or resume evaluating) and return the results; `sampler` replaces the model (tests)."""
    # The model side imports torch: a finished evaluation is scored, and a mistake reported, without it.
    from r1lab.engine.sampler import HFSampler
    from r1lab.runtime.loading import load_model, load_tokenizer, resolve_model

    # --- checks: nothing is loaded or written until all of these pass ---
    cfg.validate()
    model_dir = resolve_model(cfg.model, "model")
    bench = load_benchmark(cfg.data)
    settings = saved_settings(cfg)
    out = Path(cfg.out) if cfg.out else Path("runs") / f"eval-{bench.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_out_dir(out, settings)
    tokenizer = load_tokenizer(model_dir)
    template = resolve_template(cfg.template, tokenizer, f"{model_dir}'s")
    instruction = CODE_INSTRUCTION if bench.kind == "code" else MATH_INSTRUCTION
    prompts = [render_prompt(p.prompt, template, tokenizer, instruction) for p in bench.problems]
    chunks = chunk_bounds(len(prompts), max(1, cfg.batch_rows // cfg.k))
    ids = [p.meta["id"] for p in bench.problems]
    samples, keep_bytes = finished_samples(out / SAMPLES_FILE, chunks, cfg.k, ids)
    done = len({s.chunk for s in samples})
    log(f"eval: {bench.name}, {len(prompts)} problems x {cfg.k} samples, template {template}, "
        f"{done} of {len(chunks)} chunks already in {out}; settings {json.dumps(settings)}")

    # --- generate the chunks not yet in samples.jsonl ---
    todo = range(done, len(chunks))
    if todo:
        if any(p.task == "math" for p in bench.problems):  # start sympy's process while the model loads
            threading.Thread(target=verify.warm_up, daemon=True).start()
        if sampler is None:
            sampler = HFSampler(load_model(model_dir, cfg.device, cfg.dtype), tokenizer, cfg.batch_rows,
                                add_special_tokens=adds_special_tokens(template))
        stop_ids = answer_stop_ids(tokenizer) if template == "r1zero" else ()
        out.mkdir(parents=True, exist_ok=True)
        write_atomically(out / CONFIG_FILE, yaml.safe_dump(settings, sort_keys=False))
        with open_for_append(out / SAMPLES_FILE, keep_bytes) as f:
            for c in progress(todo, desc="eval", unit="chunk"):
                params = cfg.sampling.params(stop_ids, seed=cfg.seed * 1_000_003 + c)
                new = generate_chunk(sampler, bench, prompts, c, chunks[c], cfg.k, params)
                f.write("".join(json.dumps(asdict(s), ensure_ascii=False) + "\n" for s in new).encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
                samples += new
                log(f"chunk {c + 1}/{len(chunks)}: problems {chunks[c][0]}..{chunks[c][1] - 1}, "
                    f"{sum(s.tokens for s in new)} tokens in {new[0].chunk_seconds:.1f}s, "
                    f"{sum(s.correct for s in new)}/{len(new)} correct")

    # --- score ---
    results = score_run(samples, bench, settings, template)
    write_atomically(out / RESULTS_FILE, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    log(format_table(results, bench.breakdowns))
    log(f"wrote {out / RESULTS_FILE} and {out / SAMPLES_FILE}")
    return results


# ---------------------------------------------------------------------------------------------
# Checks


def saved_settings(cfg: EvalRunConfig) -> dict:
    """The settings that decide the samples (all but --out), paths resolved: what must match to resume."""
    settings = config_to_dict(cfg)
    settings.pop("out")
    settings["model"] = str(Path(cfg.model).resolve())
    if Path(cfg.data.source).exists():
        settings["data"]["source"] = str(Path(cfg.data.source).resolve())
    return settings


def check_out_dir(out: Path, settings: dict) -> None:
    """Refuse an --out that is not ours, or holds an evaluation with other settings."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory; choose another --out")
    saved = out / CONFIG_FILE
    if not saved.exists():
        if out.exists() and any(out.iterdir()):
            raise UserError(f"{out}: not empty and holds no {CONFIG_FILE}; choose another --out")
        return
    try:
        old = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{saved}: unreadable ({' '.join(str(e).split())[:100]}); choose another --out") from None
    diffs = differences(old if isinstance(old, dict) else {}, settings)
    if diffs:
        raise UserError(f"{out}: holds an evaluation with other settings ({'; '.join(diffs[:3])}); "
                        "rerun with the saved settings to resume, or choose another --out")


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for every dotted key whose value differs."""
    diffs = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return diffs


# ---------------------------------------------------------------------------------------------
# Chunks: generation, grading, and the samples file


def chunk_bounds(n_problems: int, per_chunk: int) -> list[tuple[int, int]]:
    """[start, end) problem indices of each chunk."""
    return [(a, min(a + per_chunk, n_problems)) for a in range(0, n_problems, per_chunk)]


def generate_chunk(sampler: Sampler, bench: Benchmark, prompts: list[str], chunk: int,
                   bounds: tuple[int, int], k: int, params: SamplingParams) -> list[Sample]:
    """k graded samples for each problem of one chunk, grouped by problem."""
    a, b = bounds
    gen = sampler.generate(prompts[a:b], k, params)
    code_rows = [row for row in range(len(gen.texts)) if bench.problems[a + row // k].task == "code"]
    code_results = dict(zip(code_rows, run_codes([extract_code(gen.texts[row]) for row in code_rows],
                                                 [problem_tests(bench.problems[a + row // k]) for row in code_rows])))
    samples = []
    for row, text in enumerate(gen.texts):
        i = a + row // k
        problem = bench.problems[i]
        timeouts_before = verify.stats()["timeouts"]
        if row in code_results:  # the `code` reward's path, the chunk run in parallel
            extracted, result = extract_code(text), code_results[row]
            correct = result.total > 0 and result.passed == result.total
        else:
            # answers stated in prose count (extract.py), but not in a reply the token limit cut off:
            # its last sentence is not its last word (a loop's 22 would join the majority vote)
            extracted = extract_answer(text, prose=not gen.truncated[row])
            correct = tasks.get_task(problem.task).grade(extracted, problem)  # the RL accuracy reward's path
        samples.append(Sample(
            problem=i, id=problem.meta["id"], sample=row % k, chunk=chunk, prompt=prompts[i], completion=text,
            extracted=extracted, correct=bool(correct), gold=problem.answer, tokens=len(gen.completion_ids[row]),
            truncated=gen.truncated[row], meta={f: problem.meta.get(f) for f in bench.breakdowns},
            chunk_seconds=gen.seconds, verifier_timeouts=verify.stats()["timeouts"] - timeouts_before,
        ))
    return samples


def finished_samples(path: Path, chunks: list[tuple[int, int]], k: int, ids: list[str]) -> tuple[list[Sample], int]:
    """The samples of the leading chunks that `path` holds completely, and the byte length they fill.

    A crash mid-write leaves a partial last line or a partial chunk: reading stops at the first
    line that is unterminated or does not parse, and keeps whole chunks only."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    lines: list[tuple[Sample, int]] = []  # (sample, byte offset after its line)
    offset = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            sample = Sample(**json.loads(line))
        except (ValueError, TypeError):
            break
        offset += len(line)
        lines.append((sample, offset))
    kept, kept_bytes = 0, 0
    for c, (a, b) in enumerate(chunks):
        block = lines[kept : kept + (b - a) * k]
        if len(block) < (b - a) * k or any(s.chunk != c for s, _ in block):
            break
        for s, _ in block:
            if not a <= s.problem < b or s.id != ids[s.problem]:
                raise UserError(f"{path}: sample of problem {s.problem} (id {s.id!r}) does not match the data "
                                f"(id {ids[s.problem] if s.problem < len(ids) else None!r}); the data changed? "
                                "choose another --out")
        kept += len(block)
        kept_bytes = block[-1][1]
    return [s for s, _ in lines[:kept]], kept_bytes


def open_for_append(path: Path, keep_bytes: int):
    """`path` opened for binary appending, first cut back to its first `keep_bytes` bytes."""
    f = open(path, "r+b" if path.exists() else "wb")  # noqa: SIM115 -- the caller closes it
    f.truncate(keep_bytes)
    f.seek(keep_bytes)
    return f


# ---------------------------------------------------------------------------------------------
# Scoring and the table


def score_run(samples: list[Sample], bench: Benchmark, settings: dict, template: str) -> dict:
    """results.json: the metrics (eval.metrics.benchmark_metrics) and what they were measured on."""
    timeouts_before = verify.stats()["timeouts"]
    if bench.kind == "code":  # programs have no final answer to vote on: no cons@k
        samples = [replace(s, extracted=None) for s in samples]
    metrics = benchmark_metrics(samples, bench.breakdowns)
    metrics["verifier_timeouts"] += verify.stats()["timeouts"] - timeouts_before  # while voting
    if bench.kind == "code":
        for m in [metrics] + [m for name in bench.breakdowns for m in metrics[f"by_{name}"].values()]:
            m.pop("cons@k", None)
    data = {"name": bench.name, "source": bench.source, "question_field": bench.question_field,
            "answer_field": bench.answer_field, "breakdowns": list(bench.breakdowns), "kind": bench.kind}
    return {**metrics, "template": template, "data": data, "settings": settings}


def format_table(results: dict, breakdowns=()) -> str:
    """An aligned table: one line overall, one per breakdown value, then throughput."""
    k = results["k"]
    mixing = "language_mixing" in results  # built-in tasks: the zh/ja/ko language-mixing rate
    cons = "cons@k" in results  # not for code
    columns = ["problems", "pass@1"] + ([f"pass@{k}"] if k > 1 else []) + ([f"cons@{k}"] if cons else [])
    columns += ["length", "truncated"] + (["mixing"] if mixing else [])

    def cells(m: dict) -> list[str]:
        row = [str(m["problems"]), f"{m['pass@1']:.3f}"] + ([f"{m['pass@k'][str(k)]:.3f}"] if k > 1 else [])
        row += ([f"{m['cons@k']:.3f}"] if cons else []) + [f"{m['mean_length']:.1f}", f"{m['truncation_rate']:.1%}"]
        rate = m.get("language_mixing")
        return row + ([("-" if rate is None else f"{rate:.1%}")] if mixing else [])

    table = [[""] + columns, [results["data"]["name"]] + cells(results)]
    for name in breakdowns:
        table += [[f"  {name} {value}"] + cells(m) for value, m in results[f"by_{name}"].items()]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]).rstrip()
             for row in table]
    lines.append(f"generated {results['tokens']} tokens in {results['seconds']:.1f}s "
                 f"({results['tokens_per_s']:.1f} tokens/s); verifier timeouts: {results['verifier_timeouts']}")
    return "\n".join(lines)
