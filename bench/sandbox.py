"""How much the sandbox's judge and minimal root cost: `r1lab grade --task code` on HumanEval's
reference solutions (and MBPP's, with --mbpp), with the sandbox of a git ref ("before") and of this
working tree ("after"), in one run, alternating, `--rounds` times each; prints each time, the
medians and their ratio (after / before), and how many programs each graded correct.

    python bench/sandbox.py [--ref main] [--data ../shared/data] [--rounds 3] [--mbpp]

"before" is `git archive REF src/r1lab` unpacked into a temporary directory and run with
PYTHONPATH pointing there; "after" is this tree's src/. Both run with this interpreter. The data
is read where it is, never copied. Timings share the machine with whatever else runs on it: the
rounds alternate so that a busy spell hits both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = {"humaneval": "canonical_solution", "mbpp": "answer"}  # file -> the field holding the reference solution


def checkout(ref: str, into: Path) -> Path:
    """src/r1lab at `ref`, unpacked under `into`; returns the directory to put on PYTHONPATH."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref, "src/r1lab"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    path = into / "archive.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def grade(src: Path, data: Path, name: str, out: Path) -> tuple[float, int, int]:
    """(seconds, correct, lines) of `r1lab grade` on `data/name.jsonl` with the code in `src`."""
    cmd = [sys.executable, "-m", "r1lab", "grade", str(data / f"{name}.jsonl"), "--task", "code",
           "--pred-field", SETS[name], "--out", str(out)]
    start = time.monotonic()
    subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(src)}, cwd=ROOT, check=True, capture_output=True)
    seconds = time.monotonic() - start
    graded = [json.loads(line) for line in out.read_text().splitlines()]
    return seconds, sum(g["correct"] for g in graded), len(graded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="main", help="the git ref whose sandbox is 'before' (default %(default)s)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="holds humaneval.jsonl, mbpp.jsonl")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mbpp", action="store_true", help="grade MBPP's 974 references too")
    args = parser.parse_args()
    data = Path(args.data)
    names = ["humaneval"] + (["mbpp"] if args.mbpp else [])
    with tempfile.TemporaryDirectory(prefix="r1lab-bench-sandbox-") as tmp:
        sides = {"before": checkout(args.ref, Path(tmp)), "after": ROOT / "src"}
        print(f"before: {args.ref} ({subprocess.run(['git', 'rev-parse', '--short', args.ref], cwd=ROOT, capture_output=True, text=True).stdout.strip()}); "
              f"after: this working tree; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        for name in names:
            times = {side: [] for side in sides}
            for i in range(args.rounds):
                for side, src in sides.items():
                    seconds, correct, lines = grade(src, data, name, Path(tmp) / f"{name}-{side}.jsonl")
                    times[side].append(seconds)
                    print(f"{name} round {i + 1} {side}: {seconds:.2f} s, {correct}/{lines} correct", flush=True)
            before, after = (statistics.median(times[s]) for s in ("before", "after"))
            print(f"{name}: median before {before:.2f} s, after {after:.2f} s, ratio {after / before:.2f}")


if __name__ == "__main__":
    main()
