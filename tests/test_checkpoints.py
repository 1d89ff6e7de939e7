"""Checkpoints, restore and undo (issue 18): real kernels, real forked copies.

A checkpoint is a parked fork of the user-code process (kernel/checkpoint.py), so
what cannot be pickled survives it; these tests go through the HTTP API
(webtest) and look at the processes left behind.
"""

import os
import signal

import pytest
import webtest

from helpers import (TOKEN, assert_problem, groups, kill_if_alive, pid_alive, processes_in, run,
                     submit, value, wait_for)


@pytest.fixture
def client(make_test_app):
    def build(**config):
        return webtest.TestApp(make_test_app(**config),
                               extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    return build


@pytest.fixture
def testapp(client):
    testapp = client(auto_checkpoints=3)
    assert testapp.post_json("/envs", {"id": "nb"}).status_int == 201
    return testapp


def checkpoint(testapp, name=None, **body):
    res = testapp.post_json("/envs/nb/checkpoints", dict(body, **({"name": name} if name
                                                                   else {})))
    assert res.status_int == 201, res.body[:500]
    return res


def restore(testapp, name):
    res = testapp.post("/envs/nb/checkpoints/%s/restore" % name)
    assert res.status_int == 200, res.body[:500]
    return res.json


def test_a_restore_gives_back_the_namespace_a_destructive_cell_changed(testapp):
    run(testapp, "nb", "rows = [1, 2, 3]\ntable = {'x': [1], 'y': [2]}")
    res = checkpoint(testapp, "before")
    assert res.headers["Location"].endswith("/envs/nb/checkpoints/before")
    taken = res.json
    assert (taken["name"], taken["execution_count"], taken["auto"]) == ("before", 1, False)
    assert "memory" not in taken, taken  # a /proc walk: GET .../checkpoints has it
    run(testapp, "nb", "rows.clear()\ndel table['x']\nadded = True")
    restored = restore(testapp, "before")
    assert restored["restored"] == {"checkpoint": "before", "execution_count": 1}, restored
    assert restored["session"] == 2 and restored["state"] == "idle", restored
    assert value(testapp, "nb", "rows, sorted(table)") == "([1, 2, 3], ['x', 'y'])"
    assert run(testapp, "nb", "added")["error"]["ename"] == "NameError"
    run(testapp, "nb", "rows.append(4)")  # the checkpoint stays as it was: restore again
    restore(testapp, "before")
    assert value(testapp, "nb", "rows") == "[1, 2, 3]"
    history = testapp.get("/envs/nb/executions").json["executions"]
    restores = [r for r in history if r["code"] == "%restore before"]
    assert len(restores) == 2 and restores[0]["restored"]["checkpoint"] == "before", history
    assert restores[0]["status"] == "ok" and "restored checkpoint" in restores[0]["stdout"]


def test_what_cannot_be_pickled_survives_a_restore(testapp):
    run(testapp, "nb", "import re, socket\n"
                       "a, b = socket.socketpair()\n"
                       "numbers = (n * n for n in range(10))\n"
                       "next(numbers); next(numbers)\n"
                       "square = lambda v: v * v\n"
                       "word = re.compile(r'\\w+')")
    checkpoint(testapp, "live")
    run(testapp, "nb", "del a, b, numbers, square, word")
    restore(testapp, "live")
    assert value(testapp, "nb", "a.send(b'ping'); b.recv(4)") == "b'ping'"
    assert value(testapp, "nb", "next(numbers)") == "4"
    assert value(testapp, "nb", "square(7), word.findall('two words')") == \
        "(49, ['two', 'words'])"


def test_a_numpy_array_survives_a_restore_after_a_destructive_cell(testapp):
    pytest.importorskip("numpy")  # kernels run this interpreter
    run(testapp, "nb", "import numpy\ngrid = numpy.arange(12.0).reshape(3, 4)")
    checkpoint(testapp, "before")
    run(testapp, "nb", "grid[:] = 0\ngrid.resize(0, refcheck=False)")
    restore(testapp, "before")
    assert value(testapp, "nb", "grid.shape, float(grid.sum())") == "((3, 4), 66.0)"


def test_undo_goes_back_cell_by_cell_until_none_is_kept(client):
    testapp = client(auto_checkpoints=3)
    testapp.post_json("/envs", {"id": "nb"})
    for code in ("x = 1", "x = 2", "x = 3", "x = 4"):
        run(testapp, "nb", code)
    restored = [testapp.post("/envs/nb/undo").json["restored"] for _ in range(3)]
    assert [r["checkpoint"] for r in restored] == ["auto-4", "auto-3", "auto-2"], restored
    assert value(testapp, "nb", "x") == "1"
    testapp.post("/envs/nb/undo")  # the state before that value() cell: x is still 1
    res = testapp.post("/envs/nb/undo", expect_errors=True)
    body = assert_problem(res, 409, "checkpoint-conflict", env_id="nb")
    assert "no automatic checkpoint is left" in body["detail"], body


def test_undo_without_auto_checkpoints_is_409_saying_so(client):
    testapp = client()
    testapp.post_json("/envs", {"id": "nb"})
    run(testapp, "nb", "x = 1")
    body = assert_problem(testapp.post("/envs/nb/undo", expect_errors=True), 409,
                          "checkpoint-conflict")
    assert "auto_checkpoints is 0" in body["detail"], body


def test_a_checkpoint_is_refused_while_a_cell_thread_runs_unless_forced(testapp):
    run(testapp, "nb", "import threading\nstop = threading.Event()\n"
                       "worker = threading.Thread(target=stop.wait, name='loader')\n"
                       "worker.start()")
    res = testapp.post_json("/envs/nb/checkpoints", {"name": "t"}, expect_errors=True)
    body = assert_problem(res, 409, "checkpoint-conflict")
    assert "loader" in body["detail"] and "force=true" in body["detail"], body
    forced = checkpoint(testapp, "t", force=True).json
    assert forced["name"] == "t"
    run(testapp, "nb", "stop.set(); worker.join()")
    restore(testapp, "t")
    assert value(testapp, "nb", "worker.is_alive(), stop.is_set()") == "(False, False)"


def test_a_busy_env_is_not_checkpointed_or_restored(testapp, tmp_path):
    checkpoint(testapp, "idle")
    flag = tmp_path / "started"
    submitted = submit(testapp, "nb", "import time\nopen(%r, 'w').close()\ntime.sleep(30)"
                       % str(flag))
    wait_for(flag.exists, message="the cell to start")
    for res in (testapp.post_json("/envs/nb/checkpoints", {"name": "b"}, expect_errors=True),
                testapp.post("/envs/nb/checkpoints/idle/restore", expect_errors=True),
                testapp.post("/envs/nb/undo", expect_errors=True)):
        body = assert_problem(res, 409, "checkpoint-conflict")
        assert "a cell is running" in body["detail"], body
    testapp.post("/envs/nb/interrupt")
    record = testapp.get("/envs/nb/executions/%d?wait=30" % submitted["execution_count"]).json
    assert record["reason"] == "interrupted", record


def test_checkpoints_are_listed_named_and_dropped(testapp):
    run(testapp, "nb", "kept = 1")
    first = checkpoint(testapp).json
    second = checkpoint(testapp).json
    assert (first["name"], second["name"]) == ("checkpoint-1", "checkpoint-2")
    listing = testapp.get("/envs/nb/checkpoints").json
    names = [c["name"] for c in listing["checkpoints"]]
    assert names == ["auto-1", "checkpoint-1", "checkpoint-2"], listing
    assert listing["memory"] == sum(c["memory"] for c in listing["checkpoints"]) > 0
    env = testapp.get("/envs/nb").json
    assert env["checkpoints"] == 3 and env["checkpoint_memory"] > 0, env
    res = testapp.post_json("/envs/nb/checkpoints", {"name": "checkpoint-1"},
                            expect_errors=True)
    assert "exists" in assert_problem(res, 409, "checkpoint-conflict")["detail"]
    before = groups(p for p in processes_in(env["cwd"]) if p != env["pid"])
    assert testapp.delete("/envs/nb/checkpoints/checkpoint-1").status_int == 204
    res = testapp.delete("/envs/nb/checkpoints/checkpoint-1", expect_errors=True)
    assert_problem(res, 404, "checkpoint-not-found", name="checkpoint-1")
    res = testapp.post("/envs/nb/checkpoints/nope/restore", expect_errors=True)
    assert_problem(res, 404, "checkpoint-not-found", name="nope")
    assert len(before) == 3, before  # a group per checkpoint (with its spare), one ending
    wait_for(lambda: len(groups(copies(testapp))) == 2,
             message="the dropped checkpoint's processes to end")


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "x" * 65, "sp ace", "\ud800"])
def test_bad_checkpoint_names_are_422(testapp, name):
    res = testapp.post_json("/envs/nb/checkpoints", {"name": name}, expect_errors=True)
    assert_problem(res, 422, "invalid-parameter", param="name")


