"""How a kernel process is started: one replaceable piece, as jupyter_client's launcher.

``launch_kernel(env_dir)`` starts ``sys.executable`` (not a ``python3`` from
PATH, which may be a slow version-manager shim) running
``wsgikernel.kernel.__main__`` for that env directory, in a new session, with a
clean environment: no ``WSGIKERNEL_*`` variable (the token must not reach user
code), ``PYTHONIOENCODING=utf-8`` and, unless ``kernel_huge_pages`` is off,
glibc's ``glibc.malloc.hugetlb=1`` (``with_huge_pages``).  Its stdout is a pipe
on which the kernel says ``pid N`` (its supervisor's pid, as soon as it is
forked), then ``ready`` (or ``error: ...``); ``wait_ready()`` reads it with a
timeout and, past it, kills what was started, so a start that hangs leaves
nothing behind.

Nothing in the env directory can break the start: its cwd is the env dir, but
the boot command *replaces* the ``''`` that ``python -c`` puts first on
``sys.path`` (it does not add to it), so no file there, or in the work dir,
shadows a module the kernel imports (see ``executor.run`` for the work dir).

This is the local provisioner's launcher (provisioning/local.py); a sandbox
(bubblewrap) wraps ``kernel_command``, a batch scheduler runs it elsewhere.
"""

import os
import select
import subprocess
import sys

from ..store import LOG_FILE
from .base import LaunchError

# The directory holding the wsgikernel package (three levels up from this file).
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# glibc >= 2.35: madvise(MADV_HUGEPAGE) what malloc maps (with_huge_pages).
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb"
HUGE_PAGES = HUGE_PAGES_TUNABLE + "=1"
# -c rather than -m: the package may not be installed (scripts/serve.py from a checkout).
# The package root takes the place of the '' (the cwd) that -c puts first on sys.path;
# with PYTHONSAFEPATH (3.11+) there is none and it goes first.
BOOT = ("import sys; root = sys.argv.pop(1); sys.path[0:sys.path[:1] == ['']] = [root]; "
        "from wsgikernel.kernel.__main__ import main; main()")


def kernel_command(env_dir):
    return [sys.executable, "-c", BOOT, PACKAGE_ROOT, env_dir]


def kernel_environment(memory_limited=False, environ=None, huge_pages=True):
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if not k.startswith("WSGIKERNEL_")}
    env["PYTHONIOENCODING"] = "utf-8"
    if memory_limited:
        env["MALLOC_ARENA_MAX"] = "2"  # glibc arenas reserve address space under RLIMIT_AS
    if huge_pages:
        env["GLIBC_TUNABLES"] = with_huge_pages(env.get("GLIBC_TUNABLES"))
    return env


def with_huge_pages(tunables):
    """``GLIBC_TUNABLES`` asking malloc to ``madvise(MADV_HUGEPAGE)`` what it maps, unless
    the operator already chose.  A fork then copies one page-table entry per 2 MiB of a
    large buffer instead of 512 (1 GiB: ~10 ms less per fork).  It is read once, when
    the interpreter starts; glibc before 2.35 and other C libraries ignore it."""
    if not tunables:
        return HUGE_PAGES
    if any(item.split("=", 1)[0] == HUGE_PAGES_TUNABLE for item in tunables.split(":")):
        return tunables
    return tunables + ":" + HUGE_PAGES


def launch_kernel(env_dir, memory_limited=False, huge_pages=True):
    """Start the kernel of ``env_dir``; returns the Popen whose stdout reports readiness."""
    with open(os.path.join(env_dir, LOG_FILE), "ab") as log:
        return subprocess.Popen(
            kernel_command(env_dir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=log, cwd=env_dir, env=kernel_environment(memory_limited, None, huge_pages),
            start_new_session=True, close_fds=True)


def read_report(stream, timeout):
    """(pid, line) from a starting kernel's report pipe: the pid its ``pid N`` line named
    (None if none) and its first other line -- ``ready``, ``error: ...``, or what it
    wrote before the pipe closed ("" for nothing); line None if ``timeout`` passed."""
    import time
    deadline = time.monotonic() + timeout
    output, pid = b"", None
    while True:
        while b"\n" in output:
            first, output = output.split(b"\n", 1)
            first = first.decode("utf-8", "replace").strip()
            if first.startswith("pid ") and first[4:].isdigit():
                pid = int(first[4:])
            elif first:
                return pid, first
        left = deadline - time.monotonic()
        if left <= 0:
            return pid, None
        readable, _, _ = select.select([stream], [], [], left)
        if not readable:
            continue
        chunk = os.read(stream.fileno(), 4096)
        if not chunk:
            return pid, output.decode("utf-8", "replace").strip()
        output += chunk


def wait_ready(stream, timeout, proc=None):
    """Wait for the kernel's ``ready`` line on ``stream``; LaunchError with its reason
    otherwise.  ``proc``: the Popen of its first process, when it was started as one.

    Past ``timeout`` the kernel's supervisor (named by its ``pid`` line) is killed with
    its process group; its user-code process, if any, sees its control socket close and
    kills its own group.
    """
    import time
    deadline = time.monotonic() + timeout
    try:
        supervisor, line = read_report(stream, timeout)
        if line is None:
            kill_supervisor(supervisor)
            raise LaunchError("the kernel did not report ready within %g s, and was "
                              "stopped" % timeout)
    finally:
        stream.close()
        if proc is not None:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))  # it exits at once
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if line == "ready":
        return
    if line.startswith("error: "):
        raise LaunchError(line[len("error: "):])
    if proc is not None and proc.returncode:  # the interpreter failed: see kernel.log
        raise LaunchError("the kernel's interpreter exited with code %d before it was ready"
                          % proc.returncode)
    raise LaunchError("the kernel exited before it was ready")


def kill_supervisor(pid):
    """SIGKILL a kernel's supervisor and its process group (it is a session leader)."""
    if pid is None:
        return
    import signal
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
            return
        except OSError:
            continue
