"""The program :class:`~textgym.tools.python_sandbox.PythonSandbox` runs in its child process.

Run as a script (``python -s -P -S -B -u sandbox_runner.py CONFIG`` in a fresh working folder, the
code on stdin), never imported. Before the agent's code runs it locks the process down, in order:

1. resource limits: CPU seconds, address space, file size, no new processes, open files, no core
   dumps (kernel-enforced; root is exempt from the process limit, hence steps 3 and 5);
2. a network namespace of its own (``unshare``), where the kernel allows it;
3. when started as root, the unprivileged user ``nobody``, if ``nobody`` can read the standard
   library (otherwise it stays root and says so in its report);
4. the parent-death signal (the child dies with its parent) and no-new-privileges;
5. on x86-64 Linux, a seccomp filter that makes the kernel refuse new processes, ``exec``,
   sockets, signals to other processes, raising limits, device nodes, mounts and other
   administration calls, whatever Python-level tricks the code uses;
6. an audit hook (:func:`sys.addaudithook`) that refuses, with a readable reason, network use,
   new processes, signals to other processes, file access outside the working folder (reading
   is also allowed in the standard library), ``ctypes`` and a few escape hatches. Audit hooks
   are not a security boundary on their own (the Python docs say so); they give the agent a
   clear error, and the layers above hold where the kernel provides them.

Then it runs the code like a REPL cell (the value of a last expression is printed), prints a
traceback for an uncaught exception, and writes one JSON line to the status descriptor:
``{"ok": ..., "error": ..., "shown": ..., "isolation": {...}}`` (``shown``: the error is already
visible in the output).
"""

from __future__ import annotations

import ast
import builtins
import json
import linecache
import os
import stat
import struct
import sys
import traceback

NOBODY = 65534
FILENAME = "<python>"  # the code's name in tracebacks
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
DEVICES = ("/dev/null", "/dev/urandom", "/dev/random", "/dev/zero")  # open to read and write
TIME_ZONES = ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo")  # readable

# Audit events refused outright, by the reason the agent sees.
NETWORK_EVENT_PREFIXES = (
    "socket.",
    "http.client.",
    "ftplib.",
    "imaplib.",
    "nntplib.",
    "poplib.",
    "smtplib.",
    "telnetlib.",
    "urllib.Request",
    "syslog.",
)
REFUSED_EVENTS = {
    "os.system": "new processes",
    "os.exec": "new processes",
    "os.fork": "new processes",
    "os.forkpty": "new processes",
    "os.posix_spawn": "new processes",
    "subprocess.Popen": "new processes",
    "pty.spawn": "new processes",
    "webbrowser.open": "new processes",
    "os.link": "links",
    "os.symlink": "links",
    "resource.setrlimit": "changing limits",
    "resource.prlimit": "changing limits",
    "cpython.PyInterpreterState_New": "subinterpreters",
    "gc.get_objects": "garbage-collector introspection",
    "gc.get_referrers": "garbage-collector introspection",
    "gc.get_referents": "garbage-collector introspection",
    "sys.settrace": "tracing",
    "sys.setprofile": "tracing",
    "sqlite3.enable_load_extension": "sqlite extensions",
    "sqlite3.load_extension": "sqlite extensions",
}
BLOCKED_MODULES = {  # module name prefixes, and the reason
    "ctypes": "ctypes",
    "_ctypes": "ctypes",
    "_posixsubprocess": "new processes",
    "_posixshmem": "shared memory",
    "_xxsubinterpreters": "subinterpreters",
    "_xxinterpchannels": "subinterpreters",
    "_interp": "subinterpreters",
    "_test": "CPython's test modules",
    "_xxtestfuzz": "CPython's test modules",
    "_dbm": "dbm files",
    "_gdbm": "dbm files",
    "spwd": "the shadow password database",
}
# Audit events whose path arguments (by position) are read or written.
READ_EVENTS = {"os.listdir": (0,), "os.scandir": (0,), "os.getxattr": (0,), "os.listxattr": (0,)}
WRITE_EVENTS = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.rmtree": (0,),
    "shutil.chown": (0,),
}


class Blocked(PermissionError):
    """What the audit hook raises; its message is the reason, e.g. ``network access``."""


# --- 1. resource limits --------------------------------------------------------------------


