"""Run untrusted Python against its tests, contained: the code reward, `r1lab grade --task code`
and `r1lab eval` on HumanEval/MBPP all come here.

    run_tests(code, tests, setup="", limits=Limits()) -> Result(passed, total, status, ...)
    run_many([Program(code, tests, setup), ...], limits, workers) -> [Result, ...] (a small pool)

`tests` is a list of Python statements, usually one `assert` each (MBPP's `test_list`); each counts
on its own, so `Result.fraction` = passed / total is the reward. The program runs, then `setup`
(code run after it, e.g. MBPP's test_setup_code, which builds inputs out of the program's classes),
then each test, in order.

Three processes per run, so that the program cannot reach what decides its verdict (the files
sandbox_child.py, sandbox_judge.py, sandbox_program.py, sandbox_wire.py, sandbox_root.py say how):
  * the warden W, `python -I -S -B sandbox_child.py` (no site-packages, no PYTHON* variables, no
    bytecode written), started with a cleaned environment (PATH, HOME and TMPDIR = the working
    directory, a UTF-8 locale) in a new session. It enters the namespaces, builds the minimal root,
    forks J, then C, and SIGKILLs C when J is done or at `wall_s`;
  * the program's process P (C, once set up): runs the program and then the setup in one
    namespace, then only answers calls. It never holds the tests, the nonce or the result pipe:
    they were never in its memory (the tests and the nonce reach J on a pipe of J's own, which W
    closes before forking C). It holds stdout/stderr, /dev/null and one request and one reply pipe;
  * the judge J: runs the tests, in its own interpreter state (J's builtins, J's imports), and
    writes the verdict, one line per test, `NONCE i pass|fail`, on the result pipe only it holds.
    Every name the program and the setup defined is, in J, what P sent for it: a built-in value
    (int, float, str, list, dict, set, tuple, deque, bytearray, range, ...), or a handle. Calling
    a handle, reading or setting its attributes, indexing, iterating, len, arithmetic, str/repr
    each send one request to P; arguments go as built-in values (or handles J holds, or built-in
    types by name: `f(xs, int)`); P answers with a value or a handle, and with the final state of
    each mutable built-in argument it changed (list, dict, set, bytearray, deque), which J writes
    into its own, in place. An exception P raises reaches the test as the first built-in
    exception class of its class's MRO (`except ValueError` works), SystemExit and the like as
    a RemoteError; either fails the test unless the test catches it. J decodes P's replies with
    marshal only, then checks every type (sandbox_wire: no code objects, a size bound), so a reply
    is inert data; a malformed one ends the run as "tampered", scored 0.
Comparisons and truth tests happen in J. With `strict=True` (the default) a handle compared
(== != < <= > >= in) or tested for truth compares as the copy P sent of its real content when it
is an instance of a subclass of a built-in type (Counter, namedtuple, defaultdict, a program's
`class X(int)` with its own __eq__: the copy is read with the base type's C methods), and otherwise
fails the test (NotPlainValue). So an object whose __eq__ always says True scores nothing; a
Counter equal to the expected dict passes (all 164 HumanEval and 974 MBPP reference solutions
pass). The cost: a correct answer of a type that is neither (Fraction, Decimal, a dataclass)
fails a test that compares it. With strict=False those operations are asked of P, like the rest.
P's copy is only "the program's answer", like any return value: P is trusted for nothing, and J
never learns more from it than a value.

Time: an alarm per test in J (`test_s`), and each request tells P the time left, after which P
raises TimeLimitExceeded into the program (the program's top level and the setup get `test_s`
each too): the test fails and the next runs. A P that then does not answer within
sandbox_judge.GRACE_S (it blocked or swallowed the alarm) ends the run as "timeout", keeping the
tests already reported; so does the warden's SIGKILL at `wall_s`, which ends the whole PID
namespace; the caller SIGKILLs the warden's process group `GRACE_S` later if even that did not
end it. A P that dies (os._exit, a crash, a signal) ends the run with the tests reported before.
Since the verdict is J's, exit codes, "all tests passed" on stdout, SystemExit in a test, patching
builtins or the harness in P, walking frames or tracebacks, gc.get_objects(), /proc/self/mem,
ctypes writes to memory and writing forged lines to every inherited descriptor score nothing:
there is no nonce, no test and no result pipe in P to find or forge (the battery in
tests/grading/test_sandbox.py tries each, and each scores 2/2 against the previous, in-process
harness).

Containment, "namespaces" (we are root) and "userns" (an ordinary user, where unprivileged user
namespaces are enabled) modes (`Result.isolation`):
  * W unshares mount, network, IPC and UTS namespaces (in "userns", inside a new user namespace),
    forks J, then unshares a PID namespace and forks C, which is PID 1 there: P sees only its own
    processes in a fresh /proc, cannot signal, ptrace or read anything outside (J included: J
    is not in its PID namespace), and when it exits or is killed the kernel kills every process it
    left behind, however it detached itself. The network namespace has only a loopback that is
    down, so no connection to anything, the host's loopback included;
  * a minimal root (sandbox_root.py): a read-only tmpfs holding only the interpreter, the
    directories of its sys.path (the standard library and lib-dynload; site-packages covered
    by an empty tmpfs), the shared libraries and loader it maps after importing every extension
    module there (read from /proc/self/maps by a probe run once per interpreter) with the
    links that name them, /dev/null, /dev/zero, /dev/random, /dev/urandom and /dev/fd. P adds
    a fresh /proc, size-capped tmpfs (Limits.disk_mb each) on its working directory, /tmp,
    /var/tmp and /dev/shm, which vanish with it, and pivot_roots into it with the host's root
    detached. Not there: /etc, the home directories, the repository, ../shared/data (HumanEval's
    canonical solutions), anything of the user's. J chroots into the same root, read-only;
  * P runs as a random unused uid with no groups, no capabilities and no_new_privs ("userns":
    every capability dropped, bounding set too); J likewise, as another random uid ("userns": the
    same uid as P, which cannot see it), non-dumpable;
  * rlimits on P and J: CPU seconds (SIGXCPU, then SIGKILL), address space, file size, open files,
    processes (RLIMIT_NPROC; it counts per uid and user namespace, so the random uid or the user
    namespace makes it per sandbox, and it holds for root too, whom the kernel otherwise exempts),
    no core files;
  * stdin is /dev/null; stdout and stderr go to one pipe of which the first `output_bytes` are
    kept and at most MAX_DRAIN_BYTES read, after which the pipe is closed (the next write fails);
  * Python's socket module refuses to create sockets (socketpair() still works): a second line,
    and the only one in basic mode.

NOT contained, in any mode:
  * CPU and memory bandwidth: a program may use one core for `wall_s` seconds, and memory up to
    `memory_mb` plus its tmpfs;
  * what the tests themselves do: they run in J, contained as above but in the host's PID
    namespace, and may call the program's code only through P. A test that passes an object of
    its own (a lambda, a Fraction) to the program fails (TypeError); aliasing between arguments
    and nested mutations of a mutable argument come back as copies (J's top-level argument is
    updated in place, what it holds is replaced); a plain global of the program is J's copy as it
    was after the setup;
  * the program's names the tests use as helpers: the names the tests see (sandbox_judge.visible)
    are the program's functions, classes and values, except that a name of one of J's built-ins
    (`abs`, `sorted`) stays J's and a name of a standard module (`math`, `sys`) is J's own import,
    so `abs = lambda x: 0` or a fake `math.isclose` decides nothing; the caller's `entry_points`
    (the function under test: MBPP-126 defines `sum`) are the program's whatever their names. A
    test that compares with a helper the program itself defines (HumanEval/32's `poly`) trusts the
    program, as that benchmark does; and the setup runs in P, in the program's world, so helpers
    it defines are the program's to patch (no HumanEval or MBPP setup defines one);
  * marshal's parser in J is trusted with P's bytes (bounded to sandbox_wire.MAX_MESSAGE_BYTES).
In "basic" mode (no namespaces: user namespaces disabled, or seccomp forbids unshare) only the
rlimits, the per-test alarm, the wall-clock kill of the process group, the working directory, the
cleaned environment, the socket-module block and the split between P and J hold. P then runs as
the caller: it can read every file the caller can (the repository and ../shared/data too), write
wherever the caller can (and fill the disk, one file of `file_mb` at a time), open sockets
through ctypes, signal the caller's processes (J and the grader among them: killing J scores
nothing), and leave behind processes that left its process group (RLIMIT_CPU ends the busy ones).
J is non-dumpable, so a P of the same uid without CAP_SYS_PTRACE cannot read or write its memory;
but P can ptrace the grader itself where the kernel allows it (Yama scope 0), and as root (where
RLIMIT_NPROC does not bind either) it can do anything: basic mode does not guarantee the verdict
against a program that attacks the processes around it, only against the in-process attacks above.
`isolation()` says which mode this machine gives. "auto" (the default) is the best that works:
namespaces as root, a user namespace otherwise, basic when neither can be set up (a warning says
so, once).
"""

