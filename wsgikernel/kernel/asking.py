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

from ..wire.envelope import message

NO_MORE_INPUT = ("no more input: pass it in the stdin field of the request, or send "
                 "allow_stdin: true to be asked for it (POST .../executions/{n}/input)")
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
        """``getpass.getpass``: the same, with the answer kept off every record."""
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
        """Case 3."""
        self.seq += 1
        seq = self.seq
        while True:  # an answer to an earlier request that came too late
            try:
                self.replies.get_nowait()
            except queue.Empty:
                break
        self.send(message("input_request", {"prompt": prompt, "password": password,
                                            "seq": seq}, parent=key))
        try:
            value = self.replies.get(timeout=self.timeout)
        except queue.Empty:
            self.send(message("input_end", {"seq": seq}, parent=key))
            raise EOFError(NO_ANSWER % self.timeout) from None
        except BaseException:  # KeyboardInterrupt: the wait ends with the cell
            self.send(message("input_end", {"seq": seq}, parent=key))
            raise
        self.write(prompt + ("" if password else value) + "\n")
        return value

    def answered(self, body):
        """The supervisor's ``input_reply`` (the socket's reader thread)."""
        if body.get("seq") == self.seq and isinstance(body.get("value"), str):
            self.replies.put(body["value"])
