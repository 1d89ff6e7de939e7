"""The supervisor: one per environment, the process web workers talk to.

It never runs user code.  It forks the user-code process (``executor.py``),
owns the Unix socket web workers connect to, runs executions one at a time in
submission order, writes their records to the durable history, and records
how the child ended in env.json.  Because it is single-threaded (one
``selectors`` loop, no threads), forking a fresh child for ``restart`` is safe
and cheap, and status requests are answered at once even while a cell holds
the child's GIL.  Limits apply to the child only, never to this process.

This module is the loop, its timers and the wiring of the parts:
``process_tree.ProcessTree`` (the child and its tree: I/O, death, stops),
``execution_queue.ExecutionQueue`` (queue, running, waiters, followers),
``late_output.LateOutput``, ``persistence.EnvFiles`` (env.json, history, log),
``operations.Operations`` (the requests) and ``eventlog.EventLog`` (counts, log lines).

Output order: Python-level writes come over the control socket in order; fds 1
and 2 of the child are pipes, published as soon as they are read.  The child
sends nothing on the control socket while its pipes hold unread bytes (see
capture.py), so a subprocess's output lands where it happened relative to the
prints around it.  Each message names the execution its writer belongs to
(see executor.py): its record while it runs, else late output.

Timers (no threads): an execution's timeout (SIGINT, then SIGKILL after ``kill_grace``),
the idle timeout, the bound on an interrupt's answer, a stop's grace and sweeps, and a
once-a-second check that the env directory still exists (else the kernel exits).
"""

import itertools
import os
import selectors
import signal
import time

from ..store import WORK_DIR, utcnow
from .foster import become_subreaper
from .execution_queue import ExecutionQueue
from ..wire.envelope import INTERNAL, UNKNOWN_TYPE, message
from .eventlog import EventLog
from .hub import Hub
from .late_output import LateOutput
from .ledger import WAKE_SIGNAL
from .operations import Operations
from .persistence import EnvFiles
from .process_tree import ProcessTree
from .records import exit_description

DIR_CHECK_EVERY = 1.0  # seconds between checks that the env directory exists
START_OUTPUT_KEPT = 8192  # characters of a child's output before it died starting, logged


