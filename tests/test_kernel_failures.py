"""Kernels that die, hang, ignore signals or spawn children; isolation between envs.

Real kernel processes throughout.  Every wait is a poll with a hang guard
(helpers.wait_for, thread joins with a timeout); nothing asserts speed.
"""

import json
import os
import signal
import threading
import time

import pytest
import webtest

from helpers import HANG_GUARD, TOKEN, assert_problem, pid_alive, wait_for, run, value

BIG_WAIT = 120  # seconds a blocking execute may wait: the thread join is the real guard


def client(app):
    """A WebTest client of its own (one per thread)."""
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})


def create(testapp, env_id):
    res = testapp.post_json("/envs", {"id": env_id})
    assert res.status_int == 201
    return res.json




class Background:
    """One blocking execute on its own thread; ``result()`` joins it with a guard."""

    def __init__(self, app, env_id, code, wait=BIG_WAIT):
        self.response = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(client(app), env_id, code, wait),
                                       daemon=True)
        self.thread.start()

    def _run(self, testapp, env_id, code, wait):
        try:
            self.response = testapp.post_json("/envs/%s/execute" % env_id,
                                              {"code": code, "wait": wait},
                                              expect_errors=True)
        except BaseException as exc:  # reported by result()
            self.error = exc

    def result(self, timeout=HANG_GUARD):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the execute request did not return"
        if self.error is not None:
            raise self.error
        return self.response


def started_marker(env, name="started"):
    return os.path.join(env["cwd"], name)


def mark(name="started"):
    """Cell code that creates ``name`` in the cwd: the cell is really running now."""
    return "open(%r, 'w').close()\n" % name


def wait_started(env, name="started"):
    wait_for(lambda: os.path.exists(started_marker(env, name)), message="cell started")


def read_env_json(app, env_id):
    with open(os.path.join(app.config.state_dir, "envs", env_id, "env.json")) as handle:
        return json.load(handle)


def supervisor_pid(app, env_id):
    return read_env_json(app, env_id)["supervisor_pid"]


# -- kernel death ---------------------------------------------------------------------------

def test_sigkill_during_a_cell_aborts_it_and_marks_the_env_dead(app, testapp):
    other = create(testapp, "bystander")
    run(testapp, "bystander", "survivor = 'still here'")
    env = create(testapp, "victim")
    run(testapp, "victim", "lost = 1")
    pending = Background(app, "victim", mark() + "while True:\n    pass\n")
    wait_started(env)
    os.kill(env["pid"], signal.SIGKILL)

    res = pending.result()
    assert res.status_int == 200, res.body[:500]
    record = res.json
    assert record["status"] == "aborted"
    assert record["reason"] == "kernel_died"
    assert record["error"]["ename"] == "KernelDied"
    assert "SIGKILL" in record["error"]["evalue"]
    assert isinstance(record["error"]["traceback"], list)
    assert all(isinstance(line, str) for line in record["error"]["traceback"])
    assert record["finished"] is not None

    dead = testapp.get("/envs/victim").json
    assert dead["state"] == "dead"
    assert dead["exit"]["signal"] == "SIGKILL"
    assert dead["exit"]["code"] is None
    assert dead["reason"] == "kernel_died"
    assert dead["pid"] is None
    listed = {e["id"]: e for e in testapp.get("/envs").json["envs"]}
    assert listed["victim"]["state"] == "dead"

    res = testapp.post_json("/envs/victim/execute", {"code": "1"}, expect_errors=True)
    body = assert_problem(res, 409, "env-not-running", env_id="victim")
    assert "restart" in body["detail"]

    restarted = testapp.post_json("/envs/victim/restart", {}).json
    assert restarted["state"] == "idle"
    assert restarted["session"] == dead["session"] + 1
    assert "exit" not in restarted and "reason" not in restarted
    assert pid_alive(restarted["pid"])
    record = run(testapp, "victim", "lost")
    assert record["status"] == "error"
    assert record["error"]["ename"] == "NameError"
    assert value(testapp, "victim", "'alive again'") == "'alive again'"

    # the other env never noticed
    again = testapp.get("/envs/bystander").json
    assert again["state"] == "idle"
    assert again["pid"] == other["pid"]
    assert value(testapp, "bystander", "survivor") == "'still here'"


