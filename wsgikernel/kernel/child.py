"""The user-code process as its supervisor sees it: fork, signal, stop, reap, read.

``Child.spawn()`` forks (the supervisor is single-threaded, so forking is
safe), puts the child in its own process group (so SIGINT and the final
SIGKILL reach whatever it started, and never the supervisor), gives it
``/dev/null`` as stdin and pipes as fds 1 and 2, and hands it to
``executor.run``.  ``stop()`` escalates SIGTERM -> ``grace`` -> SIGKILL to the
whole group and reaps, so no descendant survives (a process that made itself a
new session escapes: documented in docs/security.md).

The supervisor keeps the selector; this class only owns the descriptors and
turns pipe bytes into text (UTF-8, invalid bytes replaced).
"""

import codecs
import os
import signal
import socket
import time

from ..protocol import FrameReader, encode
# Imported before any fork, so each user-code process shares these pages with
# its supervisor instead of importing (and owning) them itself.
from . import executor


class Child:
    def __init__(self, pid, sock, pipes):
        self.pid = pid
        self.sock = sock            # the control socket (non-blocking), None once detached
        self.reader = FrameReader()
        self.pipes = pipes          # fd -> (stream name, incremental decoder)

    @classmethod
    def spawn(cls, work_dir, limits, preload, close_inherited):
        """Fork the user-code process; ``close_inherited()`` runs in the child first."""
        parent_sock, child_sock = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.makedirs(work_dir, exist_ok=True)
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                os.setpgid(0, 0)
                close_inherited()
                parent_sock.close()
                os.close(out_r)
                os.close(err_r)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (devnull, out_w, err_w):
                    os.close(fd)
                executor.run(child_sock, work_dir, limits, preload)
            finally:
                os._exit(1)
        try:
            os.setpgid(pid, pid)  # here too, so killpg(pid) works before the child ran
        except OSError:
            pass
        child_sock.close()
        os.close(out_w)
        os.close(err_w)
        parent_sock.setblocking(False)
        pipes = {}
        for fd, name in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            pipes[fd] = (name, codecs.getincrementaldecoder("utf-8")("replace"))
        return cls(pid, parent_sock, pipes)

    def send(self, message):
        """Send one message; messages to the child are small and its reader never stalls."""
        if self.sock is None:
            return
        self.sock.setblocking(True)
        try:
            self.sock.sendall(encode(message))
        except OSError:
            pass
        finally:
            self.sock.setblocking(False)

    def signal(self, signum):
        """Signal the child's whole process group; a group already gone is fine."""
        try:
            os.killpg(self.pid, signum)
        except OSError:
            pass

    def reap(self, block):
        """(code, signal) once the child exited; None while it runs."""
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return (None, None)
        if pid == 0:
            return None
        if os.WIFSIGNALED(status):
            return (None, os.WTERMSIG(status))
        return (os.WEXITSTATUS(status), None)

    def stop(self, grace):
        """SIGTERM the group, SIGKILL after ``grace``, reap; returns (code, signal)."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        status = self.reap(block=False)
        while status is None and time.monotonic() < deadline:
            time.sleep(0.01)
            status = self.reap(block=False)
        self.signal(signal.SIGKILL)  # stragglers of the group, even if the child is gone
        return status if status is not None else self.reap(block=True)

    def flush_decoders(self):
        """(name, text) of bytes held back as an incomplete UTF-8 sequence; resets them."""
        flushed = []
        for name, decoder in self.pipes.values():
            text = decoder.decode(b"", final=True)
            decoder.reset()
            if text:
                flushed.append((name, text))
        return flushed

    def read_pipe(self, fd):
        """(stream name, text read now, at end of file?) for one of the fd pipes."""
        name, decoder = self.pipes[fd]
        chunks = []
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return name, decoder.decode(b"".join(chunks)), False
            except OSError:
                data = b""
            if not data:
                return name, decoder.decode(b"".join(chunks), final=True), True
            chunks.append(data)
