"""The link from a web worker to one env's kernel: exchanges, and what their failures mean.

Every call to a kernel goes through ``wire.connection.KernelConnection`` with
a timeout (``call``: one request, one reply, on a pooled connection;
``stream``: a series of events on a connection of its own), so a kernel that
does not answer never hangs a request.  What a kernel refuses (its error
codes) and a kernel of another protocol version become domain errors here
(``refusal``), ``KernelGone`` stays for the callers; ``gone`` decides what a kernel
that stopped answering is: (re)starting, slow, or dead -- and a dead one
(its supervisor is gone) is recorded as such by ``mark_dead``, its unfinished
executions turned into ``kernel_lost`` records first.
"""

import os
import time

from .. import parked
from ..metrics.kernels import DEATHS
from ..provisioning import for_record
from ..requestid import current as current_request, event
from ..store import History, read_record, update_record, utcnow
from ..wire import envelope as wire
from ..wire.connection import ConnectionPool, KernelConnection, KernelGone, KernelTimeout
from .errors import (CheckpointConflict, CheckpointNotFound, EnvironmentNotRunning,
                     ExecutionNotFound, ExecutionNotWaiting, KernelIncompatible, KernelQueued,
                     KernelUnavailable, QueueFull)

STATUS_TIMEOUT = 3.0    # seconds a status question may take before we answer from env.json
GONE_GRACE = 0.5       # seconds a kernel whose connection dropped may take to show it ended
LAUNCH_TIMEOUT = 30.0   # seconds a new kernel may take to report ready
START_POLL = 0.2        # seconds between looks at env.json while a queued job starts
ABANDON_CHECK = 2.0     # seconds between asking the scheduler whether it ever will
ALIVE_STATES = ("starting", "idle")
CHECKPOINT_CONFLICTS = {  # a kernel's refusal -> what the client is told (if no detail)
    wire.BUSY: "a cell is running or queued: wait for it, or interrupt it",
    wire.CHECKPOINT_EXISTS: "a checkpoint named %(name)r exists: delete it first",
    wire.CHECKPOINT_REFUSED: "the kernel's process cannot be copied safely now",
    wire.NOTHING_TO_UNDO: "there is no earlier state to go back to",
}


