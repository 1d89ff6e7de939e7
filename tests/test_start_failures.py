"""Kernels that fail to start, user files that shadow the stdlib, and env records that
cannot be read (issue 15).

Real kernel processes throughout; every wait is a poll with a hang guard
(helpers.wait_for); nothing asserts speed.  "At once" below means "without
waiting for the launch timeout", which the tests show by the answer itself
(409, a dead env with its reason), never by a clock.
"""

import json
import os
import signal

import pytest

from helpers import assert_problem, pid_alive, processes_in, run, value, wait_for


def env_dir(state_dir, env_id):
    return os.path.join(state_dir, "envs", env_id)


def work_dir(state_dir, env_id):
    return os.path.join(env_dir(state_dir, env_id), "work")


def env_json(state_dir, env_id):
    return os.path.join(env_dir(state_dir, env_id), "env.json")


def read_env_json(state_dir, env_id):
    with open(env_json(state_dir, env_id)) as handle:
        return json.load(handle)


def write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def kernel_pids(path):
    """The processes of the kernel of the env directory ``path`` (helpers.processes_in)."""
    return processes_in(path)


def crash(state_dir, env_id):
    """SIGKILL the env's supervisor and user-code process, as a machine crash would."""
    record = read_env_json(state_dir, env_id)
    pids = [pid for pid in (record["supervisor_pid"], record["pid"]) if pid]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), message="the kernel gone")


def assert_start_failed(env, *log_lines):
    assert env["state"] == "dead", env
    assert env["reason"] == "start_failed", env
    assert env["pid"] is None
    assert isinstance(env["detail"], str) and env["detail"], env
    assert isinstance(env["log"], str), env
    for line in log_lines:
        assert line in env["log"], (line, env["log"])


def assert_refuses_work(testapp, env_id):
    """A dead env answers 409 at once: execute, interrupt, introspection."""
    res = testapp.post_json("/envs/%s/execute" % env_id, {"code": "1"}, expect_errors=True)
    assert_problem(res, 409, "env-not-running", env_id=env_id, state="dead")
    res = testapp.post_json("/envs/%s/interrupt" % env_id, {}, expect_errors=True)
    assert_problem(res, 409, "env-not-running", env_id=env_id)
    res = testapp.post_json("/envs/%s/complete" % env_id, {"code": "pri", "cursor_pos": 3},
                            expect_errors=True)
    assert_problem(res, 409, "env-not-running", env_id=env_id)


# -- user files never break the kernel's own start ----------------------------------------

SHADOWS = {
    # raising: importing it in a cell must raise this, as in a python started there
    "resource": "raise ImportError(\"the user's resource.py\")\n",
    "signal": "raise ImportError(\"the user's signal.py\")\n",
    "json": "raise ImportError(\"the user's json.py\")\n",
    "selectors": "raise ImportError(\"the user's selectors.py\")\n",
    # harmless: importing it in a cell gives the user's module
    "socket": "MINE = 'socket'\n",
    "threading": "MINE = 'threading'\n",
    "traceback": "MINE = 'traceback'\n",
}


def place_shadows(folder):
    for name, text in SHADOWS.items():
        write(os.path.join(folder, name + ".py"), text)


def assert_cells_see_the_user_modules(testapp, env_id):
    record = run(testapp, env_id, "import resource")
    assert record["status"] == "error", record
    assert record["error"]["ename"] == "ImportError"
    assert record["error"]["evalue"] == "the user's resource.py"
    assert value(testapp, env_id, "import socket, threading, traceback\n"
                 "(socket.MINE, threading.MINE, traceback.MINE)") == \
        "('socket', 'threading', 'traceback')"
    # the kernel itself still works: output, errors with tracebacks, threads
    record = run(testapp, env_id, "print('hello')\n1 / 0")
    assert record["stdout"] == "hello\n"
    assert record["error"]["ename"] == "ZeroDivisionError"
    assert value(testapp, env_id, "import os; os.getcwd()") == repr(work_dir_of(testapp, env_id))


def work_dir_of(testapp, env_id):
    return testapp.get("/envs/" + env_id).json["cwd"]


def test_stdlib_names_in_the_work_dir_do_not_break_a_restart(testapp, state_dir):
    testapp.put("/envs/shadow")
    place_shadows(work_dir(state_dir, "shadow"))
    env = testapp.post("/envs/shadow/restart").json
    assert env["state"] == "idle", env
    assert env["session"] == 2
    assert_cells_see_the_user_modules(testapp, "shadow")


