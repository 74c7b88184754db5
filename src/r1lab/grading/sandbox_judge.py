"""The judge J of r1lab's code sandbox: runs the tests, and alone decides and reports the verdict
(r1lab.grading.sandbox has the design, sandbox_program.py the other end).

    judge(job, result_fd, requests_fd, replies_fd) -> exit status    (0, HUNG or CLOSED)

J never runs a line of the program. Every name the program and the setup defined reaches the tests
as what P sent for it (sandbox_wire): a built-in value, or a `Remote`, a handle whose calls,
attribute reads, indexing, iteration, arithmetic ... go to P, one request and one reply each. What
J trusts of a reply is only that it is the program's answer: it is decoded by sandbox_wire (marshal,
then a strict check of types) and checked for shape; any deviation ends the run as "tampered".
Comparisons and truth tests happen here. With `strict` (the default) a Remote compared or tested
for truth uses the copy P sent of its real content (an instance of a built-in type's subclass:
Counter, namedtuple, `class X(int)`), and fails the test (NotPlainValue) when it has none (an
instance of a program's own class); its hash is the copy's, or its identity's. Without `strict`,
those go to P too.

Time: each test has `test_s` seconds, an alarm here for J's own work; each request tells P the
time left, and P answers with TimeLimitExceeded when it runs out. A P that does not answer within
GRACE_S of the deadline, or whose channel closes, ends the run: no test after it is reported, and
J exits with HUNG or CLOSED (the warden then tells a timeout from a crash).
"""

from __future__ import annotations

import _signal as signal
import builtins
import os
import sys
import time

import sandbox_wire as wire

GRACE_S = 0.5  # beyond a test's deadline, for P to say it ran out of time
HUNG = 3  # J's exit status when P stopped answering
CLOSED = 4  # J's exit status when P closed the channel (its end, most likely: the warden lets it finish)
BUILTIN_NAMES = {id(v): name for name, v in vars(builtins).items() if isinstance(v, type) or type(v) is type(len)}
STDLIB_MODULES = frozenset(getattr(sys, "stdlib_module_names", ())) - {"__future__"}
ERRORS = {name: cls for name, cls in vars(builtins).items() if isinstance(cls, type) and issubclass(cls, Exception)}


class TimeLimitExceeded(BaseException):
    """A test's time ran out."""


class NotPlainValue(Exception):
    """A test compared or tested the truth of a program's object that has no built-in content."""


class RemoteError(Exception):
    """The program raised something that is not a built-in Exception (SystemExit, ...)."""

    def __init__(self, name: str, message: str = ""):
        super().__init__(message)
        self.name = name


class ProgramGone(BaseException):
    """P closed the channel, stopped answering, or broke the protocol: the run ends."""


class Link:
    """J's end of the channel: one request, one reply."""

    def __init__(self, requests_fd: int, replies_fd: int, strict: bool):
        self.requests_fd, self.replies_fd, self.strict = requests_fd, replies_fd, strict
        self.deadline, self.in_call, self.expired = 0.0, False, False
        self.gone = ""  # "", or why the run ends: closed, hung, tampered
        self.remotes: dict[int, Remote] = {}

    def receive(self, deadline: float | None):
        try:
            return wire.recv(self.replies_fd, deadline)
        except wire.Closed:
            self.gone = "closed"
        except wire.TimedOut:
            self.gone = "hung"
        except wire.WireError:
            self.gone = "tampered"
        raise ProgramGone(self.gone)

    def decode(self, data):
        try:
            return wire.decode(data, self.remote)
        except wire.WireError:
            self.gone = "tampered"
            raise ProgramGone(self.gone) from None

    def remote(self, data) -> Remote:
        if data[0] != "h" or len(data) != 3 or type(data[1]) is not int:
            raise wire.WireError("a malformed handle")
        remote = self.remotes.get(data[1])
        if remote is None:
            remote = self.remotes[data[1]] = Remote(self, data[1])
        value = _NONE if data[2] is None else wire.decode(data[2], self.remote)
        object.__setattr__(remote, "_value", value)
        return remote

    def call(self, op: str, *args, **kwargs):
        """P's answer to `op(*args, **kwargs)`; its exception raised here as a built-in one."""
        if self.gone:
            raise ProgramGone(self.gone)
        raw = [wire.encode(a, _handle_of) for a in args]
        rawkw = {k: wire.encode(v, _handle_of) for k, v in kwargs.items()}
        self.in_call = True
        try:
            try:
                wire.send(self.requests_fd, (max(self.deadline - time.monotonic(), 0.001), op, raw, rawkw))
            except OSError:
                self.gone = "closed"
                raise ProgramGone(self.gone) from None
            reply = self.receive(self.deadline + GRACE_S)
        finally:
            self.in_call = False
        if self.expired:
            raise TimeLimitExceeded()
        return self.result(reply, args, kwargs)

    def result(self, reply, args, kwargs):
        kind = reply[0] if type(reply) is tuple and reply else None
        if kind == "ok" and len(reply) == 4 and type(reply[2]) is list and len(reply[2]) == len(args) \
                and type(reply[3]) is dict and reply[3].keys() == kwargs.keys():
            for original, state in [*zip(args, reply[2]), *((kwargs[k], s) for k, s in reply[3].items())]:
                if state is not None:
                    _update(original, self.decode(state))
            return self.decode(reply[1])
        if kind == "raise" and len(reply) == 3 and type(reply[1]) is str and type(reply[2]) is str:
            if reply[1] == "TimeLimitExceeded":
                raise TimeLimitExceeded()
            if reply[1] in ERRORS:
                raise ERRORS[reply[1]](reply[2])
            raise RemoteError(reply[1][:80], reply[2])
        self.gone = "tampered"
        raise ProgramGone(self.gone)


