"""Cells for a kernel whose batch job is still queued: parked, followed, cancelled, ended.

The files and the lock are ``wsgikernel/parked.py``'s (shared with the kernel, which
takes the parked cells when it becomes ready); this is the web tier's side.  A parked
cell is followed like any queued cell: the request waits (up to its ``wait``) for the
job to start -- or never to, or for the cell to be cancelled -- then follows the cell
in the kernel.  Every wait here blocks on something (a sleep between looks at
env.json, a kernel's long-poll), so no request spins.

Errors: a parked cell the kernel does not know when it serves (a lost write) ends
``aborted``/``kernel_lost``; a park whose files cannot be written is a 503 (a 404 if
the env was deleted meanwhile).
"""

import secrets
import time

from .. import parked
from ..store import History
from ..wire.connection import KernelGone
from .errors import (EnvironmentNotFound, EnvironmentNotRunning, ExecutionNotFound,
                     KernelUnavailable)
from .link import ended_record

UNFINISHED = ("queued", "running")
REPLY_MARGIN = 10.0  # beyond the wait asked of the kernel, before we call it gone


class Parking:
    def __init__(self, registry, link, wait_chunk):
        self.registry = registry
        self.link = link
        self.wait_chunk = wait_chunk  # an unbounded wait is a series of bounded ones

    def history(self, env_id):
        """History as a worker appends to it: never compacted from here (the kernel does
        that, and a rename under its open descriptor would lose its writes)."""
        return History(self.registry.env_dir(env_id), None)

    def park(self, env_id, request, queued_error):
        """Park a cell for the queued job's kernel; its queued record, or None if that
        kernel is no longer starting.  A cell kept out of history (``silent``,
        ``store_history: false``) could not be found again: ``queued_error`` (a 503)."""
        if request.get("silent") or not request.get("store_history", True):
            raise queued_error
        kernel_id = self.registry.read(env_id).get("kernel_id")
        try:
            return parked.park(self.registry.env_dir(env_id), self.history(env_id), request,
                               secrets.token_hex(8), kernel_id)
        except FileNotFoundError:
            raise EnvironmentNotFound(env_id) from None
        except OSError as exc:
            raise KernelUnavailable(env_id, "the cell could not be kept for its queued job "
                                    "(%s)" % (exc.strerror or exc)) from None

    def is_parked(self, env_id, found):
        """History's record ``found`` is a cell waiting for its kernel to start."""
        return (found.get("status") == "queued"
                and self.registry.read(env_id).get("state") == "starting")

    def follow(self, env_id, n, deadline):
        """Parked cell ``n``'s record once its kernel has run it (or it was ended), or as
        it is at ``deadline`` (time.monotonic(); None: however long)."""
        history = self.history(env_id)
        settled = lambda: (history.find(n) or {}).get("status") not in UNFINISHED  # noqa: E731
        while True:
            if not self.link.await_start(env_id, deadline, settled):
                return history.find(n)  # still queued at the deadline
            found = history.find(n)
            if found is None:
                raise ExecutionNotFound(env_id, n)
            if found["status"] not in UNFINISHED:
                return found
            try:
                record = self.link.live_record(env_id)
            except EnvironmentNotRunning:
                return self.settle(env_id, n)
            wait = (self.wait_chunk if deadline is None
                    else max(0.0, deadline - time.monotonic()))
            try:
                result = self.link.call(record, "wait", {"n": n, "wait": wait},
                                        wait + REPLY_MARGIN)["record"]
            except KernelGone:
                error = self.link.gone(env_id, record)
                if not isinstance(error, EnvironmentNotRunning):
                    raise error from None
                return self.settle(env_id, n)
            except ExecutionNotFound:  # it serves, but never got the cell (a lost write)
                return self.end(env_id, n, "kernel_lost", "KernelLost", "the kernel started "
                                "without this cell (its parked copy was lost)")
            if deadline is not None or result["status"] not in UNFINISHED:
                return result

    def settle(self, env_id, n):
        """The record of cell ``n`` of an env that is no longer alive: ended if nothing
        else ended it."""
        found = self.history(env_id).find(n)
        if found is not None and found["status"] in UNFINISHED:
            record = self.registry.read(env_id)
            return self.end(env_id, n, "kernel_died", "KernelDied", record.get("detail") or
                            "the environment is %s: its kernel did not run this cell"
                            % record.get("state"))
        return found

    def end(self, env_id, n, reason, ename, why):
        """End cell ``n`` (still queued in history) with ``why``; its final record."""
        env_dir = self.registry.env_dir(env_id)
        history = self.history(env_id)
        with parked.locked(env_dir):
            parked.unpark_locked(env_dir, n)
            found = history.find(n)
            if found is not None and found["status"] in UNFINISHED:
                found = ended_record(found, reason, ename, why)
                history.append(found)
        return found

    def cancel(self, env_id, n):
        """Cancel parked cell ``n``: its record, or None if it is not parked (any more)."""
        history = self.history(env_id)
        done = []

        def removed():
            found = history.find(n)
            if found is not None:
                done.append(ended_record(found, "cancelled", "ExecutionCancelled",
                                         "the execution was cancelled before it ran"))
                history.append(done[0])

        if parked.unpark(self.registry.env_dir(env_id), n, removed):
            return done[0] if done else None
        return None

    def stream(self, env_id, n, heartbeat, attach):
        """The events of parked cell ``n``: ``accepted`` (queued), heartbeats while its
        kernel's job waits, then the cell's own (``attach()``: the stream of a cell)."""
        yield {"event": "accepted", "execution_count": n, "status": "queued"}
        history = self.history(env_id)
        settled = lambda: (history.find(n) or {}).get("status") not in UNFINISHED  # noqa: E731
        while not self.link.await_start(env_id, time.monotonic() + heartbeat, settled):
            yield None
        events = attach()
        try:
            for event in events:
                if event is None or event.get("event") != "accepted":
                    yield event
        finally:
            events.close()
