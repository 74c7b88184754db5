r"""Relations: one spelling for each relation, and one-variable inequalities as intervals (the
part of verify.py's normalisation and equivalence that concerns `<`, `\leq`, `\neq` ...).

    one_spelling(s) -> str                     >= ≥ \ge \geqslant -> \geq; != ≠ \ne -> \neq; \lt -> <
    is_relation(s) -> bool                     holds <, >, \leq or \geq (after one_spelling)
    as_interval(s, max_chars) -> (var, interval) | None
                                               x\geq5 -> ("x", "[5,\infty)"); 5<x -> ("x", "(5,\infty)");
                                               -3<x\leq3 -> ("x", "(-3,3]")

So `x >= 5`, `5 \leq x` and `[5, \infty)` are one answer, and `y \leq 4` is not `x \leq 4`.
"""

from __future__ import annotations

import re

# relations written any way -> one spelling: >= ≥ \ge \geqslant -> \geq; != ≠ \ne \not= -> \neq; \lt -> <
_SPELLING = {">=": "\\geq ", "≥": "\\geq ", "ge": "\\geq ", "geq": "\\geq ", "geqslant": "\\geq ",
             "<=": "\\leq ", "≤": "\\leq ", "le": "\\leq ", "leq": "\\leq ", "leqslant": "\\leq ",
             "!=": "\\neq ", "≠": "\\neq ", "ne": "\\neq ", "neq": "\\neq ", "not=": "\\neq ",
             "lt": "<", "gt": ">"}
_RELATION = re.compile(r">=|<=|!=|[≥≤≠]|\\(?:geqslant|leqslant|geq|leq|neq|ge|le|ne|lt|gt|not=)(?![a-zA-Z])")


def one_spelling(s: str) -> str:
    """`s` with every relation written the one way (a command keeps a space after it)."""
    return _RELATION.sub(lambda m: _SPELLING[m.group().lstrip("\\")], s)


def is_relation(s: str) -> bool:
    return _RELATION_SPLIT.search(s) is not None


_RELATION_SPLIT = re.compile(r"\s*(<|>|\\leq|\\geq)\s*")
_VARIABLE_NAME = re.compile(r"[a-zA-Z](?:_\{?\w+\}?)?")
_FLIPPED = {"<": ">", ">": "<", "\\leq": "\\geq", "\\geq": "\\leq"}


def as_interval(s: str, max_chars: int) -> tuple[str, str] | None:
    """(variable, interval) for a normalised one-variable inequality: `x\\geq5` -> ("x", "[5,\\infty)"),
    `5<x` -> ("x", "(5,\\infty)"), `-3<x\\leq3` -> ("x", "(-3,3]"); None for anything else."""
    if len(s) > max_chars or not _RELATION_SPLIT.search(s):
        return None
    parts = _RELATION_SPLIT.split(s)

    def bound(b: str) -> bool:
        return bool(b) and not any(c in b for c in "=,;") and not _VARIABLE_NAME.fullmatch(b)  # x<y stays

    if len(parts) == 3:
        (a, op, b) = parts
        if _VARIABLE_NAME.fullmatch(a):
            var, bnd = a, b
        elif _VARIABLE_NAME.fullmatch(b):
            var, bnd, op = b, a, _FLIPPED[op]
        else:
            return None
        if not bound(bnd) or re.search(rf"(?<![a-zA-Z\\]){re.escape(var)}(?![a-zA-Z])", bnd):
            return None
        ends = {"<": f"(-\\infty,{bnd})", "\\leq": f"(-\\infty,{bnd}]", ">": f"({bnd},\\infty)", "\\geq": f"[{bnd},\\infty)"}
        return var, ends[op]
    if len(parts) == 5 and parts[1] in ("<", "\\leq") and parts[3] in ("<", "\\leq"):
        var = parts[2]
        if _VARIABLE_NAME.fullmatch(var) and bound(parts[0]) and bound(parts[4]):
            return var, f"{'(' if parts[1] == '<' else '['}{parts[0]},{parts[4]}{')' if parts[3] == '<' else ']'}"
    return None