def _update(original, state) -> None:
    """Make J's mutable argument `original` hold `state`, in place (its type, if P kept it)."""
    if type(original) is not type(state) or type(original) not in wire.MUTABLE:
        return
    if type(original) in (list, bytearray):
        original[:] = state
    else:
        original.clear()
        (original.extend if type(original) is wire.deque else original.update)(state)


def _handle_of(value):
    if type(value) is Remote:
        return ("h", object.__getattribute__(value, "_ref"))
    if id(value) in BUILTIN_NAMES:
        return ("n", BUILTIN_NAMES[id(value)])
    raise TypeError(f"a test passed a {type(value).__name__} to the program: only built-in values and types, and the program's own objects can be")


_NONE = object()  # a Remote without a built-in copy


class Remote:
    """An object of the program's, held by handle (see the module docstring)."""

    __slots__ = ("_link", "_ref", "_value")

    def __init__(self, link: Link, ref: int):
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_value", _NONE)

    def __getattr__(self, name):
        return _link(self).call("getattr", self, name)

    def __setattr__(self, name, value):
        _link(self).call("setattr", self, name, value)

    def __delattr__(self, name):
        _link(self).call("delattr", self, name)

    def __call__(self, *args, **kwargs):
        return _link(self).call("call", self, *args, **kwargs)

    def __bool__(self):
        return bool(_content(self)) if _link(self).strict else _link(self).call("bool", self)

    def __contains__(self, item):
        return item in _content(self) if _link(self).strict else _link(self).call("contains", self, item)

    def __hash__(self):
        if not _link(self).strict:
            return _link(self).call("hash", self)
        value = object.__getattribute__(self, "_value")
        return object.__hash__(self) if value is _NONE else hash(value)


def _link(remote: Remote) -> Link:
    return object.__getattribute__(remote, "_link")


def _content(remote: Remote):
    value = object.__getattribute__(remote, "_value")
    if value is _NONE:
        raise NotPlainValue("a test compared a program's object, which is not a built-in value")
    return value


def _comparison(op: str, compare):
    def method(self, other):
        return compare(_content(self), other) if _link(self).strict else _link(self).call(op, self, other)
    return method


def _forward(op: str, reflected: bool = False):
    def method(self, *args):
        return _link(self).call(op, *args, self) if reflected else _link(self).call(op, self, *args)
    return method


for _name, _compare in (("eq", lambda a, b: a == b), ("ne", lambda a, b: a != b), ("lt", lambda a, b: a < b),
                        ("le", lambda a, b: a <= b), ("gt", lambda a, b: a > b), ("ge", lambda a, b: a >= b)):
    setattr(Remote, f"__{_name}__", _comparison(_name, _compare))
for _name in ("len", "iter", "next", "repr", "str", "format", "int", "float", "complex", "index", "round", "abs",
              "reversed", "neg", "pos", "invert", "getitem", "setitem", "delitem"):
    setattr(Remote, f"__{_name}__", _forward(_name))