def test_a_restored_process_is_timed_out_and_killed_and_its_death_ends_the_checkpoints(
        testapp):
    run(testapp, "nb", "kept = 'yes'")
    checkpoint(testapp, "c")
    restore(testapp, "c")
    record = run(testapp, "nb", "import time\ntime.sleep(30)", timeout=0.5)
    assert (record["status"], record["reason"]) == ("aborted", "timeout"), record
    assert value(testapp, "nb", "kept") == "'yes'"
    # SIGINT ignored: the timeout escalates to SIGKILL of the live group; c is spared
    record = run(testapp, "nb", "import signal, time\nsignal.signal(signal.SIGINT, "
                                "signal.SIG_IGN)\ntime.sleep(30)", timeout=0.5)
    assert (record["status"], record["reason"]) == ("aborted", "timeout"), record
    env = testapp.get("/envs/nb").json
    assert env["state"] == "dead" and env["exit"]["signal"] == "SIGKILL", env
    res = testapp.post("/envs/nb/checkpoints/c/restore", expect_errors=True)
    assert_problem(res, 409, "env-not-running", state="dead")
    wait_for(lambda: not copies(testapp), message="a dead kernel's checkpoints to end")
    testapp.post("/envs/nb/restart")  # a new kernel: the checkpoints ended with the old one
    res = testapp.post("/envs/nb/checkpoints/c/restore", expect_errors=True)
    assert_problem(res, 404, "checkpoint-not-found")


