"""The inside of r1lab's code sandbox: a warden, a judge and the program's process.

r1lab.grading.sandbox starts this file as a script, `python -I -S -B sandbox_child.py`, with the
warden's job on stdin (a dict in marshal format 4, which every Python 3 reads) and the judge's job
(the tests and the nonce) on a pipe that only the judge reads. It imports only the standard library
and its siblings (sandbox_root, sandbox_wire, sandbox_judge, sandbox_program), because it runs
with no site-packages and, once inside, may read nothing but the interpreter's own files; and
mostly C modules (_signal, marshal rather than signal, json), because start-up is most of a run's
~50 ms. What is contained, and what is not, is stated in r1lab.grading.sandbox's docstring; this
file is how.

    warden W    reads its job; enters new mount, network, IPC and UTS namespaces (as root), or the
                same inside a new user namespace (as anyone else), or none ("basic"); builds the
                minimal root (sandbox_root.build); forks J; enters a new PID namespace and forks C;
                waits for J, SIGKILLs C (which ends every process of C's PID namespace) when J
                ends or at the wall-clock deadline; reports how C and J ended on a status pipe
                that only W holds.
    judge J     chroots into the minimal root, becomes a random unused uid (as root; no
                capabilities in a user namespace), non-dumpable, rlimited; reads the tests and the
                nonce from its pipe, which W closes before C exists; runs the tests against P and
                reports the verdict on the result pipe (sandbox_judge).
    child C     PID 1 of the new PID namespace, in a mount namespace of its own: its /proc and
                tmpfs, pivot_root into the minimal root (sandbox_root.enter), rlimits, a random
                unused uid other than J's (as root; no capabilities in a user namespace); then it
                is P: runs the program and the setup and answers J's calls (sandbox_program).
                C holds only its ends of the request and reply pipes, stdout/stderr and /dev/null.
"""

from __future__ import annotations

import _signal as signal
import ctypes
import marshal
import os
import resource
import select
import sys
import time

# Our siblings, found through this directory (-I leaves it out), compiled in advance where the
# grader says (r1lab.grading.sandbox.bytecode); the standard library's own bytecode stays where it is.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.pycache_prefix = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None
import sandbox_judge  # noqa: E402
import sandbox_program  # noqa: E402
import sandbox_root  # noqa: E402

del sys.path[0]
sys.pycache_prefix = None

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET  # the PID namespace comes after J
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
CLOSE_GRACE_S = 1.0  # how long the program may take to exit once it closed its channel
SETUP_FAILED = 70  # the exit status of W, J or C when it could not build the sandbox (the reason is on the status pipe)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_check = sandbox_root._check


def _prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


def send(fd: int, message: dict) -> None:
    """One message on the status pipe: its length (4 bytes, big-endian), then the dict in marshal."""
    data = marshal.dumps(message, 4)
    os.write(fd, len(data).to_bytes(4, "big") + data)


# --------------------------------------------------------------------------------------------
# Warden


def main() -> None:
    job = marshal.loads(sys.stdin.buffer.read())
    status_fd = job["status_fd"]
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the grader died: so do we, and J and C after us
        if os.getppid() != job["grader_pid"]:  # it died before the line above took effect
            os._exit(1)
        mode, uid = _enter_namespaces(job["isolation"])
        root = job["workdir"]  # the minimal root is mounted over it; the program's own is inside
        if mode != "basic":
            sandbox_root.build(root, job["runtime"], job["workdir"])
        requests, replies = os.pipe(), os.pipe()
    except BaseException as e:  # noqa: BLE001 -- reported to the grader, which raises SandboxError
        send(status_fd, {"setup_error": f"{type(e).__name__}: {e}"})
        os._exit(SETUP_FAILED)
    start = time.monotonic()
    j_uid = _other_uid(uid) if mode == "namespaces" else uid
    judge = os.fork()
    if judge == 0:
        os.close(requests[0])
        os.close(replies[1])  # so that the program's end, closed, reads as end of file here
        _judge(job, mode, j_uid, root, requests[1], replies[0])  # never returns
    for fd in (job["judge_fd"], job["result_fd"], requests[1], replies[0]):
        os.close(fd)
    try:
        if mode != "basic":
            _check(_libc.unshare(CLONE_NEWPID), "unshare")
    except OSError as e:
        send(status_fd, {"setup_error": f"{type(e).__name__}: {e}"})
        os._exit(SETUP_FAILED)
    pid = os.fork()
    if pid == 0:
        _child(job, mode, uid, root, requests[0], replies[1])  # never returns
    for fd in (requests[0], replies[1]):
        os.close(fd)
    send(status_fd, _supervise(pid, judge, mode, start + job["limits"]["wall_s"]))
    os._exit(0)


