"""The program :class:`~textgym.tools.python_sandbox.PythonSandbox` runs in its child process.

Run as a script (``python -s -P -S -B -u sandbox_runner.py CONFIG`` in a fresh, empty temporary
folder, the code on stdin), never imported. Before the agent's code runs it locks the process
down, in order:

1. resource limits: CPU seconds, address space, file size, no new processes, open files, no core
   dumps (kernel-enforced; root is exempt from the process limit, hence steps 4 and 6);
2. namespaces of its own (``unshare``; as root directly, otherwise inside a new user namespace):
   network (no interface but a down loopback), System V IPC, and mounts, in which it builds a new
   root and enters it with ``pivot_root``: a read-only view of the standard library, the shared
   libraries its extension modules load and the time-zone database; ``/dev/null``,
   ``/dev/zero``, ``/dev/random`` and ``/dev/urandom``; and the working folder ``/work``, a
   size-capped ``tmpfs`` (the only writable place, and the bound on disk use). Nothing else of
   the machine's file system (``/etc``, ``/home``, ``/proc``, the project, ``site-packages``)
   exists in it. Where mount namespaces are refused, a **Landlock** ruleset (Linux 5.13+) gives
   the same file access rules on the machine's own file system instead;
3. when started as root, the unprivileged user ``nobody`` (after ``pivot_root`` ``nobody`` can
   always reach the standard library; under Landlock, only where it can read it in place);
4. the parent-death signal (the child dies with its parent) and no-new-privileges;
5. (Landlock, when the mount namespace was not available);
6. on x86-64 Linux, a seccomp filter that makes the kernel refuse new processes, ``exec``,
   sockets, signals to other processes, raising limits, device nodes, mounts, namespaces and
   other administration calls, whatever Python-level tricks the code uses;
7. an audit hook (:func:`sys.addaudithook`) that refuses, with a readable reason, network use,
   new processes, signals to other processes, file access outside the working folder (reading
   is also allowed in the standard library), ``ctypes`` and a few escape hatches. Audit hooks
   are not a security boundary on their own (the Python docs say so); they give the agent a
   clear error, and the kernel layers above hold where the kernel provides them. The hook's
   tables are immutable (tuples, frozensets, strings), and the code runs in a fresh
   ``__main__`` module, not this one.

Which layers took effect is written as one JSON line to the status descriptor *before* the code
runs: the parent trusts that line. Without a kernel file-system layer (step 2 or 5) the runner
stops there unless the parent allowed it. Then the code runs like a REPL cell (the value of a
last expression is printed); an uncaught exception prints a traceback. The runner then writes a
second line, ``{"error": ..., "shown": ...}`` (``shown``: the error is already visible in the
output), and exits with status 0 (the code finished), 1 (it raised) or the code of its
``sys.exit``. That line only *labels* a failure: whether the call succeeded is what the parent
observes (the exit status, a signal, a limit it enforced), which the code cannot forge.
"""

from __future__ import annotations

import ast
import builtins
import glob
import json
import linecache
import os
import stat
import struct
import sys
import traceback
import types

NOBODY = 65534
FILENAME = "<python>"  # the code's name in tracebacks
WORK = "/work"  # the working folder's path inside the sandbox's own root
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
DEVICES = ("/dev/null", "/dev/urandom", "/dev/random", "/dev/zero")  # open to read and write
TIME_ZONES = ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo")  # readable
# Shared libraries that the standard library's extension modules load (libm, libz, libssl,
# libffi, ...), the dynamic loader's cache and the C locales: readable inside the new root.
SYSTEM_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache")

