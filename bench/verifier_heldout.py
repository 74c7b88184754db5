"""A held-out check of r1lab's grader: (gold, prediction, label) cases from public verifier test suites.

    .venv/bin/python bench/verifier_heldout.py MATH_VERIFY_GIT [LIGHTEVAL_GIT] [--show-misses]

Each argument is a git directory (a clone, or a bare mirror such as /work/.mirror/huggingface+
Math-Verify/repo); the test files are read from its HEAD with `git show`, and nothing from them is
stored in this repository. Read:
  math-verify: tests/test_all.py, test_numina_cases.py, test_open_thoughts.py, test_boxed.py,
               test_yujianll.py
  lighteval:   tests/unit/metrics/test_extractive_match.py
Every test function decorated with `pytest.mark.parametrize("gold, pred, expected"...)` (or
`result`) is parsed with `ast` (its cases are literals; `Language.X` becomes "X"), and the call it
makes to compare them (`compare_strings(..., match_types=..., precision=...)` or plain
`verify(parse(gold), parse(pred))`) is read from its body.

Kept: cases whose label a sound verifier should reproduce whatever its configuration. Left out,
with a count printed per reason:
  * match_types without "latex" (`["expr"]` alone, `["NativeLetters"]`): the label depends on the
    library's extraction config (expression-only reading of raw text such as "1 000" or the
    decimal comma in "1000,99"; multiple-choice letter indices), not on mathematics;
  * a precision other than the default 6, or precision as a test parameter: the label is a float
    tolerance setting (r1lab compares numbers exactly and never accepts a rounded decimal);
  * `allow_set_relation_comp=True` or `strict=False`: labels of non-default comparison modes;
  * labels other than 0/1 and cases that are not string literals;
  * LABEL_ERRORS below: cases whose label is mathematically wrong (listed one by one, each with
    its reason, decided by the mathematics and not by any grader's output);
  * duplicates (lighteval repeats most of math-verify's cases): a (gold, pred, label) triple
    counts once; a (gold, pred) pair labelled both ways is dropped.

Graded:
  r1lab:       extract.gold_answer(gold, prose=True), then verify.grade(pred, gold', bare=True,
               prose=True), exactly as `r1lab grade` grades a line
  math-verify: bool(verify(parse(gold), parse(pred))), its default extraction configs, gold first
Printed: per source file, how many of the kept cases each agrees with the label on, then the
totals; with --show-misses, every case either gets wrong.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from collections import Counter
from pathlib import Path

MATH_VERIFY_FILES = ["tests/test_all.py", "tests/test_numina_cases.py", "tests/test_open_thoughts.py",
                     "tests/test_boxed.py", "tests/test_yujianll.py"]
LIGHTEVAL_FILES = ["tests/unit/metrics/test_extractive_match.py"]
LABEL_ERRORS = {  # (gold, pred): why the label is not the mathematical truth
    ("$1 - \\frac{1}{\\mathrm{e}}$", "$1 + \\frac{1}{\\mathrm{e}}$"): "1-1/e and 1+1/e differ, labelled equal",
    ("$9$", "Answer $ \n 9 \n $"): "the answer 9 is stated; labelled wrong by math-verify's rule that inline math "
                                    "holds no newline (its display-math twins are labelled right)",
    ("$9$", "Answer \\( \n 9 \n \\)"): "as above, for \\( \\)",
    ("\\boxed{1} and and and or thus but \\boxed{2} and \\boxed{3}", "$\\boxed{2,3}$"):
        "a gold of three boxes parted by filler words has no one meaning; the label is lighteval's choice of "
        "which boxes count (1,2,3 labelled wrong, 2,3 right)",
    ("\\boxed{1} and and and or thus but \\boxed{2} and \\boxed{3}", "$\\boxed{1,2,3}$"): "as above",
}


def git_show(git_dir: Path, path: str) -> str | None:
    """The text of `path` at HEAD of `git_dir`, or None if it has no such file."""
    proc = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"HEAD:{path}"], capture_output=True, text=True)
    if proc.returncode != 0 and (git_dir / ".git").exists():
        proc = subprocess.run(["git", f"--git-dir={git_dir / '.git'}", "show", f"HEAD:{path}"],
                              capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def _literal(node: ast.AST):
    """A literal, with `Language.CHINESE`-style attributes read as their last name."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    return ast.literal_eval(node)


def _compare_call(fn: ast.FunctionDef) -> dict | None:
    """How the test compares: {"match_types", "precision", "mode"} from its compare_strings call,
    {"plain": True} for verify(parse(gold), parse(pred)); None when neither is found."""
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
        if name == "compare_strings":
            kw = {k.arg: k.value for k in node.keywords}
            out = {"match_types": ["latex", "expr"], "precision": 6, "mode": "default"}
            if "match_types" in kw:
                out["match_types"] = _literal(kw["match_types"]) if not isinstance(kw["match_types"], ast.Name) else "param"
            if len(node.args) >= 4 and isinstance(node.args[3], ast.Name):
                out["match_types"] = "param"  # compare_strings(gold, pred, language, match_type)
            if "precision" in kw:
                out["precision"] = _literal(kw["precision"]) if isinstance(kw["precision"], ast.Constant) else "param"
            for flag in ("allow_set_relation_comp", "strict"):
                if flag in kw:
                    out["mode"] = flag
            return out
        if name == "verify" and node.args and isinstance(node.args[0], ast.Call):
            return {"plain": True}
    return None