class KernelLink:
    def __init__(self, registry):
        self.registry = registry
        self.connections = ConnectionPool()

    # -- exchanges ----------------------------------------------------------------

    def call(self, record, kind, body=None, timeout=STATUS_TIMEOUT):
        """One request/reply exchange with the env's supervisor: the reply's body.
        KernelGone if the exchange fails; the domain error of a refusal."""
        address = address_of(record)
        try:
            conn = self.connections.acquire(address, timeout, record.get("key_file"))
        except wire.ProtocolMismatch as exc:
            raise KernelIncompatible(record.get("id"), str(exc)) from None
        try:
            reply = conn.request(kind, with_request_id(body), timeout)
        except wire.Refused as refused:
            self.connections.release(conn)  # a refusal is a whole exchange: still usable
            raise refusal(record.get("id"), refused) from None
        except wire.ProtocolMismatch as exc:
            conn.close()
            raise KernelIncompatible(record.get("id"), str(exc)) from None
        except BaseException:
            conn.close()
            raise
        self.connections.release(conn)
        return reply

    def stream(self, record, kind, body, timeout):
        """Yield the event bodies of one streaming exchange, ending with the ``record``.

        A ``None`` is yielded whenever ``timeout`` seconds pass in silence (the
        caller sends a heartbeat then).  The connection is closed afterwards.
        """
        try:
            conn = KernelConnection(address_of(record), timeout, record.get("key_file"))
        except wire.ProtocolMismatch as exc:
            raise KernelIncompatible(record.get("id"), str(exc)) from None
        try:
            request_id = conn.submit(kind, with_request_id(body), timeout)
            while True:
                try:
                    _, event = conn.answer(request_id, timeout)
                except KernelTimeout:  # silence: the caller sends a heartbeat
                    yield None
                    continue
                yield event
                if event.get("event") == "record":
                    return
        except wire.Refused as refused:
            raise refusal(record.get("id"), refused) from None
        except wire.ProtocolMismatch as exc:
            raise KernelIncompatible(record.get("id"), str(exc)) from None
        finally:
            conn.close()

    def forget(self, record):
        """Close the pooled connections to a kernel that was stopped."""
        if record.get("address"):
            self.connections.discard_address(record["address"])

    # -- which kernel is there to talk to ----------------------------------------------

    def live_record(self, env_id):
        """env.json of a running env (waiting out a start in progress); EnvironmentNotRunning
        if it is dead or stopped."""
        read = self.registry.read
        record = read(env_id)
        if record.get("state") == "starting":
            waiting = for_record(record).waiting()
            if waiting:  # a queued batch job may wait for hours: say so now
                raise KernelQueued(env_id, waiting)
            wait_until(lambda: read(env_id).get("state") != "starting", LAUNCH_TIMEOUT)
            record = read(env_id)
        state = record.get("state")
        if state not in ALIVE_STATES:
            raise EnvironmentNotRunning(env_id, state)
        return record

    def alive_record(self, env_id):
        """env.json if its kernel is reachable, else None (history is all there is)."""
        record = self.registry.read(env_id)
        if record.get("state") not in ALIVE_STATES:
            return None
        provisioner = for_record(record)
        if not provisioner.running() or record["state"] == "starting" and provisioner.waiting():
            return None  # a queued batch job has no kernel to ask yet
        return record

    def await_start(self, env_id, deadline, settled=lambda: False):
        """Wait until a starting kernel (a queued batch job) has started or never will,
        until ``settled()`` holds (the cell waited for was ended meanwhile), or until
        ``deadline`` (time.monotonic(); None: however long); False only at the deadline.
        A start that failed ends the cells parked for it."""
        next_check = time.monotonic() + ABANDON_CHECK
        while True:
            record = self.registry.read(env_id)
            if record.get("state") != "starting":
                if record.get("state") not in ALIVE_STATES:
                    self.end_parked(env_id, record.get("detail") or "the kernel did not "
                                    "start (%s)" % record.get("reason"))
                return True
            if settled():
                return True
            now = time.monotonic()
            if now >= next_check:  # a question to the scheduler: not every poll
                next_check = now + ABANDON_CHECK
                why = for_record(record).abandoned()
                if why:
                    self.mark_abandoned(env_id, record, why)
                    return True
            if deadline is not None and now >= deadline:
                return False
            time.sleep(START_POLL if deadline is None else
                       max(0.0, min(START_POLL, deadline - now)))

    def end_parked(self, env_id, why, kernel_id=None):
        """End the cells parked for a kernel that will not start (for ``kernel_id``; None:
        any), as ``aborted`` ``kernel_died`` records in history."""
        env_dir = self.registry.env_dir(env_id)
        if not parked.count(env_dir):
            return
        history = History(env_dir, None)  # a worker's appends never compact (parking.py)
        with parked.locked(env_dir):
            for _, queued, _ in parked.take(env_dir, kernel_id):
                line = history.find(queued.get("execution_count")) or queued
                if line.get("status") == "queued":
                    history.append(ended_record(line, "kernel_died", "KernelDied", why))

    # -- a kernel that stopped answering ---------------------------------------------

    def gone(self, env_id, record):
        """The error for a kernel that stopped answering: dead if its supervisor is gone."""
        current = read_record(self.registry.env_dir(env_id)) or record
        if (current.get("state") == "starting"
                or current.get("kernel_id") != record.get("kernel_id")):
            return KernelUnavailable(env_id, "it is (re)starting; retry shortly")
        # A SIGKILLed supervisor's socket closes while it is still exiting: give its end a
        # moment to show before calling it alive and slow.
        if for_record(record).wait(GONE_GRACE):
            self.mark_dead(env_id, record)
            return EnvironmentNotRunning(env_id, "dead")
        return KernelUnavailable(env_id, "it did not answer in time")

    def mark_abandoned(self, env_id, record, why):
        """env.json says starting but the kernel never will (its batch job ended first)."""
        env_dir = self.registry.env_dir(env_id)
        if (read_record(env_dir) or {}).get("state") == "starting" and os.path.isdir(env_dir):
            update_record(env_dir, state="dead", reason="start_failed", detail=why, pid=None,
                          exit={"code": None, "signal": None})
        self.end_parked(env_id, why, record.get("kernel_id"))
        return self.registry.read(env_id)

    def mark_dead(self, env_id, record):
        """env.json says alive but the supervisor is gone (killed, machine rebooted)."""
        env_dir = self.registry.env_dir(env_id)
        record = read_record(env_dir) or record  # it may have recorded its end
        if record.get("state") in ALIVE_STATES and os.path.isdir(env_dir):
            for_record(record).kill()  # what is left of it: its user-code process
            # History before env.json: a reader that sees "dead" finds the lost records.
            history = self.registry.history(env_id)
            why = ("the kernel's supervisor (pid %s) is gone (killed, or the machine "
                   "restarted); POST /envs/%s/restart" % (record.get("supervisor_pid"), env_id))
            for unfinished in history.unfinished():
                history.append(lost_record(unfinished, why))
            record.update(state="dead", reason="kernel_lost", pid=None,
                          exit=record.get("exit") or {"code": None, "signal": None})
            update_record(env_dir, state="dead", reason="kernel_lost", pid=None,
                          exit=record["exit"])
            if first_to_see(env_dir, record):  # several workers may find it gone at once
                self.count_death(record, "kernel_lost", why)
        return record

    def count_death(self, record, reason, why):
        """A death only the web tier saw (the kernel could not count it): for /metrics
        and the log."""
        if self.registry.config.metrics:
            self.registry.counts.add((DEATHS, (("reason", reason),)))
        event("kernel_died", env=record.get("id"), reason=reason, detail=why)


