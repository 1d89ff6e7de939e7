"""The server's bound on checkpoints (kernel/ledger.py, issue 18): the ledger's files
alone, then real kernels of two envs sharing the bound."""

import json
import os
import signal

import pytest
import webtest

from helpers import TOKEN, groups, processes_in, run, wait_for
from wsgikernel.kernel import ledger
from wsgikernel.kernel.ledger import Ledger
from wsgikernel.store import LEDGER_DIR


def entry_of(directory, ns, pid, host=ledger.HOST):
    path = os.path.join(directory, "%019d_%d_1_%s" % (ns, pid, host))
    with open(path, "w") as handle:
        json.dump({"env": "e", "name": "n"}, handle)
    return path


def test_entries_are_oldest_first_and_the_own_ones_past_the_bound_are_returned(tmp_path):
    book = Ledger(str(tmp_path / "ledger"), 2)
    first = book.enter("a", "one")
    second = book.enter("a", "two")
    assert book.over([first, second]) == []
    third = book.enter("a", "three")
    assert sorted(os.listdir(book.directory)) == [os.path.basename(p)
                                                  for p in (first, second, third)]
    assert book.over([first, second, third]) == [first]
    book.leave(first)
    book.leave(first)  # twice: nothing to remove, no error
    assert len(book.names()) == 2


def test_stale_entries_are_removed_before_anything_is_evicted(tmp_path):
    directory = str(tmp_path)
    dead = entry_of(directory, 1, 2 ** 22 + 12345)  # no such process (pid_max is lower)
    stranger = entry_of(directory, 2, 1)  # init: not one of our kernels
    stray = os.path.join(directory, "9-not-an-entry")
    open(stray, "w").close()
    book = Ledger(directory, 1)
    mine = book.enter("a", "one")
    assert book.over([mine]) == []
    assert not os.path.exists(dead) and not os.path.exists(stranger)
    assert os.path.exists(stray)  # not a name the ledger writes: never counted or touched


def test_another_hosts_entries_are_counted_but_never_claimed_from_here(tmp_path):
    directory = str(tmp_path)
    remote = entry_of(directory, 1, 2 ** 22 + 12345, host="node-7.cluster")
    book = Ledger(directory, 1)
    mine = book.enter("a", "one")
    assert book.over([mine]) == []  # the oldest is remote: left for its own host
    assert os.path.exists(remote) and os.path.exists(mine)


def test_no_directory_or_no_bound_means_no_ledger(tmp_path):
    assert Ledger(None, 3).enter("a", "one") is None
    book = Ledger(str(tmp_path), 0)
    entries = [book.enter("a", str(n)) for n in range(5)]
    assert book.over(entries) == []
    assert ledger.missing(entries + [None]) == []


@pytest.fixture
def bounded(make_test_app, state_dir):
    app = make_test_app(max_server_checkpoints=3, pool_size=0)
    testapp = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    for env_id in ("a", "b"):
        assert testapp.post_json("/envs", {"id": env_id}).status_int == 201
        run(testapp, env_id, "x = %r" % env_id)
    return testapp


def names(testapp, env_id):
    return [c["name"] for c in testapp.get("/envs/%s/checkpoints" % env_id).json["checkpoints"]]


def take(testapp, env_id, name):
    res = testapp.post_json("/envs/%s/checkpoints" % env_id, {"name": name})
    assert res.status_int == 201, res.body[:300]


def test_the_server_bound_drops_the_oldest_checkpoint_whichever_env_holds_it(bounded,
                                                                             state_dir):
    for env_id, name in (("a", "a1"), ("a", "a2"), ("b", "b1")):
        take(bounded, env_id, name)
    book = os.path.join(state_dir, LEDGER_DIR)
    assert len(os.listdir(book)) == 3
    cwd = bounded.get("/envs/a").json["cwd"]
    before = len(groups(processes_in(cwd)))  # a checkpoint's group holds its spare too
    take(bounded, "b", "b2")
    wait_for(lambda: names(bounded, "a") == ["a2"], message="a's oldest to be evicted")
    assert names(bounded, "b") == ["b1", "b2"]
    assert bounded.get("/envs/a").json["checkpoints"] == 1
    wait_for(lambda: len(groups(processes_in(cwd))) == before - 1,
             message="its processes to end")
    res = bounded.post("/envs/a/checkpoints/a1/restore", expect_errors=True)
    assert res.status_int == 404 and res.json["name"] == "a1"
    assert len(os.listdir(book)) == 3
    assert bounded.delete("/envs/b").status_int == 204
    wait_for(lambda: len(os.listdir(book)) == 1, message="b's entries to go with it")


def test_automatic_checkpoints_count_too_and_go_first_when_oldest(make_test_app, state_dir):
    app = make_test_app(max_server_checkpoints=2, auto_checkpoints=2, pool_size=0)
    testapp = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    for env_id in ("a", "b"):
        assert testapp.post_json("/envs", {"id": env_id}).status_int == 201
    run(testapp, "a", "x = 1")
    run(testapp, "a", "x = 2")  # auto-1, auto-2 in a
    assert names(testapp, "a") == ["auto-1", "auto-2"]
    run(testapp, "b", "y = 1")  # auto-1 in b: a's auto-1 goes
    wait_for(lambda: names(testapp, "a") == ["auto-2"], message="a's auto-1 to be evicted")
    assert names(testapp, "b") == ["auto-1"]
    assert testapp.post("/envs/a/undo").status_int == 200
    assert testapp.post("/envs/a/undo", expect_errors=True).status_int == 409


def test_a_killed_supervisors_entries_cost_no_other_env_a_checkpoint(bounded, state_dir):
    take(bounded, "a", "a1")
    take(bounded, "a", "a2")
    with open(os.path.join(state_dir, "envs", "a", "env.json")) as handle:
        supervisor = json.load(handle)["supervisor_pid"]
    cwd = bounded.get("/envs/a").json["cwd"]
    os.kill(supervisor, signal.SIGKILL)  # no cleanup: its two entries stay behind
    wait_for(lambda: not processes_in(cwd), message="env a's processes to end")
    for name in ("b1", "b2", "b3"):
        take(bounded, "b", name)
    assert names(bounded, "b") == ["b1", "b2", "b3"]
    assert len(os.listdir(os.path.join(state_dir, LEDGER_DIR))) == 3
