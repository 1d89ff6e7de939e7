"""``input()`` and ``getpass()`` in a cell: the request's stdin first, then the person at
the other end, if the execution lets us ask (the user-code side).

Case 1: a line is left in the request's ``stdin`` -> that line (the prompt written to
        stdout first, as it always was).
Case 2: none, and the execution was not sent with ``allow_stdin`` (or the caller is not
        the cell's own thread) -> EOFError, saying how input is given.
Case 3: none, and asking is allowed -> ``input_request`` {prompt, password, seq} to the
        supervisor, which makes the execution ``waiting_input``; then the wait for the
        ``input_reply`` {seq, value} it forwards from POST .../input:
        - a reply -> the prompt and the value to stdout (the prompt alone for a password),
          as a terminal's transcript shows them; the value is returned;
        - a reply with ``eof`` -> EOFError, as Ctrl-D at a terminal gives;
        - none within ``input_timeout`` -> ``input_end`` {seq}, and EOFError saying so;
        - KeyboardInterrupt (an interrupt, a cancel, the service's timeout) -> ``input_end``
          {seq}, and the interrupt goes on up.

Only ``input``, ``getpass.getpass`` and what calls them ask; ``sys.stdin.read()`` and
``readline()`` read the request's text only (they have no prompt to show, and code that
reads stdin to its end would wait forever).  A password's value goes nowhere but the
caller: it is not written to stdout, so not to the record or history.

Risk: a reply that crosses the timeout is dropped here (no one waits for its ``seq``)
although the supervisor accepted it; the cell has its EOFError either way.
"""

import builtins
import getpass
import queue
import threading
import time

from ..wire.envelope import message

NO_MORE_INPUT = ("no more input: pass it in the stdin field of the request, or send "
                 "allow_stdin: true to be asked for it (POST .../executions/{n}/input)")
END_OF_INPUT = "end of input: the caller answered with eof (as Ctrl-D at a terminal)"
EOF, TIMEOUT = object(), object()  # what a wait may end with, besides a line
NO_ANSWER = ("no input came within input_timeout (%g s): answer with POST "
             "/envs/{id}/executions/{n}/input while the execution is waiting_input")


class Asker:
    def __init__(self, write, send, execution):
        self.write = write          # (text): the cell's stdout
        self.send = send            # (message): to the supervisor, after fd output
        self.execution = execution  # (): the running execution's id, None between cells
        self.main_ident = threading.get_ident()
        self.text = None            # the request's stdin (a StdinText), this cell's
        self.allowed = False
        self.timeout = None
        self.seq = 0
        self.replies = queue.Queue()

    def install(self):
        builtins.input = self.input
        getpass.getpass = self.getpass  # the module's: `from getpass import getpass` after

    def start_cell(self, text, allowed, timeout):
        self.text = text
        self.allowed = bool(allowed)
        self.timeout = timeout

    def input(self, prompt=""):
        """``builtins.input``."""
        return self.ask(prompt, False)

    def getpass(self, prompt="Password: ", stream=None):
        """``getpass.getpass``: the same, with the answer kept off every record (``stream``,
        where getpass writes its prompt, is the cell's stdout here)."""
        return self.ask(prompt, True)

    def ask(self, prompt, password):
        prompt = str(prompt)
        line = self.text.readline() if self.text is not None else ""
        if line:  # Case 1
            if prompt:
                self.write(prompt)
            return line[:-1] if line.endswith("\n") else line
        key = self.execution()
        if not (self.allowed and key is not None
                and threading.get_ident() == self.main_ident):  # Case 2
            if prompt:
                self.write(prompt)
            raise EOFError(NO_MORE_INPUT)
        return self.wait_for_person(key, prompt, password)

    def wait_for_person(self, key, prompt, password):
        """Case 3.  However the wait ends but by an answer (a timeout, an interrupt that
        lands anywhere in here), ``input_end`` says so: the record must not stay
        ``waiting_input`` while the cell goes on."""
        self.seq += 1
        seq, answer = self.seq, None
        try:
            self.send(message("input_request", {"prompt": prompt, "password": password,
                                                "seq": seq}, parent=key))
            answer = self.reply_to(seq)
        finally:
            if answer is None or answer is TIMEOUT:  # not answered
                self.send(message("input_end", {"seq": seq}, parent=key))
        if answer is EOF:
            raise EOFError(END_OF_INPUT)
        if answer is TIMEOUT:
            raise EOFError(NO_ANSWER % self.timeout)
        self.write(prompt + ("" if password else answer) + "\n")
        return answer

    def reply_to(self, seq):
        """The answer to request ``seq``: its text, EOF, or TIMEOUT (answers to earlier
        requests, come too late, are dropped)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                answered, value = self.replies.get(timeout=left)
            except queue.Empty:
                return TIMEOUT
            if answered == seq:
                return value

    def answered(self, body):
        """The supervisor's ``input_reply`` {seq, value} or {seq, eof} (the socket's
        reader thread)."""
        if body.get("eof"):
            self.replies.put((body.get("seq"), EOF))
        elif isinstance(body.get("value"), str):
            self.replies.put((body.get("seq"), body["value"]))