def _supervise(pid: int, judge: int, mode: str, deadline: float) -> dict:
    """Wait for J; then end C (and with it its PID namespace); reap both. W's report."""
    timed_out = _wait_until(judge, deadline)
    if timed_out:
        _kill(lambda: os.kill(judge, signal.SIGKILL))
    _, judge_status = os.waitpid(judge, 0)  # reaped: its pid must not be signalled again
    judge_exit = os.WEXITSTATUS(judge_status) if os.WIFEXITED(judge_status) else None
    if judge_exit == sandbox_judge.CLOSED:  # the program is ending: let it, so that its status is its own
        _wait_until(pid, min(deadline, time.monotonic() + CLOSE_GRACE_S))
        timed_out = time.monotonic() >= deadline
    # In a PID namespace C is PID 1, whose death takes every process there; in basic mode, its group.
    _kill(lambda: os.kill(pid, signal.SIGKILL) if mode != "basic" else os.killpg(pid, signal.SIGKILL))
    _, status = os.waitpid(pid, 0)
    judged = timed_out or judge_exit in (0, sandbox_judge.HUNG, sandbox_judge.CLOSED)
    return {"isolation": mode, "timeout": timed_out or judge_exit == sandbox_judge.HUNG,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "judge": None if judged else _ending(judge_status)}


