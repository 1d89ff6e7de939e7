"""ExecutionQueue and LateOutput on their own: no sockets, no child, no supervisor.

The queue is given ``persist`` and ``answered``, and requesters (as kernel/hub.py
makes them: ``reply``, ``event``, ``client``); a journal of their calls shows who
was told what, in which order.
"""

import json
import time

from wsgikernel.kernel.execution_queue import ExecutionQueue
from wsgikernel.kernel.late_output import LateOutput
from wsgikernel.kernel.records import Execution

OK = {"status": "ok", "user_expressions": {}}
FAILED = {"status": "error", "user_expressions": {},
          "error": {"ename": "ValueError", "evalue": "bad", "traceback": ["ValueError: bad"]}}


class Requester:
    """A stand-in for kernel/hub.py's: what it is told goes to the journal."""

    def __init__(self, journal, client):
        self.journal, self.client = journal, client

    def reply(self, body):
        self.journal.calls.append(("send", self.client, dict(body, type="reply")))

    def event(self, body):
        self.journal.calls.append(("send", self.client, dict(body, type="event")))

    def reply_record(self, key, data):  # the record comes encoded, as the hub sends it
        self.reply({"key": key, "record": json.loads(data)})

    def event_record(self, data):
        self.event(dict(json.loads(data), event="record"))


class Journal:
    """What the queue did, in order: ("send", client, body), ("persist", n, status),
    ("answered", n)."""

    def __init__(self):
        self.calls = []

    def to(self, client):
        return Requester(self, client)

    def persist(self, execution, record, data):
        assert json.loads(data) == record  # encoded once, for history and every answer
        self.calls.append(("persist", execution.n, record["status"]))

    def answered(self, execution, record):
        self.calls.append(("answered", record["execution_count"]))

    def sent_to(self, client):
        return [call[2] for call in self.calls if call[0] == "send" and call[1] == client]


def stream(parent, text):
    """A child's ``stream`` message of execution ``parent``."""
    return {"type": "stream", "parent": parent, "body": {"name": "stdout", "text": text}}


def make_queue(**kwargs):
    journal = Journal()
    return ExecutionQueue(journal.persist, journal.answered, **kwargs), journal


def submit(queue, n, code="x", **request):
    execution = Execution(n, n, dict(request, code=code), "env", 1, None)
    queue.add(execution)
    return execution


def test_executions_run_one_at_a_time_in_submission_order():
    queue, _ = make_queue()
    first, second = submit(queue, 1), submit(queue, 2)
    assert queue.start_next(None) is first
    assert queue.start_next(None) is None  # one runs already
    assert first.record["status"] == "running" and list(queue.live()) == [first, second]
    queue.complete(first, OK)
    assert queue.running is None and queue.start_next(None) is second
    queue.complete(second, OK)
    assert queue.is_empty() and queue.start_next(None) is None


def test_a_waiter_is_answered_after_the_record_is_persisted():
    queue, journal = make_queue()
    execution = submit(queue, 1)
    queue.park(journal.to("worker"), execution, {"wait": None})
    assert journal.calls == []
    queue.start_next(None)
    queue.complete(execution, OK)
    kinds = [call[0] for call in journal.calls]
    # answered before the send: the status the kernel publishes before it answers counts it
    assert kinds == ["persist", "answered", "send"], journal.calls
    reply = journal.sent_to("worker")[0]
    assert reply["type"] == "reply" and reply["key"] == 1 and reply["record"]["status"] == "ok"
    assert execution.waiters == []


def test_wait_zero_and_a_finished_execution_answer_at_once():
    queue, journal = make_queue()
    execution = submit(queue, 1)
    queue.park(journal.to("now"), execution, {"wait": 0})
    assert journal.sent_to("now")[0]["record"]["status"] == "queued"
    queue.start_next(None)
    queue.complete(execution, OK)
    queue.park(journal.to("later"), execution, {"wait": 30})
    assert journal.sent_to("later")[0]["record"]["status"] == "ok"


def test_a_wait_deadline_answers_with_the_record_so_far():
    queue, journal = make_queue()
    execution = submit(queue, 1)
    queue.start_next(None)
    queue.park(journal.to("poller"), execution, {"wait": 5})
    deadline = queue.deadlines()[0]
    assert deadline > time.monotonic()
    queue.expire_waiters(deadline - 1)
    assert journal.sent_to("poller") == []
    queue.expire_waiters(deadline)
    assert journal.sent_to("poller")[0]["record"]["status"] == "running"
    assert execution.waiters == [] and queue.deadlines() == []


def test_a_follower_gets_accepted_outputs_merged_then_the_record():
    queue, journal = make_queue()
    execution = submit(queue, 1)
    queue.start_next(None)
    queue.park(journal.to("follower"), execution, {"stream": True})
    assert queue.take_output(stream(1, "hello"))
    assert queue.take_text("stdout", "\n")  # a pipe write: the running execution's
    queue.flush_outbox()
    queue.complete(execution, OK)
    events = journal.sent_to("follower")
    assert [e["event"] for e in events] == ["accepted", "output", "record"], events
    assert events[1]["text"] == "hello\n"  # two pieces of one stream, one event
    assert events[2]["stdout"] == "hello\n"
    assert execution.subscribers == []


