"""The requests a supervisor answers: one ``op_<name>`` method per operation.

``Operations.handlers()`` is the ``{type: handler}`` table, built from ``OPS``
(ipykernel style).  A handler gets the requester (kernel/hub.py) and the
request's body; it either answers at once (``reply``/``error``) or parks the
requester -- on an execution (``ExecutionQueue.park``: answered when it
finishes, at a wait deadline, or event by event for a stream), or here, on
the kernel's lifecycle: ``on_ready`` (a restart, answered when the fresh child
is ready), ``shutdown_waiters`` (answered right before the supervisor exits),
``interrupt_waiters``, ``pending`` (introspection the child answers).  Replies
are plain dicts; errors carry a short code (``not_running``, ``queue_full``,
``unknown_execution``, wire/envelope.py) that control/link.py turns into domain
errors.  ``status()`` is a plain function of the state, for tests without
sockets.

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

from .. import parked
from ..wire.auth import KEY_FILE
from ..wire.envelope import (NOT_RUNNING, NOT_WAITING, PROTOCOL_VERSION, QUEUE_FULL,
                             UNKNOWN_EXECUTION, message)
from ..store import WORK_DIR, utcnow
from .checkpointing import ANSWERS as CHECKPOINT_ANSWERS, CheckpointOps
from .records import Execution

INTERRUPT_ANSWER_WAIT = 2.0  # seconds an interrupt's answer waits for the cell to end, at most


class Operations:
    OPS = ("status", "execute", "wait", "attach", "cancel", "input", "interrupt", "restart",
           "shutdown", "live", "bind", "late_output")
    FORWARDED = ("complete", "inspect", "is_complete", "variables")  # the child answers

    def __init__(self, supervisor):
        self.supervisor = supervisor
        self.executions = supervisor.executions
        self.interrupt_waiters = []  # (client, execution, deadline): answered at its end
        self.pending = {}         # introspection request id -> client
        self.on_ready = []        # clients waiting for a (re)started child
        self.shutdown_waiters = []  # clients answered when the final stop is done
        self.checkpointing = CheckpointOps(supervisor)
        self.restored = None      # what the last restore gave back, for its answer

    def handlers(self):
        table = {kind: getattr(self, "op_" + kind) for kind in self.OPS}
        table.update((kind, self.forward(kind)) for kind in self.FORWARDED)
        table.update(self.checkpointing.handlers())
        return table

    # -- status ------------------------------------------------------------------

    def status(self):
        sv = self.supervisor
        running = self.executions.running
        return {"state": self.public_state(), "session": sv.session,
                "execution_count": sv.execution_count, "queued": len(self.executions.queued),
                "checkpoints": len(self.checkpointing.registry),
                "pid": sv.tree.pid, "supervisor_pid": os.getpid(),
                "running": running.n if running is not None else None,
                "last_activity": sv.record.get("last_activity"),
                "protocol": PROTOCOL_VERSION}

    def public_state(self):
        state = self.supervisor.state
        if state == "idle" and not self.executions.is_empty():
            return "busy"
        return state

    def op_status(self, client, body):
        if body.get("ready") and self.supervisor.state == "starting":
            self.on_ready.append(client)  # a fork's answer waits so (control/checkpoints.py)
            return
        status = self.status()
        if body.get("memory") and status["checkpoints"]:  # a describe: /proc reads, not a list
            status["checkpoint_memory"] = self.checkpointing.registry.memory()
        client.reply(status)

    # -- executions ----------------------------------------------------------------

    def op_execute(self, client, body):
        sv = self.supervisor
        if sv.state not in ("idle", "starting"):
            client.error(NOT_RUNNING, state=sv.state)
            return
        if sv.max_queue is not None and len(self.executions.queued) >= sv.max_queue:
            client.error(QUEUE_FULL, limit=sv.max_queue)
            return
        n = None
        if not body.get("silent"):
            sv.execution_count += 1
            n = sv.execution_count
        execution = Execution(next(sv.keys), n, body, sv.record["id"], sv.session,
                              sv.output_cap)
        if n is not None:
            self.record_accepted(execution)
        sv.record["last_activity"] = execution.record["queued_at"]
        sv.late.remember(execution.key, execution.n)
        self.executions.add(execution)
        self.executions.park(client, execution, body)
        sv.pump()

    def save_ready(self):
        """Say in env.json that the kernel serves; a batch job's kernel first takes the
        cells parked while its job was queued (wsgikernel/parked.py), with the lock held."""
        sv = self.supervisor
        if not sv.batch_job:
            sv.save()
            return
        try:
            with parked.locked(sv.files.env_dir):
                self.take_parked()
                sv.save()
        except OSError:  # no lock to be had (NFS without locking), or the env is gone
            sv.files.log_exception("could not take the cells parked for this job")
            sv.save()

    def take_parked(self):
        """Queue our parked cells with their counts (their queued records are in history
        already); end those sent to a start of the env that never happened."""
        sv = self.supervisor
        for request, queued, kernel_id in parked.take(sv.files.env_dir):
            n = queued.get("execution_count")
            if type(n) is not int or n <= 0:  # noqa: E721 (bool is no count)
                continue
            execution = Execution(next(sv.keys), n, request, sv.record["id"], sv.session,
                                  sv.output_cap)
            execution.record["queued_at"] = queued.get("queued_at") or utcnow()
            if kernel_id != sv.record.get("kernel_id"):
                sv.files.persist(execution, execution.aborted(
                    "kernel_died", "KernelDied", "it was sent to a start of this "
                    "environment that never happened (its job ended, or it was restarted)"))
                continue
            sv.late.remember(execution.key, n)
            self.executions.add(execution)
        # Counts parked then cancelled are in history only: never handed out again.
        sv.execution_count = max(sv.execution_count, sv.files.history.last_count())

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

    def find(self, client, body):
        n = body.get("n")
        execution = self.executions.find(n=n, key=body.get("key"))
        if execution is None:
            client.error(UNKNOWN_EXECUTION, n=n)
        return execution

    def op_wait(self, client, body):
        execution = self.find(client, body)
        if execution is not None:
            self.executions.park(client, execution, body)

    def op_attach(self, client, body):
        execution = self.find(client, body)
        if execution is not None:
            self.executions.park(client, execution, dict(body, stream=True))

    def op_cancel(self, client, body):
        execution = self.find(client, body)
        if execution is None:
            return
        if self.executions.cancel(execution):  # it runs: it ends cancelled
            self.supervisor.tree.signal(signal.SIGINT)
        client.reply({"record": execution.snapshot()})

    def op_input(self, client, body):
        """A line for the running execution that waits for one (POST .../input)."""
        execution = self.find(client, body)
        if execution is None:
            return
        if execution.asking is None or execution is not self.executions.running:
            client.error(NOT_WAITING, n=execution.n, status=execution.record["status"])
            return
        answer = {"eof": True} if body.get("eof") else {"value": str(body.get("value", ""))}
        self.supervisor.tree.send(message("input_reply", dict(answer, seq=execution.asking),
                                          parent=execution.key))
        execution.end_input(time.monotonic())
        client.reply({"record": execution.snapshot()})

    def child_asks(self, envelope):
        """The child's ``input_request`` (the running cell waits for a line) or
        ``input_end`` (it stopped waiting: no answer in time, or an interrupt)."""
        execution = self.executions.running
        if execution is None or execution.key != envelope.get("parent"):
            return
        body, now = envelope["body"], time.monotonic()
        if envelope["type"] == "input_request":
            self.executions.ask(execution, execution.ask_input(body, now))
        elif execution.asking is not None and execution.asking == body.get("seq"):
            execution.end_input(now)

    def op_live(self, client, body):
        """Records of the executions not finished yet (queued or running), oldest first."""
        client.reply({"executions": [
            e.snapshot() for e in self.executions.live() if e.n is not None]})

    def op_late_output(self, client, body):
        """Output that arrived after its execution's record was final (bounded, oldest
        dropped): threads of finished cells, fd writes while no cell ran."""
        client.reply({"late_output": self.supervisor.late.snapshot()})

    # -- interrupts ----------------------------------------------------------------

    def op_interrupt(self, client, body):
        """SIGINT for the running execution; answered when it has ended (bounded)."""
        execution = self.executions.running
        if execution is None:
            client.reply(self.status())
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
                client.reply(self.status())

    # -- the kernel's lifecycle ------------------------------------------------------

    def op_bind(self, client, body):
        """A pooled kernel becomes an environment: its directory was renamed to the env's."""
        sv = self.supervisor
        sv.settings.update(body.get("settings") or {})
        sv.idle_timeout = sv.settings.get("idle_timeout")
        self.checkpointing.configure(sv.settings)
        sv.files.moved(body["env_dir"], sv.settings.get("history_limit"))
        if sv.record.get("key_file"):  # the key moved with the directory
            sv.record["key_file"] = os.path.join(body["env_dir"], KEY_FILE)
        work_dir = os.path.join(body["env_dir"], WORK_DIR)
        sv.record.update(id=body["id"], created=body["created"], cwd=work_dir,
                         pool=False, settings=sv.settings, last_activity=None)
        for execution in self.executions.by_key.values():
            execution.record["env"] = body["id"]
        if sv.tree.child is not None:
            sv.tree.send(message("rebind", {"work_dir": sv.tree.child.path_inside(work_dir)}))
        sv.unsaved = True  # after the answer: the binder wrote the same env.json already
        client.reply(self.status())

    def op_restart(self, client, body):
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

    def op_shutdown(self, client, body):
        """Answered once the child's whole tree is gone, right before the supervisor exits."""
        self.shutdown_waiters.append(client)
        self.supervisor.stop(state=body.get("state", "stopped"), reason=body.get("reason"))

    def answer_ready(self):
        """The restart, restore (or start) that clients waited on is over: its status."""
        body = self.status()
        if self.restored is not None:
            body["restored"], self.restored = self.restored, None
        for client in self.on_ready:
            client.reply(body)
        self.on_ready = []

    def answer_shutdown(self):
        for client in self.shutdown_waiters:
            client.reply({})
        self.shutdown_waiters = []

    # -- introspection (the child answers) -------------------------------------------

    def forward(self, kind):
        """A handler that hands requests of ``kind`` to the child, which answers them."""
        def op_forward(client, body):
            sv = self.supervisor
            if (sv.tree.child is None or sv.tree.stop_goal is not None
                    or sv.state not in ("idle", "starting")):
                client.error(NOT_RUNNING, state=sv.state)
                return
            key = next(sv.keys)
            self.pending[key] = client
            sv.tree.send(message(kind, body, id=key))
        return op_forward

    def answer_pending(self, envelope):
        """The child's reply (or error) to a forwarded request, to whoever asked."""
        if envelope["type"] in CHECKPOINT_ANSWERS:
            self.checkpointing.answer(envelope)
            return
        client = self.pending.pop(envelope.get("parent"), None)
        if client is None:
            return
        if envelope["type"] == "error":
            client.error(**envelope["body"])
        else:
            client.reply(envelope["body"])

    def child_died(self):
        """A death nobody asked for: who waited is answered, and its checkpoints go (a dead
        env's restart is a new kernel: they would only pin memory until then)."""
        self.answer_ready()
        self.drop_pending()
        self.checkpointing.registry.drop_all()

    def drop_pending(self):
        """Introspection requests the gone child will never answer."""
        for client in self.pending.values():
            client.error(NOT_RUNNING, state=self.public_state())
        self.pending = {}
        self.checkpointing.drop_requests()

    def forget(self, client):
        """A worker went away (or timed out): nothing here waits on it any more; its
        executions go on."""
        self.executions.forget(client)
        for key, (name, kind, asker, queued) in list(self.checkpointing.requested.items()):
            if asker is not None and asker.client is client:  # still kept, unanswered
                self.checkpointing.requested[key] = (name, kind, None, queued)
        self.on_ready = [c for c in self.on_ready if c.client is not client]
        self.interrupt_waiters = [w for w in self.interrupt_waiters if w[0].client is not client]
        for key in [k for k, c in self.pending.items() if c.client is client]:
            del self.pending[key]
