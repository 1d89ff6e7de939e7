"""The link from a web worker to one env's kernel: exchanges, and what their failures mean.

Every call to a kernel goes through ``protocol.KernelConnection`` with a
timeout (``call``: one request, one reply, on a pooled connection;
``stream``: a series of events on a connection of its own), so a kernel that
does not answer never hangs a request.  ``check_reply`` turns the
supervisor's error codes into domain errors; ``gone`` decides what a kernel
that stopped answering is: (re)starting, slow, or dead -- and a dead one
(its supervisor is gone) is recorded as such by ``mark_dead``, its unfinished
executions turned into ``kernel_lost`` records first.
"""

import os
import signal
import time

from ..processes import kill_group, supervisor_alive
from ..protocol import ConnectionPool, KernelConnection, KernelGone, KernelTimeout
from ..store import read_record, update_record, utcnow
from .errors import (EnvironmentNotRunning, ExecutionNotFound, KernelUnavailable, QueueFull)

STATUS_TIMEOUT = 3.0    # seconds a status question may take before we answer from env.json
LAUNCH_TIMEOUT = 30.0   # seconds a new kernel may take to report ready
ALIVE_STATES = ("starting", "idle")


class KernelLink:
    def __init__(self, registry):
        self.registry = registry
        self.connections = ConnectionPool()

    # -- exchanges ----------------------------------------------------------------

    def call(self, record, message, timeout=STATUS_TIMEOUT):
        """One request/reply exchange with the env's supervisor (KernelGone if it fails)."""
        address = record.get("socket")
        if not address:
            raise KernelGone("no socket recorded")
        conn = self.connections.acquire(address, timeout)
        try:
            reply = conn.request(message, timeout)
        except BaseException:
            conn.close()
            raise
        self.connections.release(conn)
        return reply

    def stream(self, record, message, timeout):
        """Yield the messages of one streaming exchange, ending with the ``record`` event.

        A ``None`` is yielded whenever ``timeout`` seconds pass in silence (the
        caller sends a heartbeat then).  The connection is closed afterwards.
        """
        conn = KernelConnection(record["socket"], timeout)
        try:
            conn.send(message, timeout)
            while True:
                try:
                    event = conn.receive(timeout)
                except KernelTimeout:  # silence: the caller sends a heartbeat
                    yield None
                    continue
                yield event
                if event.get("event") == "record" or event.get("ok") is False:
                    return
        finally:
            conn.close()

    def forget(self, record):
        """Close the pooled connections to a kernel that was stopped."""
        if record.get("socket"):
            self.connections.discard_address(record["socket"])

    @staticmethod
    def check_reply(env_id, reply):
        """``reply`` if it says ``ok``, else the domain error its code names."""
        if reply.get("ok"):
            return reply
        error = reply.get("error")
        if error == "not_running":
            raise EnvironmentNotRunning(env_id, reply.get("state"))
        if error == "queue_full":
            raise QueueFull(reply.get("limit") or 0)
        if error == "unknown_execution":
            raise ExecutionNotFound(env_id, reply.get("n"))
        raise RuntimeError("kernel of %r answered %r" % (env_id, reply))

    # -- which kernel is there to talk to ----------------------------------------------

    def live_record(self, env_id):
        """env.json of a running env (waiting out a start in progress); EnvironmentNotRunning
        if it is dead or stopped."""
        read = self.registry.read
        record = read(env_id)
        if record.get("state") == "starting":
            wait_until(lambda: read(env_id).get("state") != "starting", LAUNCH_TIMEOUT)
            record = read(env_id)
        state = record.get("state")
        if state not in ALIVE_STATES:
            raise EnvironmentNotRunning(env_id, state)
        return record

    def alive_record(self, env_id):
        """env.json if its kernel is reachable, else None (history is all there is)."""
        record = self.registry.read(env_id)
        if record.get("state") in ALIVE_STATES and supervisor_alive(record.get("supervisor_pid")):
            return record
        return None

    # -- a kernel that stopped answering ---------------------------------------------

    def gone(self, env_id, record):
        """The error for a kernel that stopped answering: dead if its supervisor is gone."""
        current = read_record(self.registry.env_dir(env_id)) or record
        if current.get("state") == "starting" or current.get("socket") != record.get("socket"):
            return KernelUnavailable(env_id, "it is (re)starting; retry shortly")
        if not supervisor_alive(record.get("supervisor_pid")):
            self.mark_dead(env_id, record)
            return EnvironmentNotRunning(env_id, "dead")
        return KernelUnavailable(env_id, "it did not answer in time")

    def mark_dead(self, env_id, record):
        """env.json says alive but the supervisor is gone (killed, machine rebooted)."""
        env_dir = self.registry.env_dir(env_id)
        record = read_record(env_dir) or record  # it may have recorded its end
        if record.get("state") in ALIVE_STATES and os.path.isdir(env_dir):
            kill_group(record.get("pid"), signal.SIGKILL)
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
        return record


def lost_record(line, why):
    """The final record of an execution whose supervisor was lost before it ended."""
    error = {"ename": "KernelLost", "evalue": why, "traceback": ["KernelLost: " + why]}
    record = {key: value for key, value in line.items() if key != "request"}
    record.update(status="aborted", reason="kernel_lost", error=error, finished=utcnow(),
                  outputs=list(record.get("outputs") or ()) + [
                      {"output_type": "error", "ename": error["ename"],
                       "evalue": why, "traceback": error["traceback"]}])
    return record


def wait_until(condition, timeout, interval=0.01):
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