def test_stdlib_names_in_the_work_dir_do_not_break_a_cold_start(testapp, state_dir):
    testapp.put("/envs/cold")
    place_shadows(work_dir(state_dir, "cold"))
    crash(state_dir, "cold")
    wait_for(lambda: testapp.get("/envs/cold").json["state"] == "dead", message="dead")
    env = testapp.post("/envs/cold/restart").json
    assert env["state"] == "idle", env
    assert_cells_see_the_user_modules(testapp, "cold")


def test_modules_in_the_env_dir_do_not_break_a_cold_start(testapp, state_dir):
    """The launcher runs in the env dir: its cwd must not be on the kernel's sys.path."""
    testapp.put("/envs/envdir")
    crash(state_dir, "envdir")
    place_shadows(env_dir(state_dir, "envdir"))
    env = testapp.post("/envs/envdir/restart").json
    assert env["state"] == "idle", env
    paths = json.loads(value(testapp, "envdir", "import sys, json; json.dumps(sys.path)")[1:-1])
    assert "" not in paths
    assert env_dir(state_dir, "envdir") not in paths
    assert paths[0] == work_dir(state_dir, "envdir")


def test_cells_import_modules_from_the_work_dir(testapp, state_dir):
    testapp.put("/envs/mine")
    write(os.path.join(work_dir(state_dir, "mine"), "mymodule.py"), "ANSWER = 42\n")
    assert value(testapp, "mine", "import mymodule; mymodule.ANSWER") == "42"
    assert value(testapp, "mine", "import sys, os; sys.path[0] == os.getcwd()") == "True"
    # and after a restart, as at first
    testapp.post("/envs/mine/restart")
    assert value(testapp, "mine", "import mymodule; mymodule.__file__") == \
        repr(os.path.join(work_dir(state_dir, "mine"), "mymodule.py"))


def test_a_missing_preload_module_is_reported_and_the_kernel_starts(make_test_app):
    import webtest
    from helpers import TOKEN
    app = make_test_app(preload="no_such_module_xyz")
    testapp = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    env = testapp.post_json("/envs", {"id": "lenient"}).json
    assert env["state"] == "idle", env
    assert value(testapp, "lenient", "1 + 1") == "2"
    late = testapp.get("/envs/lenient/late_output").json["late_output"]
    assert "preload of no_such_module_xyz failed" in "".join(e["text"] for e in late)


# -- a start that fails anyway: dead, start_failed, with its log -----------------------------

EXITS_AT_IMPORT = ("import sys\n"
                   "print('my script starts', file=sys.stderr)\n"
                   "sys.exit(main() if False else 3)  # a script without a __main__ guard\n")


@pytest.fixture
def preloading(make_test_app, tmp_path, monkeypatch):
    """(testapp, folder on the kernels' PYTHONPATH) for an app preloading ``wkt_boot``."""
    import webtest
    from helpers import TOKEN
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    app = make_test_app(preload="wkt_boot")
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN}), tmp_path


def test_a_first_start_that_fails_leaves_a_dead_env_with_its_log(preloading):
    testapp, folder = preloading
    write(os.path.join(str(folder), "wkt_boot.py"), EXITS_AT_IMPORT)
    res = testapp.post_json("/envs", {"id": "boot"})
    assert res.status_int == 201
    assert_start_failed(res.json, "my script starts", "SystemExit: 3")
    assert_start_failed(testapp.get("/envs/boot").json, "my script starts")
    listed = {env["id"]: env for env in testapp.get("/envs").json["envs"]}
    assert listed["boot"]["reason"] == "start_failed"
    assert_refuses_work(testapp, "boot")
    # PUT returns it as it is; restart retries, and succeeds once the cause is gone
    assert testapp.put("/envs/boot").json["reason"] == "start_failed"
    assert_start_failed(testapp.post("/envs/boot/restart").json, "SystemExit: 3")
    os.unlink(os.path.join(str(folder), "wkt_boot.py"))
    env = testapp.post("/envs/boot/restart").json
    assert env["state"] == "idle", env
    assert "log" not in env and "detail" not in env
    assert value(testapp, "boot", "1 + 1") == "2"


def test_a_restart_that_fails_leaves_a_dead_env_with_its_log(preloading, state_dir):
    testapp, _ = preloading
    testapp.put("/envs/again")  # wkt_boot does not exist yet: reported, and it starts
    run(testapp, "again", "x = 1")
    write(os.path.join(work_dir(state_dir, "again"), "wkt_boot.py"), EXITS_AT_IMPORT)
    env = testapp.post("/envs/again/restart").json
    assert_start_failed(env, "my script starts", "SystemExit: 3")
    assert env["session"] == 2
    assert_refuses_work(testapp, "again")
    os.unlink(os.path.join(work_dir(state_dir, "again"), "wkt_boot.py"))
    env = testapp.post("/envs/again/restart").json
    assert env["state"] == "idle", env
    assert run(testapp, "again", "x")["error"]["ename"] == "NameError"
    assert run(testapp, "again", "2")["execution_count"] == 3  # counting goes on