def test_os_exit_marks_the_env_dead_with_its_code(app, testapp):
    create(testapp, "quitter")
    record = run(testapp, "quitter", "import os; os._exit(3)")
    assert record["status"] == "aborted"
    assert record["reason"] == "kernel_died"
    assert record["error"]["ename"] == "KernelDied"
    assert "3" in record["error"]["evalue"]
    dead = testapp.get("/envs/quitter").json
    assert dead["state"] == "dead"
    assert dead["exit"] == {"code": 3, "signal": None}
    assert dead["reason"] == "kernel_died"
    res = testapp.post_json("/envs/quitter/execute", {"code": "1"}, expect_errors=True)
    assert_problem(res, 409, "env-not-running")
    assert testapp.post_json("/envs/quitter/restart", {}).json["state"] == "idle"
    assert value(testapp, "quitter", "2 + 2") == "4"


def test_kernel_killed_while_idle_is_seen_as_dead(testapp):
    env = create(testapp, "quiet")
    run(testapp, "quiet", "gone_with_it = 1")
    os.kill(env["pid"], signal.SIGKILL)
    wait_for(lambda: testapp.get("/envs/quiet").json["state"] == "dead", message="env dead")
    dead = testapp.get("/envs/quiet").json
    assert dead["pid"] is None
    assert dead["exit"] == {"code": None, "signal": "SIGKILL"}
    assert dead["reason"] == "kernel_died"
    res = testapp.post_json("/envs/quiet/execute", {"code": "1"}, expect_errors=True)
    assert_problem(res, 409, "env-not-running", env_id="quiet")
    # interrupting a dead env is a conflict too, not a crash
    res = testapp.post_json("/envs/quiet/interrupt", {}, expect_errors=True)
    assert_problem(res, 409, "env-not-running", env_id="quiet")
    restarted = testapp.post_json("/envs/quiet/restart", {}).json
    assert restarted["state"] == "idle"
    assert restarted["session"] == 2
    assert run(testapp, "quiet", "gone_with_it")["error"]["ename"] == "NameError"


def test_supervisor_survives_the_death_of_its_kernel(app, testapp):
    # Several deaths: the crash depends on how select() batches the events (most of the
    # time it does), so one clean survival is not proof; all of them must survive.
    for i in range(6):
        env_id = "mortal%d" % i
        env = create(testapp, env_id)
        supervisor = supervisor_pid(app, env_id)
        os.kill(env["pid"], signal.SIGKILL)
        wait_for(lambda: read_env_json(app, env_id).get("state") == "dead",
                 message="env.json says dead")
        # The supervisor wrote env.json in the loop iteration that saw the death; a
        # status request is handled in a later one, so it answers only if it survived.
        reply = app.manager.call(read_env_json(app, env_id), "status")
        assert reply["state"] == "dead"
        assert pid_alive(supervisor)
        record = read_env_json(app, env_id)
        assert record["reason"] == "kernel_died"
        assert record["exit"] == {"code": None, "signal": "SIGKILL"}


def test_every_look_at_a_dead_env_names_the_signal(testapp):
    # A client polling GET /envs/{id} after a kernel death: the first 'dead' it sees
    # must already say how the kernel died.  Racy by nature, so many deaths are watched.
    seen = []
    for i in range(20):
        env_id = "watched%d" % i
        env = create(testapp, env_id)
        os.kill(env["pid"], signal.SIGKILL)
        deadline = time.monotonic() + HANG_GUARD
        while True:  # poll as tightly as a client may: no pause between looks
            dead = testapp.get("/envs/" + env_id).json
            if dead["state"] == "dead":
                break
            assert time.monotonic() < deadline, "the env never became dead"
        seen.append((dead["exit"], dead["reason"]))
        testapp.delete("/envs/" + env_id)
    assert all(exit_ == {"code": None, "signal": "SIGKILL"} and reason is not None
               for exit_, reason in seen), seen


def test_dead_env_can_be_deleted(testapp, state_dir):
    env = create(testapp, "corpse")
    run(testapp, "corpse", "import os; os._exit(0)")
    assert testapp.get("/envs/corpse").json["state"] == "dead"
    assert testapp.delete("/envs/corpse").status_int == 204
    assert not os.path.exists(os.path.join(state_dir, "envs", "corpse"))
    assert not pid_alive(env["pid"])


