"""Restore without waiting (issue 18's restore target): real kernels, real processes.

A restore resumes the checkpoint's spare at once (kernel/checkpoint.py) and sweeps
the old process's tree in the background (kernel/process_tree.py ``replace``), so
these tests look at what each part leaves behind: the old tree gone, the new one
untouched, a checkpoint that stays one checkpoint however often it is restored,
and a restore that still works when a part of it died.
"""

import os
import signal

import pytest
import webtest

from helpers import (TOKEN, assert_problem, kill_if_alive, pid_alive, processes_in, run, value,
                     wait_for)
from wsgikernel.provisioning.processes import parent_of


@pytest.fixture
def testapp(make_test_app):
    testapp = webtest.TestApp(make_test_app(),
                              extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    assert testapp.post_json("/envs", {"id": "nb"}).status_int == 201
    return testapp


def checkpoint(testapp, name):
    res = testapp.post_json("/envs/nb/checkpoints", {"name": name})
    assert res.status_int == 201, res.body[:500]


def restore(testapp, name):
    res = testapp.post("/envs/nb/checkpoints/%s/restore" % name)
    assert res.status_int == 200, res.body[:500]
    return res.json


def copies(testapp):
    """pids of the env's processes in its work dir but the live one (its parked copies)."""
    env = testapp.get("/envs/nb").json
    return sorted(pid for pid in processes_in(env["cwd"]) if pid != env["pid"])


START = ("import subprocess\n"
         "group = subprocess.Popen(['sleep', '600'])\n"
         "daemon = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
         "group.pid, daemon.pid")


def started(testapp):
    record = run(testapp, "nb", START)
    assert record["status"] == "ok", record
    return [int(pid) for pid in record["result"]["text/plain"].strip("()").split(",")]


def test_a_restore_ends_the_old_tree_and_spares_what_the_restored_process_starts(testapp):
    run(testapp, "nb", "x = 'before'")
    checkpoint(testapp, "c")
    old = started(testapp)  # in the live group, and a setsid() daemon
    old_live = testapp.get("/envs/nb").json["pid"]
    restore(testapp, "c")
    assert value(testapp, "nb", "x") == "'before'"
    wait_for(lambda: not any(pid_alive(pid) for pid in old + [old_live]),
             message="the old process and what it started to be killed")
    new = started(testapp)
    restore(testapp, "c")  # a second restore ends what the first one's process started
    wait_for(lambda: not any(pid_alive(pid) for pid in new), message="the second old tree")
    again = started(testapp)
    for _ in range(3):  # the background sweep of the last restore is long over by now
        assert all(pid_alive(pid) for pid in again), again
        run(testapp, "nb", "pass")
    run(testapp, "nb", "for p in (group, daemon): p.kill(); p.wait()")


def settled(testapp, old):
    """The parked copies once ``old`` (the process a restore replaced) is gone and the
    checkpoint's spare (a copy whose parent is a copy) is there; None before."""
    found = copies(testapp)
    spare = [pid for pid in found if parent_of(pid) in found]
    return found if spare and old not in found else None


def test_a_checkpoint_restored_many_times_stays_one_checkpoint(testapp):
    run(testapp, "nb", "rows = [1, 2]")
    checkpoint(testapp, "c")
    after_one, live = None, testapp.get("/envs/nb").json["pid"]
    for n in range(6):
        restore(testapp, "c")
        assert value(testapp, "nb", "rows.append(3); rows") == "[1, 2, 3]"
        old, live = live, testapp.get("/envs/nb").json["pid"]
        if after_one is None:  # once the first restore's old process is gone, its spare made
            after_one = len(wait_for(lambda: settled(testapp, old),
                                     message="the first restore to settle"))
        # The old processes go in the background: poll for the count to settle.
        wait_for(lambda: len(copies(testapp)) == after_one,
                 message="restore %d to leave as many copies as the first" % n)
        assert all(parent_of(pid) != 0 for pid in copies(testapp))
    listed = testapp.get("/envs/nb/checkpoints").json
    assert [c["name"] for c in listed["checkpoints"]] == ["c"], listed
    assert testapp.delete("/envs/nb/checkpoints/c").status_int == 204
    wait_for(lambda: not copies(testapp), message="the dropped checkpoint's processes to end")
    assert testapp.get("/envs/nb").json["pid"] == live


def test_a_checkpoint_whose_spare_was_killed_still_restores(testapp):
    run(testapp, "nb", "kept = 'yes'")
    checkpoint(testapp, "c")
    found = wait_for(lambda: [pid for pid in copies(testapp)
                              if parent_of(pid) in copies(testapp)],
                     message="the checkpoint's spare")  # the copy whose parent is a copy
    for pid in found:
        os.kill(pid, signal.SIGKILL)  # as the OOM killer might
    run(testapp, "nb", "kept = 'changed'")
    restore(testapp, "c")
    assert value(testapp, "nb", "kept") == "'yes'"
    run(testapp, "nb", "kept = 'changed again'")
    restore(testapp, "c")  # and it parks on, with a spare again
    assert value(testapp, "nb", "kept") == "'yes'"


def test_a_spare_that_does_not_take_the_place_is_replaced_and_the_checkpoint_stays(testapp):
    # A SIGKILLed spare keeps its socket open while its memory is torn down, and a
    # stopped one never reads: either way the hand over must not count as done.
    run(testapp, "nb", "kept = 'yes'")
    checkpoint(testapp, "c")
    found = wait_for(lambda: [pid for pid in copies(testapp)
                              if parent_of(pid) in copies(testapp)],
                     message="the checkpoint's spare")
    try:
        for pid in found:
            os.kill(pid, signal.SIGSTOP)
        run(testapp, "nb", "kept = 'changed'")
        restore(testapp, "c")
        assert value(testapp, "nb", "kept") == "'yes'"
        run(testapp, "nb", "kept = 'changed again'")
        restore(testapp, "c")
        assert value(testapp, "nb", "kept") == "'yes'"
    finally:
        for pid in found:
            kill_if_alive(pid)


def test_a_checkpoint_that_died_is_404_before_anything_is_thrown_away(testapp):
    run(testapp, "nb", "x = 'live'")
    checkpoint(testapp, "gone")
    live = testapp.get("/envs/nb").json["pid"]
    for pid in copies(testapp):  # the checkpoint and its spare
        kill_if_alive(pid)
    res = testapp.post("/envs/nb/checkpoints/gone/restore", expect_errors=True)
    assert_problem(res, 404, "checkpoint-not-found", name="gone")
    env = testapp.get("/envs/nb").json
    assert (env["pid"], env["state"], env["session"]) == (live, "idle", 1), env
    assert value(testapp, "nb", "x") == "'live'"


ORPHAN = ("import subprocess\n"
          "out = subprocess.run('sleep 600 >/dev/null 2>&1 & echo $!', shell=True,"
          " capture_output=True, text=True).stdout\n"
          "int(out)")


def test_the_old_trees_end_spares_what_the_new_process_left_to_the_supervisor(testapp):
    run(testapp, "nb", "x = 1")
    checkpoint(testapp, "c")
    run(testapp, "nb", "big = bytes([1]) * (1 << 30)")  # the old process: slow to die
    old_live = testapp.get("/envs/nb").json["pid"]
    restore(testapp, "c")
    orphan = int(value(testapp, "nb", ORPHAN))  # its parent, sh, is gone: ours now
    try:
        wait_for(lambda: not pid_alive(old_live), message="the old process to end")
        for _ in range(3):  # the old tree's end is over: its last sweep has run
            run(testapp, "nb", "pass")
        assert pid_alive(orphan), "the old tree's sweep killed the new process's job"
    finally:
        if pid_alive(orphan):
            os.kill(orphan, signal.SIGKILL)


def spares_of(testapp):
    """The checkpoints' spares: the copies whose parent is a copy."""
    found = copies(testapp)
    return [pid for pid in found if parent_of(pid) in found]


def test_a_dead_spare_costs_neither_the_memory_figure_nor_the_checkpoint(testapp):
    run(testapp, "nb", "import signal\nsignal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
                       "kept = 'yes'")  # a write to a dead spare's pipe would kill
    checkpoint(testapp, "c")
    for pid in wait_for(lambda: spares_of(testapp), message="the spare"):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not spares_of(testapp), message="the spare to die")
    listed = testapp.get("/envs/nb/checkpoints").json
    assert listed["checkpoints"][0]["memory"] > 0 and listed["memory"] > 0, listed
    run(testapp, "nb", "kept = 'changed'")
    restore(testapp, "c")
    assert value(testapp, "nb", "kept") == "'yes'"
