"""One execution as the supervisor tracks it, and the record it becomes.

The record has the same shape everywhere it appears (DESIGN 4.2): while
queued or running, ``snapshot()`` gives it so far; ``completed()`` and
``aborted()`` give the final one.  Output is capped per execution
(``output_cap`` UTF-8 bytes over all outputs): past the cap, one visible marker
is added, ``truncated`` becomes true and the rest is dropped, so memory stays
bounded whatever the cell prints.

``reason: interrupted`` needs an interrupt that was asked for: a cell ending
with KeyboardInterrupt is ``interrupted`` only if ``interrupt_requested`` was
set (POST /envs/{id}/interrupt while it ran), ``aborted``/``timeout`` or
``aborted``/``cancelled`` if the service sent the SIGINT for those; a
KeyboardInterrupt the code raised itself is an ordinary error.
"""

import json
import time

from ..store import utcnow

TRUNCATION_MARKER = "\n[output truncated: this execution printed more than %d bytes]\n"


def exit_description(code, signum):
    """'the kernel was killed by SIGKILL' / 'the kernel exited with code 3'."""
    import signal
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = "signal %d" % signum
        return "the kernel was killed by %s" % name
    if code is None:
        return "the kernel exited (status unknown)"
    return "the kernel exited with code %d" % code


