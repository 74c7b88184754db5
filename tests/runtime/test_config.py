from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from r1lab.errors import UserError
from r1lab.runtime.config import config_help, config_to_dict, load_config, save_config


@dataclass
class Grpo:
    lr: float = 1e-6
    group_size: int = 8
    loss: Literal["grpo", "dr_grpo"] = "grpo"
    clip: float | None = 0.2

    def validate(self) -> None:
        if self.group_size < 2:
            raise UserError(f"group_size must be >= 2, got {self.group_size}")


@dataclass
class Recipe:
    name: str = "zero"
    seed: int = 0
    bf16: bool = False
    max_steps: int | None = None
    tasks: list[str] = field(default_factory=lambda: ["arithmetic"])
    eval_sizes: list[int] = field(default_factory=lambda: [8, 32])
    langs: tuple[str, ...] = ("en",)
    weights: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.5})
    grpo: Grpo = field(default_factory=lambda: Grpo(group_size=4))  # differs from Grpo's own default

    def validate(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max_steps must be >= 1, got {self.max_steps}")


@pytest.fixture
def load(tmp_path, monkeypatch):
    """load(yaml_text or None, overrides) -> Recipe, with the file at ./recipe.yaml when given."""
    monkeypatch.chdir(tmp_path)

    def _load(text: str | None, overrides: list[str] = (), cls: type = Recipe):
        if text is not None:
            (tmp_path / "recipe.yaml").write_text(text)
        return load_config(cls, "recipe.yaml" if text is not None else None, overrides)

    return _load


def dotted(cfg, key):
    for part in key.split("."):
        cfg = cfg[part] if isinstance(cfg, dict) else getattr(cfg, part)
    return cfg


def test_defaults_without_file_or_overrides(load):
    assert load(None) == Recipe()


@pytest.mark.parametrize(
    "text, overrides, key, expected",
    [
        ("grpo:\n  lr: 1e-5\n", [], "grpo.lr", 1e-5),  # a string to PyYAML
        ("grpo:\n  lr: 3\n", [], "grpo.lr", 3.0),
        (None, ["grpo.lr=1e-5"], "grpo.lr", 1e-5),
        (None, ["grpo.lr=.5"], "grpo.lr", 0.5),
        ("grpo:\n  lr: 0.1\n", ["grpo.lr=0.2"], "grpo.lr", 0.2),  # override beats file
        ("grpo:\n  lr: 0.1\n", [], "grpo.group_size", 4),  # partial section keeps the parent's default
        (None, ["grpo={lr: 0.5}"], "grpo.group_size", 4),
        (None, ["grpo.group_size=16", "grpo.group_size=32"], "grpo.group_size", 32),  # last wins
        (None, ["grpo.loss=dr_grpo"], "grpo.loss", "dr_grpo"),
        (None, ["tasks=[arithmetic,countdown]"], "tasks", ["arithmetic", "countdown"]),
        ("tasks: [countdown]\n", [], "tasks", ["countdown"]),
        ("tasks: []\n", [], "tasks", []),
        (None, ["eval_sizes=[1, 2, 3]"], "eval_sizes", [1, 2, 3]),
        (None, ["langs=[en,zh]"], "langs", ("en", "zh")),
        ("langs:\n  - ja\n  - ko\n", [], "langs", ("ja", "ko")),
        (None, ["weights.format=0.25"], "weights", {"accuracy": 1.0, "format": 0.25}),
        (None, ["weights={format: 2}"], "weights", {"format": 2.0}),
        ("weights:\n  format: 2\n", [], "weights", {"format": 2.0}),  # a file's dict replaces
        ("max_steps: 10\n", ["max_steps=null"], "max_steps", None),
        (None, ["max_steps=7"], "max_steps", 7),
        (None, ["grpo.clip=null"], "grpo.clip", None),
        ("grpo:\n  clip: ~\n", [], "grpo.clip", None),
        (None, ["name='1e-5'"], "name", "1e-5"),
        (None, ["name=runs/zero-7"], "name", "runs/zero-7"),
        ("", [], "seed", 0),  # empty file
        ("# only a comment\n", [], "seed", 0),
    ],
)
def test_values_reach_their_field(load, text, overrides, key, expected):
    cfg = load(text, overrides)
    value = dotted(cfg, key)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["grpo.lr=3e-6", "grpo.loss=dr_grpo", "grpo.clip=null", "max_steps=100", "bf16=true"],
        ["langs=[en,zh,ja]", "tasks=[]", "weights={a: 0.1, b: 2}", "eval_sizes=[1]"],
        ["name='yes'", "tasks=['null', '1e-5', 'true', '']"],  # strings YAML would read as other types
    ],
)
def test_save_then_load_gives_an_equal_config(tmp_path, overrides):
    cfg = load_config(Recipe, None, overrides)
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(Recipe, tmp_path / "run" / "config.yaml", []) == cfg


