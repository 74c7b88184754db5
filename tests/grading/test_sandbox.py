"""The code sandbox: a battery of hostile programs, then honest ones and the verdict protocol.

Every hostile program must (1) score exactly what its tests honestly earn (0 for nearly all), with
the expected status; (2) leave the host as it was: no file written where it aimed, no connection
to a server on the host's loopback, a canary process of ours still alive, no process of the
sandbox left behind; (3) leave the grader working: an honest program passes right after it.
Each program's tests are written so that an escape would make them pass, so a containment that
broke would fail here. The battery runs in every mode this machine offers: the default (here, as
root: namespaces), a user namespace (as an ordinary user would get it), and "basic" for the
programs basic mode claims to contain (r1lab.grading.sandbox's docstring).
"""

import marshal
import os
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from r1lab.grading import sandbox
from r1lab.grading.sandbox import (
    Limits,
    Program,
    SandboxError,
    run_many,
    run_tests,
)

REPO = Path(__file__).resolve().parents[2]
DATA_FILE = REPO.parent / "shared" / "data" / "humaneval.jsonl"  # HumanEval's canonical solutions: the answer key
# cpu_s above wall_s: a busy loop that defeats the per-test alarm must end by the wall-clock kill
# ("timeout"); with the two equal, RLIMIT_CPU raced it and sometimes won ("killed by SIGXCPU")
FAST = Limits(wall_s=2.0, test_s=0.5, cpu_s=3, memory_mb=512, file_mb=4, disk_mb=16, processes=16)


@dataclass(frozen=True)
class Hostile:
    name: str
    code: str  # str.format-ed with the host's facts (see `host`): {port}, {grader_pid}, {home}, ...
    tests: tuple = ("assert f() == 1",)  # formatted too
    passed: int = 0  # what its tests honestly earn
    statuses: tuple = ()  # the statuses it may end with
    basic: bool = False  # contained in basic mode too
    canaries: tuple = ()  # host paths (formatted) that must not exist afterwards
    needs: str = ""  # a host path (formatted) the case is meaningless without


ANYTHING = '''
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __bool__(self):
        return True
    def __lt__(self, other):
        return True
    __le__ = __gt__ = __ge__ = __lt__
    def __sub__(self, other):
        return self
    def __abs__(self):
        return self
    def __contains__(self, item):
        return True
    def __hash__(self):
        return 0
def f(x=0):
    return Anything()
'''

RAW_CONNECT = '''
import ctypes, socket, struct
def f():
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        return 0
    # struct sockaddr_in: family in host order, port in network order, address, 8 bytes of zero
    addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", {port}) + socket.inet_aton("127.0.0.1") + bytes(8)
    return 1 if libc.connect(fd, addr, len(addr)) == 0 else 0
'''

WRITE = '''
def f():
    wrote = 0
    for path in {paths}:
        try:
            with open(path, "w") as fh:
                fh.write("escaped")
            wrote += 1
        except OSError:
            pass
    return wrote
'''

# --- harness forgery: each of these reports its tests passed against an in-process harness ---
FORGE = '''
import os
def forge(nonce, fds, n=2):
    lines = "".join(f"{{nonce}} {{i}} pass -\\n" for i in range(n)) + f"{{nonce}} done\\n"
    for fd in fds:
        try:
            os.write(fd, lines.encode())
        except OSError:
            pass
    os._exit(0)
'''

FRAMES = FORGE + '''
import sys
def f():
    frame = sys._getframe()
    while frame is not None:
        seen = frame.f_locals
        if isinstance(seen.get("nonce"), str) and isinstance(seen.get("result_fd"), int):
            forge(seen["nonce"], [seen["result_fd"]])
        frame = frame.f_back
    return 0
'''

TRACEBACK = FORGE + '''
def f():
    try:
        raise ValueError
    except ValueError as e:
        frame = e.__traceback__.tb_frame
    while frame is not None:
        for value in frame.f_globals.values():
            code = getattr(value, "__code__", None)
            if code is not None and "result_fd" in code.co_varnames and frame.f_back is not None:
                pass
        seen = frame.f_locals
        job = seen.get("job")
        if isinstance(job, dict) and "nonce" in job:
            forge(job["nonce"], [job["result_fd"]])
        frame = frame.f_back
    return 0
'''

GC = FORGE + '''
import gc
def f():
    for obj in gc.get_objects():
        if isinstance(obj, dict) and isinstance(obj.get("nonce"), str) and "result_fd" in obj:
            forge(obj["nonce"], [obj["result_fd"]], len(obj["tests"]))
    return 0
'''

