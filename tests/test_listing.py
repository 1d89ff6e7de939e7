"""GET /envs from what each supervisor publishes (store.StatusFile), not from round trips.

The listing reads status.json, which a running supervisor rewrites before each
answer and holds locked for as long as it lives: after an answer the listing
shows at least that state; a supervisor that was killed is seen dead at once
(its lock went with it); a file that cannot be used (torn, garbage, another
kernel's) makes the listing ask the kernel, as GET /envs/{id} does.
"""

import json
import os
import signal

from helpers import run, wait_for


def listing(testapp):
    return {env["id"]: env for env in testapp.get("/envs").json["envs"]}


def status_path(state_dir, env_id):
    return os.path.join(state_dir, "envs", env_id, "status.json")


def env_json(state_dir, env_id):
    with open(os.path.join(state_dir, "envs", env_id, "env.json")) as handle:
        return json.load(handle)


def test_the_listing_shows_what_the_last_answer_said(testapp, app, state_dir):
    testapp.put_json("/envs/l1", {})
    for n in (1, 2, 3):
        run(testapp, "l1", "x = %d" % n)
        env = listing(testapp)["l1"]
        assert (env["state"], env["execution_count"]) == ("idle", n)
    with open(status_path(state_dir, "l1")) as handle:
        published = json.loads(handle.read())
    assert published["execution_count"] == 3
    assert published["supervisor_pid"] == env_json(state_dir, "l1")["supervisor_pid"]


def test_a_killed_supervisor_is_listed_dead(testapp, state_dir):
    testapp.put_json("/envs/l2", {})
    record = env_json(state_dir, "l2")
    os.kill(record["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: listing(testapp)["l2"]["state"] == "dead",
             message="the listing sees the supervisor gone")
    env = listing(testapp)["l2"]
    assert env["reason"] == "kernel_lost"
    assert testapp.get("/envs/l2").json["state"] == "dead"


def test_an_unusable_status_file_makes_the_listing_ask_the_kernel(testapp, state_dir):
    testapp.put_json("/envs/l3", {})
    run(testapp, "l3", "1")
    path = status_path(state_dir, "l3")
    with open(path, "r+") as handle:  # the supervisor's lock stays: only the text is bad
        handle.write('{"state": "busy", "execution_co')
        handle.truncate()
    env = listing(testapp)["l3"]
    assert (env["state"], env["execution_count"]) == ("idle", 1)
    with open(path, "r+") as handle:  # another kernel's status: not believed either
        handle.write(json.dumps({"state": "busy", "execution_count": 99,
                                 "supervisor_pid": 1}))
        handle.truncate()
    env = listing(testapp)["l3"]
    assert (env["state"], env["execution_count"]) == ("idle", 1)


def test_a_fifo_in_place_of_the_status_file_cannot_hang_the_listing(testapp, state_dir):
    """A cell can write its env directory: a FIFO there must not block GET /envs."""
    import threading
    testapp.put_json("/envs/l4", {})
    run(testapp, "l4", "import os; os.remove('../status.json'); os.mkfifo('../status.json')")
    answers = []
    thread = threading.Thread(target=lambda: answers.append(listing(testapp)), daemon=True)
    thread.start()
    thread.join(10)
    assert answers, "GET /envs hung on a FIFO"
    assert answers[0]["l4"]["state"] == "idle"  # asked the kernel instead
