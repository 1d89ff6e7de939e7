"""Kernels as Slurm jobs (launcher slurm): a real single-node cluster, real kernels.

The cluster is scripts/slurm-dev-cluster.sh's (slurmctld + slurmd on this host,
ports of its own), started once per test process and stopped in ``finally``;
everything is skipped with the reason where it cannot run (no slurm-wlm or munge,
not root).  Each env is a batch job running its kernel in the foreground, reached
over the HMAC-authenticated TCP transport.
"""

import json
import os
import subprocess
import threading

import pytest
import webtest

from browser_helpers import SET_CODE, chromium, chromium_problem
from helpers import (HANG_GUARD, TOKEN, LiveServer, assert_problem, processes_in, run, value,
                     wait_for)
from slurm_helpers import cluster_problem, dev_cluster, release
from wsgikernel.wire.connection import KernelConnection, KernelGone

pytestmark = pytest.mark.skipif(cluster_problem() is not None, reason=str(cluster_problem()))


@pytest.fixture(scope="module")
def cluster():
    """SLURM_CONF of a running single-node cluster (this module's own)."""
    with dev_cluster() as conf:
        yield conf


@pytest.fixture
def slurm(cluster, make_test_app):
    """A client of an app whose kernels are Slurm jobs (extra config as keywords)."""
    return lambda **config: client(make_test_app(launcher="slurm", **config))


def client(app):
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})


def squeue(job_id):
    """The job's state as squeue prints it ("" once it left the queue)."""
    done = subprocess.run(["squeue", "--noheader", "--states=all", "--jobs", str(job_id),
                           "--format=%T"], capture_output=True, text=True, timeout=HANG_GUARD)
    return done.stdout.strip() if done.returncode == 0 else ""


def job_gone(job_id):
    return squeue(job_id) in ("", "CANCELLED", "COMPLETED", "FAILED", "TIMEOUT")


def create(testapp, env_id, **body):
    res = testapp.post_json("/envs", dict(body, id=env_id))
    assert res.status_int == 201, res.body[:500]
    return res.json


def test_an_env_is_a_job_that_runs_its_cells_on_the_node(slurm, state_dir):
    testapp = slurm()
    env = create(testapp, "job", resources={"cpus": 1, "mem": "256M", "time": "10:00"})
    assert env["state"] == "idle", env
    job_id = env["slurm"]["job_id"]
    assert env["slurm"]["state"] == "RUNNING" and env["slurm"]["node"], env
    assert squeue(job_id) == "RUNNING"
    seen = run(testapp, "job", "import os, socket\nkept = 41\n"
                               "print(os.environ.get('SLURM_JOB_ID'), socket.gethostname())")
    assert seen["stdout"].split() == [job_id, env["slurm"]["node"]], seen
    assert value(testapp, "job", "kept + 1") == "42"
    assert testapp.get("/envs/job").json["slurm"]["job_id"] == job_id
    listed = {e["id"]: e for e in testapp.get("/envs").json["envs"]}["job"]
    assert listed["slurm"]["job_id"] == job_id and listed["slurm"]["state"] == "RUNNING"
    assert testapp.delete("/envs/job").status_int == 204
    wait_for(lambda: job_gone(job_id), message="the job to leave the queue")
    wait_for(lambda: not processes_in(os.path.join(state_dir, "envs", "job")),
             message="no process of the env left")


def test_resources_the_cluster_cannot_give_are_422_with_sbatchs_reason(slurm, state_dir):
    testapp = slurm()
    res = testapp.post_json("/envs", {"id": "huge", "resources": {"cpus": 4096}},
                            expect_errors=True)
    body = assert_problem(res, 422, "invalid-parameter", param="resources")
    assert "Batch job submission failed" in body["detail"], body  # sbatch's own words
    assert testapp.get("/envs/huge", expect_errors=True).status_int == 404


@pytest.mark.parametrize("resources", [{"cpus": 0}, {"cpus": "4"}, {"mem": "lots"},
                                       {"mem": "8G\n"}, {"cpus": 1.5}, {"gpu": 1},
                                       {"time": "soon"}, [1], "cpus=4"])