def test_no_process_is_left_after_deleting_an_env_with_checkpoints(testapp, state_dir):
    run(testapp, "nb", "data = bytearray(1 << 20)")
    checkpoint(testapp, "a")
    checkpoint(testapp, "b")
    run(testapp, "nb", "data[0] = 1")
    env_dir = os.path.join(state_dir, "envs", "nb")
    assert len(processes_in(env_dir)) >= 4  # supervisor, live process, checkpoints
    assert testapp.delete("/envs/nb").status_int == 204
    wait_for(lambda: not processes_in(env_dir), message="no process of the env left")


def test_a_restart_keeps_the_checkpoints(testapp):
    run(testapp, "nb", "kept = 42")
    checkpoint(testapp, "c")
    testapp.post("/envs/nb/restart")
    assert run(testapp, "nb", "kept")["error"]["ename"] == "NameError"
    restore(testapp, "c")
    assert value(testapp, "nb", "kept") == "42"


@pytest.mark.parametrize("pool_size", [0, 1])
def test_auto_checkpoints_can_be_asked_for_per_env(client, pool_size):
    testapp = client(pool_size=pool_size)  # 1: the env is a pooled kernel, bound
    env = testapp.post_json("/envs", {"id": "own", "auto_checkpoints": 2}).json
    assert env["auto_checkpoints"] == 2, env
    for code in ("x = 1", "x = 2", "x = 3"):
        run(testapp, "own", code)
    names = [c["name"] for c in testapp.get("/envs/own/checkpoints").json["checkpoints"]]
    assert names == ["auto-2", "auto-3"], names
    assert testapp.post("/envs/own/undo").json["restored"]["checkpoint"] == "auto-3"
    assert value(testapp, "own", "x") == "2"
    res = testapp.post_json("/envs", {"id": "greedy", "auto_checkpoints": 9},
                            expect_errors=True)  # past the server's max_checkpoints (8)
    assert_problem(res, 422, "invalid-parameter", param="auto_checkpoints")
    assert "auto_checkpoints" not in testapp.post_json("/envs", {"id": "plain"}).json


def copies(testapp):
    """pids of the env's parked copies: its processes in the work dir, bar the live one."""
    env = testapp.get("/envs/nb").json
    return [pid for pid in processes_in(env["cwd"]) if pid != env["pid"]]


