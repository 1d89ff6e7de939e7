"""The user-code process's whole tree (issue 15): its death is seen from the process
itself, no descendant survives a stop (``setsid()`` daemons included), and a stop
never stalls the supervisor's loop.

Real processes throughout.  Every wait is a poll with a hang guard
(helpers.wait_for, thread joins with a timeout); nothing asserts timings, only the
order of events.  Every pid a cell reports is SIGKILLed in ``finally``.
"""

import os
import signal
import threading

import pytest

from helpers import HANG_GUARD, pid_alive, run, value, wait_for
from test_kernel_failures import client, create, read_env_json, supervisor_pid

# A cell that forks a helper (as multiprocessing's fork workers do): the helper holds
# every descriptor of the user-code process, the control socket and pipes included.
FORK_HELPER = ("import os, time\n"
               "helper = os.fork()\n"
               "if helper == 0:\n"
               "    time.sleep(60)\n"
               "    os._exit(0)\n"
               "helper\n")

# A new-session subprocess, and a classic double-fork + setsid() daemon.
DAEMONS = ("import os, subprocess, time\n"
           "session = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
           "r, w = os.pipe()\n"
           "first = os.fork()\n"
           "if first == 0:\n"
           "    os.setsid()\n"
           "    if os.fork() == 0:\n"
           "        devnull = os.open(os.devnull, os.O_RDWR)\n"
           "        for fd in (0, 1, 2):\n"
           "            os.dup2(devnull, fd)\n"
           "        os.write(w, str(os.getpid()).encode())\n"
           "        os.close(w)\n"
           "        time.sleep(300)\n"
           "    os._exit(0)\n"
           "os.close(w)\n"
           "os.waitpid(first, 0)\n"
           "daemon = int(os.read(r, 64))\n"
           "os.close(r)\n"
           "print(session.pid, daemon)\n")

STARTED = "open('started', 'w').close()\n"


def wait_marker(env, name):
    path = os.path.join(env["cwd"], name)
    wait_for(lambda: os.path.exists(path), message="%s marker" % name)


