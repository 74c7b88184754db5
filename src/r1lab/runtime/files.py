"""Data files in, result files out: the one reader of users' data and the one atomic writer.

Reading. Every reader yields (where, record): `where` names the file and the line (`FILE:LINE`) or
row (`FILE: row N`, `DIR [split]: row N`) for the one-line error a bad record gets.
  * `read_jsonl(path)`: (line number, object) for each non-blank line of a JSONL file, each line
    decoded as UTF-8 on its own, so that a bad byte is reported with its line;
  * `read_rows(path, split)`: a .jsonl file, a .parquet file, or a directory written by `datasets`'
    `save_to_disk` (of a DatasetDict, `split`; without one, its only split, else "test");
  * `hub_rows(hub_id, config, split)`: a Hugging Face hub dataset through `datasets` (online, or
    from its cache with HF_HUB_OFFLINE=1; offline it fails at once, `check_hub_reachable`);
  * `text_field(row, field, where)`: one field as non-empty text (numbers become text).
Every mistake (a missing file, malformed JSON, a bad byte, a missing field) is a UserError naming
the file and the line or row.

Writing. `write_atomically(path, text)` writes a temporary file beside `path`, fsyncs it and renames
it over `path`, then fsyncs the directory: a reader, or a crash at any moment, sees the old file or
the new one, never half of one. `write_json` and `write_jsonl` go through it;
`write_dir_atomically(out, fill)` does the same for a whole directory (a model, a checkpoint).
A full disk or quota (ENOSPC, EDQUOT from any write, fsync or rename, including those of torch and
safetensors) removes the temporary file or directory and raises a one-line UserError naming the
path and the cause; whatever was there before (an older file, the previous checkpoints) is as it was.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlparse

from r1lab.errors import UserError

FORMATS = ".jsonl file, .parquet file, or a directory saved by datasets' save_to_disk"

# --- reading ------------------------------------------------------------------------------------


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; UserError `FILE:LINE: ...` for a bad line."""
    path = Path(path)
    try:
        f = path.open("rb")  # bytes, decoded per line, so that a bad byte is reported with its line
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{number}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{number}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def read_rows(path: str | Path, split: str | None = None) -> Iterator[tuple[str, dict]]:
    """(where, record) for each record of a local .jsonl / .parquet file or saved datasets directory."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_dir():
        return _dataset_dir_rows(path, split)
    if path.suffix == ".jsonl":
        return ((f"{path}:{number}", row) for number, row in read_jsonl(path))
    if path.suffix == ".parquet":
        return _parquet_rows(path)
    raise UserError(f"{path}: unknown format {path.suffix!r}; expected a {FORMATS}")


def splits_of(path: str | Path) -> tuple[str, ...]:
    """The split names of a saved DatasetDict; () for a file or a single saved Dataset."""
    path = Path(path)
    if not path.is_dir():
        return ()
    import datasets

    loaded = _load_from_disk(path)
    return tuple(loaded) if isinstance(loaded, datasets.DatasetDict) else ()


def text_field(row: dict, field: str, where: str) -> str:
    """`row[field]` as non-empty text (numbers converted: 3.0 -> "3"); UserError naming `where` otherwise."""
    if field not in row:
        available = ", ".join(repr(k) for k in row) or "none"
        raise UserError(f"{where}: missing field {field!r} (fields: {available})")
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        kind = "null" if value is None else type(value).__name__
        raise UserError(f"{where}: field {field!r} is {kind}, expected a string or number")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if not text.strip():
        raise UserError(f"{where}: field {field!r} is empty")
    return text


def is_hub_id(spec: str | Path) -> bool:
    """`owner/name` and no such local path: a Hugging Face hub id (a model's or a dataset's)."""
    return not Path(spec).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(spec)) is not None


def hub_rows(hub_id: str, config: str | None, split: str) -> Iterator[tuple[str, dict]]:
    """The records of a hub dataset's split, through `datasets` (and its cache)."""
    check_hub_reachable(hub_id)
    import datasets

    try:
        loaded = datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # noqa: BLE001 -- network, auth, missing split: all are the user's to fix
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise UserError(f"{hub_id}: cannot load split {split!r} from the Hugging Face hub ({reason})") from None
    return ((f"{hub_id} [{split}]: row {i}", row) for i, row in enumerate(loaded, 1))


