"""Long-running work (issue 5, DESIGN 4.2): submit-and-poll, live streaming, attaching,
cancel, timeouts, limits, durable history and notebook export.

Real kernels throughout.  Every wait is bounded (helpers.wait_for, long-poll
``wait`` values, socket timeouts of HANG_GUARD); nothing asserts absolute
speed.  Where timing matters, arrival times are compared with each other, or
with lower bounds that the cell's own sleeps guarantee.  Streams are read with
http.client from a real ``scripts/serve.py`` so that each line is stamped when
it arrives; WebTest would only hand over the body once the response is done.
"""

import http.client
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest
import webtest

from helpers import HANG_GUARD, TOKEN, LiveServer, assert_problem, pid_alive, wait_for

SERVER_ARGS = ("--pool-size", "0", "--quiet")  # quiet: nobody reads the log pipe

COUNTING = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.5)"


# -- helpers ----------------------------------------------------------------------------

def client(app):
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})


def create(testapp, env_id, **body):
    res = testapp.put_json("/envs/%s" % env_id, body)
    assert res.status_int == 201, res.body[:500]
    assert res.json["state"] == "idle", res.json
    return res.json


def submit(testapp, env_id, code, **extra):
    """POST execute; the response whatever its status."""
    return testapp.post_json("/envs/%s/execute" % env_id, dict(extra, code=code),
                             expect_errors=True)


def run(testapp, env_id, code, **extra):
    """Execute to completion (200) and return the record."""
    res = submit(testapp, env_id, code, **extra)
    assert res.status_int == 200, (res.status, res.body[:500])
    return res.json


def value(testapp, env_id, code):
    record = run(testapp, env_id, code)
    assert record["status"] == "ok", record
    return record["result"]["text/plain"]


def accepted(res):
    """A 202 answer: its record so far (queued or running) and its Location."""
    assert res.status_int == 202, (res.status, res.body[:500])
    record = res.json
    assert record["status"] in ("queued", "running"), record
    assert record["finished"] is None, record
    assert res.headers["Location"].endswith(
        "/envs/%s/executions/%d" % (record["env"], record["execution_count"])), res.headers
    return record


def poll(testapp, env_id, n, wait=10):
    """Long-poll one execution until done (a 202 after ``wait`` fails the test)."""
    res = testapp.get("/envs/%s/executions/%d" % (env_id, n), {"wait": wait},
                      expect_errors=True)
    assert res.status_int == 200, (res.status, res.body[:500])
    assert res.json["status"] not in ("queued", "running"), res.json
    return res.json


def peek(testapp, env_id, n):
    """The record of execution ``n`` as it is now (wait=0: 200 or 202)."""
    res = testapp.get("/envs/%s/executions/%d" % (env_id, n), {"wait": 0}, expect_errors=True)
    assert res.status_int in (200, 202), (res.status, res.body[:500])
    return res.json


