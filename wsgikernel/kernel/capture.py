"""Per-execution I/O of the user-code process: sys.stdout/stderr and stdin.

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

Writes from threads: each ``stream`` message names the execution its writer
belongs to (the executor tags threads, see executor.py); only writes of the
running execution (or of no known one) count against its ``cap``.

stdin is the request's ``stdin`` text; ``input()`` reads it, then asks the
person at the other end or raises EOFError (asking.py).

Capture cannot be broken by a cell: ``guarded_open`` (the user-code process's
``builtins.open``) refuses fds 0, 1 and 2, as IPython does, and
``CaptureFds`` keeps duplicates of the descriptors the supervisor set up and
puts them back on 0, 1 and 2 at the start of every cell if a cell closed or
replaced them (``os.close(1)``, ``io.open(1).close()``, ``os.dup2``).  The
duplicates also keep the pipes open, so the supervisor never sees end of file
on them while the process lives.
"""

import fcntl
import functools
import io
import os
import struct
import termios
import time

from ..wire.envelope import message

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
    """A text stream that forwards each write to the supervisor.

    ``tag()``, if given, says whose write it is: ``(execution id, counted)``;
    the id goes in the message, and only a counted write is charged to (and
    cut by) the budget of the running execution.
    """

    def __init__(self, name, fd, send, budget, tag=None):
        super().__init__()
        self.name = name
        self._fd = fd
        self._send = send
        self._budget = budget
        self._tag = tag

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
            key, counted = self._tag() if self._tag is not None else (None, True)
            kept, truncated = self._budget.take(text) if counted else (text, False)
            if kept:
                self._send(message("stream", {"name": self.name, "text": kept}, parent=key))
            if truncated:
                self._send(message("truncated", parent=key))
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


DRAIN_WAIT = 0.5  # seconds a message waits for the supervisor to empty the fd pipes


def _unread(fd):
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def wait_for_pipes_drained(fds=(1, 2)):
    """Wait until the pipes hold no unread bytes (a writer that never stops is bounded).

    ``fds`` are descriptors of the two pipes (either end: FIONREAD counts what
    the pipe holds); the executor passes its own duplicates, which a cell
    cannot close or replace.
    """
    if not (_unread(fds[0]) or _unread(fds[1])):
        return
    deadline = time.monotonic() + DRAIN_WAIT
    pause = 0.0002
    while (_unread(fds[0]) or _unread(fds[1])) and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.005)


# -- output capture a cell cannot break ------------------------------------------------

STD_NAMES = {0: "stdin", 1: "stdout", 2: "stderr"}
REFUSED_OPEN = ("open(%d) is refused: fd %d is the kernel's %s, which captures the output of "
                "every cell; closing the file object would close it for good. Use sys.%s "
                "instead (or io.open(%d, closefd=False) if you know what you are doing).")


def guarded_open(real_open):
    """``builtins.open`` for the user-code process: fds 0, 1 and 2 are refused (as IPython);
    ``real_open`` guarded already (a process resumed from a checkpoint) stays as it is."""
    if getattr(real_open, "guarded", False):
        return real_open

    @functools.wraps(real_open)
    def open(file, *args, **kwargs):
        if isinstance(file, int) and file in STD_NAMES:
            name = STD_NAMES[file]
            raise ValueError(REFUSED_OPEN % (file, file, name, name, file))
        return real_open(file, *args, **kwargs)
    open.guarded = True
    return open


class CaptureFds:
    """Duplicates of fds 0, 1 and 2 as the supervisor set them up, to put them back."""

    def __init__(self, fds=(0, 1, 2)):
        self.saved = {}
        for fd in fds:
            copy = os.dup(fd)  # not inheritable: subprocesses do not hold the pipes open
            self.saved[fd] = (copy, self._identity(copy))

    @staticmethod
    def _identity(fd):
        info = os.fstat(fd)
        return info.st_dev, info.st_ino

    def copy_of(self, fd):
        return self.saved[fd][0]

    def close(self):
        """Close the copies (a checkpoint's copy of the process lets go of the pipes)."""
        for copy, _ in self.saved.values():
            try:
                os.close(copy)
            except OSError:
                pass
        self.saved = {}

    def restore(self):
        """Put back each of fds 0, 1, 2 that no longer refers to what it did (closed,
        or replaced); returns the fds restored."""
        restored = []
        for fd, (copy, identity) in self.saved.items():
            try:
                if self._identity(fd) == identity:
                    continue
            except OSError:
                pass  # closed
            os.dup2(copy, fd)
            restored.append(fd)
        return restored