class Execution:
    def __init__(self, key, n, request, env_id, session, cap):
        self.key = key
        self.n = n
        self.request = request
        self.cap = cap
        self.size = 0
        self.done = False
        self.stop_reason = None  # "timeout" / "cancelled" when the service stops it
        self.interrupt_requested = False  # POST /interrupt sent SIGINT while it ran
        self.deadline = None
        self.kill_at = None
        self.timeout = None
        self.started_at = None
        self.clear_pending = False  # clear_output(wait=True): clear at the next output
        self.asking = None       # seq of the input_request the cell waits on (asking.py)
        self.paused = None       # seconds of timeout left, kept while a person types
        self.waiters = []        # (client, deadline or None)
        self.subscribers = []    # clients following the stream
        self.outputs = []
        self.streams = {"stdout": [], "stderr": []}
        self.record = {
            "env": env_id, "session": session, "execution_count": n,
            "code": request.get("code", ""), "status": "queued", "reason": None,
            "stdout": "", "stderr": "", "result": None, "outputs": self.outputs,
            "error": None, "user_expressions": {}, "truncated": False,
            "queued_at": utcnow(), "started": None, "finished": None, "duration": None,
        }

    def start(self, default_timeout):
        self.record["status"] = "running"
        self.record["started"] = utcnow()
        self.started_at = time.monotonic()
        timeout = self.request.get("timeout")
        if timeout is None:
            timeout = default_timeout
        if timeout is not None:
            self.timeout = float(timeout)
            self.deadline = self.started_at + self.timeout

    def child_request(self, settings, cap):
        """The body of the child's ``execute`` message (executor.py)."""
        request = self.request
        return {"n": self.n, "code": request.get("code", ""),
                "silent": bool(request.get("silent")),
                "user_expressions": request.get("user_expressions") or {},
                "stdin": request.get("stdin") or "", "cap": cap,
                # a silent cell has no number to answer it by: never asked
                "allow_stdin": bool(request.get("allow_stdin")) and self.n is not None,
                "input_timeout": settings.get("input_timeout", 300.0),
                "magics": settings.get("magics", True),
                "figures": settings.get("inline_figures", True) and (
                    request.get("figure_format") or "png")}

    # -- input -------------------------------------------------------------

    def ask_input(self, body, now):
        """The child asks for a line (``input_request``): ``waiting_input``, and the
        timeout pauses; the ``input_request`` event for followers."""
        self.asking = body.get("seq")
        self.record.update(status="waiting_input", input_request={
            "prompt": str(body.get("prompt", "")), "password": bool(body.get("password"))})
        if self.deadline is not None:
            self.paused, self.deadline = self.deadline - now, None
        return self.input_event()

    def input_event(self):
        return dict(self.record["input_request"], event="input_request",
                    execution_count=self.n)

    def end_input(self, now):
        """Answered, or the child stopped waiting: running again, the timeout runs on."""
        self.asking = None
        self.record["status"] = "running"
        self.record.pop("input_request", None)
        if self.paused is not None:
            self.deadline, self.paused = now + self.paused, None

    # -- output -----------------------------------------------------------

    def _fits(self, size):
        if self.record["truncated"]:
            return False
        if self.cap is None or self.size + size <= self.cap:
            self.size += size
            return True
        return False

    def add_stream(self, name, text):
        """Append stream text; returns the outputs to publish (pieces, not merged)."""
        return self._cleared() + self._add_stream(name, text)

    def _add_stream(self, name, text):
        size = len(text.encode("utf-8", "replace"))
        if not self._fits(size):
            room = max(0, (self.cap or 0) - self.size)
            head = text.encode("utf-8", "replace")[:room].decode("utf-8", "ignore")
            published = self._append_stream(name, head) if head else []
            self.size += len(head.encode("utf-8"))
            return published + self.truncate()
        return self._append_stream(name, text)

    def _append_stream(self, name, text):
        self.streams[name].append(text)
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": name, "text": text})
        return [{"output_type": "stream", "name": name, "text": text}]

    def add_output(self, output):
        """An output of the child (display.py, displaying.py); the outputs to publish.
        ``clear_output`` and ``update_display_data`` change the outputs so far instead
        of adding one, as a notebook's output area does."""
        kind = output.get("output_type")
        if kind == "clear_output":
            self.clear_pending = True
            return [] if output.get("wait") else self._cleared()
        published = self._cleared()
        if kind == "update_display_data":
            return published + self._update_display(output)
        if kind == "execute_result":
            # The result is kept even past the cap (its repr is bounded by display.py):
            # a cell that printed too much still answers with its value.
            self.record["result"] = output.get("data")
        if not self._fits(_data_size(output)):
            return published + self.truncate()
        self.outputs.append(output)
        return published + [output]

    def _cleared(self):
        """A pending clear_output, done now: the outputs so far are gone (the result
        and the size already counted against the cap stay)."""
        if not self.clear_pending:
            return []
        self.clear_pending = False
        del self.outputs[:]
        self.streams = {"stdout": [], "stderr": []}
        return [{"output_type": "clear_output"}]

    def _update_display(self, output):
        """The outputs shown with the update's display_id take its data, in place; the
        update is published (an earlier cell's output may have that id too)."""
        display_id = (output.get("transient") or {}).get("display_id")
        if display_id is None or not self._fits(_data_size(output)):
            return [] if display_id is None else self.truncate()
        for shown in self.outputs:
            if (shown.get("transient") or {}).get("display_id") == display_id:
                shown["data"], shown["metadata"] = output.get("data", {}), output.get(
                    "metadata", {})
        return [output]

    def truncate(self):
        if self.record["truncated"]:
            return []
        self.record["truncated"] = True
        marker = TRUNCATION_MARKER % (self.cap or 0)
        self.streams["stderr"].append(marker)
        output = {"output_type": "stream", "name": "stderr", "text": marker}
        self.outputs.append(dict(output))
        return [output]

    def outputs_so_far(self):
        return [dict(output) for output in self.outputs]

    # -- the record ----------------------------------------------------------

    def snapshot(self):
        record = dict(self.record)
        record["stdout"] = "".join(self.streams["stdout"])
        record["stderr"] = "".join(self.streams["stderr"])
        record["outputs"] = [dict(output) for output in self.outputs]
        return record

    def _final(self, status, reason, error):
        self.done = True
        self.asking = self.paused = None
        self.record.pop("input_request", None)
        self.record.update(status=status, reason=reason, error=error, finished=utcnow())
        if self.started_at is not None:
            self.record["duration"] = round(time.monotonic() - self.started_at, 6)
        if error is not None:
            self.outputs.append({"output_type": "error", "ename": error["ename"],
                                 "evalue": error["evalue"], "traceback": error["traceback"]})
        self.deadline = self.kill_at = None
        return self.snapshot()

    def completed(self, outcome):
        """The record after the child reported ``done``."""
        error = outcome.get("error")
        self.record["user_expressions"] = outcome.get("user_expressions") or {}
        if outcome.get("status") == "ok":
            return self._final("ok", None, None)
        keyboard = error is not None and error.get("ename") == "KeyboardInterrupt"
        if keyboard and self.stop_reason == "timeout":
            error = dict(error, ename="ExecutionTimeout",
                         evalue=self.timeout_message(None))
            return self._final("aborted", "timeout", error)
        if keyboard and self.stop_reason == "cancelled":
            error = dict(error, ename="ExecutionCancelled",
                         evalue="the execution was cancelled while it ran")
            return self._final("aborted", "cancelled", error)
        interrupted = keyboard and self.interrupt_requested
        return self._final("error", "interrupted" if interrupted else None, error)

    def aborted(self, reason, ename, evalue):
        """The record of an execution the service stopped (or that never ran)."""
        error = {"ename": ename, "evalue": evalue, "traceback": ["%s: %s" % (ename, evalue)]}
        return self._final("aborted", reason, error)

    def timeout_message(self, kill_grace):
        text = "the execution ran past its timeout of %g s and was interrupted" % (
            self.timeout or 0)
        if kill_grace is not None:
            text += "; it did not stop within kill_grace (%g s) and the kernel was killed" % (
                kill_grace)
        return text


def _data_size(output):
    """What an output's data counts against the cap (its JSON, roughly its bytes)."""
    return len(json.dumps(output.get("data", {})))