def test_config_to_dict_is_plain():
    d = config_to_dict(Recipe())
    assert d["langs"] == ["en"] and d["grpo"] == {"lr": 1e-6, "group_size": 4, "loss": "grpo", "clip": 0.2}
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize(
    "text, overrides, fragments",
    [
        # unknown keys, with the closest valid key
        ("grpo:\n  lr_rate: 1\n", [], ["recipe.yaml: ", "unknown key 'grpo.lr_rate'", "(did you mean 'grpo.lr'?)"]),
        ("sead: 1\n", [], ["recipe.yaml: ", "unknown key 'sead'", "(did you mean 'seed'?)"]),
        ("grp:\n  lr: 1\n", [], ["recipe.yaml: ", "unknown key 'grp'", "(did you mean 'grpo'?)"]),
        (None, ["grpo.lr_rate=1"], ["command line: ", "unknown key 'grpo.lr_rate'", "(did you mean 'grpo.lr'?)"]),
        (None, ["grpo.xxxxxxxxx=1"], ["unknown key 'grpo.xxxxxxxxx'", "(valid keys: lr, group_size, loss, clip)"]),
        # wrong types
        ("grpo:\n  group_size: abc\n", [], ["recipe.yaml: ", "grpo.group_size: expected int, got 'abc'"]),
        ("seed: 1\n", ["grpo.group_size=abc"], ["command line: ", "grpo.group_size: expected int, got 'abc'"]),
        ("grpo: 3\n", [], ["recipe.yaml: ", "grpo: expected a mapping of Grpo keys, got 3"]),
        (None, ["eval_sizes=[1, x]"], ["eval_sizes[1]: expected int, got 'x'"]),
        (None, ["tasks=arithmetic"], ["tasks: expected list[str], got 'arithmetic'"]),
        (None, ["langs=en"], ["langs: expected tuple[str, ...], got 'en'"]),
        (None, ["weights.format=abc"], ["weights.format: expected float, got 'abc'"]),
        (None, ["name=5"], ["name: expected str, got 5", "quote it"]),
        (None, ["langs=[en, no]"], ["langs[1]: expected str, got False"]),
        (None, ["seed=null"], ["seed: expected int, got None"]),
        (None, ["max_steps=abc"], ["max_steps: expected int, got 'abc'"]),
        # literals
        ("grpo:\n  loss: ppo\n", [], ["recipe.yaml: ", "grpo.loss: expected one of 'grpo', 'dr_grpo', got 'ppo'"]),
        (None, ["grpo.loss=dr-grpo"], ["grpo.loss: ", "got 'dr-grpo'", "(did you mean 'dr_grpo'?)"]),
        # the file itself
        ("seed: 1\nname: a: b\n", [], ["recipe.yaml:2: invalid YAML: mapping values are not allowed here"]),
        ("seed: [1,\n", [], ["recipe.yaml:2: invalid YAML: "]),
        ("- 1\n- 2\n", [], ["recipe.yaml: top level must be a mapping", "got list"]),
        ("just text\n", [], ["recipe.yaml: top level must be a mapping", "got str"]),
        # the command line itself
        (None, ["grpo.lr"], ["command line: override 'grpo.lr' is not key=value"]),
        (None, ["=3"], ["command line: override '=3' is not key=value"]),
        (None, ["tasks=[a,"], ["command line: tasks: cannot parse '[a,' as a YAML value"]),
        # validate() hooks, nested and top level, after overrides
        ("grpo:\n  group_size: 1\n", [], ["recipe.yaml: grpo.group_size must be >= 2, got 1"]),
        ("seed: 3\n", ["grpo.group_size=0"], ["recipe.yaml: grpo.group_size must be >= 2, got 0"]),
        (None, ["max_steps=0"], ["max_steps must be >= 1, got 0"]),
    ],
)
def test_mistakes_are_one_line_user_errors(load, text, overrides, fragments):
    with pytest.raises(UserError) as info:
        load(text, overrides)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    if text is None:
        assert "recipe.yaml" not in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match=r"^.*nope\.yaml: no such config file$"):
        load_config(Recipe, tmp_path / "nope.yaml", [])