def cases_of(source: str, origin: str, dropped: Counter) -> list[dict]:
    """The (gold, pred, expected) cases of one test file, config-dependent ones counted in `dropped`."""
    out = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        call = _compare_call(fn)
        for dec in fn.decorator_list:
            if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                continue
            names = [n.strip() for n in dec.args[0].value.split(",")]
            if "gold" not in names or "pred" not in names:
                continue
            label_name = "expected" if "expected" in names else "result" if "result" in names else None
            for row in dec.args[1].elts:
                try:
                    values = dict(zip(names, _literal(row)))
                except (ValueError, TypeError, SyntaxError):
                    dropped["not a literal"] += 1
                    continue
                reason = _excluded(call, values, label_name)
                if reason:
                    dropped[reason] += 1
                    continue
                out.append({"gold": values["gold"], "pred": values["pred"], "expected": bool(values[label_name]),
                            "origin": f"{origin}::{fn.name}"})
    return out


def _excluded(call: dict | None, values: dict, label_name: str | None) -> str | None:
    """Why a case is left out (see the module docstring), or None to keep it."""
    if call is None or label_name is None:
        return "no gold/pred/label comparison"
    if not isinstance(values["gold"], str) or not isinstance(values["pred"], str):
        return "not a literal"
    if values[label_name] not in (0, 1, True, False):
        return "label not 0/1"
    if "plain" in call:
        return None
    types = values.get("match_type", call["match_types"])
    if types == "param" or not isinstance(types, (list, tuple)) or "latex" not in types:
        return "match_types without latex (config-specific extraction)"
    if "precision" in values or call["precision"] != 6:
        return "non-default precision (float tolerance)"
    if call["mode"] != "default":
        return f"non-default comparison mode ({call['mode']})"
    return None


def collect(math_verify: Path, lighteval: Path | None) -> tuple[list[dict], Counter]:
    dropped: Counter = Counter()
    cases = []
    for git_dir, files in ((math_verify, MATH_VERIFY_FILES), (lighteval, LIGHTEVAL_FILES)):
        if git_dir is None:
            continue
        for path in files:
            source = git_show(git_dir, path)
            if source is None:
                raise SystemExit(f"{git_dir}: no {path} at HEAD")
            cases += cases_of(source, f"{git_dir.parent.name.split('+')[-1]}/{Path(path).name}", dropped)
    labels: dict[tuple[str, str], set[bool]] = {}
    for c in cases:
        labels.setdefault((c["gold"], c["pred"]), set()).add(c["expected"])
    kept, seen = [], set()
    for c in cases:
        key = (c["gold"], c["pred"])
        if key in LABEL_ERRORS:
            dropped["label mathematically wrong (LABEL_ERRORS)"] += 1
        elif len(labels[key]) > 1:
            dropped["labelled both ways"] += 1
        elif key in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            kept.append(c)
    return kept, dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("math_verify", type=Path, help="git dir of huggingface/Math-Verify")
    ap.add_argument("lighteval", type=Path, nargs="?", help="git dir of huggingface/lighteval")
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()
    cases, dropped = collect(args.math_verify, args.lighteval)

    from math_verify import parse, verify

    from r1lab.grading import verify as r1
    from r1lab.grading.extract import gold_answer

    def mv(gold: str, pred: str) -> bool:
        try:
            return bool(verify(parse(gold), parse(pred)))
        except Exception:
            return False

    def ours(gold: str, pred: str) -> bool:
        return r1.grade(pred, gold_answer(gold, prose=True), bare=True, prose=True)[1]

    r1.warm_up()
    per_file: dict[str, list[int]] = {}
    for c in cases:
        c["r1lab"], c["math-verify"] = ours(c["gold"], c["pred"]), mv(c["gold"], c["pred"])
        row = per_file.setdefault(c["origin"].split("::")[0], [0, 0, 0])
        row[0] += 1
        row[1] += c["r1lab"] == c["expected"]
        row[2] += c["math-verify"] == c["expected"]
    print("left out: " + "; ".join(f"{reason} {n}" for reason, n in dropped.most_common()))
    print(f"{'source':<40} {'cases':>5} {'r1lab':>6} {'m-v':>6}")
    for name, (n, a, b) in per_file.items():
        print(f"{name:<40} {n:>5} {a:>6} {b:>6}")
    total = [sum(r[i] for r in per_file.values()) for i in range(3)]
    print(f"{'total':<40} {total[0]:>5} {total[1]:>6} {total[2]:>6}")
    print(f"heldout r1lab {total[1]}/{total[0]}, math-verify {total[2]}/{total[0]}")
    if args.show_misses:
        for c in cases:
            for who in ("r1lab", "math-verify"):
                if c[who] != c["expected"]:
                    print(f"MISS {who:<11} label {int(c['expected'])} {c['origin']}: gold {c['gold']!r} pred {c['pred'][-300:]!r}")


if __name__ == "__main__":
    main()