from __future__ import annotations

import atexit
import functools
import marshal
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")
ROOT_PROBE = Path(__file__).with_name("sandbox_root.py")
GRACE_S = 5.0  # beyond wall_s, the caller's own backstop (warden start-up, set-up, clean-up)
MAX_DRAIN_BYTES = 16 << 20  # output read and thrown away beyond output_bytes, before the pipe is closed
MAX_RESULT_BYTES = 1 << 20  # more than this on the result pipe is tampering (a real report is ~20 B/test)
ISOLATIONS = ("auto", "namespaces", "userns", "basic")
STATUSES = ("passed", "failed", "error", "timeout", "killed", "exited", "tampered")


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not the program's fault): grading must not go on."""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0  # the whole run: start-up, program, setup and every test
    test_s: float = 5.0  # the program's top level, the setup, and each test (an alarm: a test fails)
    cpu_s: int = 10  # CPU seconds per process
    memory_mb: int = 1024  # address space per process
    file_mb: int = 16  # largest file a process may write
    disk_mb: int = 64  # each tmpfs: working directory, /tmp, /var/tmp, /dev/shm
    processes: int = 32  # processes and threads, the program's first included
    open_files: int = 64
    output_bytes: int = 8192  # of stdout + stderr, kept in Result.output

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"Limits.{name}: expected > 0, got {value!r}")


