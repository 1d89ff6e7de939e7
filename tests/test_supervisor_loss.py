"""kill -9 of an env's supervisor (issue 15): in-flight executions end as 200 records,
``aborted`` / ``kernel_lost``, and history keeps them; execution counts never repeat."""

import json
import os
import signal

from helpers import HANG_GUARD, pid_alive, run, wait_for
from test_kernel_failures import Background, mark, supervisor_pid, wait_started


def create(testapp, env_id):
    return testapp.put("/envs/" + env_id).json


def kill_supervisor(app, env_id):
    pid = supervisor_pid(app, env_id)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), message="the supervisor gone")
    return pid


def test_an_execute_in_flight_when_the_supervisor_is_killed_gets_its_record(app, testapp):
    env = create(testapp, "orphan")
    run(testapp, "orphan", "x = 1")
    pending = Background(app, "orphan", mark() + "import time\ntime.sleep(%d)" % HANG_GUARD)
    wait_started(env)
    kill_supervisor(app, "orphan")

    res = pending.result()
    assert res.status_int == 200, res.body[:500]
    record = res.json
    assert record["status"] == "aborted" and record["reason"] == "kernel_lost", record
    assert record["execution_count"] == 2
    assert record["error"]["ename"] == "KernelLost"
    assert "supervisor" in record["error"]["evalue"]
    assert record["code"].endswith("time.sleep(%d)" % HANG_GUARD)
    assert record["finished"] is not None

    # history keeps it, in the same shape, and the env says what happened
    assert testapp.get("/envs/orphan/executions/2").json["reason"] == "kernel_lost"
    listing = testapp.get("/envs/orphan/executions").json["executions"]
    assert [(r["execution_count"], r["status"]) for r in listing] == [(1, "ok"), (2, "aborted")]
    env = testapp.get("/envs/orphan").json
    assert env["state"] == "dead" and env["reason"] == "kernel_lost", env

    # a restart goes on counting after the lost execution
    testapp.post("/envs/orphan/restart")
    assert run(testapp, "orphan", "1 + 1")["execution_count"] == 3


def test_queued_and_submitted_executions_are_kept_as_lost(app, testapp):
    env = create(testapp, "queue")
    running = testapp.post_json("/envs/queue/execute", {
        "code": mark() + "import time\ntime.sleep(%d)" % HANG_GUARD, "wait": 0}).json
    queued = testapp.post_json("/envs/queue/execute", {"code": "print('never')", "wait": 0}).json
    assert (running["execution_count"], queued["execution_count"]) == (1, 2)
    wait_started(env)
    kill_supervisor(app, "queue")
    wait_for(lambda: testapp.get("/envs/queue").json["state"] == "dead", message="dead")
    for n in (1, 2):
        record = testapp.get("/envs/queue/executions/%d" % n).json
        assert (record["status"], record["reason"]) == ("aborted", "kernel_lost"), record
    notebook = testapp.get("/envs/queue/notebook").json
    assert [c["execution_count"] for c in notebook["cells"]] == [1, 2]


def test_history_lines_of_accepted_executions_never_show_twice(testapp, state_dir):
    create(testapp, "plain")
    for code in ("a = 1", "a + 1", "print(a)"):
        run(testapp, "plain", code)
    listing = testapp.get("/envs/plain/executions").json["executions"]
    assert [r["execution_count"] for r in listing] == [1, 2, 3]
    assert all(r["status"] == "ok" for r in listing)
    assert all("request" not in r for r in listing)
    notebook = testapp.get("/envs/plain/notebook").json
    assert [c["execution_count"] for c in notebook["cells"]] == [1, 2, 3]
    with open(os.path.join(state_dir, "envs", "plain", "env.json")) as handle:
        assert json.load(handle)["execution_count"] <= 3
