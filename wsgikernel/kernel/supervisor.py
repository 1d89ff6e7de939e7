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

Timers (no threads): an execution's timeout (SIGINT, then SIGKILL after
``kill_grace``), the idle timeout, and a once-a-second check that the env
directory still exists (a kernel whose directory is gone exits).
"""

import codecs
import collections
import itertools
import os
import selectors
import signal
import socket
import time

from ..protocol import PROTOCOL_VERSION, FrameReader, encode
from ..store import LOG_FILE, WORK_DIR, History, read_record, utcnow, write_record
from .records import Execution, exit_description

RECENT_KEPT = 32       # finished executions kept in memory for polling
DIR_CHECK_EVERY = 1.0  # seconds between checks that the env directory exists


class Client:
    """One connection from a web worker: a frame reader and a pending output buffer."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = FrameReader()
        self.out = bytearray()
        self.closed = False


class Supervisor:
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
        self.clients = {}         # socket -> Client
        self.outbox = []          # (execution, output) waiting to reach followers
        self.pending = {}         # introspection request id -> client
        self.on_ready = []        # clients waiting for a (re)started child
        self.child = None         # pid of the user-code process
        self.child_sock = None
        self.child_reader = None
        self.pipes = {}           # fd -> (stream name, incremental decoder)
        self.state = "starting"
        self.alive = True
        self.last_request = time.monotonic()
        self.next_dir_check = time.monotonic() + DIR_CHECK_EVERY
        self.log = open(os.path.join(env_dir, LOG_FILE), "a", buffering=1)
        # The directory by inode, not by path: a pooled kernel's directory is renamed
        # when claimed, and only a directory that was really removed has no links.
        self.dir_fd = os.open(env_dir, os.O_RDONLY | os.O_DIRECTORY)
        self.handlers = {op: getattr(self, "op_" + op) for op in (
            "status", "execute", "wait", "attach", "cancel", "interrupt", "restart",
            "shutdown", "live", "bind", "complete", "inspect", "is_complete", "variables")}

    # -- start -------------------------------------------------------------

    def listen(self):
        path = self.record["socket"]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, self.on_accept)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self.on_wake)
        signal.set_wakeup_fd(self.wake_w)
        self.terminate = False
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def on_signal(self, signum, frame):
        self.terminate = True

    def spawn_child(self):
        """Fork the user-code process; it reports ``ready`` over the control socket."""
        parent_sock, child_sock = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        limits = self.record.get("limits") or {}
        work_dir = self.record.get("cwd") or os.path.join(self.env_dir, WORK_DIR)
        os.makedirs(work_dir, exist_ok=True)
        pid = os.fork()
        if pid == 0:  # the child: drop everything of the supervisor's, become the kernel
            try:
                signal.set_wakeup_fd(-1)
                os.setpgid(0, 0)
                self.close_in_child(parent_sock, out_r, err_r)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (devnull, out_w, err_w):
                    os.close(fd)
                from .executor import run
                run(child_sock, work_dir, limits, self.settings.get("preload") or ())
            finally:
                os._exit(1)
        try:
            os.setpgid(pid, pid)  # also here, so killpg(pid) works before the child ran
        except OSError:
            pass
        child_sock.close()
        os.close(out_w)
        os.close(err_w)
        self.child = pid
        self.child_sock = parent_sock
        self.child_reader = FrameReader()
        parent_sock.setblocking(False)
        self.selector.register(parent_sock, selectors.EVENT_READ, self.on_child_readable)
        for fd, name in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            self.pipes[fd] = (name, decoder)
            self.selector.register(fd, selectors.EVENT_READ, self.on_pipe_readable)
        self.state = "starting"

    def close_in_child(self, *fds):
        for key in list(self.selector.get_map().values()):
            obj = key.fileobj
            if isinstance(obj, int):
                os.close(obj)
            else:
                obj.close()
        self.selector.close()
        self.log.close()
        os.close(self.dir_fd)
        for fd in fds:
            if isinstance(fd, int):
                os.close(fd)
            else:
                fd.close()
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
        if self.idle_timeout and self.state == "idle" and not self.queue:
            deadlines.append(self.last_request + self.idle_timeout)
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
        if self.terminate:
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
        if (self.idle_timeout and self.state == "idle" and not self.queue
                and now - self.last_request >= self.idle_timeout):
            self.stop(state="stopped", reason="idle")

    # -- web-worker connections ---------------------------------------------

    def on_accept(self, listener, mask):
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, self.on_client_event)
        self.clients[sock] = Client(sock)

    def on_client_event(self, sock, mask):
        client = self.clients.get(sock)
        if client is None:
            return
        if mask & selectors.EVENT_WRITE:
            self.flush(client)
        if mask & selectors.EVENT_READ and not client.closed:
            try:
                data = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.drop(client)
                return
            try:
                messages = client.reader.feed(data)
            except Exception:
                self.drop(client)
                return
            for message in messages:
                self.handle(client, message)

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
        if client.closed:
            return
        client.out += encode(message)
        self.flush(client)

    def flush(self, client):
        try:
            while client.out:
                sent = client.sock.send(client.out)
                del client.out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.drop(client)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        self.selector.modify(client.sock, events, self.on_client_event)

    def drop(self, client):
        """A worker went away (or timed out): forget it; its executions go on."""
        if client.closed:
            return
        client.closed = True
        for execution in self.live_executions():
            execution.waiters = [w for w in execution.waiters if w[0] is not client]
            if client in execution.subscribers:
                execution.subscribers.remove(client)
        self.on_ready = [c for c in self.on_ready if c is not client]
        for key in [k for k, c in self.pending.items() if c is client]:
            del self.pending[key]
        self.selector.unregister(client.sock)
        self.clients.pop(client.sock, None)
        client.sock.close()

    # -- operations (each answers with send() or parks the client) -------------

    def status(self):
        return {"ok": True, "state": self.public_state(), "session": self.session,
                "execution_count": self.execution_count, "queued": len(self.queue),
                "pid": self.child, "supervisor_pid": os.getpid(),
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
        self.record["last_activity"] = execution.record["queued_at"]
        if n is not None:
            self.by_count[n] = execution
        self.by_key[execution.key] = execution
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
        self.child_send({"op": "rebind", "work_dir": work_dir})
        self.save()
        self.send(client, self.status())

    def directory_removed(self):
        try:
            return os.fstat(self.dir_fd).st_nlink == 0
        except OSError:
            return True

    def op_interrupt(self, client, message):
        if self.running is not None:
            self.signal_child(signal.SIGINT)
        self.send(client, self.status())

    def op_restart(self, client, message):
        self.stop_child()
        self.abort_all("cancelled", "ExecutionCancelled",
                       "the environment was restarted before the execution finished")
        self.session += 1
        self.record.update(session=self.session, exit=None, reason=None)
        self.spawn_child()
        self.on_ready.append(client)

    def op_shutdown(self, client, message):
        self.send(client, {"ok": True})
        self.stop(state=message.get("state", "stopped"), reason=message.get("reason"))

    def forward(self, client, message):
        if self.child is None or self.state not in ("idle", "starting"):
            self.send(client, {"ok": False, "error": "not_running", "state": self.state})
            return
        key = next(self.keys)
        self.pending[key] = client
        self.child_send(dict(message, id=key))

    op_complete = op_inspect = op_is_complete = op_variables = forward

    # -- the child -----------------------------------------------------------

    def child_send(self, message):
        sock = self.child_sock
        data = encode(message)
        sock.setblocking(True)  # messages to the child are small; its reader never stalls
        try:
            sock.sendall(data)
        except OSError:
            pass
        finally:
            sock.setblocking(False)

    def pump(self):
        """Start the next queued execution if the child is free."""
        if self.running is not None or not self.queue or self.state != "idle":
            return
        execution = self.queue.popleft()
        self.running = execution
        execution.start(self.settings.get("default_timeout"))
        request = execution.request
        self.child_send({"op": "execute", "id": execution.key, "n": execution.n,
                         "code": request.get("code", ""), "silent": bool(request.get("silent")),
                         "user_expressions": request.get("user_expressions") or {},
                         "stdin": request.get("stdin") or "", "cap": self.output_cap})

    def on_child_readable(self, sock, mask):
        try:
            data = sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.child_exited()
            return
        for message in self.child_reader.feed(data):
            self.on_child_message(message)

    def on_child_message(self, message):
        kind = message.get("ev")
        execution = self.running
        if kind == "stream" or kind == "output" or kind == "truncated":
            if execution is None:
                return
            if kind == "stream":
                self.publish(execution, execution.add_stream(message["name"], message["text"]))
            elif kind == "output":
                self.publish(execution, execution.add_output(message["output"]))
            else:
                self.publish(execution, execution.truncate())
        elif kind == "done":
            if execution is not None and execution.key == message.get("id"):
                self.running = None
                self.finish(execution, execution.completed(message))
                self.pump()
        elif kind == "reply":
            client = self.pending.pop(message.get("id"), None)
            if client is not None:
                message.pop("ev", None)
                message.pop("id", None)
                self.send(client, message)
        elif kind == "ready":
            self.state = "idle"
            self.record.update(pid=self.child, state="idle", started=utcnow(),
                               session=self.session, exit=None, reason=None)
            self.save()
            self.announce_ready()
            for client in self.on_ready:
                self.send(client, self.status())
            self.on_ready = []
            self.pump()

    def on_pipe_readable(self, fd, mask):
        self.read_pipe(fd)

    def read_pipe(self, fd):
        """Read what is in one fd pipe now; False at EOF."""
        name, decoder = self.pipes[fd]
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            except OSError:
                data = b""
            if not data:
                self.close_pipe(fd)
                return False
            text = decoder.decode(data)
            if text and self.running is not None:
                self.publish(self.running, self.running.add_stream(name, text))
            elif text:
                self.log.write("[%s outside any execution] %s" % (name, text))

    def drain_pipes(self):
        for fd in list(self.pipes):
            self.read_pipe(fd)

    def close_pipe(self, fd):
        if fd in self.pipes:
            del self.pipes[fd]
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
        if execution.n is not None and execution.request.get("store_history", True):
            try:  # durable before anyone is told: a client may read history next
                self.history.append(record)
            except OSError:
                self.log_exception("could not write history")
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
            try:
                os.killpg(self.child, signum)
            except OSError:
                pass

    def reap_child(self, block):
        """(code, signal) of the exited child, or None if it is still running."""
        try:
            pid, status = os.waitpid(self.child, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return (None, None)
        if pid == 0:
            return None
        if os.WIFSIGNALED(status):
            return (None, os.WTERMSIG(status))
        return (os.WEXITSTATUS(status), None)

    def detach_child(self):
        """Stop listening to the child (before an expected exit, or after it died)."""
        if self.child_sock is not None:
            self.selector.unregister(self.child_sock)
            self.child_sock.close()
            self.child_sock = None

    def child_exited(self):
        """The control socket closed: the child died on its own (or was killed)."""
        self.detach_child()
        exit_status = self.reap_child(block=True)
        self.signal_child(signal.SIGKILL)  # no stragglers of its process group
        self.drain_pipes()
        for fd in list(self.pipes):
            self.close_pipe(fd)
        code, signum = exit_status
        description = exit_description(code, signum)
        execution = self.running
        reason = "kernel_died"
        if execution is not None and execution.stop_reason == "timeout":
            reason = "timeout"
        self.child = None
        self.running = None
        # env.json first: whoever we answer next may read it at once.
        self.state = "dead"
        self.record.update(state="dead", exit={"code": code, "signal": signal_name(signum)},
                           reason=reason, pid=None)
        self.save()
        if execution is not None:
            if reason == "timeout":
                record = execution.aborted("timeout", "ExecutionTimeout", execution.timeout_message(
                    self.kill_grace) + "; %s: POST /envs/%s/restart" % (description,
                                                                       self.record["id"]))
            else:
                record = execution.aborted("kernel_died", "KernelDied", description)
            self.finish(execution, record)
        self.abort_queue("kernel_died", "KernelDied", description)
        for client in self.on_ready:
            self.send(client, self.status())
        self.on_ready = []

    def stop_child(self):
        """SIGTERM the child's group, SIGKILL after kill_grace, reap: no descendant survives."""
        if self.child is None:
            return None
        self.signal_child(signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace
        exit_status = self.reap_child(block=False)
        while exit_status is None and time.monotonic() < deadline:
            time.sleep(0.01)
            exit_status = self.reap_child(block=False)
        self.signal_child(signal.SIGKILL)
        if exit_status is None:
            exit_status = self.reap_child(block=True)
        # Only now: on EOF the child SIGKILLs its own group, which would cut the grace short.
        self.detach_child()
        for fd in list(self.pipes):
            self.close_pipe(fd)
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
        """Stop the child and leave the loop; ``state=None`` means the env dir is gone."""
        exit_status = self.stop_child() or (None, None)
        self.abort_all("cancelled", "ExecutionCancelled", "the environment was stopped (%s)"
                       % reason)
        self.alive = False
        if state is not None and not self.directory_removed():
            code, signum = exit_status
            self.record.update(state=state, reason=reason, pid=None,
                               exit={"code": code, "signal": signal_name(signum)})
            self.save()

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

    def on_wake(self, fd, mask):
        try:
            while os.read(fd, 512):
                pass
        except OSError:
            pass

    def log_exception(self, message):
        import traceback
        self.log.write("%s %s\n%s" % (utcnow(), message, traceback.format_exc()))

    def close(self):
        for client in list(self.clients.values()):
            self.flush(client)
        try:
            os.unlink(self.record["socket"])
        except OSError:
            pass
        self.listener.close()


def signal_name(signum):
    if signum is None:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def supervise(env_dir, ready_fd):
    supervisor = Supervisor(env_dir, ready_fd)
    try:
        supervisor.run()
    except Exception:
        supervisor.log_exception("supervisor failed")
        supervisor.stop_child()
        if os.path.isdir(env_dir):
            supervisor.record.update(state="dead", reason="supervisor_failed", pid=None)
            try:
                supervisor.save()
            except OSError:
                pass
        raise
    return 0