# Audit events refused outright, by the reason the agent sees. Tables are tuples and frozensets:
# code that reaches them (through a frame, say) cannot change what the hook does.
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
REFUSED_EVENTS = (
    ("os.system", "new processes"),
    ("os.exec", "new processes"),
    ("os.fork", "new processes"),
    ("os.forkpty", "new processes"),
    ("os.posix_spawn", "new processes"),
    ("subprocess.Popen", "new processes"),
    ("pty.spawn", "new processes"),
    ("webbrowser.open", "new processes"),
    ("os.link", "links"),
    ("os.symlink", "links"),
    ("resource.setrlimit", "changing limits"),
    ("resource.prlimit", "changing limits"),
    ("cpython.PyInterpreterState_New", "subinterpreters"),
    ("gc.get_objects", "garbage-collector introspection"),
    ("gc.get_referrers", "garbage-collector introspection"),
    ("gc.get_referents", "garbage-collector introspection"),
    ("sys.settrace", "tracing"),
    ("sys.setprofile", "tracing"),
    ("sqlite3.enable_load_extension", "sqlite extensions"),
    ("sqlite3.load_extension", "sqlite extensions"),
)
BLOCKED_MODULES = (  # module name prefixes, and the reason
    ("ctypes", "ctypes"),
    ("_ctypes", "ctypes"),
    ("_posixsubprocess", "new processes"),
    ("_posixshmem", "shared memory"),
    ("_xxsubinterpreters", "subinterpreters"),
    ("_xxinterpchannels", "subinterpreters"),
    ("_interp", "subinterpreters"),
    ("_test", "CPython's test modules"),
    ("_xxtestfuzz", "CPython's test modules"),
    ("_dbm", "dbm files"),
    ("_gdbm", "dbm files"),
    ("spwd", "the shadow password database"),
)
# Audit events whose path arguments (by position) are read or written.
READ_EVENTS = (
    ("os.listdir", (0,)),
    ("os.scandir", (0,)),
    ("os.getxattr", (0,)),
    ("os.listxattr", (0,)),
)
WRITE_EVENTS = (
    ("os.remove", (0,)),
    ("os.rmdir", (0,)),
    ("os.mkdir", (0,)),
    ("os.rename", (0, 1)),
    ("os.truncate", (0,)),
    ("os.chmod", (0,)),
    ("os.chown", (0,)),
    ("os.utime", (0,)),
    ("os.setxattr", (0,)),
    ("os.removexattr", (0,)),
    ("shutil.rmtree", (0,)),
    ("shutil.chown", (0,)),
)


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


# --- 2.-6. kernel isolation (ctypes, before the audit hook forbids it) ---------------------

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWNET = 0x20000, 0x8000000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = (
    1024,
    2048,
    4096,
    16384,
    1 << 18,
    1 << 21,
)
MNT_DETACH = 2
# statvfs flags a bind mount inherits and may not drop inside a user namespace -> mount flags.
LOCKED_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)
PIVOT_ROOT, CAPSET = {"x86_64": 155, "aarch64": 41}, {"x86_64": 126, "aarch64": 91}  # numbers
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446  # every arch
# Landlock access rights: EXECUTE, WRITE_FILE, READ_FILE, READ_DIR, then 9 more for removing
# and making entries (ABI 1), REFER (2), TRUNCATE (3), IOCTL_DEV (5).
LANDLOCK_READ = 1 | 4 | 8
LANDLOCK_FILE = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # the rights that apply to a file