def stamp(text):
    """An ISO 8601 UTC timestamp of a record (…T10:00:00.123Z) as a datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def outputs_text(events):
    return "".join(e.get("text", "") for e in events if e["event"] == "output")


def output_kinds(events):
    """Output types in order, consecutive pieces of one stream counted once."""
    kinds = []
    for event in events:
        if event["event"] != "output":
            continue
        kind = event["output_type"]
        if kind == "stream":
            kind = "stream:" + event["name"]
        if not (kinds and kinds[-1] == kind and kind.startswith("stream:")):
            kinds.append(kind)
    return kinds


def release_code(flag, before="0", after=("1", "2")):
    """A cell that prints, waits (bounded) until ``flag`` exists, then prints more."""
    code = ("import os, time\n"
            "print(%r, flush=True)\n"
            "deadline = time.monotonic() + %r\n"
            "while not os.path.exists(%r) and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\n" % (before, HANG_GUARD, flag))
    for text in after:
        code += "time.sleep(0.1)\nprint(%r if os.path.exists(%r) else 'gave up', flush=True)\n" % (
            text, flag)
    return code


def release(flag):
    with open(flag, "w"):
        pass


class Stream:
    """One NDJSON response read line by line, each event stamped (monotonic) on arrival."""

    def __init__(self, live, method, path, body=None, headers=None):
        url = urlsplit(live.url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=HANG_GUARD)
        send = {"Authorization": "Bearer " + live.token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            send["Content-Type"] = "application/json"
        send.update(headers or {})
        self.conn.request(method, path, body=data, headers=send)
        self.response = self.conn.getresponse()
        self.events = []  # [(monotonic stamp, event)]

    @property
    def status(self):
        return self.response.status

    def header(self, name):
        return self.response.getheader(name) or ""

    def next_event(self):
        line = self.response.readline()
        if not line:
            return None
        assert line.endswith(b"\n"), line
        event = json.loads(line)
        self.events.append((time.monotonic(), event))
        return event

    def read_all(self):
        """Every remaining event until the server ends the response; the event list."""
        while self.next_event() is not None:
            pass
        return [event for _, event in self.events]

    def read_output(self, expected):
        """Read events until the output text so far is ``expected``; those events.

        One print() may arrive as several output events (its text and its newline
        are two writes), so text is compared, not events.
        """
        read, text = [], ""
        while text != expected:
            assert expected.startswith(text), (text, expected)
            event = self.next_event()
            assert event is not None, ("the stream ended early", read)
            read.append(event)
            if event["event"] == "output":
                text += event.get("text", "")
            else:
                assert event["event"] in ("accepted", "heartbeat"), event
        return read

    def stamps(self, kind):
        return [at for at, event in self.events if event.get("event") == kind]

    def close(self):
        self.response.close()
        self.conn.close()


def check_stream_shape(events):
    """accepted first, record last, every line an event, only known kinds between."""
    assert events, "no event at all"
    assert all("event" in event for event in events), events
    assert events[0]["event"] == "accepted", events[0]
    assert isinstance(events[0]["execution_count"], int)
    assert events[-1]["event"] == "record", events[-1]
    assert [e["event"] for e in events].count("accepted") == 1
    assert [e["event"] for e in events].count("record") == 1
    for event in events[1:-1]:
        assert event["event"] in ("output", "heartbeat"), event
        if event["event"] == "output":
            assert event["output_type"] in ("stream", "execute_result", "display_data",
                                            "error"), event
    record = events[-1]
    assert record["execution_count"] == events[0]["execution_count"]
    return record


@pytest.fixture(scope="module")
def live():
    """One real scripts/serve.py for the streaming tests of this module (per xdist worker)."""
    state = tempfile.mkdtemp(prefix="wk-lr-")
    os.chmod(state, 0o700)
    try:
        with LiveServer(*SERVER_ARGS, state_dir=state) as server:
            yield server
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def live_env(live, request):
    """A fresh env on the shared server, named after the test; deleted afterwards."""
    name = "lr-" + request.node.name[-50:]
    status, _, body = live.request("PUT", "/envs/" + name, {})
    assert status == 201, body
    try:
        yield name
    finally:
        live.request("DELETE", "/envs/" + name)


# -- submit and poll -------------------------------------------------------------------

def test_submit_poll_default_wait_long_poll_and_queue_order(make_test_app):
    testapp = client(make_test_app(default_wait=1))
    create(testapp, "poll")

    # 202 then poll: wait=0 answers at once with the record so far and a Location.
    res = submit(testapp, "poll", "import time\ntime.sleep(1)\n6 * 7", wait=0)
    record = accepted(res)
    assert record["started"] is None or record["status"] == "running"
    done = testapp.get(res.headers["Location"], {"wait": 10})
    assert done.status_int == 200
    assert done.json["status"] == "ok", done.json
    assert done.json["result"] == {"text/plain": "42"}
    assert done.json["execution_count"] == record["execution_count"]
    # An execution that does not exist is a 404, not a hang.
    assert_problem(testapp.get("/envs/poll/executions/999", {"wait": 1}, expect_errors=True),
                   404, "execution-not-found")

    # The default wait (default_wait=1 here): a 3 s cell answers 202 without a wait param.
    res = submit(testapp, "poll", "import time\ntime.sleep(3)\n'slow'")
    slow = accepted(res)
    assert slow["status"] == "running", slow
    assert poll(testapp, "poll", slow["execution_count"], wait=15)["result"] == {
        "text/plain": "'slow'"}

    # A long poll returns as soon as the cell finishes, long before its wait expires.
    short = accepted(submit(testapp, "poll", "import time\ntime.sleep(1)\n'short'", wait=0))
    begun = time.monotonic()
    res = testapp.get("/envs/poll/executions/%d" % short["execution_count"], {"wait": 60})
    elapsed = time.monotonic() - begun
    returned = datetime.now(timezone.utc)
    assert res.status_int == 200 and res.json["status"] == "ok", res.json
    assert res.json["result"] == {"text/plain": "'short'"}
    assert elapsed < HANG_GUARD < 60, elapsed  # it did not sit out its 60 s wait
    assert stamp(res.json["finished"]) <= returned

    # Three queued executions run in submission order, one after the other.
    records = [accepted(submit(testapp, "poll", "import time\ntime.sleep(0.5)\nprint(%d)" % k,
                               wait=0)) for k in range(3)]
    assert all(r["status"] in ("queued", "running") for r in records), records
    assert records[2]["status"] == "queued", records  # two ahead of it, 0.5 s each
    finished = [poll(testapp, "poll", r["execution_count"]) for r in records]
    assert [r["stdout"] for r in finished] == ["0\n", "1\n", "2\n"]
    assert all(r["status"] == "ok" for r in finished), finished
    counts = [r["execution_count"] for r in finished]
    assert counts == sorted(counts) and len(set(counts)) == 3, counts
    assert counts[0] > short["execution_count"]
    for before, after in zip(finished, finished[1:]):
        assert stamp(after["queued_at"]) >= stamp(before["queued_at"])
        assert stamp(after["started"]) >= stamp(before["finished"]), (before, after)
        assert stamp(after["finished"]) > stamp(before["finished"])
    for record in finished:
        assert stamp(record["queued_at"]) <= stamp(record["started"]) <= stamp(record["finished"])


# -- streaming ---------------------------------------------------------------------------

def test_stream_shows_output_before_the_cell_ends(live, live_env):
    stream = Stream(live, "POST", "/envs/%s/execute" % live_env,
                    {"code": COUNTING, "stream": True})
    try:
        assert stream.status == 200
        assert stream.header("Content-Type").startswith("application/x-ndjson")
        events = stream.read_all()
    finally:
        stream.close()
    record = check_stream_shape(events)
    assert record["status"] == "ok", record
    assert record["stdout"] == "0\n1\n2\n"
    assert outputs_text(events) == "0\n1\n2\n"

    outputs, (record_at,) = stream.stamps("output"), stream.stamps("record")
    assert len(outputs) >= 2, events  # prints 0.5 s apart are not sent as one line
    assert outputs[0] < outputs[-1] < record_at
    # The cell sleeps 1.5 s after its first print: output that arrives as it happens
    # reaches us at least that long (minus a margin) before the record.
    assert record_at - outputs[0] >= 1.0, (outputs, record_at)


def test_stream_by_accept_header_and_query(live, live_env):
    stream = Stream(live, "POST", "/envs/%s/execute" % live_env,
                    {"code": "print('via accept')\n1 + 1"},
                    headers={"Accept": "application/x-ndjson"})
    try:
        assert stream.status == 200
        assert stream.header("Content-Type").startswith("application/x-ndjson")
        events = stream.read_all()
    finally:
        stream.close()
    record = check_stream_shape(events)
    assert record["status"] == "ok" and record["result"] == {"text/plain": "2"}, record
    assert output_kinds(events) == ["stream:stdout", "execute_result"], events
    assert outputs_text(events) == "via accept\n"

    stream = Stream(live, "POST", "/envs/%s/execute?stream=1" % live_env, {"code": "print(3)"})
    try:
        assert stream.header("Content-Type").startswith("application/x-ndjson")
        events = stream.read_all()
    finally:
        stream.close()
    assert check_stream_shape(events)["stdout"] == "3\n"


def test_second_client_attaching_mid_run_gets_earlier_output_then_the_rest(live, live_env):
    status, _, env = live.request("GET", "/envs/" + live_env)
    flag = os.path.join(env["cwd"], "release-attach")
    first = Stream(live, "POST", "/envs/%s/execute" % live_env,
                   {"code": release_code(flag), "stream": True})
    second = None
    try:
        start = first.read_output("0\n")[0]
        assert start["event"] == "accepted", start
        n = start["execution_count"]
        # The cell now waits for the flag: whatever the second client sees of "0"
        # is a replay, and "1" / "2" can only reach it live.
        second = Stream(live, "GET", "/envs/%s/executions/%d?stream=1" % (live_env, n))
        assert second.status == 200
        assert second.header("Content-Type").startswith("application/x-ndjson")
        replayed = second.read_output("0\n")
        attached = replayed[0]
        assert attached["event"] == "accepted", attached
        assert attached["execution_count"] == n and attached["status"] == "running", attached
        replay_count = len(second.stamps("output"))
        release(flag)
        seen_by_second = second.read_all()
        seen_by_first = first.read_all()
    finally:
        first.close()
        if second is not None:
            second.close()
    record = check_stream_shape(seen_by_second)
    assert check_stream_shape(seen_by_first) == record  # the same final record
    assert record["status"] == "ok" and record["stdout"] == "0\n1\n2\n", record
    assert outputs_text(seen_by_second) == "0\n1\n2\n"
    assert outputs_text(seen_by_first) == "0\n1\n2\n"
    live_outputs = second.stamps("output")[replay_count:]
    assert live_outputs, seen_by_second  # the rest came after the replay
    assert second.stamps("output")[0] < live_outputs[0] <= second.stamps("record")[0]

    # Attaching after the end (here by Accept header) replays everything, then the record.
    third = Stream(live, "GET", "/envs/%s/executions/%d" % (live_env, n),
                   headers={"Accept": "application/x-ndjson"})
    try:
        assert third.status == 200
        replay = third.read_all()
    finally:
        third.close()
    assert check_stream_shape(replay) == record
    assert replay[0]["status"] == "ok"
    assert outputs_text(replay) == "0\n1\n2\n"


def test_client_disconnect_mid_stream_then_poll(live, live_env):
    status, _, env = live.request("GET", "/envs/" + live_env)
    flag = os.path.join(env["cwd"], "release-disconnect")
    stream = Stream(live, "POST", "/envs/%s/execute" % live_env,
                    {"code": release_code(flag), "stream": True})
    try:
        n = stream.read_output("0\n")[0]["execution_count"]
    finally:
        stream.close()  # the client goes away mid-run
    release(flag)
    status, _, record = live.request("GET", "/envs/%s/executions/%d?wait=10" % (live_env, n))
    assert status == 200, record
    assert record["status"] == "ok", record
    assert record["stdout"] == "0\n1\n2\n"  # nothing lost, and the cell ran to its end
    status, _, listed = live.request("GET", "/envs/%s/executions?since=%d" % (live_env, n))
    assert [r["execution_count"] for r in listed["executions"]] == [n]
    assert listed["executions"][0]["stdout"] == "0\n1\n2\n"
    # The env and the server go on serving.
    status, _, after = live.request("POST", "/envs/%s/execute" % live_env, {"code": "1 + 1"})
    assert status == 200 and after["result"] == {"text/plain": "2"}, after
    assert after["execution_count"] == n + 1


# -- cancel --------------------------------------------------------------------------------

def test_cancel_queued_and_running(testapp):
    create(testapp, "cancel")
    run(testapp, "cancel", "kept = 'before'")
    running = accepted(submit(testapp, "cancel",
                              "import time\nprint('started', flush=True)\nreached = True\n"
                              "time.sleep(30)\nnever = True", wait=0))
    queued = accepted(submit(testapp, "cancel", "ran = True\nprint('ran')", wait=0))
    assert queued["status"] == "queued", queued

    res = testapp.post("/envs/cancel/executions/%d/cancel" % queued["execution_count"])
    assert res.status_int == 200
    dropped = poll(testapp, "cancel", queued["execution_count"])
    assert dropped["status"] == "aborted" and dropped["reason"] == "cancelled", dropped
    assert dropped["started"] is None and dropped["stdout"] == "", dropped  # it never ran
    assert dropped["error"]["ename"] == "ExecutionCancelled", dropped

    # Cancel the running one once it is really inside the cell.
    wait_for(lambda: "started" in peek(testapp, "cancel", running["execution_count"])["stdout"],
             message="the cell to start")
    res = testapp.post("/envs/cancel/executions/%d/cancel" % running["execution_count"])
    assert res.status_int == 200
    assert res.json["execution_count"] == running["execution_count"]
    stopped = poll(testapp, "cancel", running["execution_count"])
    assert stopped["status"] == "aborted" and stopped["reason"] == "cancelled", stopped
    assert stopped["error"]["ename"] == "ExecutionCancelled", stopped
    assert stopped["started"] is not None and stopped["stdout"] == "started\n"

    # The namespace survives: what was set before (and in the cell before it stopped).
    assert value(testapp, "cancel", "kept, reached, 'never' in dir(), 'ran' in dir()") == (
        "('before', True, False, False)")
    assert testapp.get("/envs/cancel").json["state"] == "idle"
    # Cancelling a finished execution changes nothing; an unknown one is a 404.
    res = testapp.post("/envs/cancel/executions/%d/cancel" % running["execution_count"])
    assert res.json["status"] == "aborted" and res.json["reason"] == "cancelled"
    assert_problem(testapp.post("/envs/cancel/executions/9999/cancel", expect_errors=True),
                   404, "execution-not-found")


# -- timeouts --------------------------------------------------------------------------------

def test_timeout_interrupts_and_keeps_the_namespace(testapp):
    env = create(testapp, "timeout")
    run(testapp, "timeout", "kept = 41")
    record = run(testapp, "timeout", "import time\nbefore_sleep = True\ntime.sleep(10)",
                 timeout=0.5)
    assert record["status"] == "aborted" and record["reason"] == "timeout", record
    assert record["error"]["ename"] == "ExecutionTimeout", record
    assert record["outputs"][-1]["output_type"] == "error"
    assert value(testapp, "timeout", "kept + 1, before_sleep") == "(42, True)"
    after = testapp.get("/envs/timeout").json
    assert after["state"] == "idle" and after["pid"] == env["pid"], after


def test_timeout_kill_marks_env_dead(testapp):
    env = create(testapp, "stubborn")
    record = run(testapp, "stubborn",
                 "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                 "while True:\n    pass", timeout=0.5)
    assert record["status"] == "aborted" and record["reason"] == "timeout", record
    assert record["error"]["ename"] == "ExecutionTimeout", record
    assert "restart" in record["error"]["evalue"], record
    wait_for(lambda: not pid_alive(env["pid"]), message="the killed kernel to be gone")
    dead = testapp.get("/envs/stubborn").json
    assert dead["state"] == "dead" and dead["reason"] == "timeout", dead
    body = assert_problem(submit(testapp, "stubborn", "1"), 409)
    assert "restart" in body["detail"], body
    # The record is kept, and a restart brings the env back with a fresh count.
    assert poll(testapp, "stubborn", record["execution_count"])["reason"] == "timeout"
    assert testapp.post("/envs/stubborn/restart").json["state"] == "idle"
    again = run(testapp, "stubborn", "1 + 1")
    assert again["status"] == "ok" and again["execution_count"] > record["execution_count"]


# -- quotas ------------------------------------------------------------------------------------

def test_max_queue_and_max_timeout(make_test_app):
    testapp = client(make_test_app(max_queue=1, max_timeout=5))
    create(testapp, "quota")
    running = accepted(submit(testapp, "quota",
                              "import time\nprint('go', flush=True)\ntime.sleep(30)", wait=0))
    wait_for(lambda: peek(testapp, "quota", running["execution_count"])["status"] == "running",
             message="the first execution to run")
    queued = accepted(submit(testapp, "quota", "'second'", wait=0))
    assert queued["status"] == "queued", queued
    res = submit(testapp, "quota", "'third'", wait=0)
    body = assert_problem(res, 429, "quota-exceeded")
    assert int(res.headers["Retry-After"]) >= 0
    assert body.get("quota") == "max_queue", body
    assert_problem(submit(testapp, "quota", "1", timeout=10), 422, "invalid-parameter",
                   param="timeout")
    # Nothing of the refused ones ran or was queued; the listing shows the live ones.
    assert testapp.get("/envs/quota").json["queued"] == 1
    listed = testapp.get("/envs/quota/executions").json
    assert [(r["execution_count"], r["status"]) for r in listed["executions"]] == [
        (running["execution_count"], "running"), (queued["execution_count"], "queued")]
    for n in (queued["execution_count"], running["execution_count"]):
        testapp.post("/envs/quota/executions/%d/cancel" % n)
    assert poll(testapp, "quota", queued["execution_count"])["reason"] == "cancelled"
    assert poll(testapp, "quota", running["execution_count"])["reason"] == "cancelled"
    assert value(testapp, "quota", "'at the max'") == "'at the max'"
    assert run(testapp, "quota", "5", timeout=5)["status"] == "ok"  # the max itself is fine


# -- limits ------------------------------------------------------------------------------------

def test_memory_limit_gives_memoryerror_and_the_kernel_survives(testapp):
    env = create(testapp, "memory", memory_limit="512MiB")
    assert env["limits"]["memory_limit"] == 512 * 1024 ** 2, env
    record = run(testapp, "memory", "x = bytearray(10**9)")
    assert record["status"] == "error", record
    assert record["error"]["ename"] == "MemoryError", record
    after = testapp.get("/envs/memory").json
    assert after["state"] == "idle" and after["pid"] == env["pid"], after
    assert value(testapp, "memory", "'x' in dir(), len(bytearray(10**6))") == "(False, 1000000)"


def test_file_size_limit_is_an_error_in_the_cell(testapp):
    env = create(testapp, "fsize", file_size_limit=10000)
    assert env["limits"]["file_size_limit"] == 10000, env
    record = run(testapp, "fsize", "with open('big.bin', 'wb') as f:\n    f.write(b'x' * 20000)")
    assert record["status"] == "error", record
    error = record["error"]
    assert error["ename"] in ("OSError", "IOError"), error
    assert "File too large" in error["evalue"] or "27" in error["evalue"], error
    after = testapp.get("/envs/fsize").json
    assert after["state"] == "idle" and after["pid"] == env["pid"], after
    assert value(testapp, "fsize", "import os\nos.path.getsize('big.bin') <= 10000") == "True"


def test_limits_above_the_server_maxima_are_422(make_test_app):
    testapp = client(make_test_app(memory_limit="1GiB"))
    body = assert_problem(testapp.put_json("/envs/greedy", {"memory_limit": "2GiB"},
                                           expect_errors=True), 422, "invalid-parameter")
    assert body["param"] == "memory_limit", body
    assert_problem(testapp.get("/envs/greedy", expect_errors=True), 404)  # not created
    within = create(testapp, "modest", memory_limit="512MiB")
    assert within["limits"]["memory_limit"] == 512 * 1024 ** 2, within


# -- durable history ---------------------------------------------------------------------------

def listing(get, env_id, **query):
    path = "/envs/%s/executions" % env_id
    if query:
        path += "?" + "&".join("%s=%s" % item for item in query.items())
    return get(path)


def page_through(get, env_id, limit):
    """Every record by following ``next``; also the pages' sizes."""
    collected, sizes, since = [], [], 0
    for _ in range(100):
        page = listing(get, env_id, since=since, limit=limit)
        assert set(page) == {"executions", "next"}, page
        collected += page["executions"]
        sizes.append(len(page["executions"]))
        if page["next"] is None:
            return collected, sizes
        assert page["next"] > page["executions"][-1]["execution_count"]
        since = page["next"]
    raise AssertionError("paging did not end")