def children(pid):
    """{child pid: state letter} of the processes whose parent is ``pid`` (/proc)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found[int(name)] = fields[0]
    return found


def has_pidfd(pid):
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if "pidfd" in os.readlink("/proc/%d/fd/%s" % (pid, fd)):
                return True
        except OSError:
            continue
    return False


def daemons(testapp, env_id):
    record = run(testapp, env_id, DAEMONS)
    assert record["status"] == "ok", record
    pids = [int(word) for word in record["stdout"].split()]
    assert len(pids) == 2 and all(pid_alive(pid) for pid in pids), pids
    return pids


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(params=["pidfd", "sigchld"])
def death_watch(request, tmp_path, monkeypatch):
    """Kernels started in this test watch their child with a pidfd, or (no
    os.pidfd_open, as on Python < 3.9 or Linux < 5.3) with SIGCHLD + waitpid."""
    if request.param == "sigchld":
        (tmp_path / "sitecustomize.py").write_text(
            "import os\ntry:\n    del os.pidfd_open\nexcept AttributeError:\n    pass\n")
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
            p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p))
    return request.param


# -- fault 1: death seen from the process, not from EOF ----------------------------------

def test_kill_9_is_seen_though_a_forked_helper_holds_the_kernels_descriptors(
        app, testapp, death_watch):
    env = create(testapp, "forker")
    supervisor = supervisor_pid(app, "forker")
    if death_watch == "sigchld":
        assert not has_pidfd(supervisor)
    pids = []
    try:
        helper = int(value(testapp, "forker", FORK_HELPER))
        pids.append(helper)
        assert pid_alive(helper)
        res = testapp.post_json("/envs/forker/execute",
                                {"code": STARTED + "import time\ntime.sleep(1000)", "wait": 0})
        assert res.status_int == 202
        n = res.json["execution_count"]
        wait_marker(env, "started")
        os.kill(env["pid"], signal.SIGKILL)

        def finished():
            record = testapp.get("/envs/forker/executions/%d" % n).json
            return record if record["status"] not in ("queued", "running") else None

        record = wait_for(finished, message="the running execution ended")
        assert record["status"] == "aborted"
        assert record["reason"] == "kernel_died"
        assert record["error"]["ename"] == "KernelDied"
        assert "SIGKILL" in record["error"]["evalue"]
        dead = testapp.get("/envs/forker").json
        assert dead["state"] == "dead"
        assert dead["exit"] == {"code": None, "signal": "SIGKILL"}
        assert dead["reason"] == "kernel_died"
        wait_for(lambda: not pid_alive(helper), message="the forked helper killed")
        wait_for(lambda: children(supervisor) == {}, message="no zombie under the supervisor")
        assert pid_alive(supervisor)
        # and the env comes back
        assert testapp.post_json("/envs/forker/restart", {}).json["state"] == "idle"
        assert value(testapp, "forker", "6 * 7") == "42"
    finally:
        kill_all(pids)


# -- fault 2: no surviving descendants, setsid() daemons included --------------------------

def test_delete_leaves_no_setsid_daemon_behind(app, testapp):
    env = create(testapp, "daemonic")
    pids = []
    try:
        pids += daemons(testapp, "daemonic")
        pids.append(int(value(testapp, "daemonic", FORK_HELPER)))
        assert testapp.delete("/envs/daemonic").status_int == 204
        for pid in pids + [env["pid"]]:
            wait_for(lambda: not pid_alive(pid), message="pid %d gone" % pid)
    finally:
        kill_all(pids)


def test_restart_leaves_no_setsid_daemon_and_no_zombie_behind(app, testapp):
    env = create(testapp, "reborn")
    supervisor = supervisor_pid(app, "reborn")
    pids = []
    try:
        pids += daemons(testapp, "reborn")
        pids.append(int(value(testapp, "reborn", FORK_HELPER)))
        restarted = testapp.post_json("/envs/reborn/restart", {}).json
        assert restarted["state"] == "idle"
        assert restarted["pid"] != env["pid"]
        for pid in pids + [env["pid"]]:
            wait_for(lambda: not pid_alive(pid), message="pid %d gone" % pid)
        # the new user-code process is the supervisor's only child, and no zombie is left
        def only_the_new_kernel():
            found = children(supervisor)
            return set(found) == {restarted["pid"]} and "Z" not in found.values()

        wait_for(only_the_new_kernel, message="only the new kernel under the supervisor")
        assert value(testapp, "reborn", "'fresh'") == "'fresh'"
    finally:
        kill_all(pids)


def test_kernel_death_takes_its_setsid_daemons_along(app, testapp, death_watch):
    env = create(testapp, "orphaner")
    supervisor = supervisor_pid(app, "orphaner")
    pids = []
    try:
        pids += daemons(testapp, "orphaner")
        os.kill(env["pid"], signal.SIGKILL)
        wait_for(lambda: testapp.get("/envs/orphaner").json["state"] == "dead",
                 message="env dead")
        for pid in pids:
            wait_for(lambda: not pid_alive(pid), message="pid %d gone" % pid)
        wait_for(lambda: children(supervisor) == {}, message="no zombie under the supervisor")
        assert pid_alive(supervisor)
    finally:
        kill_all(pids)


# -- fault 3: a stop in progress does not stall the supervisor -------------------------------

IGNORES_SIGTERM = ("import signal, time\n"
                   "def on_term(signum, frame):\n"
                   "    open('term', 'w').close()\n"
                   "signal.signal(signal.SIGTERM, on_term)\n" + STARTED +
                   "while True:\n"
                   "    time.sleep(1)\n")


@pytest.mark.parametrize("action", ["restart", "delete"])
def test_status_is_answered_while_a_stop_waits_out_kill_grace(make_test_app, action):
    # kill_grace far beyond the test: the stop can only end early because we SIGKILL.
    app = make_test_app(kill_grace=HANG_GUARD * 4)
    testapp = client(app)
    env = create(testapp, "slowstop")
    old = env["pid"]
    supervisor = supervisor_pid(app, "slowstop")
    res = testapp.post_json("/envs/slowstop/execute", {"code": IGNORES_SIGTERM, "wait": 0})
    assert res.status_int == 202
    wait_marker(env, "started")
    events, outcome = [], {}

    def stop():
        local = client(app)
        try:
            if action == "restart":
                outcome["res"] = local.post_json("/envs/slowstop/restart", {})
            else:
                outcome["res"] = local.delete("/envs/slowstop")
        except BaseException as exc:  # reported below
            outcome["error"] = exc
        events.append(action + " answered")

    thread = threading.Thread(target=stop, daemon=True)
    thread.start()
    try:
        wait_marker(env, "term")  # SIGTERM reached the cell: the stop is under way
        # the supervisor itself answers (the manager would fall back to env.json after
        # its own timeout, so ask it directly too, with only the hang guard as a bound)
        reply = app.manager.call(read_env_json(app, "slowstop"), "status",
                                 timeout=HANG_GUARD)
        status = testapp.get("/envs/slowstop")
        events.append("status answered")
        assert reply["supervisor_pid"] == supervisor
        assert status.status_int == 200
        assert status.json["id"] == "slowstop"
        assert pid_alive(old), "the status was only answered after the stop"
        assert thread.is_alive()
    finally:
        os.kill(old, signal.SIGKILL)  # ends the grace: the stop finishes now
        thread.join(HANG_GUARD)
    assert not thread.is_alive(), "the %s did not return" % action
    assert "error" not in outcome, outcome
    assert events == ["status answered", action + " answered"]
    if action == "restart":
        restarted = outcome["res"].json
        assert restarted["state"] == "idle"
        assert restarted["session"] == env["session"] + 1
        assert restarted["pid"] != old
        assert value(testapp, "slowstop", "1 + 1") == "2"
    else:
        assert outcome["res"].status_int == 204
        assert testapp.get("/envs/slowstop", expect_errors=True).status_int == 404
