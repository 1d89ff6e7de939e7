"""The bubblewrap command line of a sandboxed user-code process (pure: no kernel imports).

Shared by the supervisor, which runs it (kernel/sandbox.py), and the control
layer, which tries it once before it lets a sandboxed env be created
(provisioning/sandbox.py).  What the sandbox holds:

- the system read-only: ``/usr`` (and the ``/bin``, ``/lib``... links or
  directories), the ``/etc`` files programs need (``ETC``: users, name
  resolution, certificates, time zone, the dynamic linker; not ``shadow`` or
  ``ssh``), the interpreter's prefixes and every ``sys.path`` directory;
- its work dir read-write, at ``HOME`` (``/home/user``, as E2B's sandboxes
  have it) whatever its path outside, the configured extra binds, a private ``/tmp``,
  ``/proc`` of its own PID namespace and a minimal ``/dev``; the state dir and
  the runtime dir are covered by empty tmpfs wherever a bind exposed them;
- new PID, IPC, UTS and cgroup namespaces, no network unless asked
  (``--unshare-net``), a new session, no capabilities, and ``--die-with-parent``
  (the supervisor's death kills it);
- the environment of the supervisor (no ``WSGIKERNEL_*`` already) with
  ``HOME`` and the current directory the work dir and ``TMPDIR`` ``/tmp``.

The spec (env.json's ``sandbox``) is made by the control layer: ``bwrap``
(the program's path), ``network``, ``ro_binds`` and ``rw_binds`` ([src,
dest]), ``hide`` (directories no bind may expose).
"""

import json
import os
import sys

CONTROL_FD = 3      # the control socket, inside the sandbox too
INFO_FD = 4         # bwrap writes {"child-pid": ...} here (the init, our group leader)
# Where the work dir appears inside, whatever its path outside: a pooled kernel's directory
# is renamed when an env claims it, and a mount inside does not follow a rename outside.
HOME = "/home/user"
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC = ("passwd", "group", "nsswitch.conf", "hosts", "host.conf", "resolv.conf", "gai.conf",
       "services", "protocols", "localtime", "timezone", "ld.so.cache", "ld.so.conf",
       "ld.so.conf.d", "ssl/certs", "ssl/openssl.cnf", "ca-certificates",
       "ca-certificates.conf", "pki/tls/certs", "pki/ca-trust", "pki/tls/openssl.cnf",
       "alternatives", "mime.types", "fonts", "os-release", "debian_version", "xdg/pip",
       "pip.conf", "matplotlibrc", "python3", "mailcap", "magic")
# The host-wide knobs of /proc, read-only (bwrap's own cover of them is skipped when the
# server runs as root): otherwise a root cell writes /proc/sys/kernel/core_pattern.
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../wsgikernel
# As launcher.BOOT: the package root takes the place of the '' that -c puts on sys.path.
BOOT = ("import sys; kept = frozenset(sys.modules); root = sys.argv.pop(1); "
        "sys.path[0:sys.path[:1] == ['']] = [root]; "
        "from wsgikernel.kernel.executor import main; main(kept)")


def within(path, folder):
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def python_paths(paths=None):
    """The interpreter's own directories and the import path (existing ones only)."""
    found = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))), PACKAGE]
    found += [p for p in (sys.path[1:] if paths is None else paths) if p]
    return [os.path.realpath(p) for p in found if os.path.exists(p)]


def read_only_binds(spec, paths=None):
    """[(src, dest)] bound read-only: the interpreter's paths not inside /usr or a hidden
    directory, outermost first and each once, then the configured extra ones."""
    hidden = spec.get("hide") or ()
    chosen = []
    for path in sorted(set(python_paths(paths)), key=len):
        if within(path, "/usr") or any(within(path, h) for h in hidden):
            continue
        if not any(within(path, outer) for outer in chosen):
            chosen.append(path)
    return [(p, p) for p in chosen] + [tuple(b) for b in spec.get("ro_binds") or ()]


def exposing(spec):
    """Why a configured bind would show a hidden directory (the state dir, the runtime
    dir) inside the sandbox, or None: its source, made real, is inside one or holds one."""
    for kind in ("ro_binds", "rw_binds"):
        for src, _ in spec.get(kind) or ():
            real = os.path.realpath(src)
            for hidden in spec.get("hide") or ():
                if within(real, hidden) or within(hidden, real):
                    return ("sandbox_%s %s would show %s (the state or runtime directory, "
                            "with the token and every env) inside the sandbox"
                            % (kind, src, hidden))
    return None


def command(spec, work_dir, info_fd=INFO_FD, paths=None, system=SYSTEM, etc="/etc"):
    """The bwrap command line for the user-code process of ``work_dir``, up to ``--``: the
    program to run follows (``interpreter()``)."""
    argv = [spec["bwrap"], "--die-with-parent", "--new-session", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
            "--cap-drop", "ALL"]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    if not spec.get("network"):
        argv.append("--unshare-net")
    argv += ["--tmpfs", "/tmp"]  # first: binds under /tmp (a venv, the work dir) go on top
    for path in system:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in ETC:
        path = os.path.join(etc, name)
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    binds = read_only_binds(spec, paths)
    # The work dir goes over what is bound at or above HOME, under what is bound below it
    # (a venv in /home/user/.venv of a server user named "user").
    below = [(src, dest) for src, dest in binds if within(dest, HOME) and dest != HOME]
    for src, dest in binds:
        if (src, dest) not in below:
            argv += ["--ro-bind", src, dest]
    exposed = [dest for _, dest in binds] + list(system) + ["/tmp"]
    for folder in spec.get("hide") or ():
        if any(within(folder, outer) for outer in exposed):
            argv += ["--tmpfs", folder]
    argv += ["--bind", work_dir, HOME]
    for src, dest in below:
        argv += ["--ro-bind", src, dest]
    for src, dest in spec.get("rw_binds") or ():
        argv += ["--bind", src, dest]
    argv += ["--proc", "/proc"]
    for path in PROC_READ_ONLY:
        argv += ["--ro-bind-try", path, path]
    argv += ["--dev", "/dev", "--chdir", HOME, "--"]
    return argv


def interpreter(args):
    """The user-code process's command: this interpreter, running ``executor.main``."""
    return [sys.executable, "-c", BOOT, os.path.dirname(PACKAGE), json.dumps(args)]


def environment(environ):
    env = dict(environ, HOME=HOME, TMPDIR="/tmp", PYTHONIOENCODING="utf-8")
    return {k: v for k, v in env.items() if not k.startswith("WSGIKERNEL_")}