def test_history_pages_and_survives_kill_9_of_the_kernel(app, testapp, state_dir):
    env = create(testapp, "hist")
    done = [run(testapp, "hist", code) for code in ("a = 1", "print('two')", "a + 1")]
    # The victim's own request waits for it (parked in the kernel from the start), so its
    # answer comes from the supervisor once the record is final and stored.  A poll sent
    # just after the kill can race the supervisor, which marks env.json dead before it
    # appends the aborted record to history.jsonl: such a poll gets a transient 404.
    code = "import time\nprint('start', flush=True)\ntime.sleep(30)"
    answer = {}
    waiter = threading.Thread(target=lambda: answer.update(res=submit(
        client(app), "hist", code, wait=HANG_GUARD)), daemon=True)
    waiter.start()

    def started():
        live = testapp.get("/envs/hist/executions", {"since": 4}).json["executions"]
        return live and live[0]["stdout"] == "start\n" and live[0]
    victim = wait_for(started, message="the cell to start")
    assert victim["status"] == "running" and victim["code"] == code, victim
    os.kill(env["pid"], signal.SIGKILL)
    waiter.join(HANG_GUARD + 5)
    assert not waiter.is_alive(), "the execute request did not return"
    assert answer["res"].status_int == 200, answer["res"]
    died = answer["res"].json
    assert died["execution_count"] == victim["execution_count"]
    assert died["status"] == "aborted" and died["reason"] == "kernel_died", died
    assert died["stdout"] == "start\n", died
    assert died["error"]["ename"] == "KernelDied", died
    assert poll(testapp, "hist", victim["execution_count"]) == died
    wait_for(lambda: testapp.get("/envs/hist").json["state"] == "dead", message="env dead")
    assert os.path.exists(os.path.join(state_dir, "envs", "hist", "history.jsonl"))

    def get(path):
        res = testapp.get(path)
        assert res.status_int == 200
        return res.json

    listed = get("/envs/hist/executions")["executions"]
    assert [r["execution_count"] for r in listed] == [
        r["execution_count"] for r in done] + [victim["execution_count"]]
    assert listed[:3] == done  # the records as they were answered
    assert listed[3]["reason"] == "kernel_died"

    restarted = testapp.post("/envs/hist/restart").json
    assert restarted["state"] == "idle" and restarted["session"] == 2, restarted
    after = run(testapp, "hist", "print('after')")
    assert after["status"] == "ok" and after["session"] == 2
    assert after["execution_count"] > victim["execution_count"]
    assert get("/envs/hist/executions/%d" % victim["execution_count"])["reason"] == "kernel_died"

    everything = get("/envs/hist/executions")
    assert everything["next"] is None
    records = everything["executions"]
    assert records[:4] == listed
    counts = [r["execution_count"] for r in records]
    assert counts == sorted(set(counts)) and len(counts) == 5, counts

    paged, sizes = page_through(get, "hist", limit=2)
    assert paged == records and sizes == [2, 2, 1], sizes
    first = listing(get, "hist", limit=2)
    assert first["next"] == counts[2], first
    middle = listing(get, "hist", since=counts[1], limit=1)
    assert middle == {"executions": [records[1]], "next": counts[2]}
    assert listing(get, "hist", since=counts[-1] + 1) == {"executions": [], "next": None}