@dataclass(frozen=True)
class Program:
    code: str
    tests: tuple[str, ...]
    setup: str = ""
    entry_points: tuple[str, ...] = ()  # program names the tests may take even where they shadow J's own


@dataclass
class Result:
    passed: int  # tests reported passed
    total: int  # tests given
    status: str  # one of STATUSES (see `_status`)
    detail: str = ""  # why, in words: "ZeroDivisionError in the program", "killed by SIGXCPU", ...
    errors: list[str] = field(default_factory=list)  # per test: "" passed, else the exception name or "not run"
    output: str = ""  # the first Limits.output_bytes of stdout + stderr
    seconds: float = 0.0
    isolation: str = ""  # namespaces, userns or basic (see the module docstring)

    @property
    def fraction(self) -> float:
        """The reward: the share of tests passed; 0 for a program with no tests."""
        return self.passed / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "fraction": self.fraction}


# --------------------------------------------------------------------------------------------
# Tests: checked


def check_source(source: str, what: str) -> None:
    """ValueError naming `what` if `source` is not valid Python."""
    try:
        compile(source, what, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        raise ValueError(f"{what} is not valid Python ({type(e).__name__}: {getattr(e, 'msg', e)})") from None


# --------------------------------------------------------------------------------------------
# Running


def default_python() -> str:
    """The interpreter the sandbox runs: this one, outside any virtual environment (no site-packages
    are loaded anyway)."""
    base = getattr(sys, "_base_executable", None)
    return base if base and os.path.exists(base) else sys.executable


def run_tests(code: str, tests: Sequence[str], setup: str = "", limits: Limits = Limits(), *,
              strict: bool = True, isolation: str = "auto", python: str | None = None,
              entry_points: Sequence[str] = ()) -> Result:
    """Run `code`, then `setup`, then each of `tests`, in a fresh sandbox; see the module docstring.
    `entry_points`: the program's names the tests call even where a built-in or a standard module
    has the same name (MBPP's `def sum(a, b)`); see "NOT contained" above.

    ValueError for tests or setup that are not valid Python (the caller's mistake, not the
    program's); SandboxError if the sandbox could not be built."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation: expected one of {', '.join(ISOLATIONS)}, got {isolation!r}")
    tests = list(tests)
    for i, test in enumerate(tests):
        check_source(test, f"test {i}")
    check_source(setup, "the test setup")
    if isolation == "auto" and python in _AUTO_IS_BASIC:
        isolation = "basic"
    try:
        return _run(code, tests, setup, limits, isolation, python, strict, entry_points)
    except SandboxError as e:
        if isolation != "auto":
            raise
        # Namespaces were granted but not usable (e.g. Ubuntu's AppArmor gives a user namespace no
        # capabilities, so nothing can be mounted): "auto" means the best that works, so say so once.
        _AUTO_IS_BASIC.add(python)
        warnings.warn(f"r1lab.grading.sandbox: namespaces unusable here ({e}); running in basic mode, see r1lab.grading.sandbox",
                      RuntimeWarning, stacklevel=2)
        return _run(code, tests, setup, limits, "basic", python, strict, entry_points)


_AUTO_IS_BASIC: set = set()  # interpreters for which "auto" turned out to mean "basic"


def _run(code: str, tests: list[str], setup: str, limits: Limits, isolation: str, python: str | None,
         strict: bool = True, entry_points: Sequence[str] = ()) -> Result:
    start = time.monotonic()
    python = python or default_python()
    nonce = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="r1lab-sandbox-")
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    stat_r, stat_w = os.pipe()
    judge_r, judge_w = os.pipe()
    job = {"code": code, "setup": setup, "limits": asdict(limits), "isolation": isolation, "workdir": workdir,
           "runtime": runtime(python) if isolation != "basic" else {}, "result_fd": res_w, "status_fd": stat_w,
           "judge_fd": judge_r, "grader_pid": os.getpid()}
    verdict_job = {"tests": tests, "nonce": nonce, "test_s": limits.test_s, "strict": strict,
                   "entry_points": list(entry_points)}  # the judge's alone
    try:
        try:
            proc = subprocess.Popen([python, "-I", "-S", "-B", str(CHILD), bytecode(python)], stdin=subprocess.PIPE,
                                    stdout=out_w, stderr=out_w, pass_fds=(res_w, stat_w, judge_r), cwd=workdir, env=_env(workdir),
                                    start_new_session=True)
        finally:
            for fd in (out_w, res_w, stat_w, judge_r):
                os.close(fd)
        try:
            pipes = _collect(proc, marshal.dumps(job, 4), marshal.dumps(verdict_job, 4), judge_w, out_r, res_r, stat_r,
                             limits, start + limits.wall_s + GRACE_S)
        finally:
            _kill_group(proc.pid)  # before reaping: the group id cannot be reused until then
            proc.wait()
    finally:
        for fd in (out_r, res_r, stat_r):
            os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
    result = _result(pipes, nonce, len(tests), limits)
    result.seconds = time.monotonic() - start
    return result


def _env(workdir: str) -> dict:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1"}


@functools.cache
def bytecode(python: str) -> str:
    """A directory of our own holding the compiled sandbox_* modules for `python` (its -X
    pycache_prefix), so that each run's warden reads them rather than compiling ~1,000 lines; ""
    if they could not be compiled (each warden then compiles them, as it would anyway)."""
    cache = tempfile.mkdtemp(prefix="r1lab-sandbox-bytecode-")  # mode 700: nobody else can plant code in it
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    modules = ", ".join(p.stem for p in sorted(CHILD.parent.glob("sandbox_*.py")) if p != CHILD)
    done = subprocess.run([python, "-I", "-S", "-X", f"pycache_prefix={cache}", "-c",
                           f"import sys; sys.path.insert(0, {str(CHILD.parent)!r}); import {modules}"],
                          capture_output=True, env=_env(cache), cwd="/", timeout=60, check=False)
    return cache if done.returncode == 0 else ""


@functools.cache
def runtime(python: str) -> dict:
    """What `python` needs inside the minimal root (sandbox_root.probe), asked of it once."""
    done = subprocess.run([python, "-I", "-S", "-B", "-W", "ignore", str(ROOT_PROBE)], capture_output=True,
                          env=_env(tempfile.gettempdir()), cwd="/", timeout=60, check=False)
    if done.returncode != 0:
        raise SandboxError(f"the sandbox could not be set up: {python} could not list its files: {done.stderr.decode()[-300:]}")
    return marshal.loads(done.stdout)


def run_many(programs: Sequence[Program], limits: Limits = Limits(), workers: int | None = None, **options) -> list[Result]:
    """`run_tests` for each program, `workers` at a time (default: one per CPU core, at most 8)."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1 or len(programs) <= 1:
        return [run_tests(p.code, p.tests, p.setup, limits, entry_points=p.entry_points, **options) for p in programs]
    with ThreadPoolExecutor(workers) as pool:  # threads: each only waits on its sandbox process
        return list(pool.map(lambda p: run_tests(p.code, p.tests, p.setup, limits, entry_points=p.entry_points,
                                                 **options), programs))


@functools.cache
def isolation(mode: str = "auto", python: str | None = None) -> str:
    """The isolation `mode` gives on this machine (namespaces, userns or basic), measured once by
    running an empty program; SandboxError if `mode` cannot be had."""
    return run_tests("", [], isolation=mode, python=python).isolation


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _collect(proc: subprocess.Popen, job: bytes, verdict_job: bytes, judge_w: int, out_r: int, res_r: int, stat_r: int,
             limits: Limits, deadline: float) -> dict:
    """Feed the warden its job and the judge its own (on `judge_w`, closed here); read the three
    pipes until the warden exits (its status pipe closes) or the deadline passes. Returns {"out",
    "res", "stat": bytes, "backstop": bool}."""
    try:
        proc.stdin.write(job)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    os.set_blocking(judge_w, False)
    pending = memoryview(verdict_job)
    data = {out_r: bytearray(), res_r: bytearray(), stat_r: bytearray()}
    drained = 0
    open_fds = [out_r, res_r, stat_r]
    backstop = False
    try:
        while stat_r in open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                backstop = True
                break
            readable, writable, _ = select.select(open_fds, [judge_w] if pending else [], [], left)
            if writable:
                try:
                    pending = pending[os.write(judge_w, pending):]
                except BlockingIOError:
                    pass
                except BrokenPipeError:  # the judge is gone: the status pipe says why
                    pending = pending[:0]
                if not pending:
                    os.close(judge_w)
                    judge_w = -1
            drained = _read_ready(readable, data, out_r, res_r, open_fds, drained, limits)
    finally:
        if judge_w >= 0:
            os.close(judge_w)
    # The warden has gone; whatever its children wrote before dying is in the pipes already.
    for fd in (res_r, out_r):
        while fd in open_fds and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            if fd == res_r and len(data[fd]) < MAX_RESULT_BYTES:
                data[fd] += chunk
            elif fd == out_r:
                data[out_r] += chunk[: max(0, limits.output_bytes - len(data[out_r]))]
    return {"out": bytes(data[out_r]), "res": bytes(data[res_r]), "stat": bytes(data[stat_r]), "backstop": backstop}


def _read_ready(readable: list, data: dict, out_r: int, res_r: int, open_fds: list, drained: int, limits: Limits) -> int:
    """Read what each readable pipe holds; returns the output drained so far."""
    for fd in readable:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            open_fds.remove(fd)
        elif fd == out_r:
            drained += len(chunk)
            data[out_r] += chunk[: max(0, limits.output_bytes - len(data[out_r]))]
            if drained >= MAX_DRAIN_BYTES:
                open_fds.remove(out_r)
                os.dup2(os.open(os.devnull, os.O_RDONLY), out_r)  # closes our end: writes now fail
        elif len(data[fd]) < MAX_RESULT_BYTES:
            data[fd] += chunk
    return drained


def _result(pipes: dict, nonce: str, total: int, limits: Limits) -> Result:
    """The verdict from what the pipes held; see `_status` for the order of precedence."""
    messages = _status_messages(pipes["stat"])
    for message in messages:
        if "setup_error" in message:
            raise SandboxError(f"the sandbox could not be set up: {message['setup_error']}")
    warden = messages[-1] if messages else {}
    errors = ["not run"] * total
    reported, done, failure, tampered = set(), False, "", ""
    text = pipes["res"].decode("ascii", errors="replace")
    lines = text.split("\n")
    if lines[-1]:
        tampered = "an unterminated line on the result pipe"
    for line in lines[:-1]:
        words = line.split(" ")
        if words[0] != nonce or len(words) < 2:
            tampered = "a line without the nonce on the result pipe"
            break
        if words[1] == "done" and len(words) == 2:
            done = True
        elif words[1] == "tampered" and len(words) == 2:
            tampered = "the program broke the protocol of the judge's channel"
            break
        elif words[1] == "error" and len(words) == 4:
            failure = f"{words[3]} in the {'program' if words[2] == 'solution' else 'test setup'}"
        elif len(words) == 4 and words[1].isdigit() and words[2] in ("pass", "fail"):
            i = int(words[1])
            if i >= total or i in reported or (reported and i < max(reported)):
                tampered = f"test {i} reported out of order"
                break
            reported.add(i)
            errors[i] = "" if words[2] == "pass" else words[3]
        else:
            tampered = "a malformed line on the result pipe"
            break
    passed = sum(1 for i in reported if errors[i] == "")
    output = pipes["out"][: limits.output_bytes].decode(errors="replace")
    status, detail = _status(tampered, done, passed, total, failure, warden, pipes["backstop"], limits)
    if status == "tampered":
        passed = 0
    return Result(passed, total, status, detail, errors, output, isolation=warden.get("isolation", ""))


def _status_messages(data: bytes) -> list[dict]:
    """The status pipe's messages (sandbox_child.send: a 4-byte length, then a dict in marshal);
    only the warden and the child's set-up, before the program runs, write there."""
    messages, i = [], 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        messages.append(marshal.loads(data[i + 4 : i + 4 + n]))
        i += 4 + n
    return messages


def _status(tampered: str, done: bool, passed: int, total: int, failure: str, warden: dict, backstop: bool,
            limits: Limits) -> tuple[str, str]:
    """(status, detail), the first that applies: tampered (scores 0) > passed / failed (the
    judge finished) > error (the program or setup raised; or the judge itself died) > timeout (the
    wall clock, or the program stopped answering) > killed (by a signal: CPU limit, segfault, ...)
    > exited (ended before reporting every test: os._exit, ...)."""
    if tampered:
        return "tampered", tampered
    if done:
        return ("passed", f"{passed}/{total} tests passed") if passed == total else ("failed", f"{passed}/{total} tests passed")
    if failure:
        return "error", failure
    if warden.get("judge"):
        return "error", f"the judge {warden['judge']}"
    if warden.get("timeout") or backstop:
        return "timeout", f"killed after the wall-clock limit of {limits.wall_s:g} s, or a test's {limits.test_s:g} s"
    if warden.get("signal"):
        return "killed", f"killed by {signal.Signals(warden['signal']).name}"
    return "exited", f"exited with status {warden.get('exit')} before finishing its tests"
