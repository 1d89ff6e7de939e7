"""What operators see of a real scripts/serve.py: --log-format json (one object per
request and per kernel lifecycle event; the request id end to end, into kernel.log),
X-Request-Id accepted, generated or refused, and /readyz."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request

import pytest

from helpers import HANG_GUARD, SERVE, TOKEN, LiveServer, assert_problem, wait_for


def json_lines(text):
    """Every line of ``text`` that is a JSON object (the banner and others are not)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


@contextlib.contextmanager
def stopped_after(server):
    """Run ``server`` (a LiveServer); afterwards its whole stderr is ``server.stderr``."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.stderr = server.proc.stderr.read()
        server.proc.stdout.close()
        server.proc.stderr.close()


def test_request_ids_are_echoed_generated_or_refused(testapp):
    res = testapp.get("/envs", headers={"X-Request-Id": "trace-42"})
    assert res.headers["X-Request-Id"] == "trace-42"
    generated = testapp.get("/envs").headers["X-Request-Id"]
    assert generated and generated != testapp.get("/envs").headers["X-Request-Id"]
    bad = testapp.get("/envs", headers={"X-Request-Id": "two words"}, expect_errors=True)
    assert_problem(bad, 400, "invalid-header", header="X-Request-Id")
    assert bad.headers["X-Request-Id"] != "two words"  # a fresh one names the refusal
    problem = testapp.get("/envs/nope", headers={"X-Request-Id": "r-404"}, status=404)
    assert problem.headers["X-Request-Id"] == "r-404"


def test_json_logs_carry_the_request_id_end_to_end(state_dir):
    server = LiveServer("--log-format", "json", "--pool-size", "0", state_dir=state_dir)
    with stopped_after(server):
        status, headers, _ = server.request("POST", "/envs", {"id": "logged"},
                                            headers={"X-Request-Id": "create-1"})
        assert status == 201 and headers["X-Request-Id"] == "create-1"
        status, headers, record = server.request(
            "POST", "/envs/logged/execute?token=%s" % TOKEN, {"code": "print('hi')"},
            headers={"X-Request-Id": "exec-1"}, token=False)
        assert status == 200 and record["status"] == "ok", record
        status, headers, _ = server.request("GET", "/envs/logged")
        generated = headers["X-Request-Id"]
        status, _, _ = server.request("DELETE", "/envs/logged",
                                      headers={"X-Request-Id": "delete-1"})
        assert status == 204
        # A request the server refuses before the app sees it still gets its line.
        port = int(server.url.rstrip("/").rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as sock:
            sock.sendall(b"GET /envs HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
    stderr = server.stderr
    lines = json_lines(stderr)
    assert TOKEN not in stderr and "token=" not in stderr
    assert len(lines) == len([line for line in stderr.splitlines() if line.strip()]), stderr
    by_id = {line.get("request_id"): line for line in lines if line["event"] == "request"}
    executed = by_id["exec-1"]
    assert executed["route"] == "/envs/{id}/execute" and executed["status"] == 200
    assert executed["env"] == "logged" and executed["execution_count"] == 1
    assert executed["method"] == "POST" and executed["bytes"] > 0
    assert executed["duration"] >= 0 and executed["remote_addr"] == "127.0.0.1"
    assert executed["time"].endswith("Z")
    assert by_id[generated]["route"] == "/envs/{id}"
    assert by_id["delete-1"]["status"] == 204
    events = [line for line in lines if line["logger"] == "wsgikernel.events"]
    started = [e for e in events if e["event"] == "kernel_started"]
    stopped = [e for e in events if e["event"] == "kernel_stopped"]
    assert started and started[0]["env"] == "logged" and started[0]["request_id"] == "create-1"
    assert stopped and stopped[0]["reason"] == "deleted"
    assert stopped[0]["request_id"] == "delete-1"
    refused = [line for line in lines if line["event"] == "request" and line["status"] == 400]
    assert refused and refused[0]["route"] == "unmatched", lines


def test_the_kernel_log_names_the_request_of_each_execution(make_test_app, state_dir):
    import webtest
    app = make_test_app(log_format="json", idle_timeout=0.5)
    testapp = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    testapp.post_json("/envs", {"id": "klog"}, status=201)
    testapp.post_json("/envs/klog/execute", {"code": "1"}, headers={"X-Request-Id": "cell-1"})
    testapp.post_json("/envs/klog/execute", {"code": "import os; os._exit(3)"},
                      headers={"X-Request-Id": "cell-2"})
    log = os.path.join(app.manager.env_dir("klog"), "kernel.log")

    def lines():
        with open(log) as handle:
            return json_lines(handle.read())

    found = wait_for(lambda: [line for line in lines() if line["event"] == "kernel_died"]
                     and lines())
    executions = {line["request_id"]: line for line in found if line["event"] == "execution"}
    assert executions["cell-1"]["status"] == "ok" and executions["cell-1"]["env"] == "klog"
    assert executions["cell-2"]["reason"] == "kernel_died"
    assert [line["event"] for line in found if line["event"].startswith("kernel_")] == [
        "kernel_started", "kernel_died"]
    testapp.post_json("/envs/klog/restart", {}, status=200)
    wait_for(lambda: testapp.get("/envs").json["envs"][0]["state"] == "stopped",
             message="the idle timeout to stop the kernel")  # a listing is no activity
    # The env says stopped once the stop begins; the line is written when the tree is gone.
    wait_for(lambda: [line for line in lines() if line["event"] == "kernel_culled"],
             message="the kernel_culled line")


def test_the_plain_format_stays_the_default(state_dir):
    server = LiveServer("--pool-size", "0", state_dir=state_dir)
    with stopped_after(server):
        server.request("GET", "/envs", headers={"X-Request-Id": "plain-1"})
    stderr = server.stderr
    assert '"GET /envs HTTP/1.1" 200' in stderr and not json_lines(stderr)


def test_log_format_is_validated(state_dir):
    proc = subprocess.run([sys.executable, SERVE, "--port", "0", "--state-dir",
                           str(state_dir), "--log-format", "xml"], capture_output=True,
                          text=True, timeout=HANG_GUARD)
    assert proc.returncode == 2, proc
    assert "log_format: expected one of plain, json, got 'xml'" in proc.stderr


# -- /readyz --------------------------------------------------------------------------

def test_ready_once_the_pool_has_started(make_test_app):
    import webtest
    anonymous = webtest.TestApp(make_test_app(pool_size=1))

    def ready():
        res = anonymous.get("/readyz", expect_errors=True)
        if res.status_int == 503:
            assert_problem(res, 503, "not-ready")
            assert "pool" in res.json["checks"]
            return None
        return res

    res = wait_for(ready, message="the pool to start")
    assert res.json == {"status": "ready", "checks": {"state_dir": "ok", "pool": "ok"}}


def test_not_ready_when_the_pool_cannot_start(make_test_app, tmp_path):
    import webtest
    app = make_test_app(pool_size=1, sandbox="bwrap",
                        sandbox_bwrap=str(tmp_path / "no-such-bwrap"))
    anonymous = webtest.TestApp(app)

    def failed():
        res = anonymous.get("/readyz", expect_errors=True)
        assert res.status_int == 503
        return "could not start" in res.json["checks"]["pool"] and res

    res = wait_for(failed, message="the pool's failure")
    assert_problem(res, 503, "not-ready")
    assert res.json["checks"]["state_dir"] == "ok"
    assert "no-such-bwrap" in res.json["detail"]
    assert anonymous.get("/healthz").json == {"status": "ok"}  # liveness is not readiness


def can_remount():
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not can_remount(), reason="needs mount namespaces (unshare -m as root)")
def test_not_ready_when_the_state_dir_is_made_read_only(state_dir):
    """The server runs in a mount namespace of its own, where its state dir is a bind
    mount; remounting that read-only (from outside, by nsenter) is what a full or failed
    disk looks like to it, even as root."""
    command = "mount --bind %s %s && exec %s %s --port 0 --state-dir %s --pool-size 0 " \
              "--token %s --quiet" % (state_dir, state_dir, sys.executable, SERVE,
                                      state_dir, TOKEN)
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                             command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("wsgikernel serving on "), (first, proc.stderr.read())
        url = first.split(" on ", 1)[1].strip()

        def readyz():
            try:
                with urllib.request.urlopen(url + "readyz", timeout=HANG_GUARD) as res:
                    return res.status, json.loads(res.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        assert readyz() == (200, {"status": "ready", "checks": {"state_dir": "ok",
                                                                "pool": "ok"}})
        # A read-only bind on top (a remount of the mount below would be refused: the
        # server holds files open for writing there): every new open sees it.
        subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "sh", "-c",
                        "mount --bind %s %s && mount -o remount,bind,ro %s" % (
                            (state_dir,) * 3)], check=True, timeout=HANG_GUARD)
        status, problem = readyz()
        assert status == 503 and problem["type"] == "urn:wsgikernel:not-ready", problem
        assert "Read-only file system" in problem["checks"]["state_dir"], problem
        assert problem["checks"]["pool"] == "ok"
        assert "Read-only file system" in problem["detail"]
        with urllib.request.urlopen(url + "healthz", timeout=HANG_GUARD) as res:
            assert res.status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(HANG_GUARD)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