def test_history_is_bounded_by_history_limit_oldest_first(make_test_app):
    testapp = client(make_test_app(history_limit=3))
    create(testapp, "bounded")
    counts = [run(testapp, "bounded", str(k))["execution_count"] for k in range(5)]
    listed = testapp.get("/envs/bounded/executions").json
    assert [r["execution_count"] for r in listed["executions"]] == counts[-3:], listed
    assert testapp.post("/envs/bounded/restart").json["state"] == "idle"
    assert run(testapp, "bounded", "'next'")["execution_count"] > counts[-1]


def parent_pid(pid):
    with open("/proc/%d/stat" % pid) as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def test_execution_count_never_repeats_after_the_whole_kernel_is_killed(testapp):
    """kill -9 of both kernel processes (supervisor and user code) mid-cell: the 202's
    Location must not later name a different execution."""
    env = create(testapp, "crash")
    assert run(testapp, "crash", "'before'")["status"] == "ok"
    code = "import time\nprint('start', flush=True)\ntime.sleep(30)"
    inflight = accepted(submit(testapp, "crash", code, wait=0))
    n = inflight["execution_count"]
    wait_for(lambda: peek(testapp, "crash", n)["stdout"] == "start\n", message="the cell to start")
    supervisor = parent_pid(env["pid"])
    os.kill(supervisor, signal.SIGKILL)
    os.kill(env["pid"], signal.SIGKILL)
    wait_for(lambda: testapp.get("/envs/crash").json["state"] == "dead", message="env dead")
    assert testapp.post("/envs/crash/restart").json["state"] == "idle"
    after = run(testapp, "crash", "'after'")
    assert after["execution_count"] > n, (after["execution_count"], n)  # never repeats
    res = testapp.get("/envs/crash/executions/%d" % n, expect_errors=True)
    assert res.status_int == 404 or res.json["code"] == code, res.json  # not someone else's


