"""A forked env's first processes, fostered: children of a reaper, driven by a warm supervisor.

A fork's new user-code process can only be forked by a copy of the source's
namespace (kernel/checkpoint.py ``fork_env``), and whoever supervises a process
tree must see how each of its processes ended (``waitpid``) and get the orphans
it leaves (a child subreaper): an ancestor's privileges.  So the copy in between
stays the new process's parent, but not its supervisor: it hands the process
(its pid, control socket and fd 1/2 pipes) to the state dir's forkserver
(``hand_over``), which forks a warm supervisor to drive it -- milliseconds,
where exec'ing a supervisor interpreter costs 60 to 90.  Then the copy becomes
the *reaper* (``become_reaper``): a subreaper (since before it forked the
process, so that no orphan of it ever goes up to the source's supervisor)
that execs a tiny interpreter (none of the namespace's pages stay pinned),
waits for every child it has, writes ``PID STATUS`` for each on a pipe to the
supervisor, and exits once it has none left.  The supervisor reads that pipe
(``Foster``) as it would ``waitpid``, and walks the reaper's descendants as its
own when it stops a tree (process_tree.py ``roots``).  Only the first process
is fostered: the fresh one of a restart is the supervisor's own child.

The supervisor the copy hands the process to is best forked before the process
exists: a *standby* (the web tier asks the forkserver for it with the fork,
provisioning/forkserver.py ``Standby``) builds itself while the source forks,
then waits on a private socket for the copy (``await_adoption``), reading the
fork's count from env.json once it has the process.  One no copy reaches
leaves without writing env.json; the copy then asks the forkserver.

Risks: the reaper ignores SIGINT, SIGTERM and SIGHUP (it must outlive what it
reaps: it ends with its last child, or SIGKILL).  A pid the reaper reported
could be reused before the supervisor reads the line: it would take the whole pid
space to wrap within that time.
"""

import os
import socket
import sys
import time

from ..store import LOG_FILE, read_record, update_record
from ..wire import address as addresses
from ..wire.envelope import message
from ..wire.framing import HANDSHAKE_LIMIT, FrameReader, encode, recv_message

ASK_TIMEOUT = 10.0  # seconds the forkserver may take to answer (it only forks)
ADOPT_TIMEOUT = 60.0  # seconds a standby supervisor waits for its process (GiBs to copy)
CHECK_EVERY = 1.0  # seconds between a standby's looks at env.json
ADOPT_FDS = 5  # kernel.log, the control socket, fd 1's and fd 2's pipes, the reports' pipe

# Run as ``python -S -I -c REAPER FD``: no site, no user path, no pages of the namespace.
# A child subreaper already (``become_subreaper`` before the fork: the flag survives exec).
REAPER = """\
import os, signal, sys
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, signal.SIG_IGN)
out = int(sys.argv[1])
while True:
    try:
        pid, status = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    try:
        os.write(out, b"%d %d\\n" % (pid, status))
    except OSError:
        pass
"""


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def become_subreaper():
    """Make orphaned descendants re-parent to this process (Linux); False if not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def hand_over(address, env_dir, live, fds):
    """In the copy between the source and ``live`` (the fork's user-code process, our
    child): ask the forkserver at ``address`` for a supervisor driving ``live`` through
    ``fds`` (its control socket, its fd 1 and fd 2 pipes); the pipe the reaper's reports
    go to then (write end), or None if the forkserver cannot be reached (nothing was
    sent: the caller execs a supervisor instead).  A forkserver that took the request
    and failed is a fork that failed: the new env reads ``dead`` saying why, and
    OSError is raised."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(ASK_TIMEOUT)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    status_r, status_w = os.pipe()
    try:
        with sock, open(os.path.join(env_dir, LOG_FILE), "ab") as log:
            request = encode(message("adopt", {"env_dir": env_dir, "pid": live,
                                               "reaper": os.getpid()}, id=1))
            socket.send_fds(sock, [request], [log.fileno()] + list(fds) + [status_r])
            answer = recv_message(sock, HANDSHAKE_LIMIT)
        if answer.get("type") != "reply":
            raise OSError("the forkserver answered %.200r" % (answer,))
    except (OSError, ValueError) as exc:
        os.close(status_w)
        update_record(env_dir, state="dead", reason="start_failed", pid=None,
                      detail="the fork's supervisor could not be started: %s" % exc)
        raise OSError(str(exc)) from None
    finally:
        os.close(status_r)
    return status_w


