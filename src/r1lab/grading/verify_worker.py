"""The symbolic half of the verifier, in its own process, under a hard wall-clock limit.

math-verify's timeout uses SIGALRM: Python only lets the main thread set it, and no signal can
interrupt sympy while it multiplies billion-digit integers in C. The only limit that always holds
is killing a process. So symbolic comparisons run here:

    parent (any thread) --request line--> zygote --fork--> one child per comparison
    parent <--reply line-- zygote <--one byte-- child   (or SIGKILL when its time is up)

The zygote is started once per parent process (`python -m r1lab.grading.verify_worker`, so it also works
inside daemonic multiprocessing workers, which may not create multiprocessing children). It
imports math-verify and sympy once (~1.3 s); each comparison is then a `fork` of that warm process
(a few ms), so a timeout kills only the one child and the next comparison pays nothing to recover.
Requests from several threads are in flight at once, each with its own deadline.

Protocol, one JSON object per line: request {"id", "pred", "gold", "timeout"}; reply {"id", "ok"}
with ok true/false, or null when the child ran out of time. The zygote exits when its stdin
closes (the parent died or shut it down) and kills its children first.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STARTUP_TIMEOUT_S = 30.0  # how long a parent waits for a (re)started zygote to import sympy
REPLY_GRACE_S = 1.0  # the parent's backstop beyond the child's own limit (fork, pipes, scheduling)


# --------------------------------------------------------------------------------------------
# Parent side


class SymbolicProcess:
    """A handle on one zygote. `equal(pred, gold, timeout)` -> True/False, or None on timeout."""

    def __init__(self):
        self._lock = threading.Lock()  # guards the fields below and writes to the pipe
        self._proc: subprocess.Popen | None = None
        self._owner_pid = -1  # the process that started the zygote (a fork must start its own)
        self._ready = threading.Event()
        self._waiting: dict[int, list] = {}  # request id -> [Event, reply]
        self._next_id = 0

    def equal(self, pred: str, gold: str, timeout: float) -> bool | None:
        done = threading.Event()
        with self._lock:
            self._ensure_started()
            proc, ready = self._proc, self._ready
            request_id = self._next_id
            self._next_id += 1
            self._waiting[request_id] = [done, None]
            line = json.dumps({"id": request_id, "pred": pred, "gold": gold, "timeout": timeout}) + "\n"
            try:
                proc.stdin.write(line.encode())
                proc.stdin.flush()
            except OSError:
                self._kill_locked()
                return None
        # The zygote counts `timeout` from when it reads the request; before its first reply it
        # may still be importing sympy, which is not the comparison's fault.
        allowance = timeout + REPLY_GRACE_S + (0.0 if ready.is_set() else STARTUP_TIMEOUT_S)
        if not done.wait(allowance):
            with self._lock:  # the zygote itself is stuck: replace it
                self._waiting.pop(request_id, None)
                if self._proc is proc:
                    self._kill_locked()
            return None
        with self._lock:
            slot = self._waiting.pop(request_id, None)
        return None if slot is None else slot[1]

    def warm_up(self) -> bool:
        """Start the zygote and wait until it is ready; False if it did not start in time."""
        with self._lock:
            self._ensure_started()
            ready = self._ready
        return ready.wait(STARTUP_TIMEOUT_S)

    def close(self) -> None:
        with self._lock:
            self._kill_locked()

    # -- internals (called with self._lock held) --

    def _ensure_started(self) -> None:
        if self._proc is not None and self._owner_pid == os.getpid() and self._proc.poll() is None:
            return
        if self._owner_pid != os.getpid():  # forked parent: the handles belong to another process
            self._proc, self._waiting = None, {}
        self._kill_locked()
        src = str(Path(__file__).resolve().parents[2])  # so `-m r1lab.grading.verify_worker` imports this copy
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "r1lab.grading.verify_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )
        self._owner_pid = os.getpid()
        self._ready = threading.Event()
        threading.Thread(target=self._read_replies, args=(self._proc, self._ready), daemon=True).start()

    def _kill_locked(self) -> None:
        if self._proc is not None and self._owner_pid == os.getpid():
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        for slot in self._waiting.values():  # nobody will answer them now: they read None
            slot[0].set()
        self._waiting = {}

    def _read_replies(self, proc: subprocess.Popen, ready: threading.Event) -> None:
        for line in proc.stdout:
            reply = json.loads(line)
            if reply.get("ready"):
                ready.set()
                continue
            with self._lock:
                slot = self._waiting.get(reply["id"])
                if slot is not None:
                    slot[1] = reply["ok"]
                    slot[0].set()


# --------------------------------------------------------------------------------------------
# Zygote side


def _compare(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    return bool(verify(parse(f"${gold}$", parsing_timeout=None), parse(f"${pred}$", parsing_timeout=None),
                       timeout_seconds=None))


def _child(pred: str, gold: str, out_fd: int) -> None:
    """Runs in the forked child: one comparison, one byte, exit without cleanup."""
    try:
        result = b"1" if _compare(pred, gold) else b"0"
    except BaseException:  # any failure of the parser or sympy grades as not equal
        result = b"0"
    os.write(out_fd, result)
    os._exit(0)


# Comparisons run once in the zygote before it forks anything: sympy and the LaTeX parser import
# and initialise much of themselves lazily, and a forked child would otherwise redo that (and lose
# it) on every request: ~250 ms per comparison cold, ~40 ms warm.
WARM_UP = [
    ("x+1", "1+x"), ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"), ("2\\pi", "\\pi+\\pi"), ("(1,2]", "(1,2)"),
    ("\\{1,2\\}", "\\{2,1\\}"), ("(3,\\frac{\\pi}{2})", "(3,\\pi/2)"), ("y=2x+1", "2x+1=y"),
    ("x^2-1", "(x-1)(x+1)"), ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("e^{i\\pi}", "-1"), ("\\sin x", "\\cos(\\pi/2-x)"), ("\\log_2 8", "3"), ("10\\%", "0.1"), ("a \\le 3", "3 \\ge a"),
]


def main() -> None:
    for pred, gold in WARM_UP:  # import and warm math-verify/sympy before forking anything
        _compare(pred, gold)
    out = sys.stdout.fileno()
    os.write(out, b'{"ready": true}\n')
    stdin = sys.stdin.fileno()
    pending = b""
    running: dict[int, tuple[int, int, float]] = {}  # read fd -> (request id, child pid, deadline)

    def reply(request_id: int, ok: bool | None) -> None:
        os.write(out, (json.dumps({"id": request_id, "ok": ok}) + "\n").encode())

    def reap(fd: int) -> None:
        _, pid, _ = running.pop(fd)
        os.close(fd)
        os.waitpid(pid, 0)

    while True:
        now = time.monotonic()
        wait = max(0.0, min(d for _, _, d in running.values()) - now) if running else None
        readable, _, _ = select.select([stdin, *running], [], [], wait)
        for fd in readable:
            if fd == stdin:
                chunk = os.read(stdin, 1 << 16)
                if not chunk:  # the parent is gone
                    for pid in [pid for _, pid, _ in running.values()]:
                        os.kill(pid, signal.SIGKILL)
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    req = json.loads(line)
                    r, w = os.pipe()
                    pid = os.fork()
                    if pid == 0:
                        os.close(r)
                        _child(req["pred"], req["gold"], w)
                    os.close(w)
                    running[r] = (req["id"], pid, time.monotonic() + float(req["timeout"]))
            else:
                data = os.read(fd, 1)
                request_id = running[fd][0]
                reap(fd)
                reply(request_id, data == b"1")
        now = time.monotonic()
        for fd in [fd for fd, (_, _, deadline) in running.items() if deadline <= now]:
            request_id, pid, _ = running[fd]
            os.kill(pid, signal.SIGKILL)
            reap(fd)
            reply(request_id, None)


if __name__ == "__main__":
    main()