def test_history_survives_a_restart_of_the_server(state_dir):
    with LiveServer(*SERVER_ARGS, state_dir=state_dir) as live:
        assert live.request("PUT", "/envs/durable", {})[0] == 201
        before = []
        for code in ("x = 1", "print('hi')\nx + 1"):
            status, _, record = live.request("POST", "/envs/durable/execute", {"code": code})
            assert status == 200 and record["status"] == "ok", record
            before.append(record)
        status, _, listed = live.request("GET", "/envs/durable/executions")
        assert listed == {"executions": before, "next": None}
    assert live.proc.returncode == 0

    with LiveServer(*SERVER_ARGS, state_dir=state_dir) as live:
        status, _, env = live.request("GET", "/envs/durable")
        assert status == 200 and env["state"] == "stopped", env
        status, _, listed = live.request("GET", "/envs/durable/executions")
        assert status == 200 and listed == {"executions": before, "next": None}, listed
        status, _, one = live.request("GET", "/envs/durable/executions/%d"
                                      % before[1]["execution_count"])
        assert status == 200 and one == before[1]
        status, _, env = live.request("POST", "/envs/durable/restart")
        assert status == 200 and env["state"] == "idle", env
        status, _, record = live.request("POST", "/envs/durable/execute",
                                         {"code": "print('again')"})
        assert status == 200 and record["status"] == "ok", record
        assert record["execution_count"] > before[-1]["execution_count"]  # never repeats
        status, _, listed = live.request("GET", "/envs/durable/executions")
        counts = [r["execution_count"] for r in listed["executions"]]
        assert listed["executions"][:2] == before and len(counts) == 3
        assert counts == sorted(set(counts)), counts
    assert live.proc.returncode == 0


