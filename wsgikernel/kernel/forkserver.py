"""The forkserver: one warm interpreter per state dir that forks new kernels.

Starting a kernel as a new ``python`` costs its interpreter start-up and
imports (~100 ms here, most of a cold create) and gives every kernel private
copies of the same modules.  The forkserver pays that once: it imports
everything a kernel runs, moves those objects out of the garbage collector's
reach (``gc.freeze``, so collections do not dirty their shared pages), and
then, per request, forks a process that becomes a kernel's supervisor as
``python -m wsgikernel.kernel ENV_DIR`` would make one (a session of its own,
``pid N`` then ``ready`` on the report pipe) -- in milliseconds, and sharing its
pages with every kernel it forked until they are written to.  Its children are
reaped by the system (SIGCHLD ignored), so none waits on the forkserver.

Requests come over a Unix socket (0600, in the private runtime dir), one
frame each, with two descriptors passed alongside (``SCM_RIGHTS``): the pipe
the kernel reports ``pid``/``ready`` on (its fd 1) and its kernel.log (fd 2);
a fork's ``adopt`` brings its process's, a ``standby`` its listener (foster.py).
The forkserver is single-threaded (forking is safe) and handles one request
at a time, answered with the new supervisor's pid as soon as it is forked.  It
exits on SIGTERM, when its state dir is gone, or after ``IDLE_EXIT`` seconds
without a request.  It never runs user code; neither do its direct children.
"""

from . import __main__ as entry  # first: INTERPRETER_MODULES is taken at its import

import gc
import os
import signal
import socket
import sys
import time

from ..wire import address as addresses
from ..wire.envelope import message
from ..wire.framing import encode
from .foster import ADOPT_FDS, read_request, well_formed

PASSED = {"spawn": 2, "adopt": ADOPT_FDS, "standby": 2}  # descriptors a request brings (handle)

IDLE_EXIT = 600.0   # seconds without a request before the forkserver exits
CHECK_EVERY = 1.0   # seconds between checks that the state dir still exists


def main(argv=None):
    """``python -c BOOT ROOT --forkserver SOCKET STATE_DIR`` (see provisioning/forkserver.py)."""
    argv = sys.argv[1:] if argv is None else argv
    path, state_dir = argv[1], argv[2]
    pid = os.fork()
    if pid > 0:  # as a kernel does: nobody's child, in a session of its own
        try:
            os.write(1, b"pid %d\n" % pid)
        finally:
            os._exit(0)
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the supervisors it forks reap themselves
    # Warm: everything a kernel imports (and what it imports on its way up) is imported now.
    import ctypes  # noqa: F401 - child.become_subreaper
    import resource  # noqa: F401 - executor.apply_limits
    from . import supervisor  # noqa: F401
    gc.collect()
    gc.freeze()
    listener, _ = addresses.listen("unix:" + path, backlog=16)  # 0600, like a kernel's
    listener.settimeout(CHECK_EVERY)  # blocking again, with a bound
    os.write(1, b"ready\n")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # the launcher sees EOF once it read "ready"
    os.close(null)
    try:
        serve(listener, state_dir)
    finally:  # its socket, and its record (provisioning/forkserver.py names it so)
        identity = os.path.basename(path)[len("fork-"):-len(".sock")]
        for leftover in (path, os.path.join(state_dir, "forkserver-%s.json" % identity)):
            try:
                os.unlink(leftover)
            except OSError:
                pass
    return 0


def serve(listener, state_dir):
    last = time.monotonic()
    while os.path.isdir(state_dir) and time.monotonic() - last < IDLE_EXIT:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            time.sleep(0.05)  # a reset while queued, or out of descriptors for a moment
            continue
        last = time.monotonic()
        with conn:
            try:
                handle(listener, conn)
            except Exception as exc:  # one bad request must not end the forkserver
                print("%s forkserver: %s: %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                 type(exc).__name__, exc), file=sys.stderr)


def handle(listener, conn):
    """One ``spawn``, ``adopt`` or ``standby`` request: fork the kernel, answer once the
    fork is done."""
    conn.settimeout(5.0)
    request, fds = read_request(conn, max(PASSED.values()))
    if request is None:
        return  # a probe (provisioning/forkserver.py's answers()): connected, then gone
    try:
        if not well_formed(request, fds, PASSED):
            conn.sendall(encode(message("error", {"code": "bad_request"},
                                        parent=request.get("id"))))
            return
        kind, body = request["type"], request["body"]
        pid = os.fork()
        if pid == 0:
            from .supervisor import Supervisor
            if kind == "adopt":
                log, control, out_r, err_r, status_r = fds
                Supervisor.adopting = (body["pid"], control, out_r, err_r)
                Supervisor.foster = (body["reaper"], status_r)
                fds = [log, log]  # it reports in env.json only, as an exec'd --adopt does
            elif kind == "standby":  # the fork's copy will hand it its process (foster.py)
                Supervisor.awaiting, log = fds
                fds = [log, log]
            become_kernel(listener, conn, body["env_dir"], fds)
        conn.sendall(encode(message("reply", {"pid": pid}, parent=request.get("id"))))
    finally:
        for fd in fds:
            os.close(fd)


def become_kernel(listener, conn, env_dir, fds):
    """In the forked child: the fds and the session a launched kernel's supervisor has,
    then its life (``__main__.supervise``).  Never returns.  An adopting one (a fork's,
    foster.py) has its kernel.log as fd 1 too: no launcher reads a report."""
    code = 1
    try:
        listener.close()
        conn.close()
        ready, log = fds
        os.dup2(ready, 1)
        os.dup2(log, 2)
        os.close(ready)
        if log != ready:
            os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(env_dir)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.setsid()
        from .supervisor import Supervisor
        adopting = Supervisor.adopting is not None or Supervisor.awaiting is not None
        if not adopting:
            os.write(1, b"pid %d\n" % os.getpid())
        code = entry.supervise(Supervisor, os.path.abspath(env_dir),
                               ready_fd=None if adopting else 1)
    except BaseException as exc:
        try:
            os.write(1, ("error: %s: %s\n" % (type(exc).__name__, exc)).encode())
        except OSError:
            pass
    finally:
        os._exit(code)