class Supervisor:
    batch_job = None  # the Slurm job id when this kernel is that job (kernel --foreground)
    adopting = None   # (pid, control fd, out fd, err fd) of a forked env's child (--adopt)
    foster = None     # (pid, status fd) of that child's reaper, if it has one (foster.py)
    awaiting = None   # a standby's listener (fd) for the copy that hands it those (foster.py)

    def __init__(self, env_dir, ready_fd):
        self.ready_fd = ready_fd
        self.files = EnvFiles(env_dir)
        settings = self.record.get("settings", {})
        self.settings = settings
        self.kill_grace = float(settings.get("kill_grace", 5))
        self.output_cap = settings.get("output_cap")
        self.max_queue = settings.get("max_queue")
        self.idle_timeout = settings.get("idle_timeout")
        self.execution_count = max(self.record.get("execution_count") or 0,
                                   self.files.history.last_count())
        self.session = int(self.record.get("session") or 1)
        if self.batch_job:  # ours to record too: the submitter may write it after we read
            self.record["slurm"] = dict(self.record.get("slurm") or {}, job_id=self.batch_job)
        self.selector = selectors.DefaultSelector()
        self.keys = itertools.count(1)  # execution keys and introspection request ids
        self.executions = ExecutionQueue(self.files.persist, self.answered)
        self.late = LateOutput()
        self.events = EventLog(self.files)  # its counts and log lines
        self.tree = ProcessTree(self.selector, self.kill_grace, self.files.log, self)
        self.ops = Operations(self)
        self.handlers = self.ops.handlers()
        self.final = (None, None)  # (state, reason) of the final stop
        self.unsaved = False  # env.json to be saved once this loop iteration has answered
        self.state = "starting"
        self.alive = True
        self.last_request = time.monotonic()
        self.next_dir_check = time.monotonic() + DIR_CHECK_EVERY

    @property
    def record(self):
        """env.json, as this supervisor keeps it in memory."""
        return self.files.record

    # -- start -------------------------------------------------------------

    def listen(self):
        self.hub = Hub(self.selector, self.record["address"], on_request=self.handle,
                       on_drop=self.ops.forget, key_file=self.record.get("key_file"),
                       before_send=self.publish_status)
        self.record["address"] = self.hub.address  # tcp:HOST:0 asked for any free port
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self.on_wake)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.terminate = False
        self.subreaper = become_subreaper()
        signal.signal(signal.SIGCHLD, self.on_sigchld)  # the wakeup fd wakes the loop
        signal.signal(WAKE_SIGNAL, self.on_sigchld)  # a checkpoint of ours was evicted
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def on_signal(self, signum, frame):
        self.terminate = True

    on_sigchld = staticmethod(lambda signum, frame: None)  # reaped by on_wake(), in the loop

    def spawn_child(self):
        """Fork the user-code process; it reports ``ready`` over the control socket."""
        work_dir = self.record.get("cwd") or os.path.join(self.files.env_dir, WORK_DIR)
        if not self.ops.checkpointing.restoring():  # else forked from a checkpoint
            self.tree.spawn(work_dir, self.record.get("rlimits") or (),
                            self.settings.get("preload") or (), self.close_in_child,
                            self.record.get("sandbox"))
        self.state = "starting"

    def close_in_child(self):
        """In the forked child: close every descriptor of the supervisor's."""
        for key in list(self.selector.get_map().values()):
            os.close(key.fileobj) if isinstance(key.fileobj, int) else key.fileobj.close()
        self.selector.close()
        self.files.close_in_child()
        self.events.close_in_child()
        self.ops.checkpointing.registry.close_in_child()
        os.close(self.wake_w)
        # ready_fd is fd 1 until we are ready: the child's dup2 onto 1 replaces it.

    # -- the loop ------------------------------------------------------------

    def run(self):
        self.listen()
        self.spawn_child()
        while self.alive:
            for key, mask in self.selector.select(self.next_timeout()):
                key.data(key.fileobj, mask)
            self.executions.flush_outbox()
            self.check_timers()
            self.publish_status()
            if self.unsaved:  # what could wait until after the answers
                self.save()
        self.hub.close()

    def next_timeout(self):
        now = time.monotonic()
        deadlines = [self.next_dir_check] + self.executions.deadlines()
        deadlines += [deadline for _, _, deadline in self.ops.interrupt_waiters]
        deadlines += self.hub.deadlines()
        if self.is_idle():
            deadlines.append(self.last_request + self.idle_timeout)
        deadlines += self.tree.deadlines(now)
        return max(0.0, min(deadlines) - now)

    def check_timers(self):
        now = time.monotonic()
        self.hub.expire(now)
        self.ops.answer_interrupts(now)
        self.tree.check_stop(now)
        if not self.alive:
            return
        if self.terminate and self.tree.stop_goal != "final":
            ended = self.ended_by_scheduler()
            if ended:  # a batch job's SIGTERM is the scheduler ending it, not a clean stop
                self.stop(state="dead", reason="kernel_died",
                          abort=("kernel_died", "KernelDied", ended))
            else:
                self.stop(state="stopped", reason="terminated")
            return
        execution = self.executions.running
        if execution is not None:
            if execution.deadline is not None and now >= execution.deadline:
                execution.deadline = None
                execution.stop_reason = "timeout"
                execution.kill_at = now + self.kill_grace
                self.tree.signal(signal.SIGINT)
            elif execution.kill_at is not None and now >= execution.kill_at:
                execution.kill_at = None
                self.tree.signal(signal.SIGKILL)
        self.executions.expire_waiters(now)
        if now >= self.next_dir_check:
            self.next_dir_check = now + DIR_CHECK_EVERY
            if self.files.directory_removed():
                self.stop(state=None, reason="deleted")
                return
        if self.is_idle() and now - self.last_request >= self.idle_timeout:
            self.stop(state="stopped", reason="idle")

    def is_idle(self):
        """Subject to the idle timeout: ready, no cell running, none queued."""
        return bool(self.idle_timeout) and self.state == "idle" and self.executions.is_empty()

    # -- web-worker connections (kernel/hub.py does the I/O) --------------------

    def handle(self, requester, kind, body):
        handler = self.handlers.get(kind)
        if handler is None or body is None:
            requester.error(UNKNOWN_TYPE, detail="no request of type %.100r" % (kind,))
            return
        if body.get("touch", True):
            self.last_request = time.monotonic()
        try:
            handler(requester, body)
        except Exception as exc:  # a bad request must not kill the environment
            self.files.log_exception("request %s failed (request_id %s)" % (
                kind, body.get("request_id")))
            requester.error(INTERNAL, detail=str(exc))

    # -- the child (process_tree.py does the I/O) ---------------------------------

    def pump(self):
        """Start the next queued execution if the child is free."""
        if self.state != "idle":
            return
        execution = self.executions.start_next(self.settings.get("default_timeout"))
        if execution is None or self.ops.checkpointing.before_cell(execution):
            return  # before_cell: auto_checkpoints, or a fork that takes the cell's turn
        self.tree.send(message("execute", execution.child_request(
            self.settings, self.output_cap), id=execution.key))

    def child_message(self, envelope):
        kind = envelope.get("type")
        if kind == "stream" or kind == "output" or kind == "truncated":
            if not self.executions.take_output(envelope):
                self.late.add(envelope)
        elif kind == "done":
            execution = self.executions.running
            if execution is not None and execution.key == envelope.get("parent"):
                # An incomplete UTF-8 sequence at the end of a cell belongs to it (U+FFFD).
                for name, text in self.tree.flush_decoders():
                    self.executions.publish(execution, execution.add_stream(name, text))
                self.last_request = time.monotonic()  # idle time counts from the cell's end
                self.executions.complete(execution, envelope["body"])
                self.pump()
        elif kind == "input_request" or kind == "input_end":
            self.ops.child_asks(envelope)
        elif kind in ("reply", "error", "checkpointed", "checkpoint_refused"):
            self.ops.answer_pending(envelope)
        elif kind == "ready":
            if self.tree.stop_goal is not None:
                return  # a child being stopped (a restart while it started)
            self.state = "idle"
            self.record.update(pid=self.tree.pid, state="idle", started=utcnow(),
                               session=self.session, exit=None, reason=None)
            self.events.started(session=self.session, pid=self.tree.pid)
            self.ops.save_ready()  # with the cells parked while a batch job was queued
            self.announce_ready()
            self.ops.answer_ready()
            self.ops.checkpointing.child_ready()  # after the answer: what a restore put off
            self.pump()

    def child_text(self, name, text):
        """Text the child wrote on fd 1 or 2: the running execution's, else late output
        of no execution (fd writes cannot name their thread)."""
        if not self.executions.take_text(name, text):
            self.late.add(message("stream", {"name": name, "text": text}))

    def child_gone(self):
        """A stop saw the child exit: what it was asked is never answered now."""
        self.ops.drop_pending()

    def child_died(self, code, signum):
        """A death nobody asked for (kill -9, os._exit, a segfault, a timeout)."""
        if self.ready_fd is not None:  # it never became ready: tell the launcher now
            self.announce_failure(exit_description(code, signum) + " before it was ready",
                                  (code, signum))
            return
        description = exit_description(code, signum)
        if signum == signal.SIGTERM:
            description = self.ended_by_scheduler() or description
        reason, ended = self.executions.kernel_died(
            description, self.kill_grace,
            "; %s: POST /envs/%s/restart" % (description, self.record["id"]))
        # History, then env.json, then answers: whoever we answer may read either at once,
        # and a reader that sees "dead" must find the aborted records in history.
        sealed = self.executions.persist_all(ended)
        self.state = "dead"
        self.events.died(reason, description)
        self.files.record_end("dead", reason, (code, signum))
        self.save()
        self.executions.notify_all(sealed)
        self.ops.child_died()

    # -- stopping --------------------------------------------------------------

    def ended_by_scheduler(self):
        """In a Slurm job (``batch_job``), what its SIGTERM means (Slurm sends it to every
        process of the job: the user-code process often dies of it first); None elsewhere
        (a local kernel of a server that runs inside an allocation included)."""
        return self.batch_job and ("Slurm ended job %s (scancel, its time limit, preemption "
                                   "or a node failure): the kernel was stopped" % self.batch_job)

    def stop(self, state, reason, abort=None):
        """Stop the child and its tree, then leave the loop (finish_stop), without blocking
        it (ProcessTree.begin_stop); ``state=None`` means the env dir is gone.  ``abort``:
        (reason, ename, evalue) the unfinished executions end with, if not a cancel."""
        if self.tree.stop_goal == "final":
            return
        self.final = (state, reason)
        self.executions.abort_all(*(abort or (
            "cancelled", "ExecutionCancelled", "the environment was stopped (%s)" % reason)))
        self.state = "stopped"  # from now on: no new executions, no introspection
        self.tree.begin_stop("final")

    def tree_stopped(self, goal):
        """The old tree is gone: a fresh child for a restart (answered when it is ready);
        for the final stop, record how the env ended, answer who waited, leave the loop."""
        if goal == "restart":
            self.session += 1
            self.record.update(session=self.session, exit=None, reason=None)
            self.spawn_child()
        elif goal == "final":
            self.finish_stop()

    def finish_stop(self):
        self.alive = False
        self.ops.checkpointing.registry.drop_all()
        state, reason = self.final
        self.events.stopped(state, reason)
        if state is not None and not self.files.directory_removed():
            self.files.record_end(state, reason, self.tree.stop_status)
            self.save()
        self.ops.answer_interrupts(float("inf"))
        self.ops.answer_ready()
        self.ops.answer_shutdown()

    # -- bookkeeping -----------------------------------------------------------

    def save(self):
        self.unsaved = False
        self.files.save(self.execution_count)

    def publish_status(self):
        """status.json for listings: what a status request would answer now."""
        self.files.status.publish(self.ops.status())

    def answered(self, execution, record):
        """An execution's final record reached who waited on it."""
        self.record["last_activity"] = record["finished"]
        self.events.execution(execution, record)
        self.ops.checkpointing.answered(record)  # a queued fork that never happened

    def announce_ready(self):
        """Tell the launcher (through the pipe that was our stdout) that we serve."""
        if self.ready_fd is None:
            return
        try:
            os.write(self.ready_fd, b"ready\n")
        except OSError:
            pass
        os.dup2(self.files.log.fileno(), self.ready_fd)  # closes the pipe: the launcher sees EOF
        self.ready_fd = None

    def announce_failure(self, why, status=None):
        """Report a failed start, and leave the loop.

        First kernel.log (``why``, then what the child printed before it died: its
        traceback) and env.json (``dead``, reason ``start_failed``, ``detail: why``,
        ``exit`` from ``status``, the child's (code, signal)), then the launcher's
        pipe: whoever hears of the failure finds it recorded.
        """
        printed = self.late.unattributed_text()[-START_OUTPUT_KEPT:]
        if printed and not printed.endswith("\n"):
            printed += "\n"
        try:
            self.files.log.write("%s start failed: %s\n%s" % (utcnow(), why, printed))
        except (OSError, ValueError):
            pass
        self.state = "dead"
        self.events.died("start_failed", why)
        self.files.record_end("dead", "start_failed",
                              status or getattr(self.tree.child, "status", None), detail=why)
        try:
            self.save()
        except OSError:
            pass
        try:
            os.write(self.ready_fd, ("error: %s\n" % why).encode())
        except OSError:
            pass
        self.ready_fd = None
        self.tree.child = None
        self.alive = False

    def on_wake(self, fd, mask):
        try:
            while os.read(fd, 512):
                continue
        except OSError:
            pass
        self.tree.reap()  # SIGCHLD, or any other signal: waitpid(WNOHANG) costs nothing
        self.ops.checkpointing.registry.evicted()  # ledger.WAKE_SIGNAL: a stat or two