# -- notebook export -----------------------------------------------------------------------------

CELL_ID = re.compile(r"^[a-zA-Z0-9-_]+$")
OUTPUT_KEYS = {  # output_type: (required keys, allowed keys) of the nbformat v4 schema
    "stream": ({"output_type", "name", "text"}, {"output_type", "name", "text"}),
    "execute_result": ({"output_type", "execution_count", "data", "metadata"},
                       {"output_type", "execution_count", "data", "metadata"}),
    "display_data": ({"output_type", "data", "metadata"},
                     {"output_type", "data", "metadata", "transient"}),
    "error": ({"output_type", "ename", "evalue", "traceback"},
              {"output_type", "ename", "evalue", "traceback"}),
}


def is_multiline(value):
    return isinstance(value, str) or (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value))


def check_keys(thing, required, allowed, where):
    keys = set(thing)
    assert required <= keys, (where, "missing", required - keys)
    assert keys <= allowed, (where, "not allowed", keys - allowed)


def check_mimebundle(data, where):
    assert isinstance(data, dict), where
    for mime, content in data.items():
        assert re.match(r"^[a-zA-Z0-9.+-]+/[a-zA-Z0-9.+-]+$", mime), (where, mime)
        if not mime.endswith("json"):
            assert is_multiline(content), (where, mime, content)


