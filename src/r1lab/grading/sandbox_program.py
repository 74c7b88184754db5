"""The program's process P of r1lab's code sandbox: runs the program and the test setup, then
answers the judge's calls (r1lab.grading.sandbox has the design, sandbox_judge.py the other end).

    serve(code, setup, test_s, requests_fd, replies_fd)    never returns

Nothing here decides a verdict, and nothing here is trusted: the program shares this process and
may rewrite any of it. Whatever P sends is only "the program's answer". The care taken below
(functions bound and builtins snapshotted before the program runs, as the old in-process harness
did) is so that an honest program, or a clumsy one that patches builtins, still gets its answers
through; not a defence.

The replies, one per request: ("ready", {name: value}) once the program and setup ran, or
("error", "solution" | "setup", exception name) instead; then for each request
(seconds, op, args, kwargs): ("ok", value, arg_states, kwarg_states) or ("raise", builtin
exception name, message). A value that is not an exact built-in (see sandbox_wire) is sent as a
handle ("h", ref, copy): `ref` indexes a table of objects kept alive here, `copy` is the real
content of an instance of a subclass of a built-in type (a Counter, a namedtuple, `class X(int)`),
read with the base type's C methods, or None. An argument of a mutable built-in type (list, dict,
set, bytearray, deque) that the call changed comes back in arg_states, else None there.
"""

from __future__ import annotations

import _operator as operator
import _signal as signal
import builtins
import os
import sys
import types

from _collections import OrderedDict, deque

import sandbox_wire as wire

_exit, _setitimer, _set_handler, _settrace, _setprofile = os._exit, signal.setitimer, signal.signal, sys.settrace, sys.setprofile
_send, _recv, _encode, _decode = wire.send, wire.recv, wire.encode, wire.decode
_ALARM, _REAL = signal.SIGALRM, signal.ITIMER_REAL
_COPIES = ((int, int.__int__), (float, float.__float__), (complex, complex.__complex__), (str, str.__str__),
           (bytes, bytes.__bytes__), (bytearray, bytes))
_CONTAINERS = ((list, "l"), (tuple, "t"), (set, "s"), (frozenset, "f"))
_OPS = {
    "call": lambda f, *a, **k: f(*a, **k), "getattr": getattr, "setattr": setattr, "delattr": delattr,
    "len": len, "iter": iter, "next": next, "repr": repr, "str": str, "hash": hash, "bool": bool, "format": format,
    "int": int, "float": float, "complex": complex, "index": operator.index, "round": round, "abs": abs,
    "divmod": divmod, "reversed": reversed, "contains": operator.contains,
    **{name: getattr(operator, name) for name in (
        "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "lshift", "rshift", "and_", "or_", "xor",
        "neg", "pos", "invert", "getitem", "setitem", "delitem", "eq", "ne", "lt", "le", "gt", "ge")},
}


class TimeLimitExceeded(BaseException):
    """The alarm of a call, of the program's top level or of the setup."""


def serve(code: str, setup: str, test_s: float, requests_fd: int, replies_fd: int) -> None:
    """Run `code` then `setup`, say so, answer requests until the judge closes the channel; then exit."""
    snapshot = dict(builtins.__dict__)
    scope = _rebuilt(globals(), snapshot)  # our functions look builtins up here, not in the module
    wire_scope = _rebuilt(vars(wire), snapshot)
    scope.update(_send=wire_scope["send"], _recv=wire_scope["recv"], _encode=wire_scope["encode"], _decode=wire_scope["decode"])
    scope["_serve"](code, setup, test_s, requests_fd, replies_fd, [sys.stdout, sys.stderr], frozenset(
        name for name, v in snapshot.items() if isinstance(v, type) and issubclass(v, BaseException)))


def _rebuilt(module_globals: dict, snapshot: dict) -> dict:
    """A copy of a module's globals whose functions look builtins up in `snapshot`."""
    scope = dict(module_globals, __builtins__=snapshot)
    for name, value in list(scope.items()):
        if type(value) is types.FunctionType and value.__module__ == module_globals["__name__"]:
            scope[name] = types.FunctionType(value.__code__, scope, value.__name__, value.__defaults__, value.__closure__)
    return scope


def _serve(code, setup, test_s, requests_fd, replies_fd, streams, errors) -> None:
    armed = [False]

    def on_alarm(signum, frame):
        if armed[0]:
            raise TimeLimitExceeded()

    _block_network()
    namespace = {"__name__": "__solution__", "__builtins__": builtins}
    for source, where in ((code, "solution"), (setup, "setup")):
        error = _run_source(source, where, namespace, test_s, on_alarm, armed, errors)
        if error is not None:
            _reply(replies_fd, ("error", where, error), streams)
            _exit(0)
    # The objects the judge holds handles to, kept alive so that a handle never changes meaning.
    table = types.SimpleNamespace(objects=[], refs={})
    table.ref, table.get = lambda obj: _table_ref(table, obj), lambda data: _table_get(table, data)
    names = {}
    for name, value in namespace.items():
        if not (name.startswith("__") and name.endswith("__")):
            try:
                names[name] = _answer_value(value, table)
            except BaseException:  # noqa: BLE001 -- too deep, say: the judge gets a handle
                names[name] = ("h", table.ref(value), None)
    _reply(replies_fd, ("ready", names), streams)
    while True:
        try:
            request = _recv(requests_fd)
        except (wire.Closed, wire.WireError):  # the judge is done
            _flush(streams)
            _exit(0)
        _reply(replies_fd, _answer(request, table, on_alarm, armed, errors), streams)


