"""The requests a supervisor answers: one ``op_<name>`` method per operation.

``Operations.handlers()`` is the ``{op: handler}`` table, built from ``OPS``
(ipykernel style).  Each handler either answers at once with ``send()`` or
parks the client -- on an execution (``ExecutionQueue.park``: answered when it
finishes, at a wait deadline, or event by event for a stream), or here, on
the kernel's lifecycle: ``on_ready`` (a restart, answered when the fresh child
is ready), ``shutdown_waiters`` (answered right before the supervisor exits),
``interrupt_waiters``, ``pending`` (introspection the child answers).  Replies
are plain dicts with ``ok``; errors carry a short code (``not_running``,
``queue_full``, ``unknown_execution``) that the manager turns into domain
errors.

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
from ..store import WORK_DIR
from .records import Execution

INTERRUPT_ANSWER_WAIT = 2.0  # seconds an interrupt's answer waits for the cell to end, at most


class Operations:
    OPS = ("status", "execute", "wait", "attach", "cancel", "interrupt", "restart",
           "shutdown", "live", "bind", "late_output", "complete", "inspect", "is_complete",
           "variables")

    def __init__(self, supervisor):
        self.supervisor = supervisor
        self.executions = supervisor.executions
        self.send = supervisor.send
        self.interrupt_waiters = []  # (client, execution, deadline): answered at its end
        self.pending = {}         # introspection request id -> client
        self.on_ready = []        # clients waiting for a (re)started child
        self.shutdown_waiters = []  # clients answered when the final stop is done

    def handlers(self):
        return {op: getattr(self, "op_" + op) for op in self.OPS}

    # -- status ------------------------------------------------------------------

    def status(self):
        sv = self.supervisor
        running = self.executions.running
        return {"ok": True, "state": self.public_state(), "session": sv.session,
                "execution_count": sv.execution_count, "queued": len(self.executions.queued),
                "pid": sv.tree.pid, "supervisor_pid": os.getpid(),
                "running": running.n if running is not None else None,
                "last_activity": sv.record.get("last_activity"),
                "protocol": PROTOCOL_VERSION}

    def public_state(self):
        state = self.supervisor.state
        if state == "idle" and not self.executions.is_empty():
            return "busy"
        return state

    def op_status(self, client, message):
        self.send(client, self.status())

    # -- executions ----------------------------------------------------------------

    def op_execute(self, client, message):
        sv = self.supervisor
        if sv.state not in ("idle", "starting"):
            self.send(client, {"ok": False, "error": "not_running", "state": sv.state})
            return
        if sv.max_queue is not None and len(self.executions.queued) >= sv.max_queue:
            self.send(client, {"ok": False, "error": "queue_full", "limit": sv.max_queue})
            return
        n = None
        if not message.get("silent"):
            sv.execution_count += 1
            n = sv.execution_count
        execution = Execution(next(sv.keys), n, message, sv.record["id"], sv.session,
                              sv.output_cap)
        if n is not None:
            self.record_accepted(execution)
        sv.record["last_activity"] = execution.record["queued_at"]
        sv.late.remember(execution.key, execution.n)
        self.executions.add(execution)
        self.executions.park(client, execution, message)
        sv.pump()

    def record_accepted(self, execution):
        """Make a new execution count durable before anyone hears of it.

        A count is never handed out twice, even if this process is killed: its
        queued record goes to history (one O_APPEND write), which is also what a
        manager turns into an ``aborted`` record if this supervisor is lost
        mid-way.  Only ``store_history: false`` executions, which stay out of
        history, pay for an env.json rewrite.
        """
        if not self.supervisor.files.accepted(execution):
            self.supervisor.save()

    def find(self, client, message):
        n = message.get("n")
        execution = self.executions.find(n=n, key=message.get("key"))
        if execution is None:
            self.send(client, {"ok": False, "error": "unknown_execution", "n": n})
        return execution

    def op_wait(self, client, message):
        execution = self.find(client, message)
        if execution is not None:
            self.executions.park(client, execution, message)

    def op_attach(self, client, message):
        execution = self.find(client, message)
        if execution is not None:
            self.executions.park(client, execution, dict(message, stream=True))

    def op_cancel(self, client, message):
        execution = self.find(client, message)
        if execution is None:
            return
        if self.executions.cancel(execution):  # it runs: it ends cancelled
            self.supervisor.tree.signal(signal.SIGINT)
        self.send(client, {"ok": True, "record": execution.snapshot()})

    def op_live(self, client, message):
        """Records of the executions not finished yet (queued or running), oldest first."""
        self.send(client, {"ok": True, "executions": [
            e.snapshot() for e in self.executions.live() if e.n is not None]})

    def op_late_output(self, client, message):
        """Output that arrived after its execution's record was final (bounded, oldest
        dropped): threads of finished cells, fd writes while no cell ran."""
        self.send(client, {"ok": True, "late_output": self.supervisor.late.snapshot()})

    # -- interrupts ----------------------------------------------------------------

    def op_interrupt(self, client, message):
        """SIGINT for the running execution; answered when it has ended (bounded)."""
        execution = self.executions.running
        if execution is None:
            self.send(client, self.status())
            return
        execution.interrupt_requested = True
        self.supervisor.tree.signal(signal.SIGINT)
        grace = self.supervisor.kill_grace
        deadline = time.monotonic() + max(0.0, min(INTERRUPT_ANSWER_WAIT, grace))
        self.interrupt_waiters.append((client, execution, deadline))

    def answer_interrupts(self, now):
        """Answer POST /interrupt once its execution ended, or at its deadline."""
        for waiter in list(self.interrupt_waiters):
            client, execution, deadline = waiter
            if execution.done or now >= deadline:
                self.interrupt_waiters.remove(waiter)
                self.send(client, self.status())

    # -- the kernel's lifecycle ------------------------------------------------------

    def op_bind(self, client, message):
        """A pooled kernel becomes an environment: its directory was renamed to the env's."""
        sv = self.supervisor
        sv.settings.update(message.get("settings") or {})
        sv.idle_timeout = sv.settings.get("idle_timeout")
        sv.files.moved(message["env_dir"], sv.settings.get("history_limit"))
        work_dir = os.path.join(message["env_dir"], WORK_DIR)
        sv.record.update(id=message["id"], created=message["created"], cwd=work_dir,
                         pool=False, settings=sv.settings, last_activity=None)
        for execution in self.executions.by_key.values():
            execution.record["env"] = message["id"]
        sv.tree.send({"op": "rebind", "work_dir": work_dir})
        sv.save()
        self.send(client, self.status())

    def op_restart(self, client, message):
        """Answered once the fresh child is ready; the loop goes on meanwhile (the old
        tree's stop is timers, see ProcessTree.begin_stop), so status is answered at once."""
        sv = self.supervisor
        self.on_ready.append(client)
        if sv.tree.stop_goal in ("restart", "final"):
            return  # under way already: answered with it
        self.executions.abort_all("cancelled", "ExecutionCancelled",
                                  "the environment was restarted before the execution finished")
        sv.state = "starting"  # executions submitted now wait for the fresh child
        sv.tree.begin_stop("restart")

    def op_shutdown(self, client, message):
        """Answered once the child's whole tree is gone, right before the supervisor exits."""
        self.shutdown_waiters.append(client)
        self.supervisor.stop(state=message.get("state", "stopped"), reason=message.get("reason"))

    def answer_ready(self):
        """The restart (or start) that clients waited on is over: its status."""
        for client in self.on_ready:
            self.send(client, self.status())
        self.on_ready = []

    def answer_shutdown(self):
        for client in self.shutdown_waiters:
            self.send(client, {"ok": True})
        self.shutdown_waiters = []

    # -- introspection (the child answers) -------------------------------------------

    def forward(self, client, message):
        sv = self.supervisor
        if (sv.tree.child is None or sv.tree.stop_goal is not None
                or sv.state not in ("idle", "starting")):
            self.send(client, {"ok": False, "error": "not_running", "state": sv.state})
            return
        key = next(sv.keys)
        self.pending[key] = client
        sv.tree.send(dict(message, id=key))

    op_complete = op_inspect = op_is_complete = op_variables = forward

    def answer_pending(self, message):
        """The child's reply to a forwarded request, to whoever asked."""
        client = self.pending.pop(message.get("id"), None)
        if client is not None:
            message.pop("ev", None)
            message.pop("id", None)
            self.send(client, message)

    def drop_pending(self):
        """Introspection requests the gone child will never answer."""
        for client in self.pending.values():
            self.send(client, {"ok": False, "error": "not_running", "state": self.public_state()})
        self.pending = {}

    def forget(self, client):
        """A worker went away (or timed out): nothing here waits on it any more."""
        self.on_ready = [c for c in self.on_ready if c is not client]
        self.interrupt_waiters = [w for w in self.interrupt_waiters if w[0] is not client]
        for key in [k for k, c in self.pending.items() if c is client]:
            del self.pending[key]