def test_malformed_resources_are_422(slurm, resources):
    res = slurm().post_json("/envs", {"id": "m", "resources": resources}, expect_errors=True)
    assert_problem(res, 422, "invalid-parameter", param="resources")


def test_a_pending_job_is_starting_queued_and_runs_once_released(slurm):
    testapp = slurm(slurm_args=["--hold"])
    env = create(testapp, "held")
    assert (env["state"], env.get("reason")) == ("starting", "queued"), env
    assert env["slurm"]["state"] == "PENDING" and env["slurm"]["reason"], env
    release(env["slurm"]["job_id"])
    wait_for(lambda: testapp.get("/envs/held").json["state"] == "idle",
             message="the released job's kernel to serve")
    assert value(testapp, "held", "6 * 7") == "42"


def test_cells_sent_to_a_queued_job_are_kept_and_run_in_order_once_it_starts(slurm):
    testapp = slurm(slurm_args=["--hold"])
    env = create(testapp, "later")
    first = testapp.post_json("/envs/later/execute", {"code": "x = 20", "wait": 0})
    assert first.status_int == 202 and first.json["status"] == "queued", first.json
    assert first.headers["Location"].endswith("/envs/later/executions/1")
    second = testapp.post_json("/envs/later/execute", {"code": "x += 1\nprint(x)", "wait": 0.3})
    assert (second.status_int, second.json["execution_count"]) == (202, 2), second.json
    dropped = testapp.post_json("/envs/later/execute", {"code": "x = 0", "wait": 0}).json
    third = testapp.post_json("/envs/later/execute", {"code": "x * 2", "wait": 0}).json
    assert testapp.get("/envs/later/executions/1").json["status"] == "queued"
    assert testapp.get("/envs/later").json["queued"] == 4
    listed = testapp.get("/envs/later/executions").json["executions"]
    assert [r["status"] for r in listed] == ["queued"] * 4, listed
    cancelled = testapp.post("/envs/later/executions/%d/cancel"
                             % dropped["execution_count"]).json
    assert (cancelled["status"], cancelled["reason"]) == ("aborted", "cancelled"), cancelled
    assert testapp.get("/envs/later").json["queued"] == 3
    release(env["slurm"]["job_id"])
    done = testapp.get("/envs/later/executions/%d?wait=%d"
                       % (third["execution_count"], HANG_GUARD)).json
    assert (done["status"], done["result"]) == ("ok", {"text/plain": "42"}), done
    assert testapp.get("/envs/later/executions/2").json["stdout"] == "21\n"
    assert testapp.get("/envs/later/executions/3").json["reason"] == "cancelled"
    assert run(testapp, "later", "x")["execution_count"] == 5  # the counts go on


def test_an_execute_that_waits_on_a_queued_job_is_answered_when_its_cell_has_run(slurm):
    testapp = slurm(slurm_args=["--hold"])
    env = create(testapp, "patient")
    answers = {}
    threads = [threading.Thread(target=lambda: answers.update(
                   record=testapp.post_json("/envs/patient/execute", {
                       "code": "6 * 7", "wait": HANG_GUARD * 3}).json)),
               threading.Thread(target=lambda: answers.update(
                   streamed=testapp.post_json("/envs/patient/execute?stream=1", {
                       "code": "print('streamed')"}).text))]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: testapp.get("/envs/patient").json["queued"] == 2,
                 message="the cells to be parked")
        release(env["slurm"]["job_id"])
    finally:
        for thread in threads:
            thread.join(HANG_GUARD * 2)
    assert answers["record"]["status"] == "ok", answers
    assert answers["record"]["result"] == {"text/plain": "42"}, answers
    events = [json.loads(line) for line in answers["streamed"].splitlines()]
    assert events[0]["event"] == "accepted" and events[0]["status"] == "queued", events
    assert [e["event"] for e in events].count("accepted") == 1, events
    assert events[-1]["event"] == "record" and events[-1]["stdout"] == "streamed\n", events