def check_nbformat_v4(nb):
    """The required (and allowed) keys and types of the nbformat 4.5 schema, by hand."""
    check_keys(nb, {"nbformat", "nbformat_minor", "metadata", "cells"},
               {"nbformat", "nbformat_minor", "metadata", "cells"}, "notebook")
    assert nb["nbformat"] == 4
    assert isinstance(nb["nbformat_minor"], int) and nb["nbformat_minor"] >= 5  # cell ids
    assert isinstance(nb["metadata"], dict) and isinstance(nb["cells"], list)
    if "kernelspec" in nb["metadata"]:
        assert {"name", "display_name"} <= set(nb["metadata"]["kernelspec"])
    if "language_info" in nb["metadata"]:
        assert "name" in nb["metadata"]["language_info"]
    ids = []
    for index, cell in enumerate(nb["cells"]):
        where = "cell %d" % index
        assert isinstance(cell, dict), where
        if cell.get("cell_type") == "code":
            keys = {"id", "cell_type", "metadata", "source", "outputs", "execution_count"}
            check_keys(cell, keys, keys, where)
            count = cell["execution_count"]
            assert count is None or (isinstance(count, int) and count >= 0), where
            assert isinstance(cell["outputs"], list), where
            for out_index, output in enumerate(cell["outputs"]):
                out_where = "%s output %d" % (where, out_index)
                assert output.get("output_type") in OUTPUT_KEYS, (out_where, output)
                required, allowed = OUTPUT_KEYS[output["output_type"]]
                check_keys(output, required, allowed, out_where)
                if output["output_type"] == "stream":
                    assert output["name"] in ("stdout", "stderr"), out_where
                    assert is_multiline(output["text"]), out_where
                elif output["output_type"] == "error":
                    assert isinstance(output["ename"], str), out_where
                    assert isinstance(output["evalue"], str), out_where
                    assert all(isinstance(line, str) for line in output["traceback"]), out_where
                else:
                    check_mimebundle(output["data"], out_where)
                    assert isinstance(output["metadata"], dict), out_where
                    if output["output_type"] == "execute_result":
                        assert output["execution_count"] is None or isinstance(
                            output["execution_count"], int), out_where
        elif cell.get("cell_type") in ("markdown", "raw"):
            check_keys(cell, {"id", "cell_type", "metadata", "source"},
                       {"id", "cell_type", "metadata", "source", "attachments"}, where)
        else:
            raise AssertionError("%s: unknown cell_type %r" % (where, cell.get("cell_type")))
        assert isinstance(cell["metadata"], dict), where
        assert is_multiline(cell["source"]), where
        assert isinstance(cell["id"], str) and 1 <= len(cell["id"]) <= 64, where
        assert CELL_ID.match(cell["id"]), (where, cell["id"])
        ids.append(cell["id"])
    assert len(ids) == len(set(ids)), ids  # cell ids are unique within a notebook