def test_a_checkpoint_that_cannot_be_made_leaves_the_kernel_serving(testapp):
    run(testapp, "nb", "import resource\nkept = 'here'\n"
                       "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
                       "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
                       "held = []\n"
                       "try:\n"
                       "    while True: held.append(open('/dev/null'))\n"
                       "except OSError: pass")
    res = testapp.post_json("/envs/nb/checkpoints", {"name": "full"}, expect_errors=True)
    body = assert_problem(res, 409, "checkpoint-conflict")
    assert "could not be copied" in body["detail"], body
    assert value(testapp, "nb", "kept") == "'here'"  # the kernel and its namespace go on
    run(testapp, "nb", "for f in held: f.close()\n"
                       "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))")
    assert checkpoint(testapp, "full").json["name"] == "full"


def test_restoring_a_checkpoint_whose_process_died_keeps_the_live_namespace(testapp):
    run(testapp, "nb", "x = 'live'")
    checkpoint(testapp, "gone")
    for pid in copies(testapp):
        kill_if_alive(pid)  # as the OOM killer might
    wait_for(lambda: not [p for p in copies(testapp) if pid_alive(p)],
             message="the copies to die")
    res = testapp.post("/envs/nb/checkpoints/gone/restore", expect_errors=True)
    assert_problem(res, 404, "checkpoint-not-found", name="gone")
    assert value(testapp, "nb", "x") == "'live'"


def test_automatic_names_are_reserved_and_concurrent_names_never_clash(testapp):
    res = testapp.post_json("/envs/nb/checkpoints", {"name": "auto-2"}, expect_errors=True)
    assert "automatic" in assert_problem(res, 409, "checkpoint-conflict")["detail"]
    import threading
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(
        testapp.post_json("/envs/nb/checkpoints", {}, expect_errors=True)))
        for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    names = sorted(res.json["name"] for res in answers if res.status_int == 201)
    listed = sorted(c["name"] for c in testapp.get("/envs/nb/checkpoints").json["checkpoints"])
    assert len(set(names)) == len(names) and set(names) <= set(listed), (names, listed)


def test_no_checkpoint_outlives_a_killed_supervisor_even_after_a_restart(testapp):
    run(testapp, "nb", "x = 1")
    checkpoint(testapp, "c")
    testapp.post("/envs/nb/restart")  # the fresh child was forked while c's socket was open
    assert copies(testapp)
    import json
    with open(os.path.join(testapp.get("/envs/nb").json["cwd"], "..", "env.json")) as handle:
        supervisor = json.load(handle)["supervisor_pid"]
    cwd = testapp.get("/envs/nb").json["cwd"]
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not processes_in(cwd), message="the checkpoint to exit with its env")


def zombies_of(pid):
    """pids of the zombie children of ``pid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == b"Z" and int(fields[1]) == pid:
            found.append(int(name))
    return found


def test_a_dropped_checkpoint_is_reaped_at_once_not_at_the_next_cell(testapp):
    run(testapp, "nb", "x = 1")
    checkpoint(testapp, "gone")
    live = testapp.get("/envs/nb").json["pid"]
    assert testapp.delete("/envs/nb/checkpoints/gone").status_int == 204
    assert testapp.delete("/envs/nb/checkpoints/auto-1").status_int == 204
    wait_for(lambda: not zombies_of(live) and len(copies(testapp)) == 0,
             message="the dropped checkpoints to be reaped without a cell")
    # The reaping waits only for our copies: a cell's own children are the cell's.
    assert value(testapp, "nb", "import subprocess, os\n"
                 "p = subprocess.Popen(['true']); os.waitpid(p.pid, 0)[0] == p.pid") == "True"
    assert value(testapp, "nb", "subprocess.run(['sh', '-c', 'exit 3']).returncode") == "3"


def test_sigchld_is_the_users_again_once_no_copy_is_left(client):
    testapp = client()
    assert testapp.post_json("/envs", {"id": "nb"}).status_int == 201
    run(testapp, "nb", "import signal; before = signal.getsignal(signal.SIGCHLD)")
    checkpoint(testapp, "c")
    assert testapp.delete("/envs/nb/checkpoints/c").status_int == 204
    wait_for(lambda: not copies(testapp), message="the checkpoint's process to end")
    assert value(testapp, "nb", "signal.getsignal(signal.SIGCHLD) == before") == "True"
    run(testapp, "nb", "signal.signal(signal.SIGCHLD, lambda *a: None)")  # the user's own
    checkpoint(testapp, "d")
    assert value(testapp, "nb", "signal.getsignal(signal.SIGCHLD).__name__") == "'<lambda>'"