# -- interrupt ------------------------------------------------------------------------------

def test_interrupt_ends_a_sleeping_cell_and_keeps_the_namespace(app, testapp):
    env = create(testapp, "sleepy")
    run(testapp, "sleepy", "kept = 'yes'")
    res = testapp.post_json("/envs/sleepy/execute",
                            {"code": mark() + "import time\ntime.sleep(1000)", "wait": 0})
    assert res.status_int == 202
    assert res.json["status"] in ("queued", "running")
    n = res.json["execution_count"]
    assert res.headers["Location"].endswith("/envs/sleepy/executions/%d" % n)
    started_location = res.headers["Location"]
    wait_started(env)
    assert testapp.get("/envs/sleepy").json["state"] == "busy"

    res = testapp.post_json("/envs/sleepy/interrupt", {})
    assert res.status_int == 200
    assert res.json["id"] == "sleepy"
    wait_for(lambda: testapp.get("/envs/sleepy").json["state"] == "idle",
             message="interrupted cell ended")
    record = testapp.get(started_location, {"wait": 30}).json
    assert record["execution_count"] == n
    assert record["status"] == "error"
    assert record["reason"] == "interrupted"
    assert record["error"]["ename"] == "KeyboardInterrupt"

    after = testapp.get("/envs/sleepy").json
    assert after["pid"] == env["pid"]
    assert value(testapp, "sleepy", "kept") == "'yes'"


def test_interrupted_cell_record_is_keyboard_interrupt(app, testapp):
    env = create(testapp, "intr")
    run(testapp, "intr", "before = 5")
    pending = Background(app, "intr", "print('going')\n" + mark() +
                         "import time\ntime.sleep(1000)")
    wait_started(env)
    testapp.post_json("/envs/intr/interrupt", {})
    res = pending.result()
    assert res.status_int == 200
    record = res.json
    assert record["status"] == "error"
    assert record["reason"] == "interrupted"
    assert record["error"]["ename"] == "KeyboardInterrupt"
    assert record["stdout"] == "going\n"
    assert any("KeyboardInterrupt" in line for line in record["error"]["traceback"])
    assert record["outputs"][-1]["output_type"] == "error"
    assert testapp.get("/envs/intr").json["pid"] == env["pid"]
    assert value(testapp, "intr", "before") == "5"


# -- stopping kernels that resist -------------------------------------------------------------

def test_delete_kills_a_kernel_that_ignores_sigint_and_sigterm(app, testapp, state_dir):
    env = create(testapp, "stubborn")
    supervisor = supervisor_pid(app, "stubborn")
    code = ("import signal\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + mark() +
            "while True:\n    pass\n")
    pending = Background(app, "stubborn", code)
    wait_started(env)
    # an interrupt cannot stop it...
    testapp.post_json("/envs/stubborn/interrupt", {})
    assert testapp.get("/envs/stubborn").json["state"] == "busy"
    # ...but DELETE does (SIGKILL after kill_grace)
    assert testapp.delete("/envs/stubborn").status_int == 204
    wait_for(lambda: not pid_alive(env["pid"]), message="stubborn kernel killed")
    wait_for(lambda: not pid_alive(supervisor), message="supervisor gone")
    assert not os.path.exists(os.path.join(state_dir, "envs", "stubborn"))
    res = pending.result()
    # the request in flight got an answer, not a hang or a 500
    assert res.status_int == 200, res.body[:500]
    assert res.json["status"] == "aborted"
    assert res.json["reason"] in ("cancelled", "kernel_died")


def test_delete_leaves_no_subprocess_behind(app, testapp):
    env = create(testapp, "parent")
    child = int(value(testapp, "parent",
                      "import subprocess\np = subprocess.Popen(['sleep', '1000'])\np.pid"))
    assert pid_alive(child)
    assert testapp.delete("/envs/parent").status_int == 204
    wait_for(lambda: not pid_alive(env["pid"]), message="kernel gone")
    wait_for(lambda: not pid_alive(child), message="its subprocess gone")


def test_restart_leaves_no_subprocess_behind(app, testapp):
    env = create(testapp, "respawn")
    child = int(value(testapp, "respawn",
                      "import subprocess\np = subprocess.Popen(['sleep', '1000'])\np.pid"))
    restarted = testapp.post_json("/envs/respawn/restart", {}).json
    assert restarted["pid"] != env["pid"]
    wait_for(lambda: not pid_alive(env["pid"]), message="old kernel gone")
    wait_for(lambda: not pid_alive(child), message="its subprocess gone")