for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "lshift", "rshift", "and", "or",
              "xor", "divmod"):
    _op = _name + "_" if _name in ("and", "or") else _name  # operator.and_, operator.or_
    setattr(Remote, f"__{_name}__", _forward(_op))
    setattr(Remote, f"__r{_name}__", _forward(_op, reflected=True))
del _name, _compare, _op


# --------------------------------------------------------------------------------------------
# The tests


def judge(job: dict, result_fd: int, requests_fd: int, replies_fd: int) -> int:
    """Run the tests against P; report each on `result_fd` as `NONCE i pass|fail ERROR`, then
    `NONCE done` (or `NONCE error solution|setup NAME`, `NONCE tampered`). The exit status to use."""
    nonce, test_s = job["nonce"], job["test_s"]

    def report(line: str) -> None:
        os.write(result_fd, f"{nonce} {line}\n".encode())

    tests = [compile(src, f"<test {i}>", "exec", dont_inherit=True, optimize=0) for i, src in enumerate(job["tests"])]
    link = Link(requests_fd, replies_fd, job["strict"])
    try:
        names = _hello(link)
    except ProgramGone:
        return _end(link, report)
    if names[0] == "error":
        report(f"error {names[1]} {names[2]}")
        return 0
    namespace = {"__builtins__": builtins, "__name__": "__test__", **visible(names[1], job["entry_points"], _names_used(tests))}
    signal.signal(signal.SIGALRM, lambda signum, frame: _on_alarm(link))
    for i, test in enumerate(tests):
        error = _run_test(test, namespace, link, test_s)
        if link.gone:
            return _end(link, report)
        report(f"{i} {'pass' if error is None else 'fail'} {error or '-'}")
    report("done")
    return 0


def visible(names: dict, entry_points, used: set) -> dict:
    """The program's names as the tests see them (those the tests `used`). A name that is one of
    J's built-ins (`abs`, `sorted`, `isinstance`) stays J's, and a name of a standard module (`math`, `sys`) is J's own
    import of it: otherwise a program's `abs = lambda x: 0` or a fake `math.isclose` would decide
    `assert abs(f(x) - y) < 1e-6` for it. The caller's `entry_points` (MBPP's `def sum(a, b)`, the
    function under test) are the program's whatever their names."""
    seen = {}
    for name, value in names.items():
        if name not in used:
            continue
        if name in entry_points:
            seen[name] = value
        elif name in STDLIB_MODULES:
            try:
                seen[name] = __import__(name)
            except ImportError:  # a module this interpreter lacks: the tests cannot have meant it
                pass
        elif name not in builtins.__dict__:
            seen[name] = value
    return seen


def _names_used(codes) -> set:
    """Every global name the code objects `codes` (and the functions and classes in them) refer to."""
    used, stack = set(), list(codes)
    while stack:
        code = stack.pop()
        used.update(code.co_names)
        stack.extend(c for c in code.co_consts if type(c) is type(code))
    return used


def _hello(link: Link):
    """P's first message: ("ready", names decoded) or ("error", where, name)."""
    message = link.receive(None)
    if type(message) is tuple and len(message) == 3 and message[0] == "error" and message[1] in ("solution", "setup") \
            and type(message[2]) is str and message[2].isidentifier():
        return message
    if type(message) is tuple and len(message) == 2 and message[0] == "ready" and type(message[1]) is dict \
            and all(type(k) is str and k.isidentifier() for k in message[1]):
        return "ready", {k: link.decode(v) for k, v in message[1].items()}
    link.gone = "tampered"
    raise ProgramGone(link.gone)


def _on_alarm(link: Link) -> None:
    if not link.in_call:  # during a call, P was told the deadline; `Link.call` raises after it
        raise TimeLimitExceeded()
    link.expired = True


def _run_test(test, namespace: dict, link: Link, test_s: float) -> str | None:
    """None if the test ran to its end, else the name of the exception that stopped it."""
    link.deadline, link.expired = time.monotonic() + test_s, False
    try:
        signal.setitimer(signal.ITIMER_REAL, test_s)
        exec(test, namespace)  # noqa: S102 -- the tests are the caller's code
        return None
    except BaseException as e:  # noqa: BLE001 -- SystemExit and KeyboardInterrupt fail a test too
        return e.name if isinstance(e, RemoteError) else type(e).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _end(link: Link, report) -> int:
    if link.gone == "tampered":
        report("tampered")
    return {"hung": HUNG, "closed": CLOSED}.get(link.gone, 0)
