"""The bwrap provisioner: a local kernel whose user-code process runs inside bubblewrap.

The supervisor is started and found as the local provisioner's (same pids,
same forkserver); env.json's ``sandbox`` (``spec()``) tells it to run the
user-code process through ``bwrap`` (kernel/bwrap.py, kernel/sandbox.py), on
every start and restart.  ``problem(spec)`` tries that very command line once
(a no-op interpreter instead of the kernel) and says why it cannot run --
bubblewrap missing, namespaces refused, a bind that does not exist -- so a
create is refused with the cause instead of making a dead env.  A success is
remembered for the process's life, a failure for ``RETRY_AFTER`` seconds (an
administrator may install bubblewrap meanwhile).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from ..kernel.bwrap import command, environment, exposing
from ..statedir import runtime_dir
from .local import LocalProvisioner

PROBE_TIMEOUT = 10.0  # seconds a trial sandbox may take
RETRY_AFTER = 10.0    # seconds a failed trial is believed


class SandboxProvisioner(LocalProvisioner):
    name = "bwrap"


def spec(config, network):
    """env.json's ``sandbox`` for a bwrap env of ``config`` (the program as a path)."""
    program = config.sandbox_bwrap or "bwrap"
    found = shutil.which(program) if os.sep not in program else program
    return {"bwrap": found or program, "network": bool(network),
            "ro_binds": [list(b) for b in config.sandbox_ro_binds],
            "rw_binds": [list(b) for b in config.sandbox_rw_binds],
            "hide": sorted({os.path.realpath(config.state_dir), os.path.realpath(runtime_dir())})}


_lock = threading.Lock()
_verdicts = {}  # repr(spec) -> (problem or None, monotonic time)


def problem(spec):
    """None if a sandbox of ``spec`` runs here, else why not (one sentence)."""
    key = repr(sorted(spec.items()))
    with _lock:
        verdict = _verdicts.get(key)
        if verdict and (verdict[0] is None or time.monotonic() - verdict[1] < RETRY_AFTER):
            return verdict[0]
        why = trial(spec)
        _verdicts[key] = (why, time.monotonic())
        return why


def trial(spec):
    program = spec["bwrap"]
    why = exposing(spec)
    if why:
        return why
    if not (os.path.isfile(program) and os.access(program, os.X_OK)):
        return ("bubblewrap is not installed: no program %r (install the bubblewrap package, "
                "or set sandbox_bwrap to its path)" % program)
    with tempfile.TemporaryDirectory(prefix="wsgikernel-sandbox-") as work_dir:
        argv = command(spec, work_dir, info_fd=None) + [sys.executable, "-c", "pass"]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT,
                                  env=environment(os.environ), pass_fds=())
        except subprocess.TimeoutExpired:
            return "bubblewrap did not start a sandbox within %g seconds" % PROBE_TIMEOUT
        except OSError as exc:
            return "bubblewrap cannot be run: %s" % exc
    if done.returncode == 0:
        return None
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return "bubblewrap cannot create the sandbox: %s" % (
        lines[-1] if lines else "it exited with status %d" % done.returncode)