def test_validate_without_a_file_has_no_prefix():
    with pytest.raises(UserError) as info:
        load_config(Recipe, None, ["grpo.group_size=1"])
    assert str(info.value) == "grpo.group_size must be >= 2, got 1"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("bf16=true", True),
        ("bf16=false", False),
        ("bf16=1", UserError),
        ("bf16=0", UserError),
        ("bf16='1'", UserError),
        ("bf16='true'", UserError),
        ("seed=3", 3),
        ("seed=-3", -3),
        ("seed=1.5", UserError),
        ("seed=3.0", UserError),
        ("seed=true", UserError),
        ("seed='3'", UserError),
        ("grpo.lr=1", 1.0),
        ("grpo.lr=1e-5", 1e-5),
        ("grpo.lr=2.5e+3", 2500.0),
        ("grpo.lr=true", UserError),
        ("grpo.lr=abc", UserError),
        ("grpo.lr=[1]", UserError),
    ],
)
def test_bool_int_float_strictness(override, expected):
    key = override.partition("=")[0]
    if expected is UserError:
        with pytest.raises(UserError, match=rf"^command line: {key}: expected "):
            load_config(Recipe, None, [override])
    else:
        value = dotted(load_config(Recipe, None, [override]), key)
        assert value == expected and type(value) is type(expected)


def test_help_lists_every_field_with_type_and_default():
    lines = config_help(Recipe).splitlines()
    assert lines == [
        'name: str = "zero"',
        "seed: int = 0",
        "bf16: bool = false",
        "max_steps: int | None = null",
        'tasks: list[str] = ["arithmetic"]',
        "eval_sizes: list[int] = [8, 32]",
        'langs: tuple[str, ...] = ["en"]',
        'weights: dict[str, float] = {"accuracy": 1.0, "format": 0.5}',
        "grpo.lr: float = 1e-06",
        "grpo.group_size: int = 4",
        "grpo.loss: 'grpo' | 'dr_grpo' = \"grpo\"",
        "grpo.clip: float | None = 0.2",
    ]


# --------------------------------------------------------------------------------------------
# documentation where declared, TRL's names, configs built in Python


@dataclass
class Documented:
    plain: int = 1  # a trailing comment
    # a block above, kept only when the field has no comment of its own
    above: int = 2
    # rationale above a field that has its own comment
    both: int = 3  # what it does
    spread: dict[str, int] = field(default_factory=lambda: {"a": 1,
                                                           "b": 2})  # on a continuation line
    bare: int = 4


@dataclass
class MoreDocumented(Documented):
    extra: str = "x"  # a field of the subclass