def test_a_cell_cancelled_while_a_request_waits_on_it_answers_that_request(slurm):
    testapp = slurm(slurm_args=["--hold"])
    env = create(testapp, "cancelled")
    answers = {}
    waiting = threading.Thread(target=lambda: answers.update(
        record=testapp.post_json("/envs/cancelled/execute", {
            "code": "ran = True", "wait": HANG_GUARD * 3}).json))
    waiting.start()
    try:
        wait_for(lambda: testapp.get("/envs/cancelled").json["queued"] == 1,
                 message="the cell to be parked")
        cancelled = testapp.post("/envs/cancelled/executions/1/cancel").json
        assert cancelled["reason"] == "cancelled", cancelled
    finally:
        waiting.join(HANG_GUARD)
    assert not waiting.is_alive(), "the waiting request was not answered"
    assert (answers["record"]["status"], answers["record"]["reason"]) == (
        "aborted", "cancelled"), answers
    release(env["slurm"]["job_id"])
    assert run(testapp, "cancelled", "'ran' in globals()")["result"]["text/plain"] == "False"


def test_cells_of_a_job_that_ends_while_queued_end_with_slurms_reason(slurm):
    testapp = slurm(slurm_args=["--hold"])
    env = create(testapp, "waits")
    queued = testapp.post_json("/envs/waits/execute", {"code": "1", "wait": 0}).json
    silent = testapp.post_json("/envs/waits/execute", {"code": "1", "silent": True},
                               expect_errors=True)
    body = assert_problem(silent, 503, "kernel-unavailable")  # no count to find it by later
    assert "queued" in body["detail"] and env["slurm"]["job_id"] in body["detail"], body
    subprocess.run(["scancel", env["slurm"]["job_id"]], check=True, capture_output=True,
                   timeout=HANG_GUARD)
    record = testapp.get("/envs/waits/executions/%d?wait=%d"
                         % (queued["execution_count"], HANG_GUARD)).json
    assert (record["status"], record["reason"]) == ("aborted", "kernel_died"), record
    assert "ended (CANCELLED) before its kernel started" in record["error"]["evalue"], record
    dead = testapp.get("/envs/waits").json
    assert (dead["state"], dead["reason"]) == ("dead", "start_failed"), dead
    listed = testapp.get("/envs/waits/executions").json["executions"]
    assert [r["status"] for r in listed] == ["aborted"], listed
    assert "ended (CANCELLED) before its kernel started" in dead["detail"], dead


def test_interrupt_and_timeout_of_a_cell_in_a_job(slurm, state_dir):
    testapp = slurm()
    env = create(testapp, "busy")
    run(testapp, "busy", "kept = 1")
    submitted = testapp.post_json("/envs/busy/execute", {
        "code": "open('started', 'w').close()\nwhile True: pass", "wait": 0}).json
    wait_for(lambda: os.path.exists(os.path.join(env["cwd"], "started")),
             message="the busy loop to start")
    assert testapp.post("/envs/busy/interrupt").status_int == 200
    record = testapp.get("/envs/busy/executions/%d?wait=20"
                         % submitted["execution_count"]).json
    assert (record["status"], record["reason"]) == ("error", "interrupted"), record
    record = run(testapp, "busy", "import time\ntime.sleep(10)", timeout=0.5)
    assert (record["status"], record["reason"]) == ("aborted", "timeout"), record
    assert value(testapp, "busy", "kept") == "1"


def test_a_restarted_web_tier_reattaches_to_the_running_job(slurm):
    first = slurm()
    env = create(first, "again")
    run(first, "again", "kept = 'still here'")
    second = slurm()  # another app on the same state dir: a restarted server
    assert value(second, "again", "kept") == "'still here'"
    assert second.get("/envs/again").json["slurm"]["job_id"] == env["slurm"]["job_id"]


