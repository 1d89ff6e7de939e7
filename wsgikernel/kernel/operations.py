"""The requests a supervisor answers: one ``op_<name>`` method per operation.

``Supervisor`` builds its ``{op: handler}`` table from ``OPS`` (ipykernel
style).  Each handler either answers at once with ``send()`` or parks the
client on an execution (to be answered when it finishes, at a wait deadline,
or event by event for a stream).  Replies are plain dicts with ``ok``; errors
carry a short code (``not_running``, ``queue_full``, ``unknown_execution``) that
the manager turns into HTTP errors.

``interrupt`` answers once the interrupted execution has ended (its record is
final), or after ``INTERRUPT_ANSWER_WAIT`` seconds or ``kill_grace``, whichever
is smaller, if it has not (a cell that ignores SIGINT); the answer is the
env's status at that moment, so an execution queued behind the interrupted one
may be running already.  The bound is a timer of the supervisor's loop: it
never sleeps.
"""

import os
import signal
import time

from ..protocol import PROTOCOL_VERSION
from ..store import WORK_DIR, History
from .records import Execution

INTERRUPT_ANSWER_WAIT = 2.0  # seconds an interrupt's answer waits for the cell to end, at most


class Operations:
    OPS = ("status", "execute", "wait", "attach", "cancel", "interrupt", "restart",
           "shutdown", "live", "bind", "late_output", "complete", "inspect", "is_complete",
           "variables")

    def status(self):
        return {"ok": True, "state": self.public_state(), "session": self.session,
                "execution_count": self.execution_count, "queued": len(self.queue),
                "pid": self.child.pid if self.child else None, "supervisor_pid": os.getpid(),
                "running": self.running.n if self.running is not None else None,
                "last_activity": self.record.get("last_activity"),
                "protocol": PROTOCOL_VERSION}

    def public_state(self):
        if self.state == "idle" and (self.running is not None or self.queue):
            return "busy"
        return self.state

    def op_status(self, client, message):
        self.send(client, self.status())

    def op_execute(self, client, message):
        if self.state not in ("idle", "starting"):
            self.send(client, {"ok": False, "error": "not_running", "state": self.state})
            return
        if self.max_queue is not None and len(self.queue) >= self.max_queue:
            self.send(client, {"ok": False, "error": "queue_full", "limit": self.max_queue})
            return
        silent = bool(message.get("silent"))
        n = None
        if not silent:
            self.execution_count += 1
            n = self.execution_count
        execution = Execution(next(self.keys), n, message, self.record["id"], self.session,
                              self.output_cap)
        if n is not None:
            self.record_accepted(execution)
        self.record["last_activity"] = execution.record["queued_at"]
        if n is not None:
            self.by_count[n] = execution
        self.by_key[execution.key] = execution
        self.remember_count(execution)
        self.queue.append(execution)
        self.park(client, execution, message)
        self.pump()

    def park(self, client, execution, message):
        """Reply now, at completion, at the wait deadline, or stream as it happens."""
        if message.get("stream"):
            self.send(client, {"ok": True, "event": "accepted", "execution_count": execution.n,
                               "status": execution.record["status"]})
            for output in execution.outputs_so_far():
                self.send(client, dict(output, event="output"))
            if execution.done:
                self.send(client, dict(execution.snapshot(), event="record"))
            else:
                execution.subscribers.append(client)
            return
        wait = message.get("wait")
        if execution.done or wait == 0:
            self.send(client, {"ok": True, "key": execution.key, "record": execution.snapshot()})
            return
        deadline = None if wait is None else time.monotonic() + float(wait)
        execution.waiters.append((client, deadline))

    def find(self, client, message):
        n = message.get("n")
        execution = self.by_count.get(n) if n is not None else self.by_key.get(message.get("key"))
        if execution is None:
            self.send(client, {"ok": False, "error": "unknown_execution", "n": n})
        return execution

    def op_wait(self, client, message):
        execution = self.find(client, message)
        if execution is not None:
            self.park(client, execution, message)

    def op_attach(self, client, message):
        execution = self.find(client, message)
        if execution is not None:
            self.park(client, execution, dict(message, stream=True))

    def op_cancel(self, client, message):
        execution = self.find(client, message)
        if execution is None:
            return
        if execution in self.queue:
            self.queue.remove(execution)
            self.finish(execution, execution.aborted("cancelled", "ExecutionCancelled",
                                                     "the execution was cancelled before it ran"))
        elif execution is self.running:
            execution.stop_reason = "cancelled"
            self.signal_child(signal.SIGINT)
        self.send(client, {"ok": True, "record": execution.snapshot()})

    def op_live(self, client, message):
        """Records of the executions not finished yet (queued or running), oldest first."""
        self.send(client, {"ok": True, "executions": [
            e.snapshot() for e in self.live_executions() if e.n is not None]})

    def op_bind(self, client, message):
        """A pooled kernel becomes an environment: its directory was renamed to the env's."""
        self.env_dir = message["env_dir"]
        self.settings.update(message.get("settings") or {})
        self.idle_timeout = self.settings.get("idle_timeout")
        self.history = History(self.env_dir, self.settings.get("history_limit"))
        work_dir = os.path.join(self.env_dir, WORK_DIR)
        self.record.update(id=message["id"], created=message["created"], cwd=work_dir,
                           pool=False, settings=self.settings, last_activity=None)
        for execution in self.by_key.values():
            execution.record["env"] = message["id"]
        self.child.send({"op": "rebind", "work_dir": work_dir})
        self.save()
        self.send(client, self.status())

    def directory_removed(self):
        try:
            return os.fstat(self.dir_fd).st_nlink == 0
        except OSError:
            return True

    def op_interrupt(self, client, message):
        """SIGINT for the running execution; answered when it has ended (bounded)."""
        execution = self.running
        if execution is None:
            self.send(client, self.status())
            return
        execution.interrupt_requested = True
        self.signal_child(signal.SIGINT)
        deadline = time.monotonic() + max(0.0, min(INTERRUPT_ANSWER_WAIT, self.kill_grace))
        self.interrupt_waiters.append((client, execution, deadline))

    def op_late_output(self, client, message):
        """Output that arrived after its execution's record was final (bounded, oldest
        dropped): threads of finished cells, fd writes while no cell ran."""
        self.send(client, {"ok": True, "late_output": [dict(e) for e in self.late_output]})

    def op_restart(self, client, message):
        """Answered once the fresh child is ready; the loop goes on meanwhile (the old
        tree's stop is timers, see Supervisor.begin_stop), so status is answered at once."""
        self.on_ready.append(client)
        if self.stop_goal in ("restart", "final"):
            return  # under way already: answered with it
        self.abort_all("cancelled", "ExecutionCancelled",
                       "the environment was restarted before the execution finished")
        self.state = "starting"  # executions submitted now wait for the fresh child
        self.begin_stop("restart")

    def op_shutdown(self, client, message):
        """Answered once the child's whole tree is gone, right before the supervisor exits."""
        self.shutdown_waiters.append(client)
        self.stop(state=message.get("state", "stopped"), reason=message.get("reason"))

    def forward(self, client, message):
        if (self.child is None or self.stop_goal is not None
                or self.state not in ("idle", "starting")):
            self.send(client, {"ok": False, "error": "not_running", "state": self.state})
            return
        key = next(self.keys)
        self.pending[key] = client
        self.child.send(dict(message, id=key))

    op_complete = op_inspect = op_is_complete = op_variables = forward