def isolate(libc, config: dict, stdlib: list[str]) -> dict:
    """Apply steps 2-6 as ``config`` asks and report which took effect: ``filesystem``
    (``"namespace"``, ``"landlock"`` or ``"none"``), ``network_namespace``, ``user``,
    ``no_new_privileges``, ``seccomp``, and ``problems`` (why a layer did not take effect)."""
    wanted, problems = config["filesystem"], []
    report = {"filesystem": "none", "network_namespace": False}
    if wanted in ("auto", "namespace"):
        try:
            real_root = _unshare(libc, CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
            report["network_namespace"] = True
            _enter_new_root(libc, stdlib, config["disk_bytes"], config["max_files"], real_root)
            report["filesystem"] = "namespace"
        except OSError as error:
            problems.append(f"mount namespace: {error.strerror or error}")
    if not report["network_namespace"]:
        try:
            _unshare(libc, CLONE_NEWNET | CLONE_NEWIPC)
            report["network_namespace"] = True
        except OSError as error:
            problems.append(f"network namespace: {error.strerror or error}")
    report["user"] = _drop_root(stdlib)
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = SIGKILL
    if os.getppid() != config["parent_pid"]:  # the parent died before the line above
        os._exit(1)
    report["no_new_privileges"] = libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    files = None  # Landlock's file rules, when it is the file-system layer
    if report["filesystem"] == "none" and wanted in ("auto", "landlock"):
        files = (os.getcwd(), [*stdlib, *TIME_ZONES, *SYSTEM_LIBRARIES])
    try:  # file rules if asked for; from ABI 6 on, in every mode, no signals leave the sandbox
        if _restrict_with_landlock(libc, files) and files is not None:
            report["filesystem"] = "landlock"
    except OSError as error:
        if files is not None:
            problems.append(f"landlock: {error.strerror or error}")
    if not _drop_capabilities(libc):  # root's, or those of the new user namespace
        problems.append("capabilities: could not drop them")
    elif report["user"] == "root":
        report["user"] = "root without capabilities"
    # Modes, owners, times and extended attributes: Landlock does not cover them (and a root
    # that stayed root owns the machine's files); the namespace's root is read-only instead.
    refuse_attributes = report["filesystem"] != "namespace"
    report["seccomp"] = _install_seccomp(libc, refuse_attributes=refuse_attributes)
    report["problems"] = problems
    return report


def _drop_capabilities(libc) -> bool:
    """Give up every capability (a root that cannot switch users: no overriding permissions,
    changing owners, immutable files, other users' processes, administration); True if done."""
    number = CAPSET.get(os.uname().machine)
    for capability in range(64):
        libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP (EINVAL past the last one)
    if number is None:
        return False
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    try:
        _syscall(libc, number, header, bytes(24))  # effective, permitted, inheritable: none
    except OSError:
        return False
    return True


def _syscall(libc, number: int, *args) -> int:
    """``syscall(number, *args)`` (ints passed as C longs); OSError on failure."""
    import ctypes

    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    result = libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result


def _unshare(libc, flags: int) -> bool:
    """New namespaces for ``flags``: directly as root (then True: still the machine's root),
    otherwise inside a new user namespace in which this process keeps its own ids (False)."""
    import ctypes

    if os.geteuid() == 0 and libc.unshare(flags) == 0:
        return True
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(flags | CLONE_NEWUSER) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    # Map our own ids into the new user namespace, or creating files would fail (EOVERFLOW).
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{uid} {uid} 1"),
        ("gid_map", f"{gid} {gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)
    return False


def _mount(libc, source: str | None, target: str | None, kind: str | None, flags: int, data=None):
    import ctypes

    encode = lambda text: None if text is None else text.encode()  # noqa: E731
    if libc.mount(encode(source), encode(target), encode(kind), flags, encode(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{os.strerror(error)} (mounting {source or kind} on {target})")


def _enter_new_root(
    libc, stdlib: list[str], disk_bytes: int, max_files: int, real_root: bool
) -> None:
    """Build the sandbox's root on a tmpfs over the (empty) current folder, enter it with
    ``pivot_root`` and detach the machine's root: afterwards only what is bound here exists."""
    import ctypes

    os.umask(0o022)
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)  # nothing propagates back to the machine
    root = os.getcwd()
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    exposed: list[str] = []
    for path in sorted({*stdlib, *SYSTEM_LIBRARIES, *TIME_ZONES}):
        _expose(libc, root, path, exposed)
    # Installed packages stay out: an empty read-only tmpfs over each site-packages folder.
    for folder in {*stdlib, *glob.glob("/usr/lib/python3*"), *glob.glob("/usr/local/lib/python3*")}:
        for name in ("site-packages", "dist-packages"):
            packages = os.path.realpath(os.path.join(folder, name))
            if os.path.isdir(packages) and os.path.isdir(root + packages):
                flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
                _mount(
                    libc, "tmpfs", root + packages, "tmpfs", flags, "size=4k,nr_inodes=8,mode=555"
                )
    for device in DEVICES:
        if os.path.exists(device):
            os.makedirs(root + "/dev", exist_ok=True)
            open(root + device, "w").close()
            _mount(libc, device, root + device, None, MS_BIND)
    os.mkdir(root + WORK)
    owner = f"uid={os.geteuid()},gid={os.getegid()}"
    if real_root:
        owner = f"uid={NOBODY},gid={NOBODY}"  # step 3 switches to nobody
    options = f"size={disk_bytes},nr_inodes={max_files},mode=700,{owner}"
    _mount(libc, "tmpfs", root + WORK, "tmpfs", MS_NOSUID | MS_NODEV, options)
    os.chdir(root)
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(0, f"pivot_root's number is not known on {os.uname().machine}")
    _syscall(libc, number, b".", b".")  # the new root on top, the old one stacked under it
    if libc.umount2(b".", MNT_DETACH) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{os.strerror(error)} (detaching the old root)")
    os.chdir("/")
    _mount(libc, None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(WORK)


def _expose(libc, root: str, path: str, exposed: list[str], depth: int = 0) -> None:
    """Make ``path`` readable at the same place under ``root``: symbolic links on the way are
    copied (and their targets exposed), the real file or folder is bound read-only."""
    path = os.path.normpath(os.path.abspath(path))
    if depth > 8 or not os.path.exists(path):
        return
    if any(path == done or path.startswith(done.rstrip("/") + "/") for done in exposed):
        return
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        current = "/" + "/".join(parts[:i])
        if os.path.islink(current):
            inside = root + current
            if not os.path.lexists(inside):
                os.makedirs(os.path.dirname(inside), exist_ok=True)
                os.symlink(os.readlink(current), inside)
            target = os.path.join(os.path.dirname(current), os.readlink(current), *parts[i:])
            _expose(libc, root, target, exposed, depth + 1)
            return
    inside = root + path
    if os.path.isdir(path):
        os.makedirs(inside, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        open(inside, "w").close()
    try:
        _mount(libc, path, inside, None, MS_BIND)
    except OSError:  # a user namespace may only bind a mount together with those under it
        _mount(libc, path, inside, None, MS_BIND | MS_REC)
    locked = os.statvfs(path).f_flag
    flags = sum(mount_flag for flag, mount_flag in LOCKED_FLAGS if locked & flag)
    _mount(
        libc, None, inside, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | flags
    )
    exposed.append(path)


def _drop_root(stdlib: list[str]) -> str:
    """Become ``nobody`` when root, if ``nobody`` can still read the standard library."""
    if os.geteuid() != 0:
        return "unprivileged"
    try:
        os.seteuid(NOBODY)  # try first, reversibly
    except OSError:  # nobody does not exist in this user namespace
        return "root"
    try:
        readable = all(_readable(path) for path in stdlib)
    finally:
        os.seteuid(0)
    if not readable:
        return "root"
    if os.getcwd() != WORK:  # the machine's folder (Landlock or none): hand it to nobody
        os.chown(".", NOBODY, NOBODY)
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


def _restrict_with_landlock(libc, files: tuple[str, list[str]] | None) -> bool:
    """A Landlock ruleset. ``files=(work, readable)``: everything in ``work``, reading
    ``readable`` (but the files of their ``site-packages``: only names can be listed), reading
    and writing the :data:`DEVICES`; every
    other file-system access is refused by the kernel. From Landlock ABI 6 on, the ruleset also
    scopes signals and abstract Unix sockets: none reach a process outside the sandbox (with
    ``files=None``, that scope alone). Returns whether a ruleset was applied."""
    try:
        abi = _syscall(libc, LANDLOCK_CREATE_RULESET, None, 0, 1)  # the ABI version
    except OSError:
        if files is None:
            return False
        raise
    handled = 0
    if files is not None:
        handled = (1 << 13) - 1
        for version, right in ((2, 1 << 13), (3, 1 << 14), (5, 1 << 15)):
            if abi >= version:
                handled |= right
    scoped = 1 | 2 if abi >= 6 else 0  # LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET, _SIGNAL
    if not handled and not scoped:
        return False
    attributes = struct.pack("=QQQ", handled, 0, scoped) if scoped else struct.pack("=Q", handled)
    ruleset = _syscall(libc, LANDLOCK_CREATE_RULESET, attributes, len(attributes), 0)
    try:
        rules = []
        if files is not None:
            work, readable = files
            rules = [
                (work, handled),
                *((path, LANDLOCK_READ) for path in _without_packages(readable)),
            ]
            # Listing (not reading) those folders: the import system lists them to find modules.
            rules += [(path, 8) for path in readable if os.path.isdir(path)]  # READ_DIR
            rules += [(device, 2 | 4) for device in DEVICES]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:  # not on this machine
                continue
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= LANDLOCK_FILE
                rule = struct.pack("=Qi", access & handled, fd)  # landlock_path_beneath_attr
                _syscall(libc, LANDLOCK_ADD_RULE, ruleset, 1, rule, 0)
            finally:
                os.close(fd)
        _syscall(libc, LANDLOCK_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
    return True


def _without_packages(readable: list[str]) -> list[str]:
    """``readable``, with a folder that holds ``site-packages`` or ``dist-packages`` replaced by
    its other entries (Landlock only allows, so the packages are left out by not naming them)."""
    paths = []
    for path in readable:
        names = os.listdir(path) if os.path.isdir(path) else []
        packages = {"site-packages", "dist-packages"} & set(names)
        if packages:
            paths += [os.path.join(path, name) for name in names if name not in packages]
        else:
            paths.append(path)
    return paths


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
    # other processes' scheduling and memory (another sandbox call, the parent)
    "setpriority": 141,
    "sched_setparam": 142,
    "sched_setscheduler": 144,
    "sched_setaffinity": 203,
    "sched_setattr": 314,
    "ioprio_set": 251,
    "migrate_pages": 256,
    "move_pages": 279,
    # watching the machine's file opens; memory the address-space limit does not count
    "fanotify_init": 300,
    "fanotify_mark": 301,
    "memfd_create": 319,
    "memfd_secret": 447,
    # socket pairs (their buffers are memory the limit does not count; signal owners; sending
    # to the machine's Unix sockets) and watching files other processes open
    "socketpair": 53,
    "inotify_init": 253,
    "inotify_init1": 294,
}
# Refused too when the child stays root (no user it could switch to could read the standard
# library): it then owns the machine's root-owned files, so it may change no file attributes.
_X86_64_ATTRIBUTES = {
    "chmod": 90,
    "fchmod": 91,
    "fchmodat": 268,
    "fchmodat2": 452,
    "chown": 92,
    "fchown": 93,
    "lchown": 94,
    "fchownat": 260,
    "utime": 132,
    "utimes": 235,
    "futimesat": 261,
    "utimensat": 280,
    "setxattr": 188,
    "lsetxattr": 189,
    "fsetxattr": 190,
    "removexattr": 197,
    "lremovexattr": 198,
    "fremovexattr": 199,
}
_X86_64 = {
    "clone": 56,
    "clone3": 435,
    "kill": 62,
    "tgkill": 234,
    "prlimit64": 302,
    "fcntl": 72,
    "ioctl": 16,
}
# fcntl's F_SETOWN, F_SETSIG, F_SETOWN_EX (a descriptor's signals sent to another process) and
# F_SETPIPE_SZ (pipe buffers past the memory limit); ioctl's FIOSETOWN and SIOCSPGRP (the same)
_FCNTL_REFUSED, _IOCTL_REFUSED = (8, 10, 15, 1031), (0x8901, 0x8902)
_AUDIT_ARCH_X86_64 = 0xC000003E
_CLONE_THREAD = 0x00010000


def seccomp_program(pid: int, refuse_attributes: bool = False) -> bytes:
    """The classic-BPF seccomp filter for x86-64, as the kernel's ``sock_filter`` array.

    Threads (``clone`` with ``CLONE_THREAD``) are allowed, other ``clone`` calls refused and
    ``clone3`` answered ENOSYS so that the C library falls back to ``clone``; ``kill`` and
    ``tgkill`` may only target this process; ``prlimit64`` may only read limits; ``fcntl`` and
    ``ioctl`` may not direct a descriptor's signals to a process (``F_SETOWN``, ``F_SETSIG``,
    ``F_SETOWN_EX``, ``FIOSETOWN``, ``SIOCSPGRP``) nor grow a pipe (``F_SETPIPE_SZ``);
    ``refuse_attributes`` also refuses changing modes, owners, times and extended attributes. Calls through another ABI (x32, or 32-bit ``int 0x80``) kill the process.
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
    op(jeq, _X86_64["fcntl"], "fcntl")
    op(jeq, _X86_64["ioctl"], "ioctl")
    refused = [
        *_X86_64_REFUSED.values(),
        *(_X86_64_ATTRIBUTES.values() if refuse_attributes else ()),
    ]
    for number in refused:
        op(jeq, number, "eperm")
    op(ret, allow)
    for name, commands in (("fcntl", _FCNTL_REFUSED), ("ioctl", _IOCTL_REFUSED)):
        labels[name] = len(code)
        op(ld, 24)  # low word of args[1]: the command
        for command in commands:
            op(jeq, command, "eperm")
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


def _install_seccomp(libc, refuse_attributes: bool) -> bool:
    import ctypes

    if os.uname().machine != "x86_64" or struct.calcsize("P") != 8:
        return False
    program = seccomp_program(os.getpid(), refuse_attributes)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    fprog = SockFprog(len(program) // 8, program)
    set_seccomp, filter_mode = 22, 2  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    return libc.prctl(set_seccomp, filter_mode, ctypes.addressof(fprog), 0, 0) == 0


# --- 7. the audit hook ---------------------------------------------------------------------


def install_audit_hook(work_dir: str, stdlib: list[str]) -> None:
    """Refuse what the agent's code may not do, with the reason in a :class:`Blocked` error.

    The hook is one function that looks up no global or builtin name: everything it uses is a
    default argument bound here (builtins, ``os`` functions, the allowed folders, immutable
    tables), so the code cannot change its behaviour by patching modules, builtins or the
    tables, and its frame (reachable from a traceback) holds nothing mutable that it consults.
    A path given as an object is accepted only as ``str``, ``bytes``, a descriptor or one of
    ``pathlib``'s own path classes: an object whose ``__fspath__`` may answer differently when
    the hook asks than when the call opens is refused.
    """
    import pathlib

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
        _refused_names=frozenset(name for name, _ in REFUSED_EVENTS),
        _modules=BLOCKED_MODULES,
        _read_events=READ_EVENTS,
        _write_events=WRITE_EVENTS,
        _path_events=frozenset(name for name, _ in READ_EVENTS + WRITE_EVENTS),
        _path_classes=(pathlib.PurePosixPath, pathlib.PosixPath),
        _write_flags=WRITE_FLAGS,
    ):
        paths = []  # (path, writing) pairs to check below
        if event == "open":
            path, mode, flags = args
            if _type(flags) is _int:
                paths.append((path, (flags & _write_flags) != 0))
            else:
                paths.append((path, mode not in (None, "r", "rb")))
        elif event in _path_events:
            for name, positions in _read_events:
                if name == event:
                    for i in positions:
                        paths.append((args[i], False))
            for name, positions in _write_events:
                if name == event:
                    for i in positions:
                        if _issubclass(_type(args[i]), _int):
                            raise _blocked("changing files through a descriptor")
                        paths.append((args[i], True))
        elif _str.startswith(event, _network):
            raise _blocked("network access")
        elif event in _refused_names:
            for name, reason in _refused:
                if name == event:
                    raise _blocked(reason)
        elif _str.startswith(event, "ctypes."):
            raise _blocked("ctypes")
        elif event in ("os.kill", "os.killpg") and args[0] not in (_own_pid, 0):
            raise _blocked("signals to other processes")
        elif event == "import":
            for prefix, reason in _modules:
                if _str.startswith(args[0], prefix):
                    raise _blocked(reason)
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
                if kind not in _path_classes:
                    raise _blocked("paths must be str, bytes or pathlib paths")
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
                if part == "..":  # could climb out through a symbolic link or a dir_fd
                    raise _blocked(f"'..' in a path ({path})")
                if part and part != ".":
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


def run(code: str, memory_mb: int) -> tuple[int, dict]:
    """Run ``code`` as a REPL cell in a fresh ``__main__`` module: the exit status and the
    label of the outcome (``{"error": ..., "shown": ...}``)."""
    module = types.ModuleType("__main__")
    module.__builtins__ = builtins
    sys.modules["__main__"] = module  # `import __main__` gives the code its own namespace
    namespace = module.__dict__
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
        return 0, {"error": None, "shown": False}
    if isinstance(error, SystemExit):
        if error.code in (None, 0):
            return 0, {"error": None, "shown": False}
        if isinstance(error.code, int):
            status = error.code if 0 < error.code < 256 else 1
            return status, {"error": f"exited with code {error.code}", "shown": False}
        sys.stderr.write(f"{error.code}\n")
        return 1, {"error": "exited with code 1", "shown": True}
    if isinstance(error, MemoryError):
        return 1, {"error": f"memory limit ({memory_mb} MB)", "shown": False}
    _print_traceback(error)
    return 1, {"error": _reason(error), "shown": True}


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
    sys.argv = [""]
    code = sys.stdin.buffer.read().decode("utf-8", "replace")
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    stdlib = [path for path in sys.path if path]
    limit_resources(config["cpu_seconds"], config["memory_bytes"], config["file_bytes"])
    user = "root" if os.geteuid() == 0 else "unprivileged"
    isolation = dict(
        filesystem="none",
        network_namespace=False,
        user=user,
        no_new_privileges=False,
        seccomp=False,
        problems=[f"the kernel layers are Linux's, not {sys.platform}'s"],
    )
    if sys.platform == "linux":  # the kernel layers are Linux's
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.syscall.restype = ctypes.c_long
        isolation = isolate(libc, config, stdlib)
        del libc, ctypes
    for name in [name for name in sys.modules if name.startswith(("ctypes", "_ctypes"))]:
        del sys.modules[name]  # so that importing it again goes through the audit hook
    os.environ["HOME"] = os.environ["TMPDIR"] = os.getcwd()
    isolation["audit_hook"] = config["audit_hook"]
    isolation["refused"] = isolation["filesystem"] == "none" and not config["allow_unisolated"]
    # Written before any of the code runs: the one record from the child the parent trusts.
    os.write(config["status_fd"], json.dumps(isolation).encode() + b"\n")
    if isolation["refused"]:
        os._exit(0)
    if config["audit_hook"]:
        install_audit_hook(os.getcwd(), stdlib)
    exit_status, outcome = run(code, config["memory_bytes"] // 2**20)
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(config["status_fd"], json.dumps(outcome).encode() + b"\n")
    os._exit(exit_status)


if __name__ == "__main__":
    main()