LOST_MARK = ".lost-%s"  # in the env dir: this kernel's loss was counted (launch removes it)


def first_to_see(env_dir, record):
    """True for the one caller that marks the loss of the record's kernel first."""
    path = os.path.join(env_dir, LOST_MARK % record.get("kernel_id"))
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        return False
    except OSError:
        pass  # cannot tell: count it
    return True


def with_request_id(body):
    """The request's body with the id of the HTTP request it serves (the kernel's log
    lines name it)."""
    rid = current_request.get()
    if rid is None:
        return {} if body is None else body
    return dict(body or {}, request_id=rid)


def address_of(record):
    """The kernel's address in env.json; KernelGone if none, KernelIncompatible for a
    kernel from before the envelope (protocol 1 recorded a ``socket`` path)."""
    address = record.get("address")
    if address:
        return address
    if record.get("socket"):
        raise KernelIncompatible(record.get("id"), str(wire.ProtocolMismatch(1)))
    raise KernelGone("no kernel address recorded")


def refusal(env_id, refused):
    """The domain error of what a kernel refused (its error codes: wire/envelope.py)."""
    body = refused.body
    if refused.code == wire.NOT_RUNNING:
        return EnvironmentNotRunning(env_id, body.get("state"))
    if refused.code == wire.QUEUE_FULL:
        return QueueFull(body.get("limit") or 0)
    if refused.code == wire.UNKNOWN_EXECUTION:
        return ExecutionNotFound(env_id, body.get("n"))
    if refused.code == wire.NOT_WAITING:
        return ExecutionNotWaiting(env_id, body.get("n"), "it is %s" % body.get("status"))
    if refused.code == wire.UNKNOWN_CHECKPOINT:
        return CheckpointNotFound(env_id, body.get("name"))
    if refused.code in CHECKPOINT_CONFLICTS:
        return CheckpointConflict(env_id, body.get("detail") or CHECKPOINT_CONFLICTS[
            refused.code] % body)
    # internal / unknown_type: the kernel failed the request, it is not the caller's fault
    return KernelUnavailable(env_id, "its kernel failed the request (%s)" % refused)


def lost_record(line, why):
    """The final record of an execution whose supervisor was lost before it ended."""
    return ended_record(line, "kernel_lost", "KernelLost", why)


def ended_record(line, reason, ename, why):
    """The final (``aborted``) record of an execution the service ended: history's
    ``line`` of it, with the error, also as the last output."""
    error = {"ename": ename, "evalue": why, "traceback": ["%s: %s" % (ename, why)]}
    record = {key: value for key, value in line.items() if key != "request"}
    record.update(status="aborted", reason=reason, error=error, finished=utcnow(),
                  outputs=list(record.get("outputs") or ()) + [
                      {"output_type": "error", "ename": error["ename"],
                       "evalue": why, "traceback": error["traceback"]}])
    return record


def wait_until(condition, timeout, interval=0.01, first=None):
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False): every
    ``interval`` s, or from every ``first`` s, doubling up to it (what usually takes a
    millisecond or two is seen within a fraction of one, and a long wait costs no more)."""
    deadline = time.monotonic() + timeout
    pause = first or interval
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, interval)
    return True