def _run_source(source, where, namespace, test_s, on_alarm, armed, errors):
    """None if `source` ran to its end in `namespace`, else the name of what stopped it."""
    try:
        compiled = compile(source, f"<{where}>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        return _error_name(e, errors)
    _set_handler(_ALARM, on_alarm)
    _settrace(None)
    _setprofile(None)
    armed[0] = True
    try:
        _setitimer(_REAL, test_s)
        exec(compiled, namespace)  # noqa: S102 -- running the program is the point
        return None
    except BaseException as e:  # noqa: BLE001 -- SystemExit too: the program failed
        return _error_name(e, errors)
    finally:
        armed[0] = False
        _setitimer(_REAL, 0)


def _answer(request, table, on_alarm, armed, errors) -> tuple:
    """The reply to one (seconds, op, args, kwargs) request."""
    try:
        seconds, op, raw_args, raw_kwargs = request
        fn = _OPS[op]
        args = [_decode(a, table.get) for a in raw_args]
        kwargs = {k: _decode(v, table.get) for k, v in raw_kwargs.items()}
    except BaseException:  # noqa: BLE001 -- a malformed request: the judge's bug, reported as such
        return ("raise", "SystemError", "a malformed request")
    _set_handler(_ALARM, on_alarm)
    armed[0] = True
    try:
        _setitimer(_REAL, max(float(seconds), 0.001))
        value = _answer_value(fn(*args, **kwargs), table)
        states = [_state(a, raw, table) for a, raw in zip(args, raw_args)]
        kwstates = {k: _state(v, raw_kwargs[k], table) for k, v in kwargs.items()}
        return ("ok", value, states, kwstates)
    except BaseException as e:  # noqa: BLE001 -- passed on to the judge
        return ("raise", _error_name(e, errors), _message(e))
    finally:
        armed[0] = False
        _setitimer(_REAL, 0)


def _state(value, raw, table):
    """The final state of a mutable built-in argument, if the call changed it; else None."""
    if type(value) not in wire.MUTABLE:
        return None
    now = _answer_value(value, table)
    return None if now == raw else now


def _answer_value(value, table):
    return _encode(value, lambda x: ("h", table.ref(x), _copy(x, table)))


def _copy(value, table):
    """The real content of an instance of a subclass of a built-in type, as wire data; else None."""
    t = type(value)
    for base, copy in _COPIES:
        if issubclass(t, base):
            return _answer_value(copy(value), table)
    if issubclass(t, OrderedDict):
        return ("o", [(_answer_value(k, table), _answer_value(v, table)) for k, v in OrderedDict.items(value)])
    if issubclass(t, dict):
        return ("d", [(_answer_value(k, table), _answer_value(v, table)) for k, v in dict.items(value)])
    if issubclass(t, deque):
        return ("q", [_answer_value(x, table) for x in deque.__iter__(value)], None)
    for base, tag in _CONTAINERS:
        if issubclass(t, base):
            return (tag, [_answer_value(x, table) for x in base.__iter__(value)])
    return None


def _table_ref(table, obj) -> int:
    key = id(obj)
    if key not in table.refs:
        table.refs[key] = len(table.objects)
        table.objects.append(obj)
    return table.refs[key]


def _table_get(table, data):
    if data[0] == "n":
        return getattr(builtins, data[1])
    if len(data) != 2 or type(data[1]) is not int or not 0 <= data[1] < len(table.objects):
        raise wire.WireError("no such handle")
    return table.objects[data[1]]


def _error_name(e: BaseException, errors: frozenset) -> str:
    """The first built-in exception class in `e`'s class's MRO (what the judge will raise)."""
    try:
        for cls in type.__dict__["__mro__"].__get__(type(e)):
            name = type.__dict__["__name__"].__get__(cls)
            if name in errors and getattr(builtins, name, None) is cls:
                return name
    except BaseException:  # noqa: BLE001, S110 -- a program's exception class may be built to break this
        pass
    return "Exception"


def _message(e: BaseException) -> str:
    try:
        return str(e)[:200]
    except BaseException:  # noqa: BLE001
        return ""


def _flush(streams) -> None:
    for stream in streams + [sys.stdout, sys.stderr]:
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001, S110 -- the program may have broken its streams
            pass


def _reply(fd, message, streams) -> None:
    """Flush the program's output (so that it is in the pipe before the judge may end the run), then send."""
    _flush(streams)
    _send_or_exit(fd, message)


def _send_or_exit(fd, message) -> None:
    """Send `message`; exit when even a short error cannot be sent: the judge reads a closed channel
    as the program's end."""
    try:
        _send(fd, message)
    except BaseException:  # noqa: BLE001 -- e.g. a value marshal cannot write, or a closed pipe
        try:
            _send(fd, ("raise", "ValueError", "the program's answer could not be sent"))
        except BaseException:  # noqa: BLE001
            _exit(0)


def _block_network() -> None:
    """No new sockets through Python (socketpair() and fromfd() still work): `_socket.socket`, which
    socket.socket subclasses when the program imports socket, refuses to make one. Only a second
    line behind the network namespace: ctypes reaches the system call without it."""
    import _socket

    class NoNewSocket(_socket.socket):
        __slots__ = ()  # socket.socket adds __weakref__ (without this, `import socket` failed)

        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if fileno is None:
                raise PermissionError(13, "network access is disabled in the sandbox")
            super().__init__(family, type, proto, fileno)

    _socket.socket = _socket.SocketType = NoNewSocket