def check_hub_reachable(what: str, timeout: float = 5.0) -> None:
    """Fail fast when offline: `datasets` and `huggingface_hub` would otherwise retry for ~25 s.

    With HF_HUB_OFFLINE=1 nothing is checked: the caller then reads the cache, or fails at once."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        raise UserError(
            f"{what}: cannot reach {host} to download it (offline?); pass a local .jsonl/.parquet file "
            "(e.g. ../shared/data) or model directory, or set HF_HUB_OFFLINE=1 to use a copy in the "
            "Hugging Face cache"
        ) from None


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path)
    except pyarrow.ArrowException as e:
        raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    return ((f"{path}: row {i}", row) for i, row in enumerate(table.to_pylist(), 1))


def _load_from_disk(path: Path):
    import datasets  # slow to import; only directories and the hub need it

    try:
        return datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a directory saved by datasets' save_to_disk ({reason})") from None


def _dataset_dir_rows(path: Path, split: str | None) -> Iterator[tuple[str, dict]]:
    import datasets

    loaded, where = _load_from_disk(path), str(path)
    if isinstance(loaded, datasets.DatasetDict):
        split = _pick_split(list(loaded), split, where)
        loaded, where = loaded[split], f"{path} [{split}]"
    return ((f"{where}: row {i}", row) for i, row in enumerate(loaded, 1))


def _pick_split(splits: list[str], split: str | None, where: str) -> str:
    """The requested split; without one, the only split there is, else "test"."""
    if split is None and len(splits) == 1:
        return splits[0]
    split = split or "test"
    if split not in splits:
        raise UserError(f"{where}: no split {split!r} (splits: {', '.join(splits)}); pass --split")
    return split


# --- writing ------------------------------------------------------------------------------------


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


FULL = (errno.ENOSPC, errno.EDQUOT)
FULL_TEXT = tuple(os.strerror(code) for code in FULL)  # how safetensors (Rust) reports them: text only


def disk_full(e: BaseException) -> str | None:
    """The cause ("No space left on device", "Disk quota exceeded") when `e`, or an exception it
    was raised from or during, is a full disk; None otherwise. torch.save's own error names no
    errno, but the OSError of the file object it wrote to is its context."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno in FULL:
            return os.strerror(e.errno)
        if text := next((t for t in FULL_TEXT if t in str(e)), None):
            return text
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def not_written(path: Path, e: BaseException) -> None:
    """Raise the one-line UserError of a full disk (`e` chained), else nothing (the caller re-raises `e`)."""
    if cause := disk_full(e):
        raise UserError(f"{path}: not written: {cause} (its partial copy is removed; what was written before "
                        "is unchanged); free some space and run again") from e


def write_atomically(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` through a synced temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        not_written(path, e)
        raise
    fsync(path.parent)
    return path


def write_json(path: str | Path, obj) -> Path:
    return write_atomically(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    return write_atomically(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_dir_atomically(out: str | Path, fill: Callable[[Path], None]) -> Path:
    """`fill(tmp)` writes a temporary directory, which is fsynced and renamed to `out`: `out` is
    never seen half-written (an older `out` is replaced). When anything fails before the rename,
    the temporary directory is removed (a full disk: UserError, see the module docstring)."""
    out = Path(out)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a process killed while writing it
    try:
        tmp.mkdir(parents=True)
        fill(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                fsync(f)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        not_written(out, e)
        raise
    fsync(out.parent)
    return out
