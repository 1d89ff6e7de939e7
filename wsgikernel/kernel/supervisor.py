"""The supervisor: one per environment, the process web workers talk to.

It never runs user code.  It forks the user-code process (``executor.py``),
owns the Unix socket web workers connect to, queues executions and sends them
to the child one at a time in submission order, builds each execution record
from the child's output, writes finished records to the durable history, and
records how the child ended in env.json.  Because it is single-threaded (one
``selectors`` loop, no threads), forking a fresh child for ``restart`` is safe
and cheap, and status requests are answered at once even while a cell holds
the child's GIL.  Limits apply to the child only, never to this process, which
writes history and exit status.

Output order: Python-level writes come over the control socket in order; fds 1
and 2 of the child are pipes read here and published as soon as they are read.
The child sends nothing on the control socket while its pipes hold unread
bytes (see capture.py), so a subprocess's output lands where it happened
relative to the prints around it; across the two pipes the order is best
effort.

Output of threads: each message from the child names the execution its
writer belongs to (the thread that started it, see executor.py).  It goes
into that execution's record while the record is open -- from the start of
the execution until the child reports it ``done``; there is no grace period
after that, so what a thread wrote before the cell ended is in the record --
and otherwise into the env's ``late_output``: the last ``LATE_OUTPUT_LIMIT``
bytes of text (oldest dropped), each entry with the execution_count, stream
name, text and time (GET /envs/{id}/late_output).  It never goes into another
execution's record.  Bytes on fds 1 and 2 cannot be attributed to a thread:
they go to the running execution, or to late_output (execution_count null)
when none runs.

Timers (no threads): an execution's timeout (SIGINT, then SIGKILL after
``kill_grace``), the idle timeout, the bound on an interrupt's answer, and a
once-a-second check that the env directory still exists (a kernel whose
directory is gone exits).

Supervision (see child.py): the child's death is seen from the process itself
(its pidfd in the selector, SIGCHLD through the wakeup fd), never only from
end of file on the control socket.  This process is a child subreaper, so
what the child leaves behind is re-parented here; after the child's death
(or a stop) every descendant is SIGKILLed, again until none is left, and
reaped.  Stopping never blocks the loop: SIGTERM to the tree, a timer
SIGKILLs it after ``kill_grace``, and what waited on the stop (restart,
shutdown) is answered once the tree is gone; status is answered meanwhile.
"""

import collections
import itertools
import os
import selectors
import signal
import time

from ..protocol import PROTOCOL_VERSION
from .child import KILL_WAIT, Child, become_subreaper, reap_children, signal_tree
from .hub import Hub
from .operations import Operations
from ..store import LOG_FILE, WORK_DIR, History, read_record, utcnow, write_record
from .records import exit_description

RECENT_KEPT = 32       # finished executions kept in memory for polling
DIR_CHECK_EVERY = 1.0  # seconds between checks that the env directory exists
LATE_OUTPUT_LIMIT = 64 * 1024  # UTF-8 bytes of late output kept (the newest)
COUNTS_KEPT = 4096     # execution keys whose execution_count late output can still name
START_OUTPUT_KEPT = 8192  # characters of a child's output before it died starting, logged
EOF_KILL_AFTER = 1.0   # seconds a child whose control socket closed may take to exit
REAP_POLL = 0.02       # seconds between sweeps of a dead child's tree