def test_field_docs_read_the_comments_where_each_field_is_declared():
    from r1lab.runtime.config import field_docs

    assert field_docs(MoreDocumented) == {"plain": "a trailing comment",
                                          "above": "a block above, kept only when the field has no comment of its own",
                                          "both": "what it does", "spread": "on a continuation line", "bare": "",
                                          "extra": "a field of the subclass"}
    lines = config_help(MoreDocumented).splitlines()
    assert lines[0] == "plain: int = 1  # a trailing comment" and "bare: int = 4" in lines


def test_help_sections_keep_a_prefix_or_the_keys_that_hold_a_name():
    assert config_help(Recipe, "grpo").splitlines()[0] == "grpo.lr: float = 1e-06"
    assert len(config_help(Recipe, "grpo").splitlines()) == 4
    assert config_help(Recipe, "lr").splitlines() == ["grpo.lr: float = 1e-06"]
    with pytest.raises(UserError, match="no Recipe key is, or is under, 'nothing'"):
        config_help(Recipe, "nothing")


def _command_configs():
    from r1lab.cli import _commands
    from r1lab.runtime.config import _field_types, _is_config

    seen: dict[type, None] = {}

    def walk(cls):
        if cls not in seen:
            seen[cls] = None
            for tp in _field_types(cls).values():
                if _is_config(tp):
                    walk(tp)

    for cls, _ in _commands().values():
        walk(cls)
    return list(seen)


def test_every_key_of_every_command_says_what_it_does():
    from r1lab.runtime.config import _field_types, field_docs

    undocumented = []
    for cls in _command_configs():
        docs = field_docs(cls)
        for name in _field_types(cls):
            doc = docs.get(name, "")
            if len(doc.split()) < 3 or doc.lower().strip(".") == name.replace("_", " "):
                undocumented.append(f"{cls.__name__}.{name}: {doc!r}")
    assert not undocumented, undocumented


TRL_CLASSES = {"ZeroConfig": "GRPOConfig", "GRPOConfig": "GRPOConfig", "SFTConfig": "SFTConfig", "RMConfig": "RewardConfig"}


def test_trl_names_are_trls_and_point_to_real_keys(tmp_path):
    import dataclasses
    from pathlib import Path

    trl = pytest.importorskip("trl")
    from r1lab.runtime.config import _dotted_names

    table = (Path(__file__).parents[2] / "docs" / "trl.md").read_text()
    with_names = [cls for cls in _command_configs() if getattr(cls, "TRL_NAMES", None)]
    assert {cls.__name__ for cls in with_names} == set(TRL_CLASSES)
    for cls in with_names:
        theirs = {f.name for f in dataclasses.fields(getattr(trl, TRL_CLASSES[cls.__name__]))}
        ours = set(_dotted_names(cls))
        for trl_name, key in cls.TRL_NAMES.items():
            assert trl_name in theirs and key in ours and trl_name not in ours, (cls.__name__, trl_name, key)
            if cls.__name__ != "GRPOConfig":  # its names appear under grpo. in the zero table
                assert f"| `{trl_name}` | `{key}` |" in table, (trl_name, key)
            with pytest.raises(UserError, match=f"TRL's name; r1lab's key is '{key}'"):
                load_config(cls, None, [f"{trl_name}=1"])


def test_configs_built_in_python_get_the_same_checks():
    from r1lab.rl.step import GRPOConfig
    from r1lab.runtime.config import check_config
    from r1lab.stages.zero import ZeroConfig, run_zero

    assert check_config(ZeroConfig()) == ZeroConfig()
    with pytest.raises(UserError, match="ZeroConfig: grpo.lr: expected a positive learning rate"):
        check_config(ZeroConfig(grpo=GRPOConfig(lr=-1.0)))
    with pytest.raises(UserError, match="ZeroConfig: seed: expected int, got '0'"):
        run_zero(ZeroConfig(seed="0"))  # refused before anything loads
    cfg = ZeroConfig()
    cfg.data.path = "problems.jsonl"
    with pytest.raises(UserError, match="data.path: read only with task=file"):
        check_config(cfg)
