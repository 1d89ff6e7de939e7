"""How a kernel process is started: one replaceable piece, as jupyter_client's launcher.

``launch_kernel(env_dir)`` starts ``sys.executable`` (not a ``python3`` from
PATH, which may be a slow version-manager shim) running
``wsgikernel.kernel.__main__`` for that env directory, in a new session, with a
clean environment: no ``WSGIKERNEL_*`` variable (the token must not reach user
code) and ``PYTHONIOENCODING=utf-8``.  Its stdout is a pipe on which the kernel
says ``ready`` (or ``error: ...``); ``wait_ready()`` reads it with a timeout.

A sandbox wrapper (bubblewrap), ssh or a batch scheduler would replace
``kernel_command``; the rest of the service only needs the env directory.
"""

import os
import select
import subprocess
import sys

from .store import LOG_FILE

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# -c rather than -m: the package may not be installed (scripts/serve.py from a checkout).
BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from wsgikernel.kernel.__main__ import main; main()")


class LaunchError(RuntimeError):
    pass


def kernel_command(env_dir):
    return [sys.executable, "-c", BOOT, PACKAGE_ROOT, env_dir]


def kernel_environment(memory_limited=False, environ=None):
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if not k.startswith("WSGIKERNEL_")}
    env["PYTHONIOENCODING"] = "utf-8"
    if memory_limited:
        env["MALLOC_ARENA_MAX"] = "2"  # glibc arenas reserve address space under RLIMIT_AS
    return env


def launch_kernel(env_dir, memory_limited=False):
    """Start the kernel of ``env_dir``; returns the Popen whose stdout reports readiness."""
    with open(os.path.join(env_dir, LOG_FILE), "ab") as log:
        return subprocess.Popen(
            kernel_command(env_dir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=log, cwd=env_dir, env=kernel_environment(memory_limited),
            start_new_session=True, close_fds=True)


def wait_ready(proc, timeout):
    """Wait for the kernel's ``ready`` line; LaunchError with its reason otherwise."""
    import time
    deadline = time.monotonic() + timeout
    output = b""
    try:
        while b"\n" not in output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LaunchError("the kernel did not report ready within %g s" % timeout)
            readable, _, _ = select.select([proc.stdout], [], [], left)
            if not readable:
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            output += chunk
    finally:
        proc.stdout.close()
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))  # the first process exits at once
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    line = output.decode("utf-8", "replace").strip()
    if line != "ready":
        raise LaunchError(line[len("error: "):] if line.startswith("error: ")
                          else "the kernel exited before it was ready (see its kernel.log)")
