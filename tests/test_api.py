"""The Python API: `import r1lab` exports a short list lazily, and the README's example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_import_r1lab_loads_no_trainer_and_exports_what_it_lists():
    code = ("import sys, r1lab, r1lab.tasks; assert 'torch' not in sys.modules and 'r1lab.stages.zero' not in "
            "sys.modules, sorted(sys.modules); import r1lab as r; "
            "missing = [n for n in r.__all__ if not hasattr(r, n)]; assert not missing, missing; print(len(r.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    import r1lab

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        r1lab.nope  # noqa: B018


def test_the_readmes_python_example_runs(tmp_path, monkeypatch, capsys):
    (example,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^pass@1 [\d.]+ -> [\d.]+$", out, re.MULTILINE)
    assert re.search(r"^re-measured pass@1 [\d.]+$", out, re.MULTILINE)
    assert (tmp_path / "runs" / "api-example" / "summary.json").exists()
    assert (tmp_path / "runs" / "api-example" / "eval" / "results.json").exists()
    card = (tmp_path / "runs" / "api-example" / "checkpoint-2" / "README.md").read_text()  # the final model's card
    assert "# r1lab zero" in card and "| final |" in card and "arXiv:2501.12948" in card