def test_a_job_cancelled_by_hand_ends_the_env_and_its_cell(slurm):
    testapp = slurm()
    env = create(testapp, "gone")
    submitted = testapp.post_json("/envs/gone/execute", {
        "code": "import time\ntime.sleep(60)", "wait": 0}).json
    subprocess.run(["scancel", env["slurm"]["job_id"]], check=True, capture_output=True,
                   timeout=HANG_GUARD)
    wait_for(lambda: testapp.get("/envs/gone").json["state"] == "dead",
             message="the env to show its job gone")
    record = testapp.get("/envs/gone/executions/%d" % submitted["execution_count"]).json
    assert (record["status"], record["reason"]) == ("aborted", "kernel_died"), record
    assert "Slurm ended job %s" % env["slurm"]["job_id"] in record["error"]["evalue"], record
    dead = wait_for(lambda: (lambda e: e if e["slurm"]["state"] == "CANCELLED" else None)(
        testapp.get("/envs/gone").json), message="squeue to say CANCELLED (not COMPLETING)")
    assert dead["reason"] == "kernel_died", dead
    wait_for(lambda: job_gone(env["slurm"]["job_id"]), message="the job to leave the queue")


def test_a_connection_with_the_wrong_key_is_refused(slurm, state_dir, tmp_path):
    testapp = slurm()
    create(testapp, "keyed")
    with open(os.path.join(state_dir, "envs", "keyed", "env.json")) as handle:
        record = json.load(handle)
    wrong = tmp_path / "kernel.key"
    wrong.write_text("0" * 64)
    os.chmod(wrong, 0o600)
    with pytest.raises(KernelGone):
        conn = KernelConnection(record["address"], 5, key_file=str(wrong))
        conn.request("status", {}, 5)
    assert value(testapp, "keyed", "'served'") == "'served'"


def test_resources_on_a_server_without_slurm_are_422(make_test_app):
    testapp = client(make_test_app())
    res = testapp.post_json("/envs", {"id": "r", "resources": {"cpus": 2}}, expect_errors=True)
    assert_problem(res, 422, "invalid-parameter", param="resources")
    assert testapp.post_json("/envs", {"id": "r", "resources": {}}).status_int == 201


def test_two_gunicorn_workers_share_a_slurm_env(cluster, state_dir):
    pytest.importorskip("gunicorn")  # the test extra (not in the other Pythons' core venvs)
    from deploy_helpers import check_concurrent_increments, gunicorn
    try:
        with gunicorn(state_dir, "--workers", "2", "--threads", "2",
                      env={"WSGIKERNEL_LAUNCHER": "slurm"}) as server:
            check_concurrent_increments(server, clients=4, each=5)
            status, _, env = server.request("GET", "/envs/counter")
            assert status == 200 and env["slurm"]["state"] == "RUNNING", env
            job_id = env["slurm"]["job_id"]
            assert server.request("DELETE", "/envs/counter")[0] == 204
            wait_for(lambda: job_gone(job_id), message="the job to leave the queue")
    finally:
        subprocess.run(["scancel", "--full", "--name", "wsgikernel-counter"],
                       capture_output=True, timeout=HANG_GUARD)


def test_a_restart_keeps_the_job_and_gives_a_fresh_namespace(slurm):
    testapp = slurm()
    env = create(testapp, "fresh")
    run(testapp, "fresh", "kept = 1")
    restarted = testapp.post("/envs/fresh/restart").json
    assert restarted["state"] == "idle" and restarted["session"] == 2, restarted
    assert restarted["slurm"]["job_id"] == env["slurm"]["job_id"], restarted  # same job
    record = run(testapp, "fresh", "kept")
    assert record["status"] == "error" and record["error"]["ename"] == "NameError", record


def test_deleting_a_queued_env_cancels_its_job(slurm):
    testapp = slurm(slurm_args=["--hold"])
    env = create(testapp, "queued")
    assert env["slurm"]["state"] == "PENDING", env
    assert testapp.delete("/envs/queued").status_int == 204
    wait_for(lambda: job_gone(env["slurm"]["job_id"]), message="the held job cancelled")


