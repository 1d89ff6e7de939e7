"""Who reads the user-code process's control socket: the main thread between cells, a
reader thread while one runs.

A cell must run on the main thread (signals, and what users expect of
``threading.main_thread()``), and the socket must be read while it runs
(introspection, interrupts' follow-ups, the next cells, the supervisor's end).
A reader thread that always reads would hand every cell to the main thread
through a queue: one more thread to wake per execute, on a machine where each
wake-up of an idle thread costs tens to hundreds of microseconds.  So the
socket is *lent*: the main thread reads it itself while it waits for a cell
(``next_execute``), lends it to the reader thread for the length of the cell
(``lend``), and takes it back after (``take_back``: the reader finishes the
frame it is reading, then parks).  Frames are read whole by whoever owns the
socket, so none is split or reordered between the two; executions the reader
took meanwhile wait in the inbox, which the main thread empties first.

If the socket fails (the supervisor is gone, or sent garbage), whoever was
reading takes the whole process group down.
"""

import collections
import os
import select
import signal
import threading

from ..wire.framing import recv_message

MAIN_THREAD = ("execute", "checkpoint")  # what only the main thread does, between cells


class Inbox:
    def __init__(self, sock, dispatch):
        self.sock = sock
        self.dispatch = dispatch     # (envelope): anything but an execute
        self.executions = collections.deque()
        self.turn = threading.Condition()
        self.lent = True        # the reader may read (until the main thread first asks)
        self.reading = False    # the reader is in its reading loop (it may be in a frame)
        self.wake_r, self.wake_w = os.pipe()

    # -- the main thread ---------------------------------------------------------

    def next_execute(self):
        """The next envelope for the main thread (an execute or a checkpoint): taken by
        the reader meanwhile, else read here."""
        self.take_back()
        while not self.executions:
            envelope = self.receive()
            if envelope.get("type") in MAIN_THREAD:
                return envelope
            self.dispatch(envelope)
        return self.executions.popleft()

    def lend(self):
        """Let the reader thread read while the cell runs."""
        with self.turn:
            self.lent = True
            self.turn.notify_all()

    def take_back(self):
        """Stop the reader (after the frame it may be reading) and wait until it parked.
        A reader that was lent the socket but has not started reading yet never will:
        it finds the loan over when it wakes."""
        with self.turn:
            self.lent = False
            if self.reading:
                os.write(self.wake_w, b"x")
                while self.reading:
                    self.turn.wait()

    # -- the reader thread -------------------------------------------------------------

    def read_while_lent(self):
        """The reader thread's life: read while lent, park while not."""
        try:
            while True:
                with self.turn:
                    while not self.lent:
                        self.turn.wait()
                    self.reading = True
                while self.lent:
                    readable, _, _ = select.select([self.sock, self.wake_r], [], [])
                    if self.wake_r in readable:
                        os.read(self.wake_r, 512)
                    if self.sock in readable and self.lent:
                        envelope = self.receive()
                        if envelope.get("type") in MAIN_THREAD:
                            self.executions.append(envelope)
                        else:
                            self.dispatch(envelope)
                with self.turn:
                    self.reading = False
                    self.turn.notify_all()
        except BaseException:
            die()

    def close(self):
        """In a checkpoint's copy of the process: its wake-up pipe is the live one's."""
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def receive(self):
        try:
            return recv_message(self.sock)
        except BaseException:
            die()


def die():
    """The supervisor is gone (or sent garbage): take the whole group down."""
    try:
        os.killpg(os.getpgid(0), signal.SIGKILL)
    finally:
        os._exit(1)


def readable(sock):
    """Something waits on ``sock`` to be read (never blocks; False once it is closed)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return False
