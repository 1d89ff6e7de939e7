"""POST /envs/{id}/fork (issue 18): a new env whose namespace is a forked copy.

Real kernels: the source's user-code process forks the copy, which forks the new
env's process and becomes its reaper; the forkserver forks its supervisor (without
one, a fresh interpreter adopts it: kernel/checkpoint.py ``fork_env``, foster.py).
"""

import json
import os

import pytest
import webtest

from helpers import (TOKEN, assert_problem, command_lines, processes_in, run, submit, value,
                     wait_for)


@pytest.fixture
def testapp(make_test_app):
    testapp = webtest.TestApp(make_test_app(),
                              extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    assert testapp.post_json("/envs", {"id": "src"}).status_int == 201
    return testapp


def fork(testapp, source="src", **body):
    res = testapp.post_json("/envs/%s/fork" % source, body)
    assert res.status_int == 201, res.body[:500]
    return res


def test_a_fork_has_the_namespace_and_goes_its_own_way(testapp):
    run(testapp, "src", "import re, socket\nrows = [1, 2]\na, b = socket.socketpair()\n"
                        "numbers = iter(range(10)); next(numbers)\nword = re.compile('o+')\n"
                        "open('notes.txt', 'w').write('kept')")
    res = fork(testapp, id="branch")
    env = res.json
    assert res.headers["Location"].endswith("/envs/branch")
    assert env["id"] == "branch" and env["state"] == "idle", env
    assert env["forked_from"] == {"env": "src", "execution_count": 1}, env
    assert env["execution_count"] == 1 and env["session"] == 1, env
    assert env["cwd"] != testapp.get("/envs/src").json["cwd"]
    assert value(testapp, "branch", "rows.append(3); rows") == "[1, 2, 3]"
    assert value(testapp, "src", "rows") == "[1, 2]"  # the source is untouched
    assert value(testapp, "branch", "a.send(b'x'); b.recv(1), next(numbers), "
                                    "word.findall('foo')") == "(b'x', 1, ['oo'])"
    assert value(testapp, "branch", "import os; os.getcwd() == %r, open('notes.txt').read()"
                 % env["cwd"]) == "(True, 'kept')"
    assert testapp.get("/envs/branch/executions").json["executions"][0]["execution_count"] == 2


def test_a_numpy_array_and_a_lambda_survive_a_fork(testapp):
    pytest.importorskip("numpy")  # kernels run this interpreter
    run(testapp, "src", "import numpy\ngrid = numpy.arange(12.0).reshape(3, 4)\n"
                        "scale = lambda m, k: m * k")
    fork(testapp, id="branch")
    assert value(testapp, "branch", "grid[1, 2] = -1; float(scale(grid, 2).sum())") == "118.0"
    assert value(testapp, "src", "float(grid.sum()), float(grid[1, 2])") == "(66.0, 6.0)"


def test_a_fork_outlives_its_source_and_leaves_nothing_when_deleted(testapp, state_dir):
    run(testapp, "src", "kept = 'here'")
    fork(testapp, id="branch")
    assert testapp.delete("/envs/src").status_int == 204
    assert value(testapp, "branch", "kept") == "'here'"
    branch_dir = os.path.join(state_dir, "envs", "branch")
    assert processes_in(branch_dir)
    assert testapp.delete("/envs/branch").status_int == 204
    wait_for(lambda: not processes_in(branch_dir), message="no process of the fork left")


def test_a_forks_kernel_is_interrupted_restarted_and_seen_dying(testapp, tmp_path):
    run(testapp, "src", "kept = 1")
    fork(testapp, id="branch")
    flag = tmp_path / "started"
    submitted = submit(testapp, "branch", "import time\nopen(%r, 'w').close()\n"
                                          "time.sleep(30)" % str(flag))
    wait_for(flag.exists, message="the cell to start")
    testapp.post("/envs/branch/interrupt")
    record = testapp.get("/envs/branch/executions/%d?wait=30"
                         % submitted["execution_count"]).json
    assert record["reason"] == "interrupted", record
    restarted = testapp.post("/envs/branch/restart").json
    assert restarted["session"] == 2 and restarted["state"] == "idle", restarted
    assert run(testapp, "branch", "kept")["error"]["ename"] == "NameError"
    record = run(testapp, "branch", "import os\nos._exit(4)")
    assert record["reason"] == "kernel_died", record
    env = testapp.get("/envs/branch").json
    assert env["state"] == "dead" and env["exit"]["code"] == 4, env
    assert value(testapp, "src", "kept") == "1"


def test_a_generated_id_a_taken_one_and_a_bad_one(testapp):
    generated = fork(testapp).json
    assert generated["id"] and generated["forked_from"]["env"] == "src", generated
    res = testapp.post_json("/envs/src/fork", {"id": generated["id"]}, expect_errors=True)
    assert_problem(res, 409, "env-exists", env_id=generated["id"])
    res = testapp.post_json("/envs/src/fork", {"id": ".bad"}, expect_errors=True)
    assert_problem(res, 422, "invalid-parameter", param="id")
    res = testapp.post_json("/envs/nope/fork", {}, expect_errors=True)
    assert_problem(res, 404, "env-not-found")


def test_a_threaded_source_is_refused_with_a_reason(testapp):
    run(testapp, "src", "import threading\nstop = threading.Event()\n"
                        "threading.Thread(target=stop.wait, name='poller').start()")
    res = testapp.post_json("/envs/src/fork", {"id": "t"}, expect_errors=True)
    assert "poller" in assert_problem(res, 409, "checkpoint-conflict")["detail"]
    assert testapp.get("/envs/t", expect_errors=True).status_int == 404  # nothing left
    assert fork(testapp, id="t", force=True).json["id"] == "t"
    run(testapp, "src", "stop.set()")


def test_a_fork_of_a_busy_env_waits_for_the_cell_boundary(testapp, tmp_path):
    flag, go = tmp_path / "started", tmp_path / "go"
    submitted = submit(testapp, "src", "import os, time\nopen(%r, 'w').close()\n"
                       "while not os.path.exists(%r): time.sleep(0.01)\nafter = 'the cell'"
                       % (str(flag), str(go)))
    wait_for(flag.exists, message="the cell to start")
    res = testapp.post_json("/envs/src/fork", {"id": "later", "wait": 0})
    assert res.status_int == 202 and res.headers["Location"].endswith("/envs/later"), res
    assert res.json["state"] == "starting", res.json
    run_later = submit(testapp, "src", "after = 'a later cell'")  # queued behind the fork
    go.touch()
    wait_for(lambda: testapp.get("/envs/later").json["state"] == "idle",
             message="the fork to happen at the boundary")
    assert value(testapp, "later", "after") == "'the cell'"  # before the later cell ran
    assert testapp.get("/envs/src/executions/%d?wait=30" % run_later["execution_count"]
                       ).json["status"] == "ok"
    assert testapp.get("/envs/src/executions/%d" % submitted["execution_count"]
                       ).json["status"] == "ok"


def test_a_queued_fork_that_never_happens_leaves_its_env_dead_saying_why(testapp, tmp_path):
    flag = tmp_path / "started"
    submit(testapp, "src", "import time\nopen(%r, 'w').close()\ntime.sleep(30)" % str(flag))
    wait_for(flag.exists, message="the cell to start")
    assert testapp.post_json("/envs/src/fork", {"id": "never", "wait": 0}).status_int == 202
    testapp.post("/envs/src/restart")
    env = wait_for(lambda: (lambda e: e if e["state"] == "dead" else None)(
        testapp.get("/envs/never").json), message="the fork's env to be dead")
    assert env["reason"] == "start_failed" and "the fork did not happen" in env["detail"], env
    assert testapp.delete("/envs/never").status_int == 204


def test_a_dead_source_and_a_limited_one_are_refused(make_test_app):
    testapp = webtest.TestApp(make_test_app(),
                              extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    testapp.post_json("/envs", {"id": "files", "open_files_limit": 64})
    res = testapp.post_json("/envs/files/fork", {}, expect_errors=True)
    assert "open_files_limit" in assert_problem(res, 409, "checkpoint-conflict")["detail"]
    testapp.post_json("/envs", {"id": "dies"})
    run(testapp, "dies", "import os\nos._exit(1)")
    res = testapp.post_json("/envs/dies/fork", {}, expect_errors=True)
    assert_problem(res, 409, "env-not-running", state="dead")


def test_the_forks_notebook_says_where_it_came_from(testapp):
    run(testapp, "src", "x = 1")
    fork(testapp, id="branch")
    run(testapp, "branch", "x + 1")
    cells = testapp.get("/envs/branch/notebook").json["cells"]
    assert cells[0]["cell_type"] == "markdown" and "src" in cells[0]["source"], cells
    assert cells[1]["source"] == "x + 1", cells


def test_a_work_dir_that_cannot_be_copied_is_409_naming_the_file(testapp):
    run(testapp, "src", "import os\nos.mkfifo('pipe')")
    res = testapp.post_json("/envs/src/fork", {"id": "nope"}, expect_errors=True)
    body = assert_problem(res, 409, "checkpoint-conflict")
    assert "pipe" in body["detail"], body
    assert testapp.get("/envs/nope", expect_errors=True).status_int == 404


def test_a_fork_keeps_the_sources_limits_and_settings(make_test_app):
    testapp = webtest.TestApp(make_test_app(),
                              extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    source = testapp.post_json("/envs", {"id": "lim", "memory_limit": "512MiB",
                                         "auto_checkpoints": 2}).json
    run(testapp, "lim", "x = 1")
    fork = testapp.post_json("/envs/lim/fork", {"id": "lim-2"}).json
    assert fork["limits"] == source["limits"] and fork["auto_checkpoints"] == 2, fork
    assert value(testapp, "lim-2", "import resource; resource.getrlimit(resource.RLIMIT_AS)"
                 "[0]") == str(512 * 2 ** 20)


def test_the_fork_names_the_cell_it_was_taken_after_even_one_queued_meanwhile(testapp,
                                                                              monkeypatch):
    from wsgikernel.control.checkpoints import Checkpoints
    run(testapp, "src", "x = 1")
    submit(testapp, "src", "import time; time.sleep(0.5)")  # cell 2 runs: the fork queues
    prepare = Checkpoints.forked_record

    def another_worker_queues_a_cell(self, *args):  # between the count and the fork
        submit(testapp, "src", "x = 3")
        return prepare(self, *args)

    monkeypatch.setattr(Checkpoints, "forked_record", another_worker_queues_a_cell)
    env = fork(testapp, id="late", wait=30).json
    assert env["forked_from"] == {"env": "src", "execution_count": 3}, env
    assert env["execution_count"] == 3, env
    assert value(testapp, "late", "x") == "3"
    history = testapp.get("/envs/late/executions").json["executions"]
    assert history[-1]["execution_count"] == 4, history  # it goes on from there


def supervisor_command_line(state_dir, env_id):
    with open(os.path.join(state_dir, "envs", env_id, "env.json")) as handle:
        pid = json.load(handle)["supervisor_pid"]
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return handle.read().split(b"\0")


def test_a_forks_supervisor_is_a_warm_one_unless_there_is_no_forkserver(make_test_app,
                                                                        state_dir):
    """With the forkserver the fork's supervisor is forked warm (no interpreter start-up
    on the fork's path); without it, a fresh interpreter adopts the copy."""
    for config, mark in (({}, b"--forkserver"), ({"kernel_forkserver": False}, b"--adopt")):
        testapp = webtest.TestApp(make_test_app(**config),
                                  extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
        source = "s%d" % len(mark)
        testapp.post_json("/envs", {"id": source})
        run(testapp, source, "kept = %r" % mark)
        fork(testapp, source, id=source + "-b")
        assert mark in supervisor_command_line(state_dir, source + "-b")
        assert value(testapp, source + "-b", "kept") == repr(mark)
        record = run(testapp, source + "-b", "import os\nos._exit(5)")  # the first process
        assert record["reason"] == "kernel_died", record
        env = testapp.get("/envs/%s-b" % source).json
        assert env["state"] == "dead" and env["exit"]["code"] == 5, env


def test_what_a_forks_cell_leaves_behind_ends_with_the_fork(testapp, state_dir):
    fork(testapp, id="branch")
    run(testapp, "branch", "import os\nos.system('setsid sleep 60 < /dev/null > /dev/null "
                           "2>&1 &')")  # its shell exits: the sleep is an orphan
    branch_dir = os.path.join(state_dir, "envs", "branch")
    wait_for(lambda: any("sleep" in args for pid, args in command_lines()
                         if pid in processes_in(branch_dir)), message="the orphan to run")
    assert testapp.delete("/envs/branch").status_int == 204
    wait_for(lambda: not processes_in(branch_dir), message="no process of the fork left")
    assert value(testapp, "src", "1 + 1") == "2"


def test_a_fork_restored_to_its_checkpoint_outlives_its_source(testapp, state_dir):
    run(testapp, "src", "rows = [1]")
    fork(testapp, id="branch")
    assert testapp.post_json("/envs/branch/checkpoints", {"name": "one"}).status_int == 201
    run(testapp, "branch", "rows.clear()")
    testapp.post("/envs/branch/checkpoints/one/restore")
    assert testapp.delete("/envs/src").status_int == 204
    assert value(testapp, "branch", "rows") == "[1]"
    branch_dir = os.path.join(state_dir, "envs", "branch")
    assert testapp.delete("/envs/branch").status_int == 204
    wait_for(lambda: not processes_in(branch_dir), message="no process of the fork left")


def test_a_status_asked_ready_is_answered_when_a_starting_kernel_is(make_test_app, tmp_path,
                                                                   monkeypatch):
    """What a fork's answer waits on (control/checkpoints.py ``ready_status``), instead of
    polling env.json: asked of a supervisor whose kernel starts, it is answered once the
    kernel is ready; asked of a ready one, at once."""
    import threading
    gate = tmp_path / "gate"
    (tmp_path / "wkt_gate.py").write_text(
        "import os, time\nfor _ in range(3000):\n    if not os.path.exists(%r):\n"
        "        break\n    time.sleep(0.01)\n" % str(gate))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    app = make_test_app(preload="wkt_gate")
    testapp = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    testapp.put_json("/envs/slow", {})
    link = app.manager.link
    record = app.manager.registry.read("slow")
    assert link.call(record, "status", {"ready": True})["state"] == "idle"
    gate.touch()
    restart = threading.Thread(target=testapp.post, args=("/envs/slow/restart",))
    answers = []
    asked = threading.Thread(target=lambda: answers.append(
        link.call(record, "status", {"ready": True}, timeout=30)))
    try:
        restart.start()
        wait_for(lambda: link.call(record, "status")["state"] == "starting")
        asked.start()
        wait_for(lambda: link.call(record, "status")["state"] == "starting")
        assert answers == []  # the gate holds the kernel: no answer yet
    finally:
        gate.unlink()
        restart.join(30)
        asked.join(30)
    assert [(a["state"], a["session"]) for a in answers] == [("idle", 2)]


def working_in(path):
    """pids of live processes whose working dir is ``path``, removed since or not."""
    found = []
    for pid, _ in command_lines():
        try:
            cwd = os.readlink("/proc/%d/cwd" % pid)
        except OSError:
            continue
        if cwd in (path, path + " (deleted)"):
            found.append(pid)
    return found


def test_a_standby_supervisor_no_fork_needed_leaves_nothing(testapp, state_dir, tmp_path):
    """The web tier starts the new env's supervisor with the fork (control/checkpoints.py):
    a refused fork, or a queued one (its copy asks the forkserver later), lets it go."""
    run(testapp, "src", "import threading\nstop = threading.Event()\n"
                        "threading.Thread(target=stop.wait, name='poller').start()")
    res = testapp.post_json("/envs/src/fork", {"id": "no"}, expect_errors=True)
    assert_problem(res, 409, "checkpoint-conflict")
    no_dir = os.path.join(state_dir, "envs", "no")
    wait_for(lambda: not working_in(no_dir), message="no standby of the refused fork left")
    run(testapp, "src", "stop.set()")
    flag, go = tmp_path / "started", tmp_path / "go"
    submit(testapp, "src", "import os, time\nopen(%r, 'w').close()\n"
           "while not os.path.exists(%r): time.sleep(0.01)" % (str(flag), str(go)))
    wait_for(flag.exists, message="the cell to start")
    assert testapp.post_json("/envs/src/fork", {"id": "later", "wait": 0}).status_int == 202
    later_dir = os.path.join(state_dir, "envs", "later")
    wait_for(lambda: not working_in(later_dir), message="no standby of the queued fork left")
    go.touch()
    wait_for(lambda: testapp.get("/envs/later").json["state"] == "idle",
             message="the fork to happen at the boundary")
    with open(os.path.join(later_dir, "env.json")) as handle:
        supervisor = json.load(handle)["supervisor_pid"]
    working = working_in(later_dir)  # its supervisor and the new process's reaper, no other
    assert len(working) == 2 and supervisor in working, working
    assert value(testapp, "later", "1 + 1") == "2"
