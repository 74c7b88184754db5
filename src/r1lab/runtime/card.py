"""Model cards: the README.md every final checkpoint carries, for the Hugging Face hub.

A card says what made the model (the command and what it does, the base), the recipe (the whole
config as YAML), the data, the results measured at the end of the run (a table, or "not measured"),
and the paper to cite. Its YAML front matter is the hub's metadata: library, pipeline tag, tags,
and `base_model` where the base is a hub id. `r1lab push` uploads the checkpoint with its card.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from r1lab.runtime.files import write_atomically

CITATION = """@article{deepseekai2025r1,
  title   = {DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via Reinforcement Learning},
  author  = {DeepSeek-AI},
  journal = {arXiv preprint arXiv:2501.12948},
  year    = {2025}
}"""

CARD_NAME = "README.md"


def model_card(command: str, what: str, base: str, config: dict, data: str, results: str) -> str:
    """The card's text. `results`: a markdown table (or a sentence) of what was measured."""
    front = {"library_name": "transformers", "pipeline_tag": "text-generation",
             "tags": ["r1lab", "deepseek-r1", "reasoning", command.split()[-1]]}
    if "/" in base and not Path(base).exists():  # a hub id: the hub links the model to its base
        front["base_model"] = base
    return "\n".join([
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {command}", "",
        f"{what} Trained with r1lab, a small open implementation of the DeepSeek-R1 training recipe.", "",
        f"- Base model: `{base}`", f"- Data: {data}", "",
        "## Results", "", results, "",
        "## Recipe", "", f"`{command}` with this config (`r1lab config` explains each key):", "",
        "```yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True).strip(), "```", "",
        "## Citation", "", "```bibtex", CITATION, "```", ""])


def write_model_card(model_dir: str | Path, *args, **kwargs) -> Path:
    """Write `model_card(...)` as model_dir/README.md (atomically); returns its path."""
    path = Path(model_dir) / CARD_NAME
    write_atomically(path, model_card(*args, **kwargs))
    return path


def metrics_table(rows: dict[str, dict], keys: dict[str, str]) -> str:
    """A markdown table: one row per model (`rows`: name → metrics), one column per `keys` entry
    (metric key → column title); a missing or None value is "-"."""
    def cell(v) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| model | " + " | ".join(keys.values()) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(cell(m.get(k)) for k in keys) + " |" for name, m in rows.items()]
    return "\n".join(lines)