def test_an_unusable_work_dir_fails_the_start_with_its_log(testapp, state_dir):
    testapp.put("/envs/nowork")
    folder = work_dir(state_dir, "nowork")
    run(testapp, "nowork", "import os, shutil; os.chdir('..'); shutil.rmtree('work'); "
                           "open('work', 'w').close()")
    env = testapp.post("/envs/nowork/restart").json
    assert_start_failed(env, "work")
    assert_refuses_work(testapp, "nowork")
    os.unlink(folder)
    env = testapp.post("/envs/nowork/restart").json
    assert env["state"] == "idle", env
    assert value(testapp, "nowork", "import os; os.getcwd()") == repr(folder)


def test_an_interpreter_that_cannot_start_leaves_a_dead_env(testapp, monkeypatch):
    """What the kernel's environment breaks (a PYTHONHOME left from a removed install)
    fails before any of our code runs: only its stderr, in kernel.log, says why."""
    monkeypatch.setenv("PYTHONHOME", "/nonexistent-python-home")
    env = testapp.put("/envs/nohome").json
    assert_start_failed(env, "Fatal Python error")  # the rest of its wording varies
    assert "interpreter" in env["detail"], env
    assert_refuses_work(testapp, "nohome")
    monkeypatch.undo()
    assert testapp.post("/envs/nohome/restart").json["state"] == "idle"
    assert value(testapp, "nohome", "1 + 1") == "2"


def test_a_start_that_hangs_is_stopped_and_recorded(preloading, monkeypatch, state_dir):
    testapp, folder = preloading
    write(os.path.join(str(folder), "wkt_boot.py"),
          "import sys, time\nprint('my script waits', file=sys.stderr, flush=True)\n"
          "time.sleep(600)\n")
    import wsgikernel.control.lifecycle
    monkeypatch.setattr(wsgikernel.control.lifecycle, "LAUNCH_TIMEOUT", 5.0)
    env = testapp.post_json("/envs", {"id": "stuck"}).json
    assert_start_failed(env)
    assert "ready" in env["detail"], env
    # nothing of it is left running: not the supervisor, not the user-code process
    wait_for(lambda: not kernel_pids(env_dir(state_dir, "stuck")), message="no kernel left")
    assert_refuses_work(testapp, "stuck")
    os.unlink(os.path.join(str(folder), "wkt_boot.py"))
    monkeypatch.undo()
    assert testapp.post("/envs/stuck/restart").json["state"] == "idle"


# -- env.json that cannot be used: dead at once, with a reason ---------------------------------

