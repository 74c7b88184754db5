"""The shape of the package, held by reading its imports (ast, every import, inside functions too).

r1lab is a library in layers that import one way, with one module per command on top:

    errors                      the one exception type
    runtime, grading            what every run needs; how an answer is judged
    tasks                       problems and their graders
    model, engine               r1lab's own tiny model; generation
    data                        prompts, problem sets, cold start, preferences, rejection filters
    eval, rl                    measuring models; GRPO, rewards, the reward model
    stages                      one module per command, and chain.py between them
    cli                         the `r1lab` command (and __main__.py, `python -m r1lab`, above it)

A module imports r1lab modules of its own package or of a lower layer, never of its own layer's
other package or of a higher one. A stage imports no other stage except through stages/chain.py.
Nothing imports in a cycle. An import of an r1lab module inside a function (a lazy import) hides
a dependency from the reader and from this test's layer check, so it needs an entry in
ALLOW_LAZY with its reason; lazy imports of heavy optional packages (vllm, peft, datasets, ...)
are not r1lab modules and are fine. No module is longer than MAX_LINES.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = {"errors": 0, "runtime": 1, "grading": 1, "tasks": 2, "model": 3, "engine": 3, "data": 4, "eval": 5,
          "rl": 5, "stages": 6, "cli": 7, "__init__": 7, "__main__": 8}
ORCHESTRATION = "r1lab.stages.chain"
ALLOW_LAZY = {  # at most five, each with its reason
    "r1lab.cli": "each command imports its stage when it runs, so that `r1lab --help`, `r1lab grade` and a "
                 "mistake on the command line answer without importing torch",
    "r1lab.stages.eval": "the CLI builds `r1lab eval`'s parser from this module, and a finished evaluation is "
                         "scored and a bad flag reported, without importing the model side (torch)",
}
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "r1lab").rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported r1lab module, line, inside a function) for every import in `path`."""
    tree, found = ast.parse(path.read_text()), []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            lazy = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, lazy) for a in child.names if a.name.split(".")[0] == "r1lab")
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "r1lab":
                assert child.level == 0, f"{path}:{child.lineno}: relative import"
                for a in child.names:  # `from r1lab.runtime import files` imports the module r1lab.runtime.files
                    sub = f"{child.module}.{a.name}"
                    found.append((sub if sub in known else child.module, child.lineno, lazy))
            visit(child, lazy)

    visit(tree, False)
    return found


def package(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    mods = modules()
    return {name: imports(path, set(mods)) for name, path in mods.items()}


def violations(edges: dict[str, list[tuple[str, int, bool]]]) -> list[str]:
    """Every import against the layers, every stage importing a stage, every unlisted lazy import."""
    out = []
    for importer, found in edges.items():
        for imported, line, lazy in found:
            if imported == "r1lab" or imported == importer:
                continue
            a, b = package(importer), package(imported)
            where = f"{importer} (line {line}) imports {imported}"
            if a != b and LAYERS[b] >= LAYERS[a]:
                out.append(f"{where}: layer {b} ({LAYERS[b]}) is not below {a} ({LAYERS[a]})")
            if a == b == "stages" and ORCHESTRATION not in (importer, imported):
                out.append(f"{where}: stages meet only through {ORCHESTRATION}")
            if lazy and importer not in ALLOW_LAZY:
                out.append(f"{where} inside a function: import it at the top, or list it in ALLOW_LAZY with a reason")
    return out


def cycles(edges: dict[str, list[tuple[str, int, bool]]]) -> list[list[str]]:
    """The import cycles among r1lab modules (each found once, from its first module in DFS order)."""
    out, state, stack = [], {}, []

    def dfs(node: str):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted({m for m, _, _ in edges.get(node, []) if m in edges and m != node}):
            if state.get(nxt) == "open":
                out.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            dfs(node)
    return out


def test_every_package_has_a_layer():
    assert {package(m) for m in modules()} <= set(LAYERS)


def test_imports_go_down_the_layers_and_stages_meet_only_through_chain():
    assert violations(graph()) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_few_lazy_imports_each_with_a_reason():
    assert len(ALLOW_LAZY) <= 5 and all(len(reason) > 40 for reason in ALLOW_LAZY.values())
    lazy = {importer for importer, found in graph().items() if any(is_lazy for _, _, is_lazy in found)}
    assert lazy == set(ALLOW_LAZY)  # every entry is still needed


def test_no_module_is_longer_than_max_lines():
    assert {name: n for name, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES} == {}


# --- the checks above can fail: each rule on a graph with one bad edge --------------------------


@pytest.mark.parametrize("importer, imported, lazy, why", [
    ("r1lab.grading.verify", "r1lab.stages.zero", False, "is not below"),  # a backward import
    ("r1lab.rl.step", "r1lab.eval.metrics", False, "is not below"),  # across one layer
    ("r1lab.stages.pipeline", "r1lab.stages.zero", False, "only through"),  # a stage importing a stage
    ("r1lab.rl.step", "r1lab.runtime.files", True, "inside a function"),  # an unlisted lazy import
])
def test_a_bad_edge_is_reported(importer, imported, lazy, why):
    edges = graph()
    edges[importer] = edges[importer] + [(imported, 1, lazy)]
    (found,) = violations(edges)
    assert why in found and importer in found and imported in found


def test_a_cycle_is_reported():
    edges = graph()
    edges["r1lab.tasks.base"] = edges["r1lab.tasks.base"] + [("r1lab.tasks.files", 1, False)]
    assert ["r1lab.tasks.base", "r1lab.tasks.files", "r1lab.tasks.base"] in cycles(edges) or \
           ["r1lab.tasks.files", "r1lab.tasks.base", "r1lab.tasks.files"] in cycles(edges)
