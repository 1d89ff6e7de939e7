"""Interrupts: what ``reason: interrupted`` means, and when POST /interrupt answers.

- ``reason: interrupted`` only when an interrupt was requested for that
  execution (POST /envs/{id}/interrupt); a KeyboardInterrupt the code raised
  itself is an ordinary error (``reason: null``).
- POST /envs/{id}/interrupt answers once the interrupted execution has ended
  (bounded by min(2 s, kill_grace)); the env it shows is the state after it.

Real kernels; cells signal that they started by creating a file; every wait is
a poll with a hang guard.
"""

import os

import pytest
import webtest

from helpers import TOKEN, run, value, wait_for

STARTED = "open('started', 'w').close()\n"


@pytest.fixture
def patient(make_test_app):
    """A client of an app with kill_grace=5: an interrupt's answer may wait 2 s."""
    return webtest.TestApp(make_test_app(kill_grace=5),
                           extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})


def create(testapp, env_id):
    return testapp.put("/envs/" + env_id, status=201).json


def wait_started(env, name="started"):
    wait_for(lambda: os.path.exists(os.path.join(env["cwd"], name)), message="cell started")


def submit(testapp, env_id, code):
    res = testapp.post_json("/envs/%s/execute" % env_id, {"code": code, "wait": 0})
    assert res.status_int == 202, res.body[:500]
    return res.json


def peek(testapp, env_id, n):
    return testapp.get("/envs/%s/executions/%d" % (env_id, n), {"wait": 0}).json


def poll(testapp, env_id, n):
    res = testapp.get("/envs/%s/executions/%d" % (env_id, n), {"wait": 30})
    assert res.status_int == 200, res.body[:500]
    return res.json


# -- item: a KeyboardInterrupt the user raised is an ordinary error ---------------------------

def test_raise_keyboardinterrupt_is_an_ordinary_error(testapp):
    create(testapp, "kbd")
    for code, evalue in (("raise KeyboardInterrupt", ""),
                         ("raise KeyboardInterrupt('mine')", "mine")):
        record = run(testapp, "kbd", code)
        assert record["status"] == "error", record
        assert record["reason"] is None, record
        assert record["error"]["ename"] == "KeyboardInterrupt", record
        assert record["error"]["evalue"] == evalue, record
        assert record["outputs"][-1]["output_type"] == "error"


def test_a_sigint_the_cell_sends_itself_is_an_ordinary_error(testapp):
    create(testapp, "selfint")
    record = run(testapp, "selfint",
                 "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)")
    assert record["status"] == "error" and record["reason"] is None, record
    assert record["error"]["ename"] == "KeyboardInterrupt", record


def test_requested_interrupt_still_says_interrupted(testapp):
    env = create(testapp, "req")
    pending = submit(testapp, "req", STARTED + "import time\ntime.sleep(1000)")
    wait_started(env)
    assert testapp.post("/envs/req/interrupt").status_int == 200
    record = poll(testapp, "req", pending["execution_count"])
    assert (record["status"], record["reason"]) == ("error", "interrupted"), record
    assert record["error"]["ename"] == "KeyboardInterrupt"
    # The next cell raising KeyboardInterrupt itself is not "interrupted".
    again = run(testapp, "req", "raise KeyboardInterrupt")
    assert (again["status"], again["reason"]) == ("error", None), again


# -- item: the interrupt answer waits for the interrupted execution ---------------------------

def test_interrupt_answers_after_the_cell_ended(patient):
    testapp = patient
    env = create(testapp, "ans")
    run(testapp, "ans", "kept = 1")
    # The cell takes a moment to clean up after the KeyboardInterrupt.  It says it has
    # started from inside the try: an interrupt that came before it would skip the finally
    # (seen under load in CI).
    pending = submit(testapp, "ans",
                     "import time\n"
                     "try:\n"
                     "    " + STARTED +
                     "    time.sleep(1000)\n"
                     "finally:\n"
                     "    time.sleep(0.1)\n"
                     "    print('cleaned up')")
    wait_started(env)
    res = testapp.post("/envs/ans/interrupt")
    assert res.status_int == 200
    assert res.json["id"] == "ans"
    assert res.json["state"] == "idle", res.json
    assert res.json["queued"] == 0
    # The record was final before the answer.
    record = peek(testapp, "ans", pending["execution_count"])
    assert (record["status"], record["reason"]) == ("error", "interrupted"), record
    assert record["stdout"] == "cleaned up\n", record
    assert value(testapp, "ans", "kept") == "1"


def test_interrupt_answer_shows_the_next_queued_cell_running(patient):
    testapp = patient
    env = create(testapp, "ansq")
    first = submit(testapp, "ansq", STARTED + "import time\ntime.sleep(1000)")
    second = submit(testapp, "ansq", "open('second', 'w').close()\n"
                                     "import time\ntime.sleep(1000)")
    wait_started(env)
    res = testapp.post("/envs/ansq/interrupt")
    assert res.status_int == 200
    assert res.json["state"] == "busy" and res.json["queued"] == 0, res.json
    record = peek(testapp, "ansq", first["execution_count"])
    assert (record["status"], record["reason"]) == ("error", "interrupted"), record
    assert peek(testapp, "ansq", second["execution_count"])["status"] == "running"
    wait_started(env, "second")
    # Interrupting again stops the second one.
    res = testapp.post("/envs/ansq/interrupt")
    assert res.status_int == 200 and res.json["state"] == "idle", res.json
    record = peek(testapp, "ansq", second["execution_count"])
    assert (record["status"], record["reason"]) == ("error", "interrupted"), record


def test_interrupt_of_a_cell_that_ignores_it_answers_busy(testapp):
    env = create(testapp, "deaf")
    pending = submit(testapp, "deaf", "import os, signal, time\n"
                                      "signal.signal(signal.SIGINT, signal.SIG_IGN)\n" +
                     STARTED + "while not os.path.exists('stop'):\n    time.sleep(0.01)")
    wait_started(env)
    res = testapp.post("/envs/deaf/interrupt")
    assert res.status_int == 200
    assert res.json["state"] == "busy", res.json
    assert peek(testapp, "deaf", pending["execution_count"])["status"] == "running"
    open(os.path.join(env["cwd"], "stop"), "w").close()
    record = poll(testapp, "deaf", pending["execution_count"])
    # An interrupt was asked for, but the cell ended on its own: an ordinary ok.
    assert (record["status"], record["reason"]) == ("ok", None), record


def test_interrupt_of_an_idle_env_answers_at_once(testapp):
    create(testapp, "idle")
    res = testapp.post("/envs/idle/interrupt")
    assert res.status_int == 200 and res.json["state"] == "idle", res.json
    assert value(testapp, "idle", "1 + 1") == "2"


def test_the_record_says_interrupted_only_when_an_interrupt_was_requested():
    from wsgikernel.kernel.records import Execution
    outcome = {"status": "error", "result": None, "user_expressions": {},
               "error": {"ename": "KeyboardInterrupt", "evalue": "", "traceback": ["KI"]}}
    raised = Execution(1, 1, {"code": "raise KeyboardInterrupt"}, "e", 1, None)
    raised.start(None)
    assert (raised.completed(outcome)["status"], raised.record["reason"]) == ("error", None)
    asked = Execution(2, 2, {"code": "time.sleep(9)"}, "e", 1, None)
    asked.start(None)
    asked.interrupt_requested = True
    record = asked.completed(outcome)
    assert (record["status"], record["reason"]) == ("error", "interrupted")
    assert record["error"]["ename"] == "KeyboardInterrupt"
