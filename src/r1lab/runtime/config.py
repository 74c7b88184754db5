"""Typed configs: dataclass defaults, then a YAML recipe, then `key=value` overrides.

A stage's settings are a (possibly nested) `@dataclass` whose fields all have defaults:

    cfg = load_config(ZeroConfig, "recipe.yaml", ["grpo.lr=1e-5", "tasks=[arithmetic,countdown]"])

Each layer applies over the one before. Dotted override keys reach into nested dataclasses and,
one level deep, into dict fields (`weights.format=0.5` changes one entry; `weights={format: 0.5}`
replaces the dict). Override values are parsed as YAML, so `1e-5`, `true`, `null` and `[a,b]` mean
what they look like. Types are checked strictly, because a silently coerced value is a wrong run
that looks right: int refuses 1.5 and true, bool refuses 1 and "1", str refuses 5. PyYAML reads
`1e-5` as a string (YAML 1.1 wants a dot), so float fields also take strings that float() parses;
it also reads yes/no/on/off as booleans, so quote those where a string is meant.

Mistakes raise a one-line `UserError` naming the source (the file, or "command line") and the
dotted field; a key that moved (a class's `RENAMED`, {old key: new dotted key}) says where it went.
Last, every dataclass in the tree that has a `validate()` method has it called, children first,
for checks that types cannot express (group_size >= 2).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import io
import json
import textwrap
import tokenize
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import cache
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from r1lab.errors import UserError
from r1lab.runtime.files import write_atomically

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """`cls` defaults, updated by the YAML file at `path` (if any), then by `key=value` overrides."""
    data = _read_yaml(path) if path is not None else {}
    with _blame(path):
        cfg = _build(cls, data)
    for item in overrides:
        with _blame("command line"):
            key, eq, text = item.partition("=")
            if not eq or not key.strip():
                raise UserError(f"override {item!r} is not key=value (e.g. grpo.lr=1e-5)")
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                raise UserError(f"{key}: cannot parse {text!r} as a YAML value") from None
            cfg = _build(cls, _nest(cfg, key.strip().split("."), value), base=cfg)
    with _blame(path):
        _validate(cfg)
    return cfg


def check_config(cfg: T) -> T:
    """`cfg` itself, once every value has the type its field declares and every `validate()` passes:
    a config built in Python gets the checks a YAML file or an override gets (UserError otherwise)."""
    with _blame(type(cfg).__name__):
        _build(type(cfg), config_to_dict(cfg))
        _validate(cfg)
    return cfg


def at_least(cfg: Any, low: float, *names: str) -> None:
    """UserError naming the first of `cfg`'s fields `names` below `low` (for `validate()` methods)."""
    for name in names:
        if getattr(cfg, name) < low:
            raise UserError(f"{name}: expected >= {low}, got {getattr(cfg, name)}")


def fractions(cfg: Any, *names: str) -> None:
    """UserError naming the first of `cfg`'s fields `names` outside [0, 1]."""
    for name in names:
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"{name}: expected a fraction in [0, 1], got {getattr(cfg, name)}")


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict of `cfg`'s settable fields (tuples become lists), ready for YAML or JSON."""
    return {name: _plain(getattr(cfg, name)) for name in _field_types(type(cfg))}


def save_config(cfg: Any, path: str | Path) -> None:
    """Write `cfg` as YAML that `load_config(type(cfg), path)` reads back to an equal config (atomically)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def config_help(cls: type, section: str = "") -> str:
    """One line per dotted field, `grpo.lr: float = 1e-06  # what it does`, defaults written as JSON
    (valid YAML), the field's comment from its declaration (`field_docs`) after `#`. `section`
    keeps the keys under one dotted prefix (`grpo`, `grpo.sampling`) or whose name holds it."""
    lines = list(_help_lines(cls()))
    if section:
        lines = [line for line in lines if line.startswith(section + ".") or section in line.partition(":")[0]]
        if not lines:
            raise UserError(f"no {cls.__name__} key is, or is under, {section!r} (see the list without it)")
    return "\n".join(lines)


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation, read from the class's source (a field's docs live where it is
    declared): the comments on the declaration's own lines, else the comment lines right above it
    (a block above a field that has its own comment is rationale, not description)."""
    docs = {}
    for parent in cls.__mro__[1:]:
        if is_dataclass(parent):
            docs |= field_docs(parent)
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return docs
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above, row = [], node.lineno - 1
            while row >= 1 and row in comments and lines[row - 1].lstrip().startswith("#"):
                above.insert(0, comments[row])
                row -= 1
            inside = [comments[r] for r in range(node.lineno, node.end_lineno + 1) if r in comments]
            docs[node.target.id] = " ".join(inside or above)
    return docs