def truncate(path):
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[:len(data) // 2])


def empty(path):
    open(path, "wb").close()


def not_an_object(path):
    write(path, "[1, 2, 3]\n")


def json_null(path):
    write(path, "null\n")


def a_directory(path):
    os.unlink(path)
    os.mkdir(path)


def a_fifo(path):  # open() of it would block: never opened
    os.unlink(path)
    os.mkfifo(path)


def unreadable(path):
    os.chmod(path, 0)


RECORD_DAMAGE = [
    pytest.param(truncate, "corrupt_record", id="truncated"),
    pytest.param(empty, "corrupt_record", id="empty"),
    pytest.param(not_an_object, "corrupt_record", id="not-an-object"),
    pytest.param(json_null, "corrupt_record", id="null"),
    pytest.param(a_directory, "unreadable_record", id="directory"),
    pytest.param(a_fifo, "unreadable_record", id="fifo"),
    pytest.param(unreadable, "unreadable_record", id="permission-denied", marks=pytest.mark.skipif(
        os.geteuid() == 0, reason="root reads a file whatever its mode")),
]


@pytest.mark.parametrize("damage, reason", RECORD_DAMAGE)
def test_an_unusable_record_reads_as_dead_and_restart_recovers_it(testapp, state_dir,
                                                                     damage, reason):
    testapp.put("/envs/broken")
    run(testapp, "broken", "x = 1")
    testapp.post("/envs/broken/restart")  # session 2
    assert run(testapp, "broken", "y = 2")["execution_count"] == 2
    crash(state_dir, "broken")
    damage(env_json(state_dir, "broken"))

    env = testapp.get("/envs/broken").json
    assert env["state"] == "dead" and env["reason"] == reason, env
    assert "env.json" in env["detail"], env
    assert env["pid"] is None
    listed = {e["id"]: e for e in testapp.get("/envs").json["envs"]}
    assert listed["broken"]["reason"] == reason
    assert_refuses_work(testapp, "broken")
    assert testapp.put("/envs/broken").json["reason"] == reason  # returned as it is
    # history is still there
    assert testapp.get("/envs/broken/executions/1").json["status"] == "ok"

    env = testapp.post("/envs/broken/restart").json
    assert env["state"] == "idle", env
    assert env["session"] == 3, env  # the history knew session 2
    assert "detail" not in env
    assert run(testapp, "broken", "x")["error"]["ename"] == "NameError"
    assert run(testapp, "broken", "3")["execution_count"] == 4  # counts never repeat
    assert read_env_json(state_dir, "broken")["state"] == "idle"


@pytest.mark.parametrize("damage, reason", RECORD_DAMAGE)
def test_an_env_with_an_unusable_record_can_be_deleted(testapp, state_dir, damage, reason):
    testapp.put("/envs/doomed")
    crash(state_dir, "doomed")
    damage(env_json(state_dir, "doomed"))
    assert testapp.get("/envs/doomed").json["reason"] == reason
    assert testapp.delete("/envs/doomed").status_int == 204
    assert not os.path.exists(env_dir(state_dir, "doomed"))
    assert_problem(testapp.get("/envs/doomed", expect_errors=True), 404, "env-not-found")


def test_restart_stops_a_kernel_still_running_behind_a_truncated_record(testapp, state_dir):
    env = testapp.put("/envs/behind").json
    old = read_env_json(state_dir, "behind")
    truncate(env_json(state_dir, "behind"))
    assert testapp.get("/envs/behind").json["reason"] == "corrupt_record"
    restarted = testapp.post("/envs/behind/restart").json
    assert restarted["state"] == "idle", restarted
    assert restarted["session"] == 2, restarted
    wait_for(lambda: not pid_alive(old["supervisor_pid"]) and not pid_alive(env["pid"]),
             message="the old kernel stopped")
    assert kernel_pids(env_dir(state_dir, "behind")) != []
    assert value(testapp, "behind", "1 + 1") == "2"


def test_a_kernel_behind_a_deleted_unusable_record_exits(testapp, state_dir):
    env = testapp.put("/envs/orphaned").json
    supervisor = read_env_json(state_dir, "orphaned")["supervisor_pid"]
    not_an_object(env_json(state_dir, "orphaned"))
    assert testapp.delete("/envs/orphaned").status_int == 204
    wait_for(lambda: not pid_alive(supervisor) and not pid_alive(env["pid"]),
             message="the kernel exits once its directory is gone")


# -- env.json is parsed again only when it changed -------------------------------------------

def test_an_unchanged_record_is_parsed_once(app, testapp, state_dir, monkeypatch):
    from wsgikernel.control import registry as manager_module
    from wsgikernel.store import write_record
    testapp.put("/envs/cached")
    parses = []
    original = manager_module.load_record

    def counting(*args, **kwargs):
        parses.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(manager_module, "load_record", counting)
    first = app.manager.read("cached")
    for _ in range(5):
        assert app.manager.read("cached") == first
    assert len(parses) <= 1
    # what a caller does to its copy is not seen by the next one
    app.manager.read("cached")["state"] = "scribbled"
    assert app.manager.read("cached")["state"] == "idle"
    # a record replaced (a rename: a new inode) is read again, even of the same size
    changed = dict(first, execution_count=first["execution_count"] + 1)
    write_record(env_dir(state_dir, "cached"), changed)
    assert app.manager.read("cached") == changed
    write_record(env_dir(state_dir, "cached"), first)
    assert app.manager.read("cached") == first
    # a deleted env is forgotten
    testapp.delete("/envs/cached")
    assert_problem(testapp.get("/envs/cached", expect_errors=True), 404, "env-not-found")
    assert "cached" not in app.manager.records


def test_a_cached_record_never_hides_a_kernel_death(testapp):
    env = testapp.put("/envs/mortal").json
    for _ in range(3):
        testapp.get("/envs/mortal")
    os.kill(env["pid"], signal.SIGKILL)
    wait_for(lambda: testapp.get("/envs/mortal").json["state"] == "dead", message="dead")
    assert testapp.get("/envs/mortal").json["reason"] == "kernel_died"