def test_a_restart_that_sbatch_refuses_leaves_the_env_dead_saying_why(slurm):
    testapp = slurm()
    env = create(testapp, "refused", resources={"cpus": 1.0})  # JSON Schema's integer
    assert env["resources"] == {"cpus": 1}, env
    subprocess.run(["scancel", env["slurm"]["job_id"]], check=True, capture_output=True,
                   timeout=HANG_GUARD)
    wait_for(lambda: testapp.get("/envs/refused").json["state"] == "dead",
             message="the env to show its job gone")
    elsewhere = slurm(slurm_args=["--partition=no-such-partition"])
    restarted = elsewhere.post("/envs/refused/restart").json
    assert (restarted["state"], restarted["reason"]) == ("dead", "start_failed"), restarted
    assert "sbatch refused the job" in restarted["detail"], restarted
    again = testapp.post("/envs/refused/restart").json  # with the server's usual options
    assert again["state"] == "idle", again
    assert value(testapp, "refused", "6 * 7") == "42"


@pytest.mark.slow
def test_the_console_shows_the_job_and_runs_a_cell_typed_while_it_was_queued(cluster, tmp_path):
    if chromium_problem():
        pytest.skip(chromium_problem())
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    server = LiveServer("--quiet", state_dir=state, env={
        "WSGIKERNEL_LAUNCHER": "slurm", "WSGIKERNEL_SLURM_ARGS": "--hold"})
    with server, chromium() as browser:
        status, _, env = server.request("PUT", "/envs/held")
        assert status == 201 and env.get("reason") == "queued", env
        job_id = env["slurm"]["job_id"]

        def shows(script, *args):
            WebDriverWait(browser, HANG_GUARD * 2, poll_frequency=0.1).until(
                lambda d: d.execute_script(script, *args), script)

        def info_has(text):
            shows("return document.getElementById('env-info').textContent"
                  ".indexOf(arguments[0]) >= 0", text)

        browser.get(server.url + "ui?token=" + server.token + "#env=held")
        info_has("Slurm job %s (PENDING: JobHeldUser)" % job_id)
        shows("return document.getElementById('cells').dataset.loaded === 'true' && "
              "document.querySelectorAll('#cells .cell .cm-editor').length > 0")
        cell = browser.find_elements(By.CSS_SELECTOR, "#cells .cell")[-1]
        browser.execute_script(SET_CODE, cell, "6 * 7")
        cell.find_element(By.CSS_SELECTOR, ".cm-content").send_keys(Keys.SHIFT, Keys.ENTER)
        wait_for(lambda: server.request("GET", "/envs/held")[2]["queued"] == 1,
                 message="the cell to be kept for the job")
        release(job_id)
        info_has("Slurm job %s on " % job_id)
        shows("return Array.from(document.querySelectorAll('#cells .output-result'))"
              ".some(function (n) { return n.textContent.indexOf('42') >= 0; })")


def test_checkpoints_and_restore_work_in_a_job_and_a_fork_is_refused(slurm):
    testapp = slurm()
    env = create(testapp, "ck")
    run(testapp, "ck", "rows = [1, 2]")
    assert testapp.post_json("/envs/ck/checkpoints", {"name": "c"}).status_int == 201
    run(testapp, "ck", "rows.clear()")
    restored = testapp.post("/envs/ck/checkpoints/c/restore").json
    assert restored["restored"]["checkpoint"] == "c", restored
    assert restored["slurm"]["job_id"] == env["slurm"]["job_id"], restored  # the same job
    assert value(testapp, "ck", "rows") == "[1, 2]"
    res = testapp.post_json("/envs/ck/fork", {"id": "ck2"}, expect_errors=True)
    assert "Slurm" in assert_problem(res, 409, "checkpoint-conflict")["detail"]
    assert testapp.delete("/envs/ck").status_int == 204
    wait_for(lambda: job_gone(env["slurm"]["job_id"]), message="the job to leave the queue")