def read_request(conn, most):
    """One request frame from ``conn`` (blocking) and the (at most ``most``) descriptors
    sent with it: (the message, fds); the message is None for a probe that connected and
    left, {} for no frame.  The fds are the caller's to close."""
    data, fds, _, _ = socket.recv_fds(conn, HANDSHAKE_LIMIT, most)
    if not data and not fds:
        return None, fds
    try:
        reader = FrameReader(HANDSHAKE_LIMIT)
        messages = reader.feed(data)
        while not messages and data:
            data = conn.recv(HANDSHAKE_LIMIT)
            messages = reader.feed(data)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return (messages[0] if messages else {}), fds


def well_formed(request, fds, passed):
    """True if ``request`` is of a type in ``passed`` ({type: descriptors it brings}),
    brought that many, and names what its type needs."""
    body = request.get("body")
    if (passed.get(request.get("type")) != len(fds) or not isinstance(body, dict)
            or not isinstance(body.get("env_dir"), str) or not body["env_dir"]):
        return False
    return request["type"] != "adopt" or all(
        type(body.get(key)) is int and body[key] > 0 for key in ("pid", "reaper"))


def await_adoption(listener, env_dir, timeout=ADOPT_TIMEOUT):
    """In a standby supervisor (forked before its fork's process existed, before it listens
    or writes anything): wait on ``listener`` (fd) for the copy's hand over -- an ``adopt``
    request, as the forkserver gets one -- and answer it; ((pid, control, out, err),
    (reaper, status fd)), or None if none came: the env gone, no longer starting (the
    fork failed, or its process went to another supervisor), or ``timeout`` s."""
    sock = socket.socket(fileno=listener)
    sock.settimeout(CHECK_EVERY)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            record = read_record(env_dir)
            if record is None or record.get("state") != "starting":
                return None
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            with conn:
                handed = adoption(conn)
            if handed is not None:
                return handed
        return None
    finally:
        path = sock.getsockname()
        sock.close()
        addresses.remove("unix:" + path)


def adoption(conn):
    """await_adoption's one request: what it hands over, answered; None if it is not one."""
    conn.settimeout(ASK_TIMEOUT)
    try:
        request, fds = read_request(conn, ADOPT_FDS)
    except (OSError, ValueError):
        return None
    if not request or not well_formed(request, fds, {"adopt": ADOPT_FDS}):
        for fd in fds:
            os.close(fd)
        return None
    body = request["body"]
    try:
        conn.sendall(encode(message("reply", {"pid": os.getpid()}, id=1)))
    except OSError:
        pass  # the copy goes on without the answer: its process is ours now
    log, control, out_r, err_r, status_r = fds
    os.close(log)  # ours is fd 2 already
    return (body["pid"], control, out_r, err_r), (body["reaper"], status_r)


def become_reaper(env_dir, status_w):
    """Be the reaper of our children (exec: never returns), reporting on ``status_w``."""
    os.chdir(env_dir)
    os.set_inheritable(status_w, True)
    os.execv(sys.executable, [sys.executable, "-S", "-I", "-c", REAPER, str(status_w)])


class Foster:
    """The supervisor's side of a reaper: how its children ended, as it reaped them."""

    def __init__(self, pid, fd):
        self.pid = pid  # the reaper's: its descendants are the supervisor's tree too
        self.fd = fd
        os.set_blocking(fd, False)
        self.partial = b""
        self.ended = []  # [(pid, waitpid status)] not taken yet

    def read(self):
        """What the reaper wrote since; False at its end (it had no child left)."""
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            return False
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            try:
                pid, status = (int(word) for word in line.split())
            except ValueError:
                continue  # never written by our reaper
            self.ended.append((pid, status))
        return True

    def take(self):
        ended, self.ended = self.ended, []
        return ended

    def close(self):
        os.close(self.fd)