def limit_resources(cpu_seconds: int, memory_bytes: int, file_bytes: int) -> None:
    import resource
    import signal

    def cap(limit: int, value: int, hard: int | None = None) -> None:
        _, current_hard = resource.getrlimit(limit)
        hard = value if hard is None else hard
        if current_hard != resource.RLIM_INFINITY:
            value, hard = min(value, current_hard), min(hard, current_hard)
        resource.setrlimit(limit, (value, hard))

    cap(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)  # SIGXCPU, then SIGKILL a second on
    cap(resource.RLIMIT_AS, memory_bytes)
    cap(resource.RLIMIT_FSIZE, file_bytes)
    cap(resource.RLIMIT_NPROC, 0)
    cap(resource.RLIMIT_NOFILE, 256)
    cap(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write raises OSError instead


# --- 2.-5. kernel isolation (ctypes, before the audit hook forbids it) ---------------------


def isolate(libc, parent_pid: int, stdlib: list[str]) -> dict:
    """Apply steps 2-5 and report which ones took effect."""
    report = {"network_namespace": _unshare_network(libc)}
    report["user"] = _drop_root(stdlib)
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = SIGKILL
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)
    report["no_new_privileges"] = libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    report["seccomp"] = _install_seccomp(libc)
    return report


def _unshare_network(libc) -> bool:
    clone_newuser, clone_newnet = 0x10000000, 0x40000000
    if os.geteuid() == 0:
        return libc.unshare(clone_newnet) == 0
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(clone_newuser | clone_newnet) != 0:
        return False
    # Map our own ids into the new user namespace, or creating files would fail (EOVERFLOW).
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{uid} {uid} 1"),
        ("gid_map", f"{gid} {gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)
    return True


def _drop_root(stdlib: list[str]) -> str:
    """Become ``nobody`` when root, if ``nobody`` can still read the standard library."""
    if os.geteuid() != 0:
        return "unprivileged"
    os.chown(".", NOBODY, NOBODY)
    os.seteuid(NOBODY)  # try first, reversibly
    try:
        readable = all(_readable(path) for path in [".", *stdlib])
    finally:
        os.seteuid(0)
    if not readable:
        return "root"
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return "nobody"


def _readable(path: str) -> bool:
    try:
        os.listdir(path)
    except NotADirectoryError:  # a zip archive of the standard library
        try:
            open(path, "rb").close()
        except OSError:
            return False
    except FileNotFoundError:  # not there at all (one out of reach is EACCES)
        pass
    except OSError:
        return False
    return True


# x86-64 system calls the seccomp filter refuses with EPERM.
_X86_64_REFUSED = {
    "socket": 41,
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "execveat": 322,
    "ptrace": 101,
    "tkill": 200,
    "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297,
    "pidfd_send_signal": 424,
    "pidfd_getfd": 438,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "process_madvise": 440,
    "kcmp": 312,
    "setrlimit": 160,
    "mknod": 133,
    "mknodat": 259,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "unshare": 272,
    "setns": 308,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
    "sethostname": 170,
    "setdomainname": 171,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "iopl": 172,
    "ioperm": 173,
    "bpf": 321,
    "perf_event_open": 298,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "acct": 163,
    "quotactl": 179,
    "quotactl_fd": 443,
    "settimeofday": 164,
    "clock_settime": 227,
    "clock_adjtime": 305,
    "adjtimex": 159,
    "open_by_handle_at": 304,
    "name_to_handle_at": 303,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "syslog": 103,
    "vhangup": 153,
    "lookup_dcookie": 212,
    "nfsservctl": 180,
}
_X86_64 = {"clone": 56, "clone3": 435, "kill": 62, "tgkill": 234, "prlimit64": 302}
_AUDIT_ARCH_X86_64 = 0xC000003E
_CLONE_THREAD = 0x00010000


def seccomp_program(pid: int) -> bytes:
    """The classic-BPF seccomp filter for x86-64, as the kernel's ``sock_filter`` array.

    Threads (``clone`` with ``CLONE_THREAD``) are allowed, other ``clone`` calls refused and
    ``clone3`` answered ENOSYS so that the C library falls back to ``clone``; ``kill`` and
    ``tgkill`` may only target this process; ``prlimit64`` may only read limits. Calls through
    another ABI (x32, or 32-bit ``int 0x80``) kill the process.
    """
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, eperm, enosys, kill = 0x7FFF0000, 0x00050001, 0x00050026, 0x80000000
    code: list[list] = []  # [op, jump-if-true, jump-if-false, k]; jumps may name a label
    labels: dict[str, int] = {}

    def op(kind: int, k: int, true: int | str = 0, false: int | str = 0) -> None:
        code.append([kind, true, false, k])

    op(ld, 4)  # seccomp_data.arch
    op(jeq, _AUDIT_ARCH_X86_64, 0, "kill")
    op(ld, 0)  # seccomp_data.nr
    op(jge, 0x40000000, "eperm")  # the x32 ABI
    op(jeq, _X86_64["clone"], "clone")
    op(jeq, _X86_64["clone3"], "enosys")
    op(jeq, _X86_64["kill"], "own_pid")
    op(jeq, _X86_64["tgkill"], "own_pid")
    op(jeq, _X86_64["prlimit64"], "read_limit")
    for number in _X86_64_REFUSED.values():
        op(jeq, number, "eperm")
    op(ret, allow)
    labels["clone"] = len(code)
    op(ld, 16)  # low word of args[0]: the flags
    op(jset, _CLONE_THREAD, "allow", "eperm")
    labels["own_pid"] = len(code)
    op(ld, 16)  # low word of args[0]: the pid (0 is our own process group)
    op(jeq, pid, "allow")
    op(jeq, 0, "allow", "eperm")
    labels["read_limit"] = len(code)
    op(ld, 32)  # args[2], the new limit, must be NULL
    op(jeq, 0, 0, "eperm")
    op(ld, 36)
    op(jeq, 0, "allow", "eperm")
    for name, action in (("allow", allow), ("eperm", eperm), ("enosys", enosys), ("kill", kill)):
        labels[name] = len(code)
        op(ret, action)
    program = b""
    for index, (kind, true, false, k) in enumerate(code):
        true = labels[true] - index - 1 if isinstance(true, str) else true
        false = labels[false] - index - 1 if isinstance(false, str) else false
        program += struct.pack("=HBBI", kind, true, false, k)
    return program


def _install_seccomp(libc) -> bool:
    import ctypes

    if os.uname().machine != "x86_64" or struct.calcsize("P") != 8:
        return False
    program = seccomp_program(os.getpid())

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    fprog = SockFprog(len(program) // 8, program)
    set_seccomp, filter_mode = 22, 2  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    return libc.prctl(set_seccomp, filter_mode, ctypes.addressof(fprog), 0, 0) == 0


# --- 6. the audit hook ---------------------------------------------------------------------


def install_audit_hook(work_dir: str, stdlib: list[str]) -> None:
    """Refuse what the agent's code may not do, with the reason in a :class:`Blocked` error.

    The hook is one function that looks up no global or builtin name: everything it uses is a
    default argument bound here (builtins, ``os`` functions, the allowed folders), so the code
    cannot change its behaviour by patching modules or builtins, and its frame (reachable from
    a traceback) holds no function whose closure could be rewritten.
    """
    own_pid, readable = os.getpid(), (*stdlib, *TIME_ZONES)

    def hook(
        event,
        args,
        *,
        _blocked=Blocked,
        _type=type,
        _str=str,
        _bytes=bytes,
        _int=int,
        _issubclass=issubclass,
        _fspath=os.fspath,
        _getcwd=os.getcwd,
        _stat=os.stat,
        _OSError=OSError,
        _isdir=stat.S_ISDIR,
        _full=slice(None),
        _own_pid=own_pid,
        _work=work_dir,
        _readable=readable,
        _devices=DEVICES,
        _network=NETWORK_EVENT_PREFIXES,
        _refused=REFUSED_EVENTS,
        _modules=BLOCKED_MODULES,
        _read_events=READ_EVENTS,
        _write_events=WRITE_EVENTS,
        _write_flags=WRITE_FLAGS,
    ):
        paths = []  # (path, writing) pairs to check below
        if event == "open":
            path, mode, flags = args
            if _type(flags) is _int:
                paths.append((path, (flags & _write_flags) != 0))
            else:
                paths.append((path, mode not in (None, "r", "rb")))
        elif event in _read_events:
            for i in _read_events[event]:
                paths.append((args[i], False))
        elif event in _write_events:
            for i in _write_events[event]:
                if _issubclass(_type(args[i]), _int):
                    raise _blocked("changing files through a descriptor")
                paths.append((args[i], True))
        elif _str.startswith(event, _network):
            raise _blocked("network access")
        elif event in _refused:
            raise _blocked(_refused[event])
        elif _str.startswith(event, "ctypes."):
            raise _blocked("ctypes")
        elif event in ("os.kill", "os.killpg") and args[0] not in (_own_pid, 0):
            raise _blocked("signals to other processes")
        elif event == "import":
            for prefix in _modules:
                if _str.startswith(args[0], prefix):
                    raise _blocked(_modules[prefix])
        elif event == "sqlite3.connect":
            database = args[0]
            if _issubclass(_type(database), _str) and _str.startswith(database, "file:"):
                raise _blocked("sqlite URIs")
            if database not in (":memory:", ""):
                paths.append((database, True))

        for path, writing in paths:
            # The absolute, normalised path as an exact str; a descriptor is not checked.
            if path is None:
                path = _getcwd()
            kind = _type(path)
            if _issubclass(kind, _int):
                continue
            if not _issubclass(kind, (_str, _bytes)):
                path = _fspath(path)
                kind = _type(path)
            if _issubclass(kind, _bytes):
                path = _bytes.decode(path, "utf-8", "surrogateescape")
            else:
                path = _str.__getitem__(path, _full)  # an exact str, whatever the subclass
            if not _str.startswith(path, "/"):
                path = _getcwd() + "/" + path
            parts = []
            for part in _str.split(path, "/"):
                if part == "..":
                    if parts:
                        parts.pop()
                elif part and part != ".":
                    parts.append(part)
            path = "/" + "/".join(parts)

            if path == _work or _str.startswith(path, _work + "/") or path in _devices:
                continue
            if writing:
                raise _blocked(f"writing outside the working folder ({path})")
            if "/site-packages" in path or "/dist-packages" in path:
                raise _blocked(f"reading outside the working folder ({path})")
            for root in _readable:
                if path == root or _str.startswith(path, root + "/"):
                    break
            else:
                raise _blocked(f"reading outside the working folder ({path})")
            if event == "open":  # a folder handle would allow dir_fd escapes: files only
                try:
                    folder = _isdir(_stat(path).st_mode)
                except _OSError:
                    folder = False
                if folder:
                    raise _blocked(f"opening a folder outside the working folder ({path})")

    sys.addaudithook(hook)


# --- running the code ----------------------------------------------------------------------


def run(code: str, memory_mb: int) -> dict:
    """Run ``code`` as a REPL cell in a fresh namespace; the status to report."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    saved_builtins = dict(vars(builtins))
    error = None
    try:
        linecache.cache[FILENAME] = (len(code), None, code.splitlines(True), FILENAME)
        tree = ast.parse(code, FILENAME)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, FILENAME, "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), FILENAME, "eval"), namespace)
            if value is not None:
                sys.stdout.write(repr(value) + "\n")
    except BaseException as caught:  # noqa: BLE001 - every failure of the code is the agent's
        error = caught
    namespace.clear()
    vars(builtins).update(saved_builtins)  # undo patched builtins, so that the report works
    if error is None:
        return {"ok": True, "error": None, "shown": False}
    if isinstance(error, SystemExit):
        if error.code in (None, 0):
            return {"ok": True, "error": None, "shown": False}
        if isinstance(error.code, int):
            return {"ok": False, "error": f"exited with code {error.code}", "shown": False}
        sys.stderr.write(f"{error.code}\n")
        return {"ok": False, "error": "exited with code 1", "shown": True}
    if isinstance(error, MemoryError):
        return {"ok": False, "error": f"memory limit ({memory_mb} MB)", "shown": False}
    _print_traceback(error)
    return {"ok": False, "error": _reason(error), "shown": True}


def _print_traceback(error: BaseException) -> None:
    """The traceback from the code's first frame on, without this runner's (the audit hook)."""
    here = os.path.abspath(__file__)
    frames = traceback.extract_tb(error.__traceback__)
    while frames and frames[0].filename != FILENAME:
        frames.pop(0)
    frames = [frame for frame in frames if frame.filename != here]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(error), error)
    sys.stderr.write("".join(lines))


def _reason(error: BaseException) -> str:
    """The short reason: ``blocked: ...`` if a refusal caused the error, else its last line."""
    seen = error
    while seen is not None:
        if isinstance(seen, Blocked):
            return f"blocked: {seen}"
        seen = seen.__cause__ or seen.__context__
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:300]


def main() -> None:
    config = json.loads(sys.argv[1])
    code = sys.stdin.buffer.read().decode("utf-8", "replace")
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    stdlib = [path for path in sys.path if path]
    limit_resources(config["cpu_seconds"], config["memory_bytes"], config["file_bytes"])
    user = "root" if os.geteuid() == 0 else "unprivileged"
    isolation = dict(network_namespace=False, user=user, no_new_privileges=False, seccomp=False)
    if sys.platform == "linux":  # the kernel layers are Linux's
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        isolation = isolate(libc, config["parent_pid"], stdlib)
        del libc, ctypes
    for name in [name for name in sys.modules if name.startswith(("ctypes", "_ctypes"))]:
        del sys.modules[name]  # so that importing it again goes through the audit hook
    if config["audit_hook"]:
        install_audit_hook(os.getcwd(), stdlib)
    isolation["audit_hook"] = config["audit_hook"]
    status = run(code, config["memory_bytes"] // 2**20)
    status["isolation"] = isolation
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(config["status_fd"], json.dumps(status).encode() + b"\n")
    os._exit(0)


if __name__ == "__main__":
    main()