PROC_MEM = FORGE + '''
import os, re, stat
def pipes():
    out = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode) and os.fstat(fd).st_mode & stat.S_IWUSR:
                out.append(fd)
        except OSError:
            pass
    return out
def nonces():
    import ctypes
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: dropping the uid made /proc/self root's
    found = set()
    mem = open("/proc/self/mem", "rb", buffering=0)
    for line in open("/proc/self/maps"):
        fields = line.split()
        if "rw" not in fields[1]:
            continue
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        try:
            mem.seek(lo)
            data = mem.read(hi - lo)
        except (OSError, OverflowError, ValueError):
            continue
        for m in re.finditer(rb"(?<![0-9a-f])[0-9a-f]{{32}}\\x00", data):
            start = m.start()
            if start >= 32 and int.from_bytes(data[start - 32 : start - 24], "little") == 32:
                found.add(m.group()[:32].decode())
    return found
def f():
    mine = {{"%032x" % 0}}
    for nonce in nonces() - mine:
        forge(nonce, pipes())
    return 0
'''

CTYPES = '''
import ctypes
def f():
    # CPython 3.11 int layout: refcount, type, size, then 30-bit digits: make the object 200 read as 0
    ctypes.c_ssize_t.from_address(id(200) + 16).value = 0
    return 0
'''

EVERY_FD = FORGE + '''
import gc
def f():
    found = [obj["nonce"] for obj in gc.get_objects() if isinstance(obj, dict) and isinstance(obj.get("nonce"), str)]
    forge(found[0] if found else "0" * 32, range(256))
'''

READS_TESTS = '''
import gc, re
def f():
    # the expected value, read from the tests' source or compiled code wherever it is in this process
    for obj in gc.get_objects():
        for text in (obj if isinstance(obj, (list, tuple)) else obj.values() if isinstance(obj, dict) else ()):
            if isinstance(text, str):
                found = re.search(r"f\\(\\) == (\\d+)", text)
                if found:
                    return int(found.group(1))
            code = getattr(text, "co_consts", None)
            if code and "f" in text.co_names:
                return next(c for c in code if isinstance(c, int) and c > 1)
    return 0
'''

READ = '''
def f():
    return len(open({path!r}, 'rb').read())
'''