def _ending(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def _other_uid(uid: int) -> int:
    """A random unused uid other than `uid`."""
    while True:
        other = _random_uid()
        if other != uid:
            return other


def _random_uid() -> int:
    return (1 << 20) + int.from_bytes(os.urandom(4), "big") % (1 << 29)  # unused by anyone


def _enter_namespaces(isolation: str) -> tuple[str, int]:
    """(the mode entered, the uid C will run as). `isolation` is auto, namespaces, userns or basic."""
    root = os.geteuid() == 0
    uid = _random_uid() if root else os.geteuid()
    if isolation == "basic" or (isolation == "auto" and not root and not _userns_possible()):
        return "basic", os.geteuid()
    if isolation == "namespaces" or (isolation == "auto" and root):
        try:
            _check(_libc.unshare(NAMESPACES), "unshare")
            return "namespaces", uid
        except OSError:
            if isolation != "auto":
                raise
            return "basic", os.geteuid()
    # userns: as an ordinary user; root first becomes the random uid, so this path can be tested as root
    outer_gid = uid if root else os.getegid()  # inside the new namespace it reads as 65534
    if root:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        _prctl(PR_SET_DUMPABLE, 1)  # changing uid made /proc/self root's; the maps below need it ours
    try:
        _check(_libc.unshare(NAMESPACES | CLONE_NEWUSER), "unshare")
    except OSError:
        if isolation != "auto":
            raise
        return "basic", os.geteuid()
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {outer_gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    return "userns", 0


def _userns_possible() -> bool:
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            return int(f.read()) > 0
    except (OSError, ValueError):
        return True  # try it; failure falls back to basic


def _wait_until(pid: int, deadline: float) -> bool:
    """Wait for child `pid` to exit, without reaping it; False if it did, True at `deadline`."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # Python < 3.9 or Linux < 5.3: poll
        pidfd = None
    while True:
        left = deadline - time.monotonic()
        if pidfd is not None:
            if select.select([pidfd], [], [], max(left, 0.0))[0]:
                return False
        elif os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return False
        else:
            time.sleep(min(0.01, max(left, 0.0)))
        if time.monotonic() >= deadline:
            return True


def _kill(fn) -> None:
    try:
        fn()
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------------------------
# Judge and child: set-up, then their work


def _judge(job: dict, mode: str, uid: int, root: str, requests_fd: int, replies_fd: int) -> None:
    status_fd, judge_fd = job["status_fd"], job["judge_fd"]
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        with open(judge_fd, "rb") as f:
            verdict_job = marshal.load(f)
        if mode != "basic":
            sandbox_root.enter_judge(root)
        _stdin_from_devnull()
        limits = job["limits"]
        _set_limits(limits, count_own_tasks=mode == "basic" and os.geteuid() != 0)
        if mode == "namespaces":
            _drop_to(uid)
        elif mode == "userns":
            _drop_capabilities()
        _prctl(PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/<pid>/mem, fd or environ for a process of the same uid
    except BaseException as e:  # noqa: BLE001 -- any failure here is the sandbox's, reported as such
        send(status_fd, {"setup_error": f"judge: {type(e).__name__}: {e}"})
        os._exit(SETUP_FAILED)
    os.close(status_fd)
    os._exit(sandbox_judge.judge(verdict_job, job["result_fd"], requests_fd, replies_fd))


def _child(job: dict, mode: str, uid: int, root: str, requests_fd: int, replies_fd: int) -> None:
    status_fd = job["status_fd"]
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        limits, workdir = job["limits"], job["workdir"]
        # A process group of its own: W kills it at the end in basic mode, and `kill(0, ...)` from
        # the program cannot reach W (which, in a user namespace, runs as the program's uid).
        os.setpgid(0, 0)
        if mode != "basic":
            sandbox_root.enter(root, workdir, int(limits["disk_mb"]), uid if mode == "namespaces" else 0)
        os.chdir(workdir)
        _stdin_from_devnull()
        _set_limits(limits, count_own_tasks=mode == "basic" and os.geteuid() != 0)
        if mode == "namespaces":
            _drop_to(uid)
        elif mode == "userns":
            _drop_capabilities()
    except BaseException as e:  # noqa: BLE001 -- any failure here is the sandbox's, reported as such
        send(status_fd, {"setup_error": f"{type(e).__name__}: {e}"})
        os._exit(SETUP_FAILED)
    os.close(status_fd)  # the program must not be able to write W's report
    sandbox_program.serve(job["code"], job["setup"], job["limits"]["test_s"], requests_fd, replies_fd)


def _stdin_from_devnull() -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _set_limits(limits: dict, count_own_tasks: bool) -> None:
    mib = 1 << 20
    processes = limits["processes"]
    if count_own_tasks:  # without a namespace, RLIMIT_NPROC counts all of this user's tasks
        processes += _tasks_of(os.geteuid())
    for name, value in (("RLIMIT_CPU", limits["cpu_s"]), ("RLIMIT_AS", limits["memory_mb"] * mib),
                        ("RLIMIT_FSIZE", limits["file_mb"] * mib), ("RLIMIT_NOFILE", limits["open_files"]),
                        ("RLIMIT_NPROC", processes), ("RLIMIT_CORE", 0)):
        value = int(value)
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU first, SIGKILL a second later
        resource.setrlimit(getattr(resource, name), (value, hard))


def _tasks_of(uid: int) -> int:
    count = 0
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == uid:
                count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return count


def _drop_to(uid: int) -> None:
    """Root -> `uid`: no capabilities, no groups, and no way back (no setuid binaries either)."""
    _drop_bounding_set()
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _drop_capabilities() -> None:
    """User-namespace root -> no capabilities, now or after any exec."""
    _drop_bounding_set()

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, all zero
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _drop_bounding_set() -> None:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


if __name__ == "__main__":
    main()
