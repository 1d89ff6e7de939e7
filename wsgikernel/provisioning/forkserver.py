"""The local provisioner's fast start: ask the state dir's forkserver to fork a kernel.

One forkserver (kernel/forkserver.py) runs per state dir *and* per kind of
kernel it would fork: its socket's name is a digest of the state dir, the
interpreter, the package's location, the kernel code (names, sizes and mtimes
of its files) and the environment kernels get -- so a server upgraded in
place, or started with another environment, never gets kernels of the old
one.  The first launch that finds none starts it (under a lock on
``<state_dir>/forkserver.lock``, so concurrent workers start one) and records
it in ``<state_dir>/forkserver-<identity>.json``, which it removes when it
exits.  A forkserver of another identity is left alone (an old and a new
version of the server may run side by side during an upgrade): ``stop``, the
server's shutdown, ends them all, checking that each recorded pid is still
that forkserver before it signals it.  Anything that goes wrong before a
request was sent is ``ForkserverUnavailable``: the caller starts the kernel
as a new interpreter instead; after (the kernel may be starting), it is the
launch's failure -- a request is never sent twice.
"""

import glob
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys

from .. import __version__
from ..statedir import file_lock, runtime_dir
from ..store import LOG_FILE
from ..wire import address as addresses
from ..wire.envelope import message
from ..wire.framing import HANDSHAKE_LIMIT, encode, recv_message
from .base import LaunchError
from .launcher import PACKAGE_ROOT, kernel_environment, read_report
from .processes import supervisor_alive

BOOT = ("import sys; root = sys.argv.pop(1); sys.path[0:sys.path[:1] == ['']] = [root]; "
        "from wsgikernel.kernel.forkserver import main; main()")
INFO_FILE = "forkserver-%s.json"  # by identity
LOCK_FILE = "forkserver.lock"
LOG = "forkserver.log"
START_TIMEOUT = 30.0   # seconds a new forkserver may take to say ready
ASK_TIMEOUT = 10.0     # seconds a spawn request may take to be answered


class ForkserverUnavailable(Exception):
    """The forkserver could not be asked (``sent``: the request had gone out)."""

    def __init__(self, why, sent=False):
        super().__init__(why)
        self.sent = sent


_code_digest = None


