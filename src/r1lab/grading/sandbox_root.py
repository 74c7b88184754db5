"""The minimal root of r1lab's code sandbox: the only files the judge and the program can see
(r1lab.grading.sandbox has the design).

    python sandbox_root.py              (run by `runtime`, once per interpreter: a probe)
    build(root, runtime, workdir)       in the warden: a read-only tmpfs at `root` with the runtime bound in
    enter(root, workdir, disk_mb, uid)  in the program's process: its writable places, /proc, pivot_root

What the root holds, read-only: the interpreter (the path it is run by, and the real file), every
directory of its `sys.path` that exists (the standard library and lib-dynload) with any
site-packages or dist-packages in them covered by an empty tmpfs, and every file the interpreter
has mapped after importing each extension module of those directories and ctypes (its shared
libraries, libpython, the dynamic loader: read from /proc/self/maps, so exactly what it loads),
plus the symbolic links that lead to them: those on each path's way (/lib -> usr/lib, ...) and the
links next to each library that point to it (libffi.so.8 -> libffi.so.8.1.0: the names the loader
looks for), and the loader's path as the interpreter's ELF header names it. Then /dev/null,
/dev/zero, /dev/random and /dev/urandom (bound from the host, writable, noexec), /dev/fd and
/dev/std* as links into /proc/self/fd, and empty mount points. The program adds its own fresh
/proc (its PID namespace only), size-capped tmpfs on /tmp, /var/tmp, /dev/shm and its working
directory, then pivots into the root and detaches the host's. Nothing else: no /etc (so no
/etc/passwd, no ld.so.cache, no resolver or locale files), no home directory, no repository, no data.
Not guaranteed: a library that the interpreter opens only on some later path (a codec found by
name, a locale, ctypes.util.find_library, which needs /sbin/ldconfig) is missing, and fails as
it would on a machine without it.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import struct
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
MNT_DETACH, CLONE_NEWNS = 2, 0x00020000
# A bind mount's flags that a read-only remount must keep (in a user namespace the kernel refuses to clear them).
STATVFS_TO_MOUNT = {os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: MS_NOATIME,
                    os.ST_NODIRATIME: MS_NODIRATIME, os.ST_RELATIME: MS_RELATIME}
DEVICES = ("null", "zero", "random", "urandom")
WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}  # syscall numbers

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


# --------------------------------------------------------------------------------------------
# The warden: the shared, read-only root


def build(root: str, runtime: dict, workdir: str) -> None:
    """A read-only tmpfs at `root` holding `runtime` (from the probe), the devices and mount points."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount reaches the host
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    files = runtime["files"] + [f"/dev/{name}" for name in DEVICES if os.path.exists(f"/dev/{name}")]
    links = runtime["links"] + [(f"/dev/{name}", f"/proc/self/fd/{fd}") for fd, name in enumerate(("stdin", "stdout", "stderr"))]
    links.append(("/dev/fd", "/proc/self/fd"))
    # Every directory first, all of them real ones on the host (the probe resolved every link on the way).
    parents = [os.path.dirname(path) for path in files] + [os.path.dirname(link) for link, _ in links]
    for path in runtime["dirs"] + parents + ["/proc", *WRITABLE, workdir]:
        os.makedirs(root + path, exist_ok=True)
    for path in files:
        open(root + path, "w").close()  # noqa: SIM115 -- a mount point
    for path in runtime["dirs"] + files:
        _bind(path, root + path, writable=path.startswith("/dev/"))
    for path in runtime["hide"]:
        mount("tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")
    # Links last, so that nothing above is created through one.
    for link, target in links:
        if not os.path.lexists(root + link):
            os.symlink(target, root + link)
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _bind(source: str, target: str, writable: bool) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (MS_NOEXEC if writable else MS_RDONLY)
    have = os.statvfs(source).f_flag
    for st, ms in STATVFS_TO_MOUNT.items():
        if have & st:
            flags |= ms
    if not have & (os.ST_NOATIME | os.ST_RELATIME):
        flags |= MS_STRICTATIME
    mount(None, target, None, flags)


# --------------------------------------------------------------------------------------------
# The program: its own writable places and /proc, then the pivot