# -- isolation ---------------------------------------------------------------------------------

def test_variables_never_leak_between_envs(testapp):
    create(testapp, "left")
    create(testapp, "right")
    run(testapp, "left", "shared_name = 'left'; only_left = 1")
    run(testapp, "right", "shared_name = 'right'")
    assert value(testapp, "left", "shared_name") == "'left'"
    assert value(testapp, "right", "shared_name") == "'right'"
    record = run(testapp, "right", "only_left")
    assert record["status"] == "error"
    assert record["error"]["ename"] == "NameError"
    import_cell = "import json\njson.dumps([1])"
    assert value(testapp, "left", import_cell) == "'[1]'"
    assert value(testapp, "right", "'json' in dir()") == "False"


def test_concurrent_executions_across_envs_get_only_their_own_output(app, testapp):
    env_ids = ["iso%d" % i for i in range(4)]
    for env_id in env_ids:
        create(testapp, env_id)
    iterations = 15
    failures = []

    def worker(index):
        local = client(app)
        env_id = env_ids[index % len(env_ids)]
        try:
            for k in range(iterations):
                token = "tok-%d-%d" % (index, k)
                code = ("import os, sys\nprint(%r)\nsys.stderr.write(%r)\n"
                        "os.write(1, b'fd-' + %r.encode() + b'\\n')\nmine_%d = %r\nmine_%d"
                        % (token, token, token, index, token, index))
                res = local.post_json("/envs/%s/execute" % env_id,
                                      {"code": code, "wait": BIG_WAIT})
                record = res.json
                expected_out = "%s\nfd-%s\n" % (token, token)
                if (res.status_int != 200 or record["status"] != "ok"
                        or record["stdout"] != expected_out or record["stderr"] != token
                        or record["result"] != {"text/plain": repr(token)}
                        or record["env"] != env_id):
                    failures.append((index, k, res.status_int, record))
        except BaseException as exc:  # reported below
            failures.append((index, "exception", repr(exc)))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD * 4)
        assert not thread.is_alive(), "a worker thread hung"
    assert failures == []
    for env_id in env_ids:
        assert testapp.get("/envs/%s" % env_id).json["execution_count"] == 2 * iterations


def test_two_executions_on_one_env_run_one_after_the_other(app, testapp):
    env = create(testapp, "serial")
    run(testapp, "serial", "log = []")
    first_code = ("import os, time\nlog.append('a-start')\nprint('a1')\n" + mark("a") +
                  "deadline = time.monotonic() + 60\n"
                  "while not os.path.exists('go') and time.monotonic() < deadline:\n"
                  "    time.sleep(0.01)\n"
                  "print('a2')\nlog.append('a-end')")
    second_code = "log.append('b-start')\nprint('b1')\nprint('b2')\nlog.append('b-end')"
    first = Background(app, "serial", first_code)
    wait_started(env, "a")
    second = Background(app, "serial", second_code)
    wait_for(lambda: testapp.get("/envs/serial").json["queued"] == 1,
             message="second execution queued")
    assert testapp.get("/envs/serial").json["state"] == "busy"
    open(os.path.join(env["cwd"], "go"), "w").close()

    a = first.result().json
    b = second.result().json
    assert a["status"] == b["status"] == "ok"
    assert a["stdout"] == "a1\na2\n"
    assert b["stdout"] == "b1\nb2\n"
    assert b["execution_count"] == a["execution_count"] + 1
    assert b["started"] >= a["finished"]
    assert b["queued_at"] <= a["finished"]
    assert value(testapp, "serial", "log") == "['a-start', 'a-end', 'b-start', 'b-end']"


@pytest.mark.parametrize("code", ["import sys; sys.exit(4)", "exit()", "raise SystemExit"])
def test_sys_exit_does_not_kill_the_kernel(testapp, code):
    env = create(testapp, "stays")
    record = run(testapp, "stays", code)
    assert record["status"] == "error"
    assert record["error"]["ename"] == "SystemExit"
    after = testapp.get("/envs/stays").json
    assert after["state"] == "idle"
    assert after["pid"] == env["pid"]