def _read_yaml(path: str | Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read config ({e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        where = f"{path}:{e.problem_mark.line + 1}" if e.problem_mark else str(path)
        raise UserError(f"{where}: invalid YAML: {e.problem}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    if data is None:  # an empty file, or only comments
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping of keys to values, got {type(data).__name__}")
    return data


@contextmanager
def _blame(source: str | Path | None) -> Iterator[None]:
    """Prefix any UserError raised inside with its source, and keep it on one line."""
    try:
        yield
    except UserError as e:
        message = " ".join(str(e).splitlines())
        raise UserError(f"{source}: {message}" if source is not None else message) from None


def _nest(cfg: Any, parts: list[str], value: Any) -> dict:
    """{'grpo': {'lr': v}} for `grpo.lr=v`; a key past a dict field updates that one entry."""
    head, rest = parts[0], parts[1:]
    if not rest:
        return {head: value}
    current = getattr(cfg, head, None)
    if isinstance(current, dict) and len(rest) == 1:
        return {head: {**current, rest[0]: value}}
    return {head: _nest(current, rest, value)}



def _field_types(cls: type) -> dict[str, Any]:
    """Resolved type of each field that `__init__` takes (so `from __future__ import annotations` works)."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if f.init}


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and is_dataclass(tp)


def _dotted_names(cls: type, prefix: str = "") -> Iterator[str]:
    for name, tp in _field_types(cls).items():
        yield prefix + name
        if _is_config(tp):
            yield from _dotted_names(tp, f"{prefix}{name}.")


def _build(cls: type[T], data: dict, prefix: str = "", base: T | None = None) -> T:
    """`base` (default: `cls()`) with the entries of `data` checked, converted and set."""
    base = cls() if base is None else base
    types_ = _field_types(cls)
    changes = {}
    renamed = getattr(cls, "RENAMED", {})  # keys that moved: a class's {old key: new dotted key}
    for key, value in data.items():
        if key in renamed:
            raise UserError(f"{prefix}{key}: renamed to {prefix}{renamed[key]}")
        if key not in types_:
            name = f"{prefix}{key}"
            trl = getattr(cls, "TRL_NAMES", {})  # TRL's name for a key: {TRL name: dotted key}
            close = difflib.get_close_matches(name, list(_dotted_names(cls, prefix)), n=1)
            hint = (f"TRL's name; r1lab's key is '{prefix}{trl[key]}', see docs/trl.md" if key in trl
                    else f"did you mean {close[0]!r}?" if close else "valid keys: " + ", ".join(types_))
            raise UserError(f"unknown key {name!r} ({hint})")
        changes[key] = _convert(types_[key], value, prefix + key, getattr(base, key))
    return replace(base, **changes)


def _convert(tp: Any, value: Any, name: str, current: Any = None) -> Any:
    """`value` as type `tp`, or UserError naming the dotted field `name`."""
    origin, args = get_origin(tp), get_args(tp)
    if _is_config(tp):
        if not isinstance(value, dict):
            raise _expected(name, f"a mapping of {tp.__name__} keys", value)
        return _build(tp, value, name + ".", current if isinstance(current, tp) else None)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]  # only `X | None` unions are supported
        return _convert(inner, value, name, current)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        words = [a for a in args if isinstance(a, str)]
        close = difflib.get_close_matches(value, words, n=1) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _expected(name, "one of " + ", ".join(map(repr, args)), value, hint)
    if origin is list and isinstance(value, list):
        return [_convert(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is tuple and isinstance(value, (list, tuple)):
        item_types = [args[0]] * len(value) if args[1:] == (Ellipsis,) else list(args)
        if len(item_types) == len(value):
            return tuple(_convert(t, v, f"{name}[{i}]") for i, (t, v) in enumerate(zip(item_types, value)))
    if origin is dict and isinstance(value, dict):
        return {_convert(args[0], k, f"{name} key"): _convert(args[1], v, f"{name}.{k}")
                for k, v in value.items()}
    if tp is float and not isinstance(value, bool):
        with suppress(TypeError, ValueError):  # ints, and strings: PyYAML reads 1e-5 as a string
            return float(value)
    if tp in (int, str, bool) and type(value) is tp:  # type(), not isinstance: True is not an int
        return value
    hint = " (quote it to keep it a string)" if tp is str and isinstance(value, (bool, int, float)) else ""
    raise _expected(name, _type_name(tp), value, hint)


def _expected(name: str, what: str, value: Any, hint: str = "") -> UserError:
    got = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return UserError(f"{name}: expected {what}, got {got}{hint}")


def _validate(cfg: Any, prefix: str = "") -> None:
    """Call `validate()` on every dataclass in the tree, children first; name the section on error."""
    for name in _field_types(type(cfg)):
        value = getattr(cfg, name)
        if is_dataclass(value):
            _validate(value, f"{prefix}{name}.")
    if hasattr(cfg, "validate"):
        try:
            cfg.validate()
        except UserError as e:
            raise UserError(f"{prefix}{e}") from None  # validate() names fields relative to its section



def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return config_to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _help_lines(cfg: Any, prefix: str = "") -> Iterator[str]:
    for name, tp in _field_types(type(cfg)).items():
        value = getattr(cfg, name)
        if _is_config(tp) and isinstance(value, tp):
            yield from _help_lines(value, f"{prefix}{name}.")
        else:
            doc = field_docs(type(cfg)).get(name)
            yield f"{prefix}{name}: {_type_name(tp)} = {json.dumps(_plain(value))}" + (f"  # {doc}" if doc else "")


def _type_name(tp: Any) -> str:
    """`int | None`, `list[str]`, `'grpo' | 'dr_grpo'`: types as a user would write them."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " | ".join(map(repr, args))
    if origin in (Union, types.UnionType):
        return " | ".join(map(_type_name, args))
    if origin is not None:
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else _type_name(a) for a in args)}]"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))
