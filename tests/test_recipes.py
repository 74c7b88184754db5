"""Every shipped recipe parses into its stage's typed config, and the defaults agree with it."""

from pathlib import Path

import pytest

from r1lab.runtime.config import config_to_dict, load_config
from r1lab.stages.distill import DistillConfig
from r1lab.stages.zero import ZeroConfig

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_parses(path):
    """distill-*.yaml is `r1lab distill`'s; every other recipe is `r1lab zero`'s."""
    assert load_config(DistillConfig if path.name.startswith("distill") else ZeroConfig, path, [])


def test_default_recipe_is_the_builtin_default():
    """`make demo` runs `r1lab zero` with no recipe: the shipped zero.yaml must say the same."""
    shipped = config_to_dict(load_config(ZeroConfig, RECIPES[[p.name for p in RECIPES].index("zero.yaml")], []))
    shipped.pop("run_dir")
    default = config_to_dict(ZeroConfig())
    default.pop("run_dir")
    assert shipped == default


def test_arithmetic_recipe_is_the_pipelines_task():
    """recipes/zero-arithmetic.yaml is the R1-Zero recipe on arithmetic that the pipeline and distillation run."""
    from r1lab.stages.zero import arithmetic

    path = RECIPES[[p.name for p in RECIPES].index("zero-arithmetic.yaml")]
    shipped = config_to_dict(load_config(ZeroConfig, path, []))
    assert shipped == config_to_dict(arithmetic(ZeroConfig()))
    assert shipped["data"]["task"] == "arithmetic" and config_to_dict(ZeroConfig())["data"]["task"] == "signs"