class Supervisor(Operations):
    def __init__(self, env_dir, ready_fd):
        self.env_dir = env_dir
        self.ready_fd = ready_fd
        self.record = read_record(env_dir)
        if self.record is None:
            raise RuntimeError("no env.json in %s" % env_dir)
        settings = self.record.get("settings", {})
        self.settings = settings
        self.kill_grace = float(settings.get("kill_grace", 5))
        self.output_cap = settings.get("output_cap")
        self.max_queue = settings.get("max_queue")
        self.idle_timeout = settings.get("idle_timeout")
        self.history = History(env_dir, settings.get("history_limit"))
        self.execution_count = max(self.record.get("execution_count") or 0,
                                   self.history.last_count())
        self.session = int(self.record.get("session") or 1)
        self.selector = selectors.DefaultSelector()
        self.keys = itertools.count(1)
        self.queue = collections.deque()
        self.running = None
        self.by_count = collections.OrderedDict()  # execution_count -> Execution
        self.by_key = collections.OrderedDict()    # internal key -> Execution (also silent)
        self.outbox = []          # (execution, output) waiting to reach followers
        self.late_output = collections.deque()  # output that came after its record closed
        self.late_size = 0        # UTF-8 bytes of text in late_output
        self.counts = collections.OrderedDict()  # execution key -> execution_count
        self.interrupt_waiters = []  # (client, execution, deadline): answered at its end
        self.pending = {}         # introspection request id -> client
        self.on_ready = []        # clients waiting for a (re)started child
        self.child = None         # the user-code process (child.Child)
        self.stop_goal = None     # a stop in progress: "cleanup", "restart" or "final"
        self.final = (None, None)  # (state, reason) of the final stop
        self.stop_status = None   # (code, signal) of the child a stop ended
        self.stopped_group = None  # process group of the child whose tree is being swept
        self.reap_until = None    # give up on a tree that will not die after this
        self.shutdown_waiters = []  # clients answered when the final stop is done
        self.state = "starting"
        self.alive = True
        self.last_request = time.monotonic()
        self.next_dir_check = time.monotonic() + DIR_CHECK_EVERY
        self.log = open(os.path.join(env_dir, LOG_FILE), "a", buffering=1)
        # The directory by inode, not by path: a pooled kernel's directory is renamed
        # when claimed, and only a directory that was really removed has no links.
        self.dir_fd = os.open(env_dir, os.O_RDONLY | os.O_DIRECTORY)
        self.handlers = {op: getattr(self, "op_" + op) for op in self.OPS}

    # -- start -------------------------------------------------------------

    def listen(self):
        path = self.record["socket"]
        self.hub = Hub(self.selector, path, on_message=self.handle, on_drop=self.forget)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self.on_wake)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.terminate = False
        self.subreaper = become_subreaper()
        signal.signal(signal.SIGCHLD, self.on_sigchld)  # the wakeup fd wakes the loop
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def on_signal(self, signum, frame):
        self.terminate = True

    def on_sigchld(self, signum, frame):
        pass  # reaped by on_wake(), in the loop

    def spawn_child(self):
        """Fork the user-code process; it reports ``ready`` over the control socket."""
        work_dir = self.record.get("cwd") or os.path.join(self.env_dir, WORK_DIR)
        self.child = Child.spawn(work_dir, self.record.get("limits") or {},
                                 self.settings.get("preload") or (), self.close_in_child)
        self.selector.register(self.child.sock, selectors.EVENT_READ, self.on_child_readable)
        if self.child.pidfd is not None:
            self.selector.register(self.child.pidfd, selectors.EVENT_READ, self.on_child_pidfd)
        for fd in self.child.pipes:
            self.selector.register(fd, selectors.EVENT_READ, self.on_pipe_readable)
        self.state = "starting"

    def close_in_child(self):
        """In the forked child: close every descriptor of the supervisor's."""
        for key in list(self.selector.get_map().values()):
            obj = key.fileobj
            if isinstance(obj, int):
                os.close(obj)
            else:
                obj.close()
        self.selector.close()
        self.log.close()
        os.close(self.dir_fd)
        os.close(self.wake_w)
        # ready_fd is fd 1 until we are ready: the child's dup2 onto 1 replaces it.

    # -- the loop ------------------------------------------------------------

    def run(self):
        self.listen()
        self.spawn_child()
        while self.alive:
            for key, mask in self.selector.select(self.next_timeout()):
                key.data(key.fileobj, mask)
            self.flush_outbox()
            self.check_timers()
        self.close()

    def next_timeout(self):
        now = time.monotonic()
        deadlines = [self.next_dir_check]
        execution = self.running
        if execution is not None:
            deadlines += [d for d in (execution.deadline, execution.kill_at) if d is not None]
        for client, execution, deadline in self.waiters():
            if deadline is not None:
                deadlines.append(deadline)
        deadlines += [deadline for _, _, deadline in self.interrupt_waiters]
        if self.is_idle():
            deadlines.append(self.last_request + self.idle_timeout)
        if self.child is not None and self.child.kill_at is not None:
            deadlines.append(self.child.kill_at)
        if self.stop_goal is not None and self.child is None:
            deadlines.append(now + REAP_POLL)  # sweeping the dead child's tree
        return max(0.0, min(deadlines) - now)

    def waiters(self):
        for execution in self.live_executions():
            for client, deadline in execution.waiters:
                yield client, execution, deadline

    def live_executions(self):
        if self.running is not None:
            yield self.running
        yield from self.queue

    def check_timers(self):
        now = time.monotonic()
        self.answer_interrupts(now)
        self.check_stop(now)
        if not self.alive:
            return
        if self.terminate and self.stop_goal != "final":
            self.stop(state="stopped", reason="terminated")
            return
        execution = self.running
        if execution is not None:
            if execution.deadline is not None and now >= execution.deadline:
                execution.deadline = None
                execution.stop_reason = "timeout"
                execution.kill_at = now + self.kill_grace
                self.signal_child(signal.SIGINT)
            elif execution.kill_at is not None and now >= execution.kill_at:
                execution.kill_at = None
                self.signal_child(signal.SIGKILL)
        for execution in list(self.live_executions()):
            for waiter in [w for w in execution.waiters if w[1] is not None and now >= w[1]]:
                execution.waiters.remove(waiter)
                self.send(waiter[0], {"ok": True, "key": execution.key,
                                      "record": execution.snapshot()})
        if now >= self.next_dir_check:
            self.next_dir_check = now + DIR_CHECK_EVERY
            if self.directory_removed():
                self.stop(state=None, reason="deleted")
                return
        if self.is_idle() and now - self.last_request >= self.idle_timeout:
            self.stop(state="stopped", reason="idle")

    def is_idle(self):
        """Subject to the idle timeout: ready, no cell running, none queued."""
        return (bool(self.idle_timeout) and self.state == "idle" and self.running is None
                and not self.queue)

    # -- web-worker connections (kernel/hub.py does the I/O) --------------------

    def handle(self, client, message):
        op = message.get("op")
        handler = self.handlers.get(op)
        if message.get("touch", True):
            self.last_request = time.monotonic()
        if handler is None:
            self.send(client, {"ok": False, "error": "unknown_op", "detail": "unknown op %r" % op})
            return
        try:
            handler(client, message)
        except Exception as exc:  # a bad request must not kill the environment
            self.log_exception("op %s failed" % op)
            self.send(client, {"ok": False, "error": "internal", "detail": str(exc)})

    def send(self, client, message):
        self.hub.send(client, message)

    def forget(self, client):
        """A worker went away (or timed out): forget it; its executions go on."""
        for execution in self.live_executions():
            execution.waiters = [w for w in execution.waiters if w[0] is not client]
            if client in execution.subscribers:
                execution.subscribers.remove(client)
        self.on_ready = [c for c in self.on_ready if c is not client]
        self.interrupt_waiters = [w for w in self.interrupt_waiters if w[0] is not client]
        for key in [k for k, c in self.pending.items() if c is client]:
            del self.pending[key]

    # -- the child -----------------------------------------------------------

    def pump(self):
        """Start the next queued execution if the child is free."""
        if self.running is not None or not self.queue or self.state != "idle":
            return
        execution = self.queue.popleft()
        self.running = execution
        execution.start(self.settings.get("default_timeout"))
        request = execution.request
        self.child.send({"op": "execute", "id": execution.key, "n": execution.n,
                         "code": request.get("code", ""), "silent": bool(request.get("silent")),
                         "user_expressions": request.get("user_expressions") or {},
                         "stdin": request.get("stdin") or "", "cap": self.output_cap})

    def on_child_readable(self, sock, mask):
        if self.child is None or sock is not self.child.sock:
            return  # a stale event of this select() batch: that child is gone
        if not self.read_control(reads=1):
            self.control_closed()

    def read_control(self, reads):
        """Handle what the control socket holds, ``reads`` recv() at most; False at its end."""
        child = self.child
        for _ in range(reads):
            if self.child is not child or child.sock is None:
                return True
            try:
                data = child.sock.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                data = b""
            if not data:
                return False
            for message in child.reader.feed(data):
                self.on_child_message(message)
        return True

    def on_child_message(self, message):
        kind = message.get("ev")
        execution = self.running
        if kind == "stream" or kind == "output" or kind == "truncated":
            target = self.output_owner(message.get("id"))
            if target is None:
                self.add_late_output(message)
            elif kind == "stream":
                self.publish(target, target.add_stream(message["name"], message["text"]))
            elif kind == "output":
                self.publish(target, target.add_output(message["output"]))
            else:
                self.publish(target, target.truncate())
        elif kind == "done":
            if execution is not None and execution.key == message.get("id"):
                self.flush_decoders(execution)
                self.running = None
                self.last_request = time.monotonic()  # idle time counts from the cell's end
                record = execution.completed(message)
                ended = [(execution, record)]
                if record["status"] == "error" and execution.request.get("stop_on_error"):
                    ended += self.abort_after_error(execution)
                self.finish_all(ended)
                self.pump()
        elif kind == "reply":
            client = self.pending.pop(message.get("id"), None)
            if client is not None:
                message.pop("ev", None)
                message.pop("id", None)
                self.send(client, message)
        elif kind == "ready":
            if self.stop_goal is not None:
                return  # a child being stopped (a restart while it started)
            self.state = "idle"
            self.record.update(pid=self.child.pid, state="idle", started=utcnow(),
                               session=self.session, exit=None, reason=None)
            self.save()
            self.announce_ready()
            for client in self.on_ready:
                self.send(client, self.status())
            self.on_ready = []
            self.pump()

    def on_pipe_readable(self, fd, mask):
        if self.child is not None and fd in self.child.pipes:  # else: closed in this batch
            self.read_pipe(fd)

    def flush_decoders(self, execution):
        """An incomplete UTF-8 sequence at the end of a cell belongs to that cell (as U+FFFD)."""
        for name, text in self.child.flush_decoders():
            self.publish(execution, execution.add_stream(name, text))

    def read_pipe(self, fd):
        name, text, at_end = self.child.read_pipe(fd)
        if text and self.running is not None:
            self.publish(self.running, self.running.add_stream(name, text))
        elif text:  # fd writes cannot name their thread: late output of no execution
            self.add_late_output({"ev": "stream", "name": name, "text": text})
        if at_end:
            self.close_pipe(fd)

    # -- output of threads, and output that came too late ---------------------------

    def output_owner(self, key):
        """The open execution an output message belongs to, or None (late output).

        ``key`` None (a writer that belongs to no execution we know) means the
        running execution, if any."""
        if key is None:
            return self.running
        execution = self.by_key.get(key)
        return execution if execution is not None and execution is self.running else None

    def add_late_output(self, message):
        """Keep output whose execution's record is final (or that has none) in late_output."""
        kind = message.get("ev")
        if kind == "stream":
            name, text = message.get("name"), message.get("text") or ""
        elif kind == "output":  # display() from a thread: its text/plain
            output = message.get("output") or {}
            name = output.get("output_type") or "display_data"
            text = str((output.get("data") or {}).get("text/plain", ""))
            text += "" if text.endswith("\n") else "\n"
        else:
            return  # truncated: late output has its own bound
        if not text:
            return
        key = message.get("id")
        n = self.counts.get(key) if key is not None else None
        last = self.late_output[-1] if self.late_output else None
        if (last is not None and last["execution_count"] == n and last["name"] == name
                and not last["text"].endswith("\n")):
            last["text"] += text  # print() writes the text and the newline apart: one entry
        else:
            self.late_output.append({"execution_count": n, "name": name, "text": text,
                                     "time": utcnow()})
        self.late_size += len(text.encode("utf-8", "replace"))
        while self.late_size > LATE_OUTPUT_LIMIT and self.late_output:
            oldest = self.late_output[0]
            data = oldest["text"].encode("utf-8", "replace")
            excess = self.late_size - LATE_OUTPUT_LIMIT
            if len(data) <= excess:
                self.late_output.popleft()
                self.late_size -= len(data)
            else:  # keep the newest part of the oldest entry
                kept = data[excess:].decode("utf-8", "ignore")
                oldest["text"] = kept
                self.late_size -= len(data) - len(kept.encode("utf-8"))

    def remember_count(self, execution):
        self.counts[execution.key] = execution.n
        while len(self.counts) > COUNTS_KEPT:
            self.counts.popitem(last=False)

    # -- interrupts --------------------------------------------------------------

    def answer_interrupts(self, now):
        """Answer POST /interrupt once its execution ended, or at its deadline."""
        for waiter in list(self.interrupt_waiters):
            client, execution, deadline = waiter
            if execution.done or now >= deadline:
                self.interrupt_waiters.remove(waiter)
                self.send(client, self.status())

    def close_pipes(self):
        for fd in list(self.child.pipes):
            self.read_pipe(fd)  # what is left belongs to the execution in flight
            self.close_pipe(fd)

    def close_pipe(self, fd):
        if fd in self.child.pipes:
            del self.child.pipes[fd]
            self.selector.unregister(fd)
            os.close(fd)

    def publish(self, execution, outputs):
        """Queue outputs for the execution's followers; sent by flush_outbox()."""
        if execution.subscribers:
            self.outbox.extend((execution, output) for output in outputs)

    def flush_outbox(self):
        """Send queued outputs, merging consecutive pieces of one stream (print() writes
        the text and the newline separately) into one event."""
        merged = []
        for execution, output in self.outbox:
            if (merged and merged[-1][0] is execution and output["output_type"] == "stream"
                    and merged[-1][1]["output_type"] == "stream"
                    and merged[-1][1]["name"] == output["name"]):
                merged[-1][1]["text"] += output["text"]
            else:
                merged.append((execution, dict(output)))
        self.outbox = []
        for execution, output in merged:
            for client in execution.subscribers:
                self.send(client, dict(output, event="output"))

    def finish(self, execution, record):
        self.finish_all([(execution, record)])

    def finish_all(self, ended):
        """Persist every (execution, final record), then answer: whoever is answered
        may read the history at once."""
        for execution, record in ended:
            self.persist(execution, record)
        for execution, record in ended:
            self.notify(execution, record)

    def abort_after_error(self, failed):
        """stop_on_error: the executions queued now behind ``failed`` end unrun."""
        which = ("execution %d" % failed.n) if failed.n is not None else "a silent execution"
        evalue = "not run: %s failed and was submitted with stop_on_error" % which
        ended = []
        while self.queue:
            queued = self.queue.popleft()
            ended.append((queued, queued.aborted("previous_error", "ExecutionAborted", evalue)))
        return ended

    def record_accepted(self, execution):
        """Make a new execution count durable before anyone hears of it.

        A count is never handed out twice, even if this process is killed: its
        queued record goes to history (one O_APPEND write), which is also what a
        manager turns into an ``aborted`` record if this supervisor is lost
        mid-way.  Only ``store_history: false`` executions, which stay out of
        history, pay for an env.json rewrite.
        """
        if execution.request.get("store_history", True):
            try:
                self.history.accepted(execution.snapshot(), execution.request.get("request"))
                return
            except OSError:
                self.log_exception("could not write history")
        self.save()

    def persist(self, execution, record):
        """Durable before anyone is told: a client may read history next."""
        if execution.n is not None and execution.request.get("store_history", True):
            try:
                self.history.append(record)
            except OSError:
                self.log_exception("could not write history")

    def notify(self, execution, record):
        """Answer the execution's waiters and followers, and forget old executions."""
        if record.get("error") is not None and execution.outputs:
            self.publish(execution, [execution.outputs[-1]])  # the error output, streamed too
        self.flush_outbox()  # outputs before the record
        for client, _ in execution.waiters:
            self.send(client, {"ok": True, "key": execution.key, "record": record})
        for client in execution.subscribers:
            self.send(client, dict(record, event="record"))
        execution.waiters, execution.subscribers = [], []
        self.record["last_activity"] = record["finished"]
        for index in (self.by_count, self.by_key):
            while len(index) > RECENT_KEPT:
                oldest = next(iter(index))
                if not index[oldest].done:
                    break
                del index[oldest]

    def signal_child(self, signum):
        if self.child is not None:
            self.child.signal(signum)

    def detach_child(self):
        """Stop listening to the child's control socket (its exit, or before we stop it)."""
        if self.child.sock is not None:
            self.selector.unregister(self.child.sock)
            self.child.sock.close()
            self.child.sock = None

    def close_pidfd(self):
        if self.child.pidfd is not None:
            self.selector.unregister(self.child.pidfd)
            self.child.close_pidfd()

    def control_closed(self):
        """End of file on the control socket: the child is exiting, or lost its channel.

        Never the only sign of death (a helper the child forked may hold the socket):
        the death itself comes through the pidfd or SIGCHLD.  A child that cannot be
        driven any more is SIGKILLed unless it exits by itself first."""
        self.detach_child()
        if self.child.poll() is not None:
            self.child_exited()
            return
        deadline = time.monotonic() + EOF_KILL_AFTER
        if self.child.kill_at is None or self.child.kill_at > deadline:
            self.child.kill_at = deadline

    def on_child_pidfd(self, fd, mask):
        self.reap()

    def reap(self):
        """waitpid every child that ended -- the user-code process (its status is kept)
        and whatever was re-parented to us, so no zombie stays -- and handle the
        user-code process's death."""
        child = self.child
        for pid, status in reap_children():
            if child is not None and pid == child.pid:
                child.status = status
        if child is not None and self.child is child and child.status is not None:
            self.child_exited()

    def child_exited(self):
        """The child is gone (reaped): what it sent first, then its end, then its tree."""
        child = self.child
        self.read_control(reads=64)  # what it sent before it died, as if we had read to EOF
        self.detach_child()
        self.close_pipes()
        self.close_pidfd()
        code, signum = child.status
        self.child = None
        # Whatever it left behind: its group now, then check_stop() (this loop iteration)
        # SIGKILLs and reaps every descendant (setsid() daemons re-parented to us) until
        # nothing is left.
        self.stopped_group = child.pid
        self.reap_until = time.monotonic() + KILL_WAIT
        child.signal(signal.SIGKILL)
        if self.stop_goal in ("restart", "final"):  # the end of a stop we asked for
            self.stop_status = (code, signum)
            self.drop_pending()
            self.check_stop(time.monotonic())
            return
        self.stop_goal = "cleanup"
        if self.ready_fd is not None:  # it never became ready: tell the launcher now
            self.announce_failure(exit_description(code, signum) + " before it was ready",
                                  (code, signum))
            return
        description = exit_description(code, signum)
        execution = self.running
        reason = "kernel_died"
        if execution is not None and execution.stop_reason == "timeout":
            reason = "timeout"
        self.running = None
        ended = []
        if execution is not None:
            if reason == "timeout":
                record = execution.aborted("timeout", "ExecutionTimeout", execution.timeout_message(
                    self.kill_grace) + "; %s: POST /envs/%s/restart" % (description,
                                                                       self.record["id"]))
            else:
                record = execution.aborted("kernel_died", "KernelDied", description)
            ended.append((execution, record))
        while self.queue:
            queued = self.queue.popleft()
            ended.append((queued, queued.aborted("kernel_died", "KernelDied", description)))
        # History, then env.json, then answers: whoever we answer may read either at once,
        # and a reader that sees "dead" must find the aborted records in history.
        for ended_execution, record in ended:
            self.persist(ended_execution, record)
        self.state = "dead"
        self.record.update(state="dead", exit={"code": code, "signal": signal_name(signum)},
                           reason=reason, pid=None)
        self.save()
        for ended_execution, record in ended:
            self.notify(ended_execution, record)
        for client in self.on_ready:
            self.send(client, self.status())
        self.on_ready = []
        self.drop_pending()

    def drop_pending(self):
        """Introspection requests the gone child will never answer."""
        for client in self.pending.values():
            self.send(client, {"ok": False, "error": "not_running", "state": self.public_state()})
        self.pending = {}

    def begin_stop(self, goal):
        """Stop the child and its whole tree without blocking the loop: SIGTERM now, SIGKILL
        after ``kill_grace`` (check_stop), its death seen through the pidfd or SIGCHLD,
        then the tree swept; ``goal`` ("restart", "final") is reached when nothing is left."""
        if self.stop_goal not in ("restart", "final"):
            self.stop_status = None
        self.stop_goal = goal
        now = time.monotonic()
        child = self.child
        if child is None:  # nothing runs: only what is left of a dead child's tree
            self.reap_until = now + KILL_WAIT
            self.check_stop(now)
        elif not child.terminating:
            child.terminating = True
            child.signal_tree(signal.SIGTERM)
            deadline = now + self.kill_grace
            child.kill_at = deadline if child.kill_at is None else min(child.kill_at, deadline)

    def check_stop(self, now):
        """The stop's timers: SIGKILL at the end of the grace, then sweep the dead child's
        tree (SIGKILL, reap) until no descendant is left or KILL_WAIT has passed."""
        child = self.child
        if child is not None:
            if child.kill_at is not None and now >= child.kill_at:
                child.kill_at = None
                child.signal_tree(signal.SIGKILL)  # its death comes through pidfd / SIGCHLD
            return
        if self.stop_goal is None:
            return
        reap_children()
        left = signal_tree(self.stopped_group, signal.SIGKILL)
        if left and now < self.reap_until:
            return  # swept again after REAP_POLL
        if left:
            self.log.write("%s %d descendants would not die: %s\n" % (utcnow(), len(left), left))
        goal, self.stop_goal = self.stop_goal, None
        self.stopped_group = None
        if goal == "restart":
            self.finish_restart()
        elif goal == "final":
            self.finish_stop()

    def finish_restart(self):
        """The old tree is gone: a fresh child; the restart is answered when it is ready."""
        self.session += 1
        self.record.update(session=self.session, exit=None, reason=None)
        self.spawn_child()

    def stop_child(self):
        """Blocking stop, only where the loop no longer runs (the supervisor failed);
        the child's (code, signal), None if none ran."""
        if self.child is None:
            return None
        exit_status = self.child.stop(self.kill_grace)
        self.detach_child()
        self.close_pipes()
        self.close_pidfd()
        self.child = None
        return exit_status

    def abort_queue(self, reason, ename, evalue):
        while self.queue:
            execution = self.queue.popleft()
            self.finish(execution, execution.aborted(reason, ename, evalue))

    def abort_all(self, reason, ename, evalue):
        if self.running is not None:
            execution, self.running = self.running, None
            self.finish(execution, execution.aborted(reason, ename, evalue))
        self.abort_queue(reason, ename, evalue)

    def stop(self, state, reason):
        """Stop the child and its tree, then leave the loop (finish_stop), without blocking
        it (begin_stop); ``state=None`` means the env dir is gone."""
        if self.stop_goal == "final":
            return
        self.final = (state, reason)
        self.abort_all("cancelled", "ExecutionCancelled", "the environment was stopped (%s)"
                       % reason)
        self.state = "stopped"  # from now on: no new executions, no introspection
        self.begin_stop("final")

    def finish_stop(self):
        """The tree is gone: record how the env ended, answer who waited, leave the loop."""
        self.alive = False
        state, reason = self.final
        if state is not None and not self.directory_removed():
            code, signum = self.stop_status or (None, None)
            self.record.update(state=state, reason=reason, pid=None,
                               exit={"code": code, "signal": signal_name(signum)})
            self.save()
        self.answer_interrupts(float("inf"))
        for client in self.on_ready:
            self.send(client, self.status())
        self.on_ready = []
        for client in self.shutdown_waiters:
            self.send(client, {"ok": True})
        self.shutdown_waiters = []

    # -- bookkeeping -----------------------------------------------------------

    def save(self):
        self.record["execution_count"] = self.execution_count
        self.record["supervisor_pid"] = os.getpid()
        self.record["protocol"] = PROTOCOL_VERSION
        try:
            write_record(self.env_dir, self.record)
        except OSError:
            if not self.directory_removed():
                raise

    def announce_ready(self):
        """Tell the launcher (through the pipe that was our stdout) that we serve."""
        if self.ready_fd is None:
            return
        try:
            os.write(self.ready_fd, b"ready\n")
        except OSError:
            pass
        log_fd = self.log.fileno()
        os.dup2(log_fd, self.ready_fd)  # closes the pipe: the launcher sees EOF
        self.ready_fd = None

    def announce_failure(self, why, status=None):
        """Report a failed start, and leave the loop.

        First kernel.log (``why``, then what the child printed before it died: its
        traceback) and env.json (``dead``, reason ``start_failed``, ``detail: why``,
        ``exit`` from ``status``, the child's (code, signal)), then the launcher's
        pipe: whoever hears of the failure finds it recorded.
        """
        printed = "".join(entry["text"] for entry in self.late_output
                          if entry.get("execution_count") is None)[-START_OUTPUT_KEPT:]
        if printed and not printed.endswith("\n"):
            printed += "\n"
        try:
            self.log.write("%s start failed: %s\n%s" % (utcnow(), why, printed))
        except (OSError, ValueError):
            pass
        code, signum = status or getattr(self.child, "status", None) or (None, None)
        self.state = "dead"
        self.record.update(state="dead", reason="start_failed", detail=why, pid=None,
                           exit={"code": code, "signal": signal_name(signum)})
        try:
            self.save()
        except OSError:
            pass
        try:
            os.write(self.ready_fd, ("error: %s\n" % why).encode())
        except OSError:
            pass
        self.ready_fd = None
        self.child = None
        self.alive = False

    def on_wake(self, fd, mask):
        try:
            while os.read(fd, 512):
                pass
        except OSError:
            pass
        self.reap()  # SIGCHLD, or any other signal: waitpid(WNOHANG) costs nothing

    def log_exception(self, message):
        import traceback
        self.log.write("%s %s\n%s" % (utcnow(), message, traceback.format_exc()))

    def close(self):
        self.hub.close()


def signal_name(signum):
    if signum is None:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def supervise(env_dir, ready_fd):
    """Serve one env until it stops.  A failure is logged in kernel.log, recorded in
    env.json -- ``dead``, reason ``start_failed`` (with ``detail``) if the kernel was not
    ready yet, ``supervisor_failed`` after -- and raised."""
    try:
        supervisor = Supervisor(env_dir, ready_fd)
    except Exception:
        import traceback
        os.write(2, ("%s the supervisor could not start\n%s" % (
            utcnow(), traceback.format_exc())).encode("utf-8", "replace"))  # kernel.log
        raise
    try:
        supervisor.run()
    except Exception as exc:
        supervisor.log_exception("supervisor failed")
        supervisor.stop_child()
        if os.path.isdir(env_dir):
            if supervisor.ready_fd is not None:
                supervisor.record.update(state="dead", reason="start_failed", pid=None,
                                         detail="the supervisor failed: %s: %s"
                                         % (type(exc).__name__, exc))
            else:
                supervisor.record.update(state="dead", reason="supervisor_failed", pid=None)
            try:
                supervisor.save()
            except OSError:
                pass
        raise
    return 0

