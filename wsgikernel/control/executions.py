"""Executions: submit a cell, follow it, find it later, cancel or interrupt it.

A live execution is asked of its kernel; a finished one is also in the env's
history (history.jsonl), which is all there is once the kernel is gone.
Every request that submits a cell carries a request id, so when the kernel's
supervisor disappears mid-way the execution's record is found in history,
where ``KernelLink.mark_dead`` turned it into a ``kernel_lost`` one, and
answered (200) rather than an error.

A cell sent to an env whose kernel is a batch job still queued is parked
(control/parking.py) with the next execution count, and followed like any
queued cell: answered when it has run (the kernel takes it when it starts), or
202 at the end of the wait; cancelled by unparking it.
"""

import secrets
import time

from ..wire.connection import KernelGone
from .errors import EnvironmentNotRunning, ExecutionNotFound, ExecutionNotWaiting, KernelQueued
from .link import STATUS_TIMEOUT, lost_record
from .parking import Parking

INTERRUPT_TIMEOUT = STATUS_TIMEOUT + 2.0  # the kernel answers an interrupt within 2 s
WAIT_CHUNK = 25.0       # an unbounded wait is a series of bounded ones
REPLY_MARGIN = 10.0     # beyond the wait asked of the kernel, before we call it gone


class Executions:
    def __init__(self, registry, link, describer):
        self.registry = registry
        self.link = link
        self.describe = describer.describe
        self.parking = Parking(registry, link, WAIT_CHUNK)

    # -- submitting ------------------------------------------------------------------

    def execute(self, env_id, request, wait):
        """Submit a cell; the record when done within ``wait`` s (None: however long)."""
        link = self.link
        try:
            record = link.live_record(env_id)
        except KernelQueued as error:
            deadline = None if wait is None else time.monotonic() + wait
            queued = self.parking.park(env_id, request, error)
            if queued is None:  # the kernel started meanwhile
                return self.execute(env_id, request, wait)
            return self.parking.follow(env_id, queued["execution_count"], deadline)
        chunk = WAIT_CHUNK if wait is None else wait
        request_id = secrets.token_hex(8)
        body = dict(request, wait=chunk, request=request_id)
        try:
            reply = link.call(record, "execute", body, chunk + REPLY_MARGIN)
            result = reply["record"]
            while wait is None and result["status"] in ("queued", "running"):  # not waiting_input
                reply = link.call(record, "wait", {
                    "key": reply.get("key"), "n": result["execution_count"],
                    "wait": WAIT_CHUNK}, WAIT_CHUNK + REPLY_MARGIN)
                result = reply["record"]
        except KernelGone:
            return self.lost(env_id, record, lambda: self.lost_request(env_id, request_id,
                                                                        request))
        return result

    def lost(self, env_id, record, find):
        """A kernel stopped answering mid-execution: the execution's record if its
        supervisor is gone (``find()``: from history, where mark_dead left it), else
        the error that says why it is unavailable."""
        error = self.link.gone(env_id, record)
        found = find() if isinstance(error, EnvironmentNotRunning) else None
        if found is None:
            raise error from None
        return found

    def lost_request(self, env_id, request_id, request):
        if request.get("silent") or not request.get("store_history", True):
            # never in history: the record it would have had
            return lost_record({"env": env_id, "session": None, "execution_count": None,
                                "code": request.get("code", ""), "status": "running",
                                "stdout": "", "stderr": "", "outputs": [], "result": None,
                                "user_expressions": {}, "truncated": False,
                                "queued_at": None, "started": None, "duration": None},
                               "the kernel's supervisor is gone")
        return self.registry.history(env_id).find_request(request_id)

    # -- finding ---------------------------------------------------------------------

    def execution(self, env_id, n, wait):
        """The record of execution ``n``: live (long-polled up to ``wait`` s) or from history."""
        record = self.link.alive_record(env_id)
        if record is not None:
            try:
                return self.link.call(record, "wait", {"n": n, "wait": wait},
                                      wait + REPLY_MARGIN)["record"]
            except (KernelGone, ExecutionNotFound):
                pass  # not kept in memory (or no kernel to ask): history has it
        found = self.registry.history(env_id).find(n)
        if found is None:
            raise ExecutionNotFound(env_id, n)
        if wait and self.parking.is_parked(env_id, found):
            return self.parking.follow(env_id, n, time.monotonic() + wait)
        return found

    def executions(self, env_id, since, limit):
        """(records with execution_count >= since, oldest first, at most ``limit``; next)."""
        records = {r["execution_count"]: r for r in self.registry.history(env_id).read()
                   if (r.get("execution_count") or 0) >= since}
        record = self.link.alive_record(env_id)
        if record is not None:
            try:
                live = self.link.call(record, "live", {"touch": False})
                for execution in live.get("executions", ()):
                    known = records.get(execution["execution_count"])
                    # history's own line of a live execution is its queued record: stale
                    if execution["execution_count"] >= since and (
                            known is None or known.get("status") in ("queued", "running")):
                        records[execution["execution_count"]] = execution
            except KernelGone:
                pass
        ordered = [records[n] for n in sorted(records)]
        page, rest = ordered[:limit], ordered[limit:]
        return page, (rest[0]["execution_count"] if rest else None)

    # -- stopping one ----------------------------------------------------------------

    def cancel(self, env_id, n):
        """Drop execution ``n`` if queued, interrupt it if running; its record."""
        record = self.link.alive_record(env_id)
        if record is None:
            cancelled = self.parking.cancel(env_id, n)
            if cancelled is not None:
                return cancelled
            record = self.link.alive_record(env_id)  # it may have taken the cell meanwhile
            if record is None:
                return self.execution(env_id, n, 0)
        try:
            return self.link.call(record, "cancel", {"n": n})["record"]
        except KernelGone:
            raise self.link.gone(env_id, record) from None
        except ExecutionNotFound:
            return self.execution(env_id, n, 0)  # finished long ago: nothing to cancel

    def answer_input(self, env_id, n, value):
        """The line execution ``n`` waits for (``waiting_input``; None: end of input);
        its record."""
        record = self.link.alive_record(env_id)
        if record is None:
            self.execution(env_id, n, 0)  # 404 if there is no such execution
            raise ExecutionNotWaiting(env_id, n, "the environment has no running kernel")
        try:
            answer = {"n": n, "eof": True} if value is None else {"n": n, "value": value}
            return self.link.call(record, "input", answer)["record"]
        except KernelGone:
            raise self.link.gone(env_id, record) from None
        except ExecutionNotFound:
            self.execution(env_id, n, 0)  # finished long ago (404 if there is none at all)
            raise ExecutionNotWaiting(env_id, n, "it has finished") from None

    def interrupt(self, env_id):
        """SIGINT to the running cell (the namespace survives); the env afterwards."""
        record = self.link.live_record(env_id)
        try:
            self.link.call(record, "interrupt", timeout=INTERRUPT_TIMEOUT)
        except KernelGone:
            raise self.link.gone(env_id, record) from None
        return self.describe(env_id)

    # -- streams ---------------------------------------------------------------------

    def open_stream(self, env_id, kind, body, heartbeat):
        """Start a streaming exchange (``execute`` or ``attach``); errors are raised here,
        before any byte is sent.

        Returns the iterator of events (the ``accepted`` event first); a None from
        it means ``heartbeat`` seconds passed in silence.
        """
        link = self.link
        executing = kind == "execute"
        try:
            record = link.live_record(env_id) if executing else link.alive_record(env_id)
        except KernelQueued as error:
            queued = self.parking.park(env_id, body, error)
            if queued is None:  # the kernel started meanwhile
                return self.open_stream(env_id, kind, body, heartbeat)
            return self.stream_parked(env_id, queued["execution_count"], heartbeat)
        if record is None:  # attaching to an env whose kernel is gone: replay history
            found = self.execution(env_id, body["n"], 0)
            if self.parking.is_parked(env_id, found):
                return self.stream_parked(env_id, body["n"], heartbeat)
            return replay(found)
        if executing:
            request_id = secrets.token_hex(8)
            body = dict(body, stream=True, request=request_id)
            find = lambda: self.lost_request(env_id, request_id, body)  # noqa: E731
        else:
            find = lambda: self.registry.history(env_id).find(body["n"])  # noqa: E731
        events = self._follow(env_id, record, link.stream(record, kind, body, heartbeat), find)
        try:
            first = next(events)
        except KernelGone:
            raise link.gone(env_id, record) from None
        except ExecutionNotFound:
            if executing:
                raise
            return replay(self.execution(env_id, body["n"], 0))
        if first is None:
            events.close()
            raise link.gone(env_id, record)
        return _prepend(first, events)

    def stream_parked(self, env_id, n, heartbeat):
        return self.parking.stream(env_id, n, heartbeat, lambda: self.open_stream(
            env_id, "attach", {"n": n}, heartbeat))

    def _follow(self, env_id, record, events, find):
        """``events``; a kernel lost mid-stream ends it with its record from history."""
        try:
            yield from events
        except KernelGone:
            yield dict(self.lost(env_id, record, find), event="record")
        finally:
            events.close()


def _prepend(first, events):
    """``first`` then ``events``, as a generator whose close() closes ``events``."""
    try:
        yield first
        yield from events
    finally:
        events.close()


def replay(record):
    """The events a stream would have carried for an execution that has finished."""
    yield {"event": "accepted", "execution_count": record["execution_count"],
           "status": record["status"]}
    for output in record.get("outputs") or ():
        yield dict(output, event="output")
    yield dict(record, event="record")
