"""What ``wsgikernel exec`` shows on, and reads from, a terminal (cli.py).

``Progress``: a "[running 12s]" line on stderr while a cell is silent, only when
stderr is a terminal.  ``Terminal``: answers a cell's ``input()`` on the terminal
(``getpass()`` without echo; Ctrl-D is end of input), and keeps the kernel's echo of
the answer from being shown twice.
"""

import sys
import threading
import time

PROGRESS_AFTER = 1.0  # seconds of silence before the progress line appears


class Terminal:
    """Answers a cell's input() on this terminal (getpass(): no echo).  The kernel writes
    the prompt and the answer into the cell's stdout, as a transcript; what was typed
    here is on the screen already, so that echo is not written twice."""

    def __init__(self, progress):
        self.progress = progress
        self.echo = None

    def ask(self, prompt, password):
        import getpass
        self.progress.clear()
        self.progress.held = True
        try:
            value = getpass.getpass(prompt) if password else input(prompt)
        except EOFError:  # Ctrl-D: the cell's input() gets its EOFError too
            sys.stdout.write("\n")
            return None
        finally:
            self.progress.held = False
            self.progress.touch()
        self.echo = prompt + ("" if password else value) + "\n"
        return value

    def unechoed(self, event):
        """``event`` without the echo of what was typed (only the first stdout after an
        answer can start with it)."""
        if self.echo and event.get("output_type") == "stream" and event.get("name") == "stdout":
            echo, self.echo = self.echo, None
            if event.get("text", "").startswith(echo):
                event = dict(event, text=event["text"][len(echo):])
        return event


class Progress:
    """'running 12s' on stderr while a cell is silent; only when stderr is a terminal."""

    def __init__(self, stream):
        self.stream = stream
        self.enabled = _isatty(stream)
        self.started = self.last = time.monotonic()
        self.shown = False
        self.held = False  # a prompt waits for the user's answer: the line is theirs
        self.lock = threading.Lock()
        self.done = threading.Event()
        if self.enabled:
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.done.wait(0.5):
            with self.lock:
                if not self.held and time.monotonic() - self.last >= PROGRESS_AFTER:
                    self.stream.write("\r\x1b[2K[running %ds]" % (time.monotonic() - self.started))
                    self.stream.flush()
                    self.shown = True

    def touch(self):
        self.last = time.monotonic()

    def clear(self):
        if not self.enabled:
            return
        with self.lock:
            self.last = time.monotonic()
            if self.shown:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self.shown = False

    def stop(self):
        self.clear()
        self.done.set()


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