def enter(root: str, workdir: str, disk_mb: int, owner: int) -> None:
    """In a mount namespace of its own: fresh /proc and tmpfs, then `root` becomes / and the host's
    root is detached. The working directory is owned by `owner`; the caller chdirs into it."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare")
    try:
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this PID namespace only
    except OSError:
        pass  # refused where the host's /proc is partly masked (some containers): then there is none
    for path in WRITABLE:
        mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_mb}m,mode=1777")
    os.makedirs(root + workdir, exist_ok=True)
    mount("tmpfs", root + workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_mb}m,mode=700,uid={owner},gid={owner}")
    os.chdir(root)
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        os.chroot(".")  # no pivot: the host's mounts stay in this namespace, out of reach
    else:
        _check(_libc.syscall(number, b".", b"."), "pivot_root")
        _check(_libc.umount2(b".", MNT_DETACH), "umount the host's root")
    os.chdir("/")
    if not os.statvfs("/").f_flag & os.ST_RDONLY:
        raise OSError("/ is writable in the sandbox")


def enter_judge(root: str) -> None:
    """The judge's view: `root` as it is, read-only, through chroot (it shares the warden's mounts)."""
    os.chroot(root)
    os.chdir("/")


# --------------------------------------------------------------------------------------------
# The probe, run as a script by the interpreter the sandbox will run


def probe() -> dict:
    """What this interpreter needs: {"dirs", "files", "links", "hide"} (see the module docstring)."""
    dirs = [os.path.realpath(p) for p in sys.path if os.path.isdir(p)]
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # an extension module may write to its terminal on import (readline)
    for d in dirs:
        for name in sorted(os.listdir(d)):
            if name.endswith(".so") and not name.startswith("."):
                try:
                    __import__(name.split(".")[0])
                except BaseException:  # noqa: BLE001, S110 -- a module this machine cannot load: it will not load inside either
                    pass
    os.dup2(saved, 1)
    wanted = [sys.executable, _elf_interpreter(sys.executable)] + _mapped_files()
    links, files = [], set()
    for path in filter(None, wanted):
        on_way, real = _links_on(path)
        links += on_way
        if os.path.isfile(real):
            files.add(real)
    links += _links_to(files)
    hide = [os.path.join(d, sub) for d in dirs for sub in ("site-packages", "dist-packages") if os.path.isdir(os.path.join(d, sub))]
    inside = lambda path: any(path.startswith(d + "/") for d in dirs)  # noqa: E731 -- bound with its directory
    return {"dirs": dirs, "files": sorted(f for f in files if not inside(f)),
            "links": [link for link in dict.fromkeys(links) if not inside(link[0])], "hide": hide}


def _mapped_files() -> list[str]:
    with open("/proc/self/maps") as f:
        paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    return sorted(p for p in paths if p.startswith("/") and not p.startswith(("/dev/", "/proc/", "/memfd:"))
                  and not p.endswith("(deleted)"))


def _elf_interpreter(path: str) -> str | None:
    """The dynamic loader a 64-bit little-endian ELF executable names (PT_INTERP), else None."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        kind, _, offset, _, _, size = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if kind == 3:  # PT_INTERP
            return data[offset : offset + size].rstrip(b"\0").decode()
    return None


def _links_on(path: str) -> tuple[list, str]:
    """The symbolic links met on the way to `path`, as (link, target), and the real path."""
    links, parts, here = [], path.strip("/").split("/"), "/"
    for _ in range(256):
        if not parts:
            break
        step = os.path.join(here, parts.pop(0))
        if os.path.islink(step):
            target = os.readlink(step)
            links.append((step, target))
            parts = os.path.normpath(os.path.join(here, target)).strip("/").split("/") + parts
            here = "/"
        else:
            here = step
    return links, here


def _links_to(files: set) -> list:
    """Links in each file's directory that lead to it: the names the loader asks for."""
    links = []
    for d in sorted({os.path.dirname(f) for f in files}):
        for entry in os.scandir(d):
            if entry.is_symlink() and os.path.realpath(entry.path) in files:
                links.append((entry.path, os.readlink(entry.path)))
    return links


if __name__ == "__main__":
    os.write(1, marshal.dumps(probe(), 4))
