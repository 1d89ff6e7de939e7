"""The local provisioner's fast start: ask the state dir's forkserver to fork a kernel.

One forkserver (kernel/forkserver.py) runs per state dir *and* per kind of
kernel it would fork: its socket's name is a digest of the state dir, the
interpreter, the package's location, the kernel code (names, sizes and mtimes
of its files) and the environment kernels get -- so a server upgraded in
place, or started with another environment, never gets kernels of the old
one.  The first launch that finds none starts it (under a lock on
``<state_dir>/forkserver.lock``, so concurrent workers start one) and records
it in ``<state_dir>/forkserver.json``; ``stop`` ends it (the server's
shutdown).  Anything that goes wrong here is ``ForkserverUnavailable``: the
caller starts the kernel as a new interpreter instead.
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys

from .. import __version__
from ..statedir import file_lock, runtime_dir
from ..store import LOG_FILE
from ..wire.envelope import message
from ..wire.framing import HANDSHAKE_LIMIT, HEADER, decode, encode, frame_size
from .base import LaunchError
from .launcher import PACKAGE_ROOT, kernel_environment, read_report
from .processes import supervisor_alive

BOOT = ("import sys; root = sys.argv.pop(1); sys.path[0:sys.path[:1] == ['']] = [root]; "
        "from wsgikernel.kernel.forkserver import main; main()")
INFO_FILE = "forkserver.json"
LOCK_FILE = "forkserver.lock"
LOG = "forkserver.log"
START_TIMEOUT = 30.0   # seconds a new forkserver may take to say ready
ASK_TIMEOUT = 10.0     # seconds a spawn request may take to be answered


class ForkserverUnavailable(Exception):
    pass


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
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.environment = kernel_environment()
        identity = json.dumps([os.path.realpath(state_dir), sys.executable, PACKAGE_ROOT,
                               code_digest(), sorted(self.environment.items())])
        self.identity = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.address = os.path.join(runtime_dir(), "fork-%s.sock" % self.identity)

    # -- spawning -------------------------------------------------------------------

    def spawn(self, env_dir):
        """Fork the kernel of ``env_dir``; the pipe (a file) it reports ``pid``/``ready``
        on, for ``launcher.wait_ready``.  ForkserverUnavailable if it cannot be asked."""
        try:
            return self._ask(env_dir)
        except ForkserverUnavailable:
            self.start()
            return self._ask(env_dir)

    def _ask(self, env_dir):
        read, write = os.pipe()
        try:
            with open(os.path.join(env_dir, LOG_FILE), "ab") as log, \
                    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(ASK_TIMEOUT)
                sock.connect(self.address)
                request = encode(message("spawn", {"env_dir": env_dir}, id=1))
                socket.send_fds(sock, [request], [write, log.fileno()])
                os.close(write)
                write = None
                answer = receive(sock)
        except (OSError, ValueError) as exc:
            os.close(read)
            raise ForkserverUnavailable(str(exc)) from None
        finally:
            if write is not None:
                os.close(write)
        if answer.get("type") != "reply":
            os.close(read)
            raise ForkserverUnavailable("the forkserver answered %r" % (answer,))
        return os.fdopen(read, "rb")

    # -- its life -------------------------------------------------------------------

    def start(self):
        """Start the forkserver unless another process just did; ForkserverUnavailable if
        it does not come up."""
        with file_lock(os.path.join(self.state_dir, LOCK_FILE)):
            if self.answers():
                return
            self.stop_recorded()  # one of another identity (an older code, environment)
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
                if pid is not None and supervisor_alive(pid):
                    os.kill(pid, signal.SIGKILL)
                raise ForkserverUnavailable("the forkserver did not start (%s); see %s"
                                            % (line or "no answer", LOG))
            write_info(self.state_dir, {"pid": pid, "address": self.address,
                                        "identity": self.identity})

    def answers(self):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(self.address)
            return True
        except OSError:
            return False

    def stop_recorded(self):
        stop(self.state_dir)


def receive(sock):
    head = b""
    while len(head) < HEADER.size:
        chunk = sock.recv(HEADER.size - len(head))
        if not chunk:
            raise ValueError("the forkserver closed the connection")
        head += chunk
    size, data = frame_size(head, HANDSHAKE_LIMIT), b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("the forkserver closed the connection")
        data += chunk
    return decode(data)


def write_info(state_dir, info):
    path = os.path.join(state_dir, INFO_FILE)
    with open(path + ".tmp", "w") as handle:
        json.dump(info, handle)
    os.replace(path + ".tmp", path)


def stop(state_dir):
    """End the state dir's forkserver, if one runs (the kernels it forked go on)."""
    path = os.path.join(state_dir, INFO_FILE)
    try:
        with open(path) as handle:
            info = json.load(handle)
        os.unlink(path)
    except (OSError, ValueError):
        return
    pid = info.get("pid") if isinstance(info, dict) else None
    if isinstance(pid, int) and supervisor_alive(pid):  # ours: its command line says so
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    address = info.get("address")
    if isinstance(address, str) and os.path.basename(address).startswith("fork-"):
        try:
            os.unlink(address)
        except OSError:
            pass


__all__ = ["Forkserver", "ForkserverUnavailable", "LaunchError", "stop"]
