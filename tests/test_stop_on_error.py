"""``stop_on_error`` on execute: a failing cell aborts what was queued behind it.

Real kernels.  The first cell waits for a file the test creates, so the cells
behind it are certainly queued when it fails; every wait is a long poll or a
poll with a hang guard.
"""

import os

from helpers import assert_problem, poll, run, submit, value, wait_for

HOLD = ("import os, time\n"
        "while not os.path.exists('go'):\n"
        "    time.sleep(0.005)\n")


def create(testapp, env_id):
    return testapp.put("/envs/" + env_id, status=201).json


def go(env):
    open(os.path.join(env["cwd"], "go"), "w").close()


def test_a_failing_cell_with_stop_on_error_aborts_the_queue_behind_it(testapp):
    env = create(testapp, "soe")
    failing = submit(testapp, "soe", HOLD + "1/0", stop_on_error=True)
    queued = [submit(testapp, "soe", "ran%d = True\nprint('ran')" % k) for k in range(2)]
    assert all(r["status"] == "queued" for r in queued), queued
    go(env)
    record = poll(testapp, "soe", failing["execution_count"])
    assert record["status"] == "error" and record["reason"] is None, record
    assert record["error"]["ename"] == "ZeroDivisionError"
    for q in queued:
        aborted = poll(testapp, "soe", q["execution_count"])
        assert aborted["status"] == "aborted", aborted
        assert aborted["reason"] == "previous_error", aborted
        assert aborted["error"]["ename"] == "ExecutionAborted", aborted
        assert str(failing["execution_count"]) in aborted["error"]["evalue"], aborted
        assert aborted["started"] is None and aborted["stdout"] == "", aborted
        assert aborted["outputs"][-1]["output_type"] == "error"
    # The aborted records are in the durable history too.
    page = testapp.get("/envs/soe/executions", {"since": queued[0]["execution_count"]}).json
    assert [r["reason"] for r in page["executions"]] == ["previous_error"] * 2, page
    # What is submitted afterwards runs normally; nothing of the aborted cells ran.
    assert value(testapp, "soe", "'ran0' in dir(), 'ran1' in dir()") == "(False, False)"
    assert testapp.get("/envs/soe").json["state"] == "idle"


def test_without_stop_on_error_the_queue_runs_after_an_error(testapp):
    env = create(testapp, "nosoe")
    failing = submit(testapp, "nosoe", HOLD + "1/0")
    queued = submit(testapp, "nosoe", "print('ran')")
    go(env)
    assert poll(testapp, "nosoe", failing["execution_count"])["status"] == "error"
    after = poll(testapp, "nosoe", queued["execution_count"])
    assert after["status"] == "ok" and after["stdout"] == "ran\n", after


def test_stop_on_error_on_a_cell_that_succeeds_aborts_nothing(testapp):
    env = create(testapp, "soeok")
    first = submit(testapp, "soeok", HOLD + "1", stop_on_error=True)
    queued = submit(testapp, "soeok", "print('ran')")
    go(env)
    assert poll(testapp, "soeok", first["execution_count"])["status"] == "ok"
    assert poll(testapp, "soeok", queued["execution_count"])["stdout"] == "ran\n"


def test_stop_on_error_of_a_queued_cell_applies_when_it_fails(testapp):
    env = create(testapp, "soe2")
    first = submit(testapp, "soe2", HOLD + "1")
    second = submit(testapp, "soe2", "raise KeyError('k')", stop_on_error="true")
    third = submit(testapp, "soe2", "print('third')")
    go(env)
    assert poll(testapp, "soe2", first["execution_count"])["status"] == "ok"
    failed = poll(testapp, "soe2", second["execution_count"])
    assert failed["status"] == "error" and failed["error"]["ename"] == "KeyError", failed
    aborted = poll(testapp, "soe2", third["execution_count"])
    assert (aborted["status"], aborted["reason"]) == ("aborted", "previous_error"), aborted
    assert str(second["execution_count"]) in aborted["error"]["evalue"]
    # Submitted after the failure: runs.
    record = run(testapp, "soe2", "print('later')", stop_on_error=True)
    assert record["status"] == "ok" and record["stdout"] == "later\n", record


def test_an_interrupted_cell_with_stop_on_error_aborts_the_queue(testapp):
    env = create(testapp, "soeint")
    first = submit(testapp, "soeint", "open('started', 'w').close()\n"
                                      "import time\ntime.sleep(1000)", stop_on_error=True)
    queued = submit(testapp, "soeint", "print('ran')")
    wait_for(lambda: os.path.exists(os.path.join(env["cwd"], "started")),
             message="the cell started")
    assert testapp.post("/envs/soeint/interrupt").status_int == 200
    record = poll(testapp, "soeint", first["execution_count"])
    assert (record["status"], record["reason"]) == ("error", "interrupted"), record
    aborted = poll(testapp, "soeint", queued["execution_count"])
    assert (aborted["status"], aborted["reason"]) == ("aborted", "previous_error"), aborted


def test_stop_on_error_must_be_a_boolean(testapp):
    create(testapp, "soebad")
    res = testapp.post_json("/envs/soebad/execute", {"code": "1", "stop_on_error": "maybe"},
                            expect_errors=True)
    assert_problem(res, 422, "invalid-parameter", param="stop_on_error")
    res = testapp.post("/envs/soebad/execute", {"code": "1", "stop_on_error": "1"})
    assert res.status_int == 200 and res.json["status"] == "ok", res.json


def test_stop_on_error_is_in_the_openapi_request_schema(testapp):
    document = testapp.get("/openapi.json").json
    body = document["paths"]["/envs/{id}/execute"]["post"]["requestBody"]["content"]
    # A boolean, which JSON may also spell 1/0 or (as in a form) yes/no: a list of types.
    assert "boolean" in body["application/json"]["schema"]["properties"]["stop_on_error"]["type"]
    reasons = document["components"]["schemas"]["ExecutionRecord"]["properties"]["reason"]
    assert "previous_error" in reasons["enum"]