BATTERY = [
    # --- time ---
    Hostile("infinite loop at the top level", "while True:\n    pass\n", statuses=("error",), basic=True),
    Hostile("infinite loop in one test; the other tests still count",
            "def f():\n    while True:\n        pass\ndef g():\n    return 2\n",
            ("assert g() == 2", "assert f() == 1", "assert g() == 2"), passed=2, statuses=("failed",), basic=True),
    Hostile("loop that blocks the per-test alarm",
            "import signal\ndef f():\n    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGALRM}})\n    while True:\n"
            "        pass\n", statuses=("timeout",), basic=True),
    Hostile("loop that swallows the per-test alarm",
            "def f():\n    while True:\n        try:\n            while True:\n                pass\n"
            "        except BaseException:\n            pass\n", statuses=("timeout",), basic=True),
    Hostile("sleeps forever", "import time\ntime.sleep(10**6)\n", statuses=("error",), basic=True),
    # --- processes ---
    Hostile("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            statuses=("error", "timeout")),
    Hostile("fork bomb through ctypes", "import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()\n",
            statuses=("error", "timeout")),
    Hostile("thread bomb", "import threading, time\nfor _ in range(10000):\n"
            "    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()\n", statuses=("error",), basic=True),
    Hostile("daemons that leave the process group",
            "import os, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(987.25)'], start_new_session=True)\n"
            "if os.fork() == 0:\n    os.setsid()\n    time.sleep(1000)\n    os._exit(0)\ndef f():\n    return 1\n",
            passed=1, statuses=("passed",)),
    # --- memory and stack ---
    Hostile("allocates 8 GiB at once", "x = bytearray(8 << 30)\n", statuses=("error",), basic=True),
    Hostile("grows until memory runs out", "chunks = []\nwhile True:\n    chunks.append(bytearray(10 << 20))\n",
            statuses=("error",), basic=True),
    Hostile("recursion without end", "def f(n=0):\n    return f(n + 1)\n", statuses=("failed",), basic=True),
    Hostile("overflows the C stack", "import sys\nsys.setrecursionlimit(10**8)\nx, y = [], []\nfor _ in range(200_000):\n"
            "    x, y = [x], [y]\nx == y\n", statuses=("killed",), basic=True),
    # --- reading ---
    Hostile("lists the caller's home directory", "import os\ndef f():\n    return sorted(os.listdir({home!r}))\n",
            ("assert f() == {home_listing!r}",)),
    Hostile("reads a private file of the caller", "def f():\n    return open({secret_file!r}).read()\n",
            ("assert f() == {secret!r}",)),
    Hostile("reads /etc/shadow", "def f():\n    return len(open('/etc/shadow').read())\n", ("assert f() > 0",),
            needs="/etc/shadow"),
    Hostile("reads /etc/passwd (world-readable, not in the sandbox's root)",
            "def f():\n    return open('/etc/passwd').read()\n", ("assert 'root' in f()",), needs="/etc/passwd"),
    Hostile("reads /etc/hostname", READ.replace("{path!r}", "'/etc/hostname'"), ("assert f() == {hostname_size}",),
            needs="/etc/hostname"),
    Hostile("reads the repository's pyproject.toml", READ.replace("{path!r}", "{pyproject!r}"),
            ("assert f() == {pyproject_size}",)),
    Hostile("reads HumanEval's canonical solutions in ../shared/data", READ.replace("{path!r}", "{data_file!r}"),
            ("assert f() == {data_size}",), needs="{data_file}"),
    Hostile("lists the root directory for anything of the host's",
            "import os\ndef f():\n    return sorted(set(os.listdir('/')) - {{'dev', 'lib', 'lib32', 'lib64', 'libx32', "
            "'proc', 'tmp', 'usr', 'var', 'root', 'home', 'opt', 'bin', 'sbin'}})\n", ("assert f() == []",),
            passed=1, statuses=("passed",)),
    Hostile("reads the caller's environment", "import os\ndef f():\n    return os.environ.get('R1LAB_TEST_SECRET')\n",
            ("assert f() == {secret!r}",), basic=True),
    Hostile("looks at the grader's process", "def f():\n    return open('/proc/{grader_pid}/cmdline', 'rb').read()\n",
            ("assert f() == {grader_cmdline!r}",)),
    # --- writing ---
    Hostile("writes into the repository", WRITE.replace("{paths}", "[{repo_canary!r}]"), canaries=("{repo_canary}",)),
    Hostile("writes into the caller's home", WRITE.replace("{paths}", "[{home_canary!r}]"), canaries=("{home_canary}",)),
    Hostile("writes to /tmp, /var/tmp and /dev/shm (its own tmpfs: allowed, and gone afterwards)",
            WRITE.replace("{paths}", "['/tmp/{token}', '/var/tmp/{token}', '/dev/shm/{token}']"),
            ("assert f() == 3",), passed=1, statuses=("passed",),
            canaries=("/tmp/{token}", "/var/tmp/{token}", "/dev/shm/{token}")),
    Hostile("writes into the grader's temporary directory", WRITE.replace("{paths}", "[{tmp_canary!r}]"),
            canaries=("{tmp_canary}",)),
    Hostile("fills the disk", "def f():\n    for i in range(1000):\n        with open(f'junk{{i}}', 'wb') as fh:\n"
            "            fh.write(b'x' * (2 << 20))\n    return 1\n", statuses=("failed",)),
    Hostile("writes one huge file", "def f():\n    with open('big', 'wb') as fh:\n        fh.write(b'x' * (64 << 20))\n"
            "    return 1\n", statuses=("failed",), basic=True),
    # --- network ---
    Hostile("connects to the host over TCP",
            "import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n    return 1\n",
            basic=True),
    Hostile("connects through raw system calls (ctypes)", RAW_CONNECT),
    # --- signals ---
    Hostile("kills its parent (in its PID namespace the parent is pid 0: its own group, whose leader, PID 1, "
            "ignores it)", "import os, signal\ndef f():\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 1\n",
            passed=1, statuses=("passed",)),
    Hostile("kills its process group and session", "import os, signal\ndef f():\n    for kill in (os.killpg, os.kill):\n"
            "        try:\n            kill(0, signal.SIGKILL)\n        except OSError:\n            pass\n    return 1\n",
            passed=1, statuses=("passed", "killed")),
    Hostile("kills the grader by its pid", "import os, signal\ndef f():\n    os.kill({grader_pid}, signal.SIGKILL)\n"
            "    return 1\n", statuses=("failed",)),
    Hostile("kills every process it may (kill -1)", "import os, signal\ndef f():\n    try:\n"
            "        os.kill(-1, signal.SIGKILL)\n    except OSError:\n        pass\n    return 1\n",
            passed=1, statuses=("passed",)),
    # --- output ---
    Hostile("prints 50 MB", "print('x' * (50 << 20))\ndef f():\n    return 1\n", statuses=("error",), basic=True),
    Hostile("floods stdout forever", "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n", statuses=("error",),
            basic=True),
    # --- faking the verdict ---
    Hostile("os._exit(0) before the tests", "import os\nos._exit(0)\n", statuses=("exited",), basic=True),
    Hostile("os._exit(0) inside the function under test", "import os\ndef f():\n    os._exit(0)\n",
            ("assert f() == 1", "assert f() == 1"), statuses=("exited",), basic=True),
    Hostile("SystemExit(0) in a test", "def f():\n    raise SystemExit(0)\n", statuses=("failed",), basic=True),
    Hostile("KeyboardInterrupt in a test", "def f():\n    raise KeyboardInterrupt\n", statuses=("failed",), basic=True),
    Hostile("prints a fake verdict and exits 0",
            "import os, sys\nprint('3/3 tests passed')\nprint('OK')\nsys.stdout.flush()\nos._exit(0)\n",
            statuses=("exited",), basic=True),
    Hostile("writes fake reports to every file descriptor",
            "import os\nfor fd in range(3, 1024):\n    try:\n        os.write(fd, b'0 pass -\\n1 pass -\\ndone\\n')\n"
            "    except OSError:\n        pass\ndef f():\n    return 1\n", ("assert f() == 2",), statuses=("tampered",),
            basic=True),
    Hostile("closes every file descriptor", "import os\nos.closerange(3, 1 << 16)\ndef f():\n    return 1\n",
            statuses=("exited",), basic=True),
    Hostile("patches builtins the tests use",
            "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.len = lambda x: 3\nbuiltins.isinstance = lambda *a: True\n"
            "builtins.AssertionError = ZeroDivisionError\ndef f():\n    return 0\n",
            ("assert abs(f() - 5) < 1e-9", "assert len(str(f())) == 3", "assert isinstance(f(), str)"),
            statuses=("failed",), basic=True),
    Hostile("patches the harness's functions",
            "import os, signal, sys, builtins\nos.write = lambda fd, data: len(data)\nos._exit = lambda code: None\n"
            "signal.setitimer = lambda *a: None\nsignal.signal = lambda *a: None\nsys.settrace = lambda f: None\n"
            "builtins.exec = lambda *a, **k: None\nbuiltins.enumerate = lambda xs: [(0, None)]\n"
            "builtins.BaseException = KeyError\ndef f():\n    return 0\n",
            ("assert f() == 1", "assert f() == 2"), statuses=("failed",), basic=True),
    Hostile("returns an object that equals everything", ANYTHING,
            ("assert f(1) == [1, 2]", "assert abs(f(1) - 0.5) < 1e-6", "assert f(2)", "assert 3 in f(3)",
             "assert not f(4) != 5", "assert f(5) == 5 or False"), statuses=("failed",), basic=True),
    Hostile("an int subclass that equals everything",
            "class Int(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
            "def f():\n    return Int(0)\n", ("assert f() == 5", "assert [f()] == [7]", "assert {{'a': f()}} == {{'a': 9}}"),
            statuses=("failed",), basic=True),
    Hostile("walks the stack to the harness's frame (its nonce and result pipe)", FRAMES, ("assert f() == 1", "assert f() == 2"),
            statuses=("failed",), basic=True),
    Hostile("walks a traceback's frames to the harness's job", TRACEBACK, ("assert f() == 1", "assert f() == 2"),
            statuses=("failed",), basic=True),
    Hostile("finds the harness's job with gc.get_objects()", GC, ("assert f() == 1", "assert f() == 2"),
            statuses=("failed",), basic=True),
    Hostile("finds the nonce in /proc/self/mem and the result pipe in /proc/self/fd", PROC_MEM,
            ("assert f() == 1", "assert f() == 2"), statuses=("failed",), basic=True),
    Hostile("rewrites the int 200 in memory with ctypes, so that 0 == 200", CTYPES,
            ("assert f() == 200", "assert f() == 200"), statuses=("failed",), basic=True),
    Hostile("writes forged reports with the nonce it finds to every descriptor 0..255", EVERY_FD,
            ("assert f() == 1", "assert f() == 2"), statuses=("tampered",), basic=True),
    Hostile("reads its tests in memory to answer them", READS_TESTS, ("assert f() == 7", "assert f() == 7"),
            statuses=("failed",), basic=True),
    Hostile("shadows the built-in the tests compare with", "abs = lambda x: 0\ndef f():\n    return 0\n",
            ("assert abs(f() - 0.33) < 1e-6", "assert abs(f() - 2) < 1e-6"), statuses=("failed",), basic=True),
    Hostile("fakes the standard module the tests compare with",
            "import types\nmath = types.SimpleNamespace(isclose=lambda *a, **k: True)\ndef f():\n    return 0\n",
            ("assert math.isclose(f(), 0.33)", "assert math.isclose(f(), 2.0)"), statuses=("failed",), basic=True),
    # --- privileges ---
    Hostile("tries to become root again", "import os\ndef f():\n    try:\n        os.setuid(0)\n    except OSError:\n"
            "        pass\n    return len(open('/etc/shadow').read())\n", ("assert f() > 0",), needs="/etc/shadow"),
    Hostile("unmounts its sandbox", "import ctypes\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
            "    return libc.umount2(b'/tmp', 2) + libc.umount2(b'/root', 2)\n", ("assert f() == 0",)),
]


def test_battery_is_big_enough():
    assert len(BATTERY) >= 25
    assert len({case.name for case in BATTERY}) == len(BATTERY)


# --------------------------------------------------------------------------------------------
# The host, as the programs see it from outside


class Server:
    """A TCP server on the host's loopback that counts connections."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    token = f"r1lab-canary-{secrets.token_hex(6)}"
    secret = secrets.token_hex(16)
    private = tmp_path_factory.mktemp("private")
    secret_file = private / "secret.txt"
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    home = str(Path.home())
    server = Server()
    sleeper = subprocess.Popen(["sleep", "600"])
    old_secret = os.environ.get("R1LAB_TEST_SECRET")
    os.environ["R1LAB_TEST_SECRET"] = secret
    facts = {
        "token": token, "secret": secret, "secret_file": str(secret_file), "home": home,
        "home_listing": sorted(os.listdir(home)), "port": server.port, "grader_pid": os.getpid(),
        "grader_cmdline": Path(f"/proc/{os.getpid()}/cmdline").read_bytes(),
        "repo_canary": str(REPO / token), "pyproject": str(REPO / "pyproject.toml"),
        "pyproject_size": (REPO / "pyproject.toml").stat().st_size, "data_file": str(DATA_FILE),
        "data_size": DATA_FILE.stat().st_size if DATA_FILE.exists() else -1,
        "hostname_size": os.path.getsize("/etc/hostname") if os.path.exists("/etc/hostname") else -1, "home_canary": str(Path(home) / token), "tmp_canary": str(private / token),
    }
    yield {"facts": facts, "server": server, "sleeper": sleeper}
    sleeper.kill()
    sleeper.wait()
    server.sock.close()
    if old_secret is None:
        os.environ.pop("R1LAB_TEST_SECRET", None)
    else:
        os.environ["R1LAB_TEST_SECRET"] = old_secret


def sandbox_processes() -> list[str]:
    """Command lines of live processes running the sandbox (or the daemon above), anywhere."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and (b"sandbox_child.py" in cmdline or b"987.25" in cmdline):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def userns_python() -> str | None:
    """An interpreter a user-namespace sandbox can run: ours as an ordinary user; as root (whose
    ~ holds pyenv, unreadable to the random uid) the system's."""
    if os.geteuid() != 0:
        return None
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else ""


def modes() -> list:
    out = [pytest.param("auto", None, id="auto")]
    python = userns_python()
    out.append(pytest.param("userns", python, id="userns"))
    out.append(pytest.param("basic", None, id="basic"))
    return out


def require_mode(mode: str, python: str | None) -> str:
    if python == "":
        pytest.skip("no interpreter readable by an unprivileged uid for the user-namespace mode")
    try:
        got = sandbox.isolation(mode, python)
    except SandboxError as e:
        pytest.skip(f"{mode} isolation is not available here: {e}")
    return got


# --------------------------------------------------------------------------------------------
# The battery


@pytest.mark.parametrize("mode, python", modes())
@pytest.mark.parametrize("case", BATTERY, ids=[c.name for c in BATTERY])
def test_hostile_program_is_contained(case, mode, python, host):
    got = require_mode(mode, python)
    if got == "basic" and not case.basic:
        pytest.skip("basic mode does not claim to contain this (see r1lab.grading.sandbox)")
    facts = host["facts"]
    if case.needs and not os.path.exists(case.needs.format(**facts)):
        pytest.skip(f"{case.needs.format(**facts)} does not exist here")
    if case.name.startswith("lists the caller's home") and len(facts["home_listing"]) < 2:
        pytest.skip("the home directory is too empty to tell")
    code = case.code.format(**facts)
    tests = [t.format(**facts) for t in case.tests]
    connections_before = host["server"].connections

    result = run_tests(code, tests, limits=FAST, isolation=mode, python=python)

    escaped = [c.format(**facts) for c in case.canaries if os.path.lexists(c.format(**facts))]
    for path in escaped:  # first, so that a failure below leaves nothing behind
        os.remove(path)
    assert result.isolation == got
    assert (result.passed, result.total) == (case.passed, len(tests)), (result.status, result.detail, result.errors)
    if case.statuses:
        assert result.status in case.statuses, (result.status, result.detail, result.output[-500:])
    assert len(result.output.encode()) <= FAST.output_bytes + 4  # replacement characters at a cut
    # The host is as it was.
    assert not escaped, f"wrote outside its sandbox: {escaped}"
    assert host["server"].connections == connections_before, "reached a server on the host's loopback"
    assert host["sleeper"].poll() is None, "killed a process outside its sandbox"
    deadline = time.monotonic() + 2.0
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes() == [], "left processes behind"
    # The grader keeps working.
    after = run_tests("def g(x):\n    return x + 1\n", ["assert g(1) == 2", "assert g(2) == 3"], limits=FAST,
                      isolation=mode, python=python)
    assert (after.passed, after.status) == (2, "passed")


def test_the_guard_is_what_stops_lying_values():
    """Without strict tests, the always-equal object of the battery passes: the battery's case for
    it can fail."""
    tests = ["assert f(1) == [1, 2]", "assert f(2)"]
    assert run_tests(ANYTHING, tests, limits=FAST, strict=False).passed == 2
    assert run_tests(ANYTHING, tests, limits=FAST).passed == 0


# --------------------------------------------------------------------------------------------
# Honest programs


def test_honest_program_scores_the_share_of_tests_it_passes():
    code = "def add(a, b):\n    print('adding', a, b)\n    return a + b\n"
    result = run_tests(code, ["assert add(1, 2) == 3", "assert add(2, 2) == 5", "assert add('a', 'b') == 'ab'"])
    assert (result.passed, result.total, result.status) == (2, 3, "failed")
    assert result.fraction == pytest.approx(2 / 3)
    assert result.errors == ["", "AssertionError", ""]
    assert result.output == "adding 1 2\nadding 2 2\nadding a b\n"
    assert result.isolation in ("namespaces", "userns", "basic")
    everything = run_tests(code, ["assert add(1, 2) == 3"])
    assert (everything.status, everything.fraction, everything.detail) == ("passed", 1.0, "1/1 tests passed")


def test_setup_runs_after_the_program_and_before_the_tests():
    code = "class Node:\n    def __init__(self, v):\n        self.v = v\ndef value(n):\n    return n.v\n"
    result = run_tests(code, ["assert value(root) == 3"], setup="root = Node(3)")
    assert (result.passed, result.status) == (1, "passed")


def test_program_errors_score_zero_with_the_reason():
    syntax = run_tests("def f(:\n    pass\n", ["assert f() == 1"], limits=FAST)
    assert (syntax.passed, syntax.status, syntax.detail) == (0, "error", "SyntaxError in the program")
    raises = run_tests("1 / 0\n", ["assert True"], limits=FAST)
    assert (raises.status, raises.detail) == ("error", "ZeroDivisionError in the program")
    setup = run_tests("x = 1\n", ["assert x == 1"], setup="undefined_name", limits=FAST)
    assert (setup.status, setup.detail) == ("error", "NameError in the test setup")


def test_invalid_tests_are_the_callers_mistake():
    with pytest.raises(ValueError, match="test 1 is not valid Python"):
        run_tests("x = 1", ["assert x == 1", "assert x =="])
    with pytest.raises(ValueError, match="isolation"):
        run_tests("x = 1", [], isolation="chroot")


def test_strict_tests_accept_honest_values_of_every_built_in_kind():
    code = ("from collections import Counter, OrderedDict, namedtuple, deque, defaultdict\n"
            "Point = namedtuple('Point', 'x y')\n"
            "class Name(str):\n    pass\n"
            "def counts(s):\n    return Counter(s)\n"
            "def point():\n    return Point(1, 2)\n"
            "def name():\n    return Name('ada')\n"
            "def nested():\n    return {'a': [Point(0, 1), {1, 2}], 'b': (deque([1]), frozenset())}\n"
            "def default():\n    d = defaultdict(list)\n    d['k'].append(1)\n    return d\n")
    tests = ["assert counts('aab') == {'a': 2, 'b': 1}", "assert point() == (1, 2)", "assert name() == 'ada'",
             "assert nested() == {'a': [(0, 1), {1, 2}], 'b': (deque([1]), frozenset())}",
             "assert default() == {'k': [1]}", "assert not counts('') and not []", "assert 'a' in counts('a')",
             "assert abs(0.1 + 0.2 - 0.3) < 1e-9", "assert type(point()) is not tuple", "assert len, 'builtins work'"]
    result = run_tests(code, tests)
    assert (result.passed, result.status) == (len(tests), "passed"), result.errors
    # Values that are not built-in fail a comparison, and only a comparison.
    frac = run_tests("from fractions import Fraction\ndef half():\n    return Fraction(1, 2)\n",
                     ["assert half() == 0.5", "assert half() is not None"])
    assert frac.errors == ["NotPlainValue", ""]


def test_tests_see_what_the_program_did_to_their_arguments():
    code = ("def add_one(xs):\n    xs.append(1)\n    xs[0] = 9\n"
            "def fill(d, s, b):\n    d['k'] = 2\n    s.discard(1)\n    b.extend(b'!')\n")
    tests = ["xs = [0]\nadd_one(xs)\nassert xs == [9, 1]",
             "d, s, b = {}, {1, 2}, bytearray(b'a')\nfill(d, s=s, b=b)\nassert (d, s, b) == ({'k': 2}, {2}, b'a!')"]
    assert run_tests(code, tests, limits=FAST).errors == ["", ""]


def test_built_in_exceptions_reach_the_tests_as_themselves():
    code = ("class Missing(KeyError):\n    pass\n"
            "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    raise Missing(x)\n"
            "def g():\n    raise SystemExit(0)\n")
    tests = ["try:\n    f(-1)\n    assert False\nexcept ValueError as e:\n    assert str(e) == 'negative'",
             "try:\n    f(1)\n    assert False\nexcept KeyError:\n    pass", "g()", "f(-1)"]
    assert run_tests(code, tests, limits=FAST).errors == ["", "", "SystemExit", "ValueError"]


def test_program_objects_work_through_handles():
    code = ("class Node:\n    def __init__(self, v, left=None):\n        self.v, self.left = v, left\n"
            "    def __len__(self):\n        return 1 + (len(self.left) if self.left else 0)\n"
            "    def __iter__(self):\n        yield self.v\n        if self.left:\n            yield from self.left\n"
            "def depth(n):\n    return len(n)\n"
            "def count(n):\n    yield from range(n)\n")
    setup = "root = Node(1, Node(2))"
    tests = ["assert depth(root) == 2 and len(root) == 2", "assert list(root) == [1, 2] and root.left.v == 2",
             "root.v = 5\nassert root.v == 5 and depth(Node(0, root)) == 3", "assert sum(count(4)) == 6",
             "assert root == root", "assert callable(depth) and root is not None and root.left is root.left"]
    result = run_tests(code, tests, setup=setup, limits=FAST)
    assert result.errors == ["", "", "", "", "NotPlainValue", ""]  # a program's object compares as nothing


def test_entry_points_may_shadow_built_ins_and_nothing_else_does():
    """MBPP-126 defines `sum(a, b)` and its tests call it: as an entry point it is the program's; a
    program name the caller did not name stays the tests' built-in (or their own standard module)."""
    code = "import math\ndef sum(a, b):\n    return a + b\n"
    tests = ["assert sum(10, 15) == 25", "assert math.floor(2.5) == 2"]
    assert run_tests(code, tests, limits=FAST, entry_points=("sum",)).passed == 2
    not_named = run_tests(code, tests, limits=FAST)
    assert (not_named.passed, not_named.errors[0]) == (1, "TypeError")  # the built-in sum(10, 15)


def test_output_is_capped():
    result = run_tests("print('y' * 100_000)\ndef f():\n    return 1\n", ["assert f() == 1"],
                       limits=Limits(output_bytes=1000))
    assert (result.passed, len(result.output)) == (1, 1000)


def test_run_many_keeps_the_order_of_its_programs():
    programs = [Program(f"def f():\n    return {i}\n", (f"assert f() == {i}", "assert f() == 3")) for i in range(6)]
    results = run_many(programs, limits=FAST, workers=2)
    assert [r.passed for r in results] == [2 if i == 3 else 1 for i in range(6)]


# --------------------------------------------------------------------------------------------
# The verdict, from what the pipes held


def verdict(res: str, stat: dict | None = None, total: int = 2):
    status = marshal.dumps(stat, 4) if stat else b""
    pipes = {"res": res.encode(), "out": b"", "stat": len(status).to_bytes(4, "big") + status if stat else b"",
             "backstop": False}
    return sandbox._result(pipes, "N0NCE", total, Limits())


@pytest.mark.parametrize(
    "res, stat, expected",
    [
        ("N0NCE 0 pass -\nN0NCE 1 pass -\nN0NCE done\n", {"exit": 0}, (2, "passed")),
        ("N0NCE 0 pass -\nN0NCE 1 fail AssertionError\nN0NCE done\n", {"exit": 0}, (1, "failed")),
        ("N0NCE 0 pass -\n", {"exit": 0}, (1, "exited")),  # os._exit after one test
        ("N0NCE 0 pass -\n", {"timeout": True}, (1, "timeout")),
        ("N0NCE 0 pass -\n", {"signal": 9}, (1, "killed")),
        ("N0NCE error solution SyntaxError\n", {"exit": 0}, (0, "error")),
        ("0 pass -\n1 pass -\ndone\n", {"exit": 0}, (0, "tampered")),  # no nonce
        ("N0NCE 0 pass -\nN0NCE 1 pass -\nN0NCE done\nnoise\n", {"exit": 0}, (0, "tampered")),
        ("N0NCE 1 pass -\nN0NCE 0 pass -\nN0NCE done\n", {"exit": 0}, (0, "tampered")),  # out of order
        ("N0NCE 0 pass -\nN0NCE 0 pass -\n", {"exit": 0}, (0, "tampered")),  # twice
        ("N0NCE 0 pass -\nN0NCE 7 pass -\n", {"exit": 0}, (0, "tampered")),  # no such test
        ("N0NCE 0 pass -\nN0NCE 1 pa", {"exit": 0}, (0, "tampered")),  # unterminated
        ("N0NCE 0 pass -\nN0NCE tampered\n", {"exit": 0}, (0, "tampered")),  # the judge says the program broke its channel
        ("N0NCE 0 pass -\n", {"exit": 0, "judge": "killed by signal 9"}, (1, "error")),
    ],
)
def test_verdict(res, stat, expected):
    result = verdict(res, stat)
    assert (result.passed, result.status) == expected


def test_setup_failure_raises():
    with pytest.raises(SandboxError, match="could not be set up"):
        verdict("", {"setup_error": "OSError: mount /tmp: Operation not permitted"})


def test_auto_falls_back_to_basic_once_when_namespaces_cannot_be_set_up(monkeypatch):
    real_run = sandbox._run

    def refuse_namespaces(code, tests, setup, limits, isolation, python, *options):
        if isolation != "basic":
            raise SandboxError("the sandbox could not be set up: OSError: mount /: Operation not permitted")
        return real_run(code, tests, setup, limits, isolation, python, *options)

    monkeypatch.setattr(sandbox, "_run", refuse_namespaces)
    monkeypatch.setattr(sandbox, "_AUTO_IS_BASIC", set())
    with pytest.warns(RuntimeWarning, match="basic mode"):
        first = run_tests("x = 1", ["assert x == 1"], limits=FAST)
    second = run_tests("x = 1", ["assert x == 1"], limits=FAST)  # no second warning, no second try
    assert (first.isolation, first.status, second.isolation) == ("basic", "passed", "basic")
    with pytest.raises(SandboxError):
        run_tests("x = 1", [], isolation="namespaces")  # asked for by name: no fallback


def test_limits_are_checked():
    with pytest.raises(ValueError, match="wall_s"):
        Limits(wall_s=0)


def test_isolation_on_this_machine():
    assert sandbox.isolation() in ("namespaces", "userns", "basic")
    with pytest.raises(ValueError):
        sandbox.isolation("chroot")
