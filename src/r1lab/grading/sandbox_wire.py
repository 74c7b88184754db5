"""The channel between the judge and the program of r1lab's code sandbox (r1lab.grading.sandbox).

    send(fd, message); recv(fd, deadline) -> message       framed marshal, at most MAX_MESSAGE_BYTES
    encode(value, other) -> data; decode(data, handle)     values as inert built-in data

A message is a 4-byte big-endian length, then one object in marshal format 4. A value on the wire
is a scalar of an exact built-in type as it is (int, float, complex, str, bytes, bool, None,
Ellipsis), or a tuple whose first item is a tag: ("l", [items]) list, ("t", [items]) tuple,
("d", [(k, v), ...]) dict, ("o", [(k, v), ...]) OrderedDict, ("s", [items]) set, ("f", [items])
frozenset, ("q", [items], maxlen) deque, ("b", bytes) bytearray, ("r", start, stop, step) range,
("h", ...) a handle, whose meaning the caller gives (`other` and `handle`), and ("n", name) a
built-in type or function by its name in the builtins module (a test's `f(xs, int)`). Containers are
encoded only when their type is exactly the built-in one: anything else, subclasses included,
goes to `other`. `decode` accepts nothing else: a code object, an unknown tag or a malformed tuple
is WireError. Guaranteed: decoding runs no code of the sender's; what it builds is made of the
types above and what `handle` returns. Not guaranteed: marshal's own parser is trusted to be
correct on hostile bytes (it is CPython's C code, bounded here by MAX_MESSAGE_BYTES); aliasing is
not kept (a list passed twice arrives as two lists) and neither is a recursive structure (too deep:
ValueError when encoding).
"""

from __future__ import annotations

import marshal
import os
import select
import time

from _collections import OrderedDict, deque

# Bound once: the program's process may rebind os.write and the like (sandbox_program).
_write, _read_fd, _select, _now, _dumps, _loads = os.write, os.read, select.select, time.monotonic, marshal.dumps, marshal.loads
MAX_MESSAGE_BYTES = 32 << 20
MAX_DEPTH = 200
SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None), type(...)})
MUTABLE = frozenset({list, dict, set, bytearray, deque})  # a call sends back their final state


class WireError(Exception):
    """A message that breaks the protocol."""


class Closed(Exception):
    """The other end closed the channel (its process ended)."""


class TimedOut(Exception):
    """No whole message before the deadline."""


def send(fd: int, message) -> None:
    data = _dumps(message, 4)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"a message of {len(data)} bytes is over the limit of {MAX_MESSAGE_BYTES}")
    view = memoryview(len(data).to_bytes(4, "big") + data)
    while view:
        view = view[_write(fd, view):]


def recv(fd: int, deadline: float | None = None):
    """The next message; Closed at end of file, TimedOut at `deadline` (time.monotonic), WireError
    for a message over the size bound or that marshal cannot read."""
    n = int.from_bytes(_read(fd, 4, deadline), "big")
    if n > MAX_MESSAGE_BYTES:
        raise WireError(f"a message of {n} bytes announced")
    try:
        return _loads(_read(fd, n, deadline))
    except (EOFError, ValueError, TypeError) as e:
        raise WireError(f"unreadable message ({e})") from None


def _read(fd: int, n: int, deadline: float | None) -> bytes:
    data = bytearray()
    while len(data) < n:
        if deadline is not None:
            left = deadline - _now()
            if left <= 0 or not _select([fd], [], [], left)[0]:
                raise TimedOut()
        chunk = _read_fd(fd, min(n - len(data), 1 << 20))
        if not chunk:
            raise Closed()
        data += chunk
    return bytes(data)


def encode(value, other, depth: int = 0):
    """`value` as wire data; `other(x)` encodes what is not an exact built-in scalar or container."""
    t = type(value)
    if t in SCALARS:
        return value
    if depth > MAX_DEPTH:
        raise ValueError("a value too deep to send")
    sub = lambda x: encode(x, other, depth + 1)  # noqa: E731
    if t is list or t is tuple or t is set or t is frozenset:
        return (_SEQUENCE_TAGS[t], [sub(x) for x in value])
    if t is dict or t is OrderedDict:
        return ("d" if t is dict else "o", [(sub(k), sub(v)) for k, v in value.items()])
    if t is deque:
        return ("q", [sub(x) for x in value], value.maxlen)
    if t is bytearray:
        return ("b", bytes(value))
    if t is range:
        return ("r", value.start, value.stop, value.step)
    return other(value)


_SEQUENCE_TAGS = {list: "l", tuple: "t", set: "s", frozenset: "f"}
_SEQUENCES = {"l": list, "t": tuple, "s": set, "f": frozenset}


def decode(data, handle, depth: int = 0):
    """The value `data` encodes; `handle(data)` builds an ("h", ...) item. WireError if malformed."""
    t = type(data)
    if t in SCALARS:
        return data
    if t is not tuple or len(data) < 2 or depth > MAX_DEPTH:
        raise WireError("a malformed value")
    tag, sub = data[0], lambda x: decode(x, handle, depth + 1)  # noqa: E731
    if tag in _SEQUENCES and len(data) == 2:
        return _SEQUENCES[tag](sub(x) for x in _items(data[1]))
    if tag in ("d", "o") and len(data) == 2:
        return (dict if tag == "d" else OrderedDict)(_pair(item, sub) for item in _items(data[1]))
    if tag == "q" and len(data) == 3 and (data[2] is None or type(data[2]) is int):
        return deque((sub(x) for x in _items(data[1])), data[2])
    if tag == "b" and len(data) == 2 and type(data[1]) is bytes:
        return bytearray(data[1])
    if tag == "r" and len(data) == 4 and all(type(x) is int for x in data[1:]):
        return range(*data[1:])
    if tag == "h" or (tag == "n" and len(data) == 2 and type(data[1]) is str):
        return handle(data)
    raise WireError("a malformed value")


def _items(data) -> list:
    if type(data) is not list:
        raise WireError("a malformed value")
    return data


def _pair(item, sub) -> tuple:
    if type(item) is not tuple or len(item) != 2:
        raise WireError("a malformed value")
    return sub(item[0]), sub(item[1])
