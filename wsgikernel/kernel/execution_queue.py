"""The execution queue of one env: what waits, what runs, and who is told what.

Executions run one at a time in submission order.  Each has waiters (a web
worker answered once, when it ends or at a deadline) and subscribers (a
stream: every output as it happens, then the record).  The last
``RECENT_KEPT`` finished executions stay findable by count and by key for
polling.

Ordering promises kept here: outputs reach subscribers before the record;
consecutive pieces of one stream are sent as one event (print() writes the
text and the newline apart); every final record is persisted (``persist``)
before anyone is answered, since whoever is answered may read the history at
once.

No sockets and no child here: the supervisor starts what ``start_next`` hands
it; a waiter or follower is a requester (kernel/hub.py: ``reply(body)``,
``event(body)``, and ``client``, its connection), and ``persist(execution,
record)`` and ``answered(execution, record)`` are given to it, so this class is tested on
its own (tests/test_execution_queue.py).
"""

import collections
import time

from .. import jsonpolicy

RECENT_KEPT = 32       # finished executions kept in memory for polling


class ExecutionQueue:
    def __init__(self, persist, answered, recent_kept=RECENT_KEPT):
        self.persist = persist      # (execution, record, its JSON): durable, before answers
        self.answered = answered    # (execution, record): about to be answered
        self.recent_kept = recent_kept
        self.queued = collections.deque()
        self.running = None
        self.by_count = collections.OrderedDict()  # execution_count -> Execution
        self.by_key = collections.OrderedDict()    # internal key -> Execution (also silent)
        self.outbox = []          # (execution, output) waiting to reach followers

    # -- what there is -----------------------------------------------------------

    def add(self, execution):
        """Queue ``execution`` (last) and make it findable."""
        if execution.n is not None:
            self.by_count[execution.n] = execution
        self.by_key[execution.key] = execution
        self.queued.append(execution)

    def live(self):
        """The executions not finished: the running one, then the queued in order."""
        if self.running is not None:
            yield self.running
        yield from self.queued

    def waiting(self):
        """(client, execution, deadline) of every waiter of a live execution."""
        for execution in self.live():
            for client, deadline in execution.waiters:
                yield client, execution, deadline

    def find(self, n=None, key=None):
        """The execution of count ``n`` (if given) or of ``key``; None if not kept."""
        return self.by_count.get(n) if n is not None else self.by_key.get(key)

    def owner(self, key):
        """The open execution an output message belongs to, or None (late output).

        ``key`` None (a writer that belongs to no execution we know) means the
        running execution, if any."""
        if key is None:
            return self.running
        execution = self.by_key.get(key)
        return execution if execution is not None and execution is self.running else None

    def take_output(self, envelope):
        """Put a ``stream``/``output``/``truncated`` message of the child into the open
        record it belongs to (its ``parent``); False if there is none (late output)."""
        target = self.owner(envelope.get("parent"))
        if target is None:
            return False
        kind, body = envelope["type"], envelope["body"]
        if kind == "stream":
            self.publish(target, target.add_stream(body["name"], body["text"]))
        elif kind == "output":
            self.publish(target, target.add_output(body))
        else:
            self.publish(target, target.truncate())
        return True

    def take_text(self, name, text):
        """Text from the child's fd 1 or 2 goes to the running execution (a pipe does not
        say which thread wrote); False if none runs."""
        if self.running is None:
            return False
        self.publish(self.running, self.running.add_stream(name, text))
        return True

    def is_empty(self):
        """No execution running or queued."""
        return self.running is None and not self.queued

    def deadlines(self):
        """The moments something here must happen: the running execution's timeout and
        kill, the waiters' deadlines."""
        found = []
        if self.running is not None:
            found += [d for d in (self.running.deadline, self.running.kill_at) if d is not None]
        found += [deadline for _, _, deadline in self.waiting() if deadline is not None]
        return found

    # -- who is told ---------------------------------------------------------------

    def park(self, client, execution, message):
        """Reply now, at completion, at the wait deadline, or stream as it happens."""
        if message.get("stream"):
            client.event({"event": "accepted", "execution_count": execution.n,
                          "status": execution.record["status"]})
            for output in execution.outputs_so_far():
                client.event(dict(output, event="output"))
            if execution.asking is not None:
                client.event(execution.input_event())
            if execution.done:
                client.event(dict(execution.snapshot(), event="record"))
            else:
                execution.subscribers.append(client)
            return
        wait = message.get("wait")
        if execution.done or wait == 0 or execution.asking is not None:  # the caller's turn
            client.reply({"key": execution.key, "record": execution.snapshot()})
            return
        deadline = None if wait is None else time.monotonic() + float(wait)
        execution.waiters.append((client, deadline))

    def expire_waiters(self, now):
        """Answer the waiters whose deadline has come with the record so far."""
        for execution in list(self.live()):
            for waiter in [w for w in execution.waiters if w[1] is not None and now >= w[1]]:
                execution.waiters.remove(waiter)
                waiter[0].reply({"key": execution.key, "record": execution.snapshot()})

    def forget(self, client):
        """A web worker's connection went away: nothing waits on it any more."""
        for execution in self.live():
            execution.waiters = [w for w in execution.waiters if w[0].client is not client]
            execution.subscribers = [s for s in execution.subscribers if s.client is not client]

    def ask(self, execution, event):
        """The running ``execution`` waits for input (``event``): its followers are told,
        after the outputs before it; its waiters get the record now, to answer it."""
        self.flush_outbox()
        for client in execution.subscribers:
            client.event(event)
        waiters, execution.waiters = execution.waiters, []
        for client, _ in waiters:
            client.reply({"key": execution.key, "record": execution.snapshot()})

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
            event = ({"event": "clear_output"} if output["output_type"] == "clear_output"
                     else dict(output, event="output"))
            for client in execution.subscribers:
                client.event(event)

    # -- running and ending ------------------------------------------------------------

    def start_next(self, default_timeout):
        """The next queued execution, now running (the caller sends it to the child);
        None if one runs already or none waits."""
        if self.running is not None or not self.queued:
            return None
        execution = self.queued.popleft()
        self.running = execution
        execution.start(default_timeout)
        return execution

    def complete(self, execution, message):
        """The running ``execution`` ended (the child's ``done``): its record, and with
        ``stop_on_error`` the abort of those queued behind a failure; all answered."""
        self.running = None
        record = execution.completed(message)
        ended = [(execution, record)]
        if record["status"] == "error" and execution.request.get("stop_on_error"):
            ended += self.abort_after_error(execution)
        self.finish_all(ended)

    def abort_after_error(self, failed):
        """stop_on_error: the executions queued now behind ``failed`` end unrun."""
        which = ("execution %d" % failed.n) if failed.n is not None else "a silent execution"
        evalue = "not run: %s failed and was submitted with stop_on_error" % which
        return self.drain("previous_error", "ExecutionAborted", evalue)

    def kernel_died(self, description, kill_grace, timeout_hint):
        """The child died: the running execution ends ``aborted``, reason ``timeout`` if
        the service's timeout killed it (its evalue ends with ``timeout_hint``) else
        ``kernel_died``, and the queued ones ``kernel_died``.  (that reason, [(execution,
        record)]), neither persisted nor answered yet."""
        execution, self.running = self.running, None
        reason, ended = "kernel_died", []
        if execution is not None and execution.stop_reason == "timeout":
            reason = "timeout"
            ended.append((execution, execution.aborted(
                "timeout", "ExecutionTimeout",
                execution.timeout_message(kill_grace) + timeout_hint)))
        elif execution is not None:
            ended.append((execution, execution.aborted("kernel_died", "KernelDied",
                                                       description)))
        return reason, ended + self.drain("kernel_died", "KernelDied", description)

    def drain(self, reason, ename, evalue):
        """Take every queued execution out, each with its aborted record (not answered)."""
        ended = []
        while self.queued:
            queued = self.queued.popleft()
            ended.append((queued, queued.aborted(reason, ename, evalue)))
        return ended

    def cancel(self, execution):
        """Drop ``execution`` if queued (aborted, answered); True if it is the running one,
        which the caller must interrupt (it ends ``cancelled``)."""
        if execution in self.queued:
            self.queued.remove(execution)
            self.finish(execution, execution.aborted("cancelled", "ExecutionCancelled",
                                                     "the execution was cancelled before it ran"))
        elif execution is self.running:
            execution.stop_reason = "cancelled"
            return True
        return False

    def abort_queue(self, reason, ename, evalue):
        while self.queued:
            execution = self.queued.popleft()
            self.finish(execution, execution.aborted(reason, ename, evalue))

    def abort_all(self, reason, ename, evalue):
        """End the running and every queued execution ``aborted`` (restart, stop)."""
        if self.running is not None:
            execution, self.running = self.running, None
            self.finish(execution, execution.aborted(reason, ename, evalue))
        self.abort_queue(reason, ename, evalue)

    def finish(self, execution, record):
        self.finish_all([(execution, record)])

    def finish_all(self, ended):
        """Persist every (execution, final record), then answer: whoever is answered
        may read the history at once."""
        self.notify_all(self.persist_all(ended))

    def persist_all(self, ended):
        """Persist each (execution, record); [(execution, record, its JSON)].  A record is
        encoded once, for history and for every answer (a 100 MiB output is 200 MiB of
        record: encoding it is most of what it costs here)."""
        sealed = []
        for execution, record in ended:
            data = jsonpolicy.encode(record)
            self.persist(execution, record, data)
            sealed.append((execution, record, data))
        return sealed

    def notify_all(self, sealed):
        for execution, record, data in sealed:
            self.notify(execution, record, data)

    def notify(self, execution, record, data):
        """Answer the execution's waiters and followers, and forget old executions."""
        if record.get("error") is not None and execution.outputs:
            self.publish(execution, [execution.outputs[-1]])  # the error output, streamed too
        self.flush_outbox()  # outputs before the record
        self.answered(execution, record)  # first: counted in the status sent before answers
        for client, _ in execution.waiters:
            client.reply_record(execution.key, data)
        for client in execution.subscribers:
            client.event_record(data)
        execution.waiters, execution.subscribers = [], []
        for index in (self.by_count, self.by_key):
            while len(index) > self.recent_kept:
                oldest = next(iter(index))
                if not index[oldest].done:
                    break
                del index[oldest]
