"""Per-execution I/O of the user-code process: sys.stdout/stderr, stdin, input().

Python-level writes (``print``, ``sys.stderr.write``) are sent to the
supervisor as ``stream`` messages on the one ordered control channel, so their
relative order, stdout against stderr, is exact.  File descriptors 1 and 2 are
pipes read by the supervisor (``os.system``, subprocesses, C extensions).
Before any message goes on the control channel, ``wait_for_pipes_drained``
waits (briefly, bounded) until the supervisor has read everything the pipes
hold, so "print, then a subprocess writes, then print" arrives in that order
and a cell's fd output is in its own record, not the next one's.

Each execution may send at most ``cap`` UTF-8 bytes of Python-level output;
past that the writer sends one ``truncated`` message and drops the rest, so a
cell printing 200 MB costs neither process memory.

stdin is the request's ``stdin`` text; when it runs out, ``input()`` raises an
EOFError that says where input comes from, instead of blocking.
"""

import fcntl
import io
import struct
import termios
import time

NO_MORE_INPUT = "no more input: pass it in the stdin field of the request"


class OutputBudget:
    """UTF-8 bytes one execution may still send (shared by stdout and stderr)."""

    def __init__(self):
        self.left = None
        self.exhausted = False

    def reset(self, cap):
        self.left = cap
        self.exhausted = False

    def take(self, text):
        """The part of ``text`` that fits; the first overflow reports truncation."""
        if self.left is None:
            return text, False
        size = len(text.encode("utf-8", "replace"))
        if size <= self.left:
            self.left -= size
            return text, False
        if self.exhausted:
            return "", False
        kept = text.encode("utf-8", "replace")[:self.left].decode("utf-8", "ignore")
        self.left = 0
        self.exhausted = True
        return kept, True


class OutStream(io.TextIOBase):
    """A text stream that forwards each write to the supervisor."""

    def __init__(self, name, fd, send, budget):
        super().__init__()
        self.name = name
        self._fd = fd
        self._send = send
        self._budget = budget

    encoding = "utf-8"
    errors = "replace"
    line_buffering = True

    def writable(self):
        return True

    def fileno(self):
        # The real descriptor (a pipe to the supervisor), so subprocess.run(stdout=sys.stdout)
        # and faulthandler still write somewhere that is captured.
        return self._fd

    def isatty(self):
        return False

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        if text:
            kept, truncated = self._budget.take(text)
            if kept:
                self._send({"ev": "stream", "name": self.name, "text": kept})
            if truncated:
                self._send({"ev": "truncated"})
        return len(text)

    @property
    def buffer(self):
        return _BinaryView(self)

    def flush(self):
        pass


class _BinaryView:
    """``sys.stdout.buffer``: bytes decoded as UTF-8 with replacement characters."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, data):
        self._stream.write(bytes(data).decode("utf-8", "replace"))
        return len(data)

    def flush(self):
        pass


class StdinText(io.StringIO):
    """sys.stdin for one execution: the request's text, then end of file."""

    name = "<stdin>"

    def isatty(self):
        return False

    def close(self):
        # exit()/quit() close sys.stdin before raising SystemExit; the next
        # execution gets a fresh one anyway, so closing is a no-op.
        pass


def make_input(stdout_write, stdin_getter):
    """An input() that reads the request's stdin and never blocks."""
    def input(prompt=""):
        if prompt:
            stdout_write(str(prompt))
        line = stdin_getter().readline()
        if not line:
            raise EOFError(NO_MORE_INPUT)
        return line[:-1] if line.endswith("\n") else line
    return input


DRAIN_WAIT = 0.5  # seconds a message waits for the supervisor to empty the fd pipes


def _unread(fd):
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def wait_for_pipes_drained(fds=(1, 2)):
    """Wait until fds 1 and 2 hold no unread bytes (a writer that never stops is bounded)."""
    if not (_unread(fds[0]) or _unread(fds[1])):
        return
    deadline = time.monotonic() + DRAIN_WAIT
    pause = 0.0002
    while (_unread(fds[0]) or _unread(fds[1])) and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.005)