def code_digest():
    """Names, sizes and mtimes of the package's files (once per process)."""
    global _code_digest
    if _code_digest is None:
        digest = hashlib.sha256(__version__.encode())
        package = os.path.join(PACKAGE_ROOT, "wsgikernel")
        for folder, _, files in sorted(os.walk(package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    stat = os.stat(os.path.join(folder, name))
                    digest.update(("%s/%s %d %d;" % (folder, name, stat.st_size,
                                                     stat.st_mtime_ns)).encode())
        _code_digest = digest.hexdigest()
    return _code_digest


class Forkserver:
    def __init__(self, state_dir, huge_pages=True):
        self.state_dir = state_dir
        try:
            self.environment = kernel_environment(huge_pages=huge_pages)
            identity = json.dumps([os.path.realpath(state_dir), sys.executable, PACKAGE_ROOT,
                                   code_digest(), sorted(self.environment.items())])
            self.identity = hashlib.sha256(identity.encode()).hexdigest()[:16]
            self.address = os.path.join(runtime_dir(), "fork-%s.sock" % self.identity)
        except Exception as exc:  # no runtime dir, the code changing under us...
            raise ForkserverUnavailable(str(exc)) from None

    # -- spawning -------------------------------------------------------------------

    def spawn(self, env_dir):
        """Fork the kernel of ``env_dir``; the pipe (a file) it reports ``pid``/``ready``
        on, for ``launcher.wait_ready``.  ForkserverUnavailable if it cannot be asked."""
        try:
            return self._ask(env_dir)
        except ForkserverUnavailable as exc:
            if exc.sent:
                raise
        self._start()
        return self._ask(env_dir)

    def ensure(self):
        """The address of a running forkserver, started if there is no socket (a stale
        one is found by who connects: a fork then execs its supervisor instead, see
        kernel/foster.py); ForkserverUnavailable if it cannot be had."""
        if not os.path.exists(self.address):
            self._start()
        return self.address

    def _start(self):
        try:
            self.start()
        except ForkserverUnavailable:
            raise
        except Exception as exc:  # a lock, a Popen that failed
            raise ForkserverUnavailable(str(exc)) from None

    def standby(self, env_dir):
        """A supervisor forked in advance for the fork into ``env_dir`` (its env.json
        written), waiting for the fork's copy to hand it the new process (kernel/foster.py);
        the forkserver's answer is read when needed (``Standby.pid``), off the fork's way.
        ForkserverUnavailable if it cannot be asked."""
        address = os.path.join(runtime_dir(), secrets.token_hex(8) + ".adopt.sock")
        try:
            listener, _ = addresses.listen("unix:" + address, backlog=4)  # 0600
        except OSError as exc:
            raise ForkserverUnavailable(str(exc)) from None
        try:
            return Standby(self._send("standby", env_dir, [listener.fileno()]), address)
        except ForkserverUnavailable:
            addresses.remove("unix:" + address)
            raise
        finally:
            listener.close()

    def _ask(self, env_dir):
        read, write = os.pipe()
        try:
            sock = self._send("spawn", env_dir, [write])
        except ForkserverUnavailable:
            os.close(read)
            raise
        finally:
            os.close(write)  # the kernel's now: EOF on ``read`` once it is gone
        try:
            with sock:
                answer = recv_message(sock, HANDSHAKE_LIMIT)
            if answer.get("type") != "reply":
                raise ValueError("the forkserver answered %.200r" % (answer,))
        except Exception as exc:
            os.close(read)
            raise ForkserverUnavailable(str(exc), sent=True) from None
        return os.fdopen(read, "rb")

    def _send(self, kind, env_dir, fds):
        """Send one ``kind`` request for ``env_dir`` with ``fds`` and its kernel.log: the
        socket its answer comes on.  ForkserverUnavailable if it could not be sent."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(ASK_TIMEOUT)
            with open(os.path.join(env_dir, LOG_FILE), "ab") as log:
                sock.connect(self.address)
                request = encode(message(kind, {"env_dir": env_dir}, id=1))
                socket.send_fds(sock, [request], list(fds) + [log.fileno()])
        except Exception as exc:
            sock.close()
            raise ForkserverUnavailable(str(exc)) from None
        return sock

    # -- its life -------------------------------------------------------------------

    def start(self):
        """Start the forkserver unless another process just did; ForkserverUnavailable if
        it does not come up."""
        with file_lock(os.path.join(self.state_dir, LOCK_FILE)):
            if self.answers():
                return
            stop_one(os.path.join(self.state_dir, INFO_FILE % self.identity))  # hung?
            with open(os.path.join(self.state_dir, LOG), "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-c", BOOT, PACKAGE_ROOT, "--forkserver", self.address,
                     self.state_dir], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=log, cwd=self.state_dir, env=self.environment,
                    start_new_session=True, close_fds=True)
            try:
                pid, line = read_report(proc.stdout, START_TIMEOUT)
            finally:
                proc.stdout.close()
                proc.wait()  # its first process exits at once: the forkserver is its child
            if line != "ready":
                if pid is not None and start_time(pid) is not None:
                    os.kill(pid, signal.SIGKILL)  # ours: it reported its pid just now
                raise ForkserverUnavailable("the forkserver did not start (%s); see %s"
                                            % (line or "no answer", LOG))
            write_info(os.path.join(self.state_dir, INFO_FILE % self.identity),
                       {"pid": pid, "started": start_time(pid), "address": self.address,
                        "identity": self.identity})

    def answers(self):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5.0)
                sock.connect(self.address)
            return True
        except OSError:
            return False


class Standby:
    """A supervisor the forkserver forked ahead of a fork (``Forkserver.standby``): it
    waits on ``address`` for the process, and leaves by itself, without a trace, if none
    comes (kernel/foster.py ``await_adoption``)."""

    def __init__(self, sock, address):
        self.sock = sock  # the forkserver's answer, its pid, is still to be read
        self.address = address
        self._pid = None

    def pid(self):
        """Its pid; None if the forkserver did not say."""
        if self.sock is not None:
            try:
                with self.sock:
                    answer = recv_message(self.sock, HANDSHAKE_LIMIT)
                pid = (answer.get("body") or {}).get("pid")
                if answer.get("type") == "reply" and type(pid) is int and pid > 0:
                    self._pid = pid
            except (OSError, ValueError, AttributeError):
                pass
            self.sock = None
        return self._pid

    def dismiss(self):
        """Let it go, unused: nobody can reach it any more, and it is killed."""
        addresses.remove("unix:" + self.address)
        pid = self.pid()
        if supervisor_alive(pid):  # one of ours still: never a reused pid
            try:  # the process, not its group: it may not have made its session yet
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def write_info(path, info):
    with open(path + ".tmp", "w") as handle:
        json.dump(info, handle)
    os.replace(path + ".tmp", path)


def start_time(pid):
    """When ``pid`` started (clock ticks since boot: /proc/PID/stat field 22); None if
    unknown.  With the pid, it names one process for the whole uptime."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_forkserver(pid, address, started):
    """True if ``pid`` is still the forkserver of ``address`` that started at ``started``:
    not a reused pid, nor one of the kernels it forked (they share its command line)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            args = handle.read().split(b"\0")
    except OSError:
        return False
    return (b"--forkserver" in args and address.encode() in args
            and started is not None and start_time(pid) == started)


def stop_one(path):
    try:
        with open(path) as handle:
            info = json.load(handle)
        os.unlink(path)
    except (OSError, ValueError):
        return
    pid, address = (info.get("pid"), info.get("address")) if isinstance(info, dict) else (
        None, None)
    if (isinstance(pid, int) and isinstance(address, str)
            and is_forkserver(pid, address, info.get("started"))):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    if isinstance(address, str) and os.path.basename(address).startswith("fork-"):
        try:
            os.unlink(address)
        except OSError:
            pass


def pids(state_dir):
    """The pids of the state dir's running forkservers."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(state_dir), INFO_FILE % "*")):
        try:
            with open(path) as handle:
                info = json.load(handle)
            if is_forkserver(info["pid"], info["address"], info.get("started")):
                found.append(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def stop(state_dir):
    """End the state dir's forkservers, if any runs (the kernels they forked go on)."""
    for path in glob.glob(os.path.join(glob.escape(state_dir), INFO_FILE % "*")):
        stop_one(path)


__all__ = ["Forkserver", "ForkserverUnavailable", "LaunchError", "stop"]