def source(cell):
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def test_notebook_export_of_a_session_with_a_restart(testapp):
    create(testapp, "nb")
    codes = ["print('hello')\n6 * 7", "display('shown')",
             "import sys\nprint('careful', file=sys.stderr)", "1 / 0"]
    first = [run(testapp, "nb", code) for code in codes]
    assert testapp.post("/envs/nb/restart").json["session"] == 2
    second = run(testapp, "nb", "print('after restart')\n'x'")

    res = testapp.get("/envs/nb/notebook")
    assert res.status_int == 200
    assert res.headers["Content-Type"].split(";")[0] in ("application/x-ipynb+json",
                                                         "application/json")
    disposition = res.headers["Content-Disposition"]
    assert disposition.startswith("attachment"), disposition
    assert 'filename="nb.ipynb"' in disposition, disposition
    nb = json.loads(res.body)
    check_nbformat_v4(nb)

    kinds = [cell["cell_type"] for cell in nb["cells"]]
    assert kinds == ["code"] * 4 + ["markdown", "code"], kinds
    code_cells = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    for cell, record in zip(code_cells, first + [second]):
        assert source(cell) == record["code"]
        assert cell["execution_count"] == record["execution_count"]
    counts = [cell["execution_count"] for cell in code_cells]
    assert counts == sorted(set(counts)), counts  # never repeated across the restart
    marker = nb["cells"][4]
    assert "restart" in source(marker).lower(), marker

    by_type = [[o["output_type"] for o in cell["outputs"]] for cell in code_cells]
    assert by_type == [["stream", "execute_result"], ["display_data"], ["stream"], ["error"],
                       ["stream", "execute_result"]], by_type
    hello = code_cells[0]["outputs"]
    assert hello[0]["name"] == "stdout" and "".join(hello[0]["text"]) == "hello\n"
    assert hello[1]["data"] == {"text/plain": "42"}
    assert hello[1]["execution_count"] == code_cells[0]["execution_count"]
    assert code_cells[1]["outputs"][0]["data"]["text/plain"] == "'shown'"
    assert code_cells[2]["outputs"][0]["name"] == "stderr"
    assert code_cells[3]["outputs"][0]["ename"] == "ZeroDivisionError"
    assert "".join(code_cells[4]["outputs"][0]["text"]) == "after restart\n"

    try:
        import nbformat
    except ImportError:
        nbformat = None  # not installed here: the structural check above stands alone
    if nbformat is not None:
        nbformat.validate(nbformat.reads(res.text, as_version=4))

    assert_problem(testapp.get("/envs/nobody/notebook", expect_errors=True), 404,
                   "env-not-found")