def test_output_of_a_finished_or_unknown_execution_is_not_taken():
    queue, _ = make_queue()
    execution = submit(queue, 1)
    assert not queue.take_output(stream(1, "early"))
    assert not queue.take_text("stdout", "no cell runs")
    queue.start_next(None)
    queue.complete(execution, OK)
    assert not queue.take_output(stream(1, "late"))
    assert execution.snapshot()["stdout"] == ""


def test_cancel_drops_a_queued_execution_and_flags_the_running_one():
    queue, journal = make_queue()
    running, queued = submit(queue, 1), submit(queue, 2)
    queue.start_next(None)
    queue.park(journal.to("waiter"), queued, {"wait": None})
    assert queue.cancel(queued) is False
    assert [c[0] for c in journal.calls] == ["persist", "answered", "send"]
    record = journal.sent_to("waiter")[0]["record"]
    assert (record["status"], record["reason"]) == ("aborted", "cancelled")
    assert queue.cancel(running) is True  # the caller interrupts it
    assert running.stop_reason == "cancelled" and queue.running is running
    assert queue.cancel(queued) is False  # finished already: nothing to do


def test_stop_on_error_aborts_what_was_queued_behind_the_failure():
    queue, journal = make_queue()
    failing = submit(queue, 1, stop_on_error=True)
    behind = [submit(queue, 2), submit(queue, 3)]
    queue.start_next(None)
    queue.complete(failing, FAILED)
    persisted = [(c[1], c[2]) for c in journal.calls if c[0] == "persist"]
    assert persisted == [(1, "error"), (2, "aborted"), (3, "aborted")]
    assert all(e.record["reason"] == "previous_error" for e in behind)
    assert "execution 1 failed" in behind[0].record["error"]["evalue"]
    assert queue.is_empty()
    # persisted all before any answer
    kinds = [c[0] for c in journal.calls]
    assert kinds.index("answered") > max(i for i, k in enumerate(kinds) if k == "persist")


def test_a_kernel_death_ends_the_running_and_queued_executions():
    queue, journal = make_queue()
    timed_out, queued = submit(queue, 1), submit(queue, 2)
    queue.start_next(None)
    timed_out.stop_reason = "timeout"
    reason, ended = queue.kernel_died("the kernel was killed by SIGKILL", 1.0, "; hint")
    assert reason == "timeout" and queue.is_empty()
    assert [(e.n, r["reason"]) for e, r in ended] == [(1, "timeout"), (2, "kernel_died")]
    assert ended[0][1]["error"]["evalue"].endswith("; hint")
    assert journal.calls == []  # the supervisor persists and answers, in its order


def test_abort_all_ends_everything_and_forget_drops_a_client():
    queue, journal = make_queue()
    running, queued = submit(queue, 1), submit(queue, 2)
    queue.start_next(None)
    queue.park(journal.to("gone"), running, {"wait": None})
    queue.park(journal.to("gone"), queued, {"stream": True})
    queue.park(journal.to("stays"), queued, {"wait": None})
    queue.forget("gone")
    assert running.waiters == [] and queued.subscribers == []
    queue.abort_all("cancelled", "ExecutionCancelled", "restarted")
    assert queue.is_empty()
    assert [m["record"]["status"] for m in journal.sent_to("stays")] == ["aborted"]
    assert all(m.get("event") == "accepted" for m in journal.sent_to("gone"))


def test_finished_executions_stay_findable_up_to_the_bound():
    queue, _ = make_queue(recent_kept=3)
    executions = [submit(queue, n) for n in range(1, 6)]
    for execution in executions:
        queue.start_next(None)
        queue.complete(execution, OK)
    assert sorted(queue.by_count) == [3, 4, 5]
    assert queue.find(n=5) is executions[-1] and queue.find(key=3) is executions[2]
    assert queue.find(n=1) is None


def test_late_output_merges_lines_names_counts_and_keeps_the_newest_bytes():
    late = LateOutput(limit=10)
    late.remember(7, 3)
    late.add(stream(7, "abc"))
    late.add(stream(7, "\n"))
    late.add({"type": "truncated", "parent": 7, "body": {}})
    assert [(e["execution_count"], e["text"]) for e in late.snapshot()] == [(3, "abc\n")]
    late.add({"type": "output", "body": {"output_type": "display_data",
                                         "data": {"text/plain": "0123456789"}}})
    entries = late.snapshot()
    assert sum(len(e["text"].encode()) for e in entries) <= 10
    assert entries[-1]["text"].endswith("789\n") and entries[-1]["execution_count"] is None
    assert late.unattributed_text() == entries[-1]["text"]
