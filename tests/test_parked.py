"""Cells parked for a kernel not started yet (wsgikernel/parked.py): counts, order, lock.

The parking and the taking are plain file operations on an env directory, tested here
without a kernel; tests/test_slurm.py runs them against real queued jobs.
"""

import os
import threading

from wsgikernel import parked
from wsgikernel.store import History, read_record, write_record

STARTING = {"id": "env", "state": "starting", "session": 2, "execution_count": 3,
            "kernel_id": "k1"}


def env_dir(tmp_path, **record):
    write_record(str(tmp_path), dict(STARTING, **record))
    return str(tmp_path)


def park(folder, code, history=None, kernel_id="k1"):
    history = history or History(folder, None)
    return parked.park(folder, history, {"code": code}, "req-" + code, kernel_id)


def test_counts_follow_env_json_and_history_and_each_other(tmp_path):
    folder = env_dir(tmp_path)
    history = History(folder, None)
    history.append({"execution_count": 7, "status": "ok"})
    first, second = park(folder, "a", history), park(folder, "b", history)
    assert (first["execution_count"], second["execution_count"]) == (8, 9)
    assert first["status"] == "queued" and first["session"] == 2 and first["env"] == "env"
    assert history.find(8)["status"] == "queued" and history.find_request("req-b")["code"] == "b"
    assert parked.count(folder) == 2


def test_nothing_is_parked_once_the_kernel_has_started_or_another_replaced_it(tmp_path):
    folder = env_dir(tmp_path, state="idle")
    assert park(folder, "a") is None
    write_record(folder, dict(STARTING, kernel_id="k2"))  # a restart's new job
    assert park(folder, "a", kernel_id="k1") is None
    assert parked.count(folder) == 0 and History(folder, None).read() == []


def test_take_for_one_kernel_leaves_the_others_cells(tmp_path):
    folder = env_dir(tmp_path)
    park(folder, "old")
    write_record(folder, dict(STARTING, kernel_id="k2"))
    park(folder, "new", kernel_id="k2")
    with parked.locked(folder):
        taken = parked.take(folder, "k1")
    assert [(r["code"], k) for r, _, k in taken] == [("old", "k1")]
    assert [(r["code"], k) for r, _, k in parked.take(folder)] == [("new", "k2")]


def test_a_history_that_cannot_be_written_parks_nothing(tmp_path):
    folder = env_dir(tmp_path)

    class Full(History):
        def accepted(self, record, request_id=None):
            raise OSError(28, "No space left on device")

    try:
        park(folder, "a", Full(folder, None))
    except OSError as exc:
        assert exc.errno == 28
    else:
        raise AssertionError("the park did not fail")
    assert parked.count(folder) == 0


def test_take_hands_over_every_cell_in_count_order_and_removes_it(tmp_path):
    folder = env_dir(tmp_path, execution_count=0)
    for index in range(11):  # 10.json sorts before 2.json as text: order by number
        park(folder, "c%d" % index)
    with parked.locked(folder):
        taken = parked.take(folder)
    assert [record["execution_count"] for _, record, _ in taken] == list(range(1, 12))
    assert [request["code"] for request, _, _ in taken] == ["c%d" % i for i in range(11)]
    assert taken[0][0]["request"] == "req-c0"  # the kernel tags history with it
    assert parked.count(folder) == 0 and parked.take(folder) == []


def test_an_unreadable_parked_file_is_skipped_not_fatal(tmp_path):
    folder = env_dir(tmp_path)
    park(folder, "good")
    with open(os.path.join(folder, parked.PARKED_DIR, "1.json"), "w") as handle:
        handle.write("{torn")
    for stray in ("notes.txt", "x.json", ".tmp-123"):
        open(os.path.join(folder, parked.PARKED_DIR, stray), "w").close()
    taken = parked.take(folder)
    assert [request["code"] for request, _, _ in taken] == ["good"]


def test_unpark_removes_one_cell_once(tmp_path):
    folder = env_dir(tmp_path)
    queued = park(folder, "a")
    park(folder, "b")
    calls = []
    assert parked.unpark(folder, queued["execution_count"], lambda: calls.append(1)) is True
    assert parked.unpark(folder, queued["execution_count"], lambda: calls.append(2)) is False
    assert parked.unpark(folder, 999, lambda: calls.append(3)) is False
    assert calls == [1]  # called only for the one removed, with the lock held
    assert [r["code"] for _, r, _ in parked.take(folder)] == ["b"]


def test_parkers_in_parallel_never_share_a_count(tmp_path):
    folder = env_dir(tmp_path, execution_count=0)
    counts, errors = [], []

    def parker(name):
        try:
            history = History(folder, None)  # each worker has its own
            for index in range(5):
                counts.append(park(folder, "%s%d" % (name, index), history)["execution_count"])
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=parker, args=("t%d" % i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert sorted(counts) == list(range(1, 41))
    assert parked.count(folder) == 40


def test_a_kernel_that_takes_the_cells_and_goes_idle_under_the_lock_leaves_none(tmp_path):
    """The kernel's side of the lock: once it has taken the cells and written idle,
    a late parker is told to send its cell to the live kernel instead."""
    folder = env_dir(tmp_path)
    park(folder, "early")
    with parked.locked(folder):
        taken = parked.take(folder)
        write_record(folder, dict(read_record(folder), state="idle"))
    assert len(taken) == 1
    assert park(folder, "late") is None and parked.count(folder) == 0
