"""What a newcomer tripped over (issue 13, part 4): a port in use, envs left stopped."""

import os
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import webtest

from helpers import HANG_GUARD, SERVE, TOKEN, LiveServer, run, wait_for


def test_a_second_server_on_a_port_in_use_exits_2_with_one_line(state_dir, tmp_path):
    with LiveServer("--pool-size", "0", "--quiet", state_dir=state_dir) as first:
        port = urlsplit(first.url).port
        other = tmp_path / "state"
        result = subprocess.run(
            [sys.executable, SERVE, "--port", str(port), "--state-dir", str(other),
             "--pool-size", "0", "--token", TOKEN],
            capture_output=True, text=True, timeout=HANG_GUARD)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "cannot listen on 127.0.0.1 port %d" % port in lines[0]
        assert "in use" in lines[0]
        assert first.request("GET", "/healthz")[0] == 200  # the first one is untouched


def client(app):
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})


def stopped_by_a_server_restart(make_test_app, env="s"):
    """An env whose server shut down cleanly: it reads `stopped`; a new app on the same dir."""
    first = make_test_app()
    testapp = client(first)
    testapp.put("/envs/" + env)
    run(testapp, env, "x = 1")
    first.close()
    again = client(make_test_app())
    assert again.get("/envs/" + env).json["state"] == "stopped"
    return again


def test_put_on_a_stopped_env_starts_a_fresh_kernel_and_says_so(make_test_app):
    testapp = stopped_by_a_server_restart(make_test_app)
    res = testapp.put("/envs/s")
    assert res.status_int == 200
    env = res.json
    assert env["state"] == "idle" and env["session"] == 2, env
    assert env["restarted"] is True
    assert "reason" not in env and "exit" not in env
    assert run(testapp, "s", "2 + 2")["result"] == {"text/plain": "4"}
    again = testapp.put("/envs/s").json  # now it runs: nothing to restart
    assert again["session"] == 2 and "restarted" not in again


def test_put_leaves_a_dead_env_for_the_user_to_see(testapp):
    testapp.put("/envs/d")
    pid = testapp.get("/envs/d").json["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: testapp.get("/envs/d").json["state"] == "dead", message="dead")
    env = testapp.put("/envs/d").json
    assert env["state"] == "dead" and env["exit"]["signal"] == "SIGKILL", env
    assert "restarted" not in env


def test_compat_routes_revive_a_stopped_env_they_list(make_test_app):
    testapp = stopped_by_a_server_restart(make_test_app, env="c")
    assert testapp.post("/env/create", {"id": "other"}).json == {"envs": ["c", "other"]}
    res = testapp.post("/", {"id": "c", "code": "print('back')"})
    assert res.json == {"message": "back\n"}
    assert testapp.get("/envs/c").json["session"] == 2

    testapp = stopped_by_a_server_restart(make_test_app, env="g")
    res = testapp.post("/env/get", {"id": "g"})
    assert res.json == {"env": []}, res.json  # a fresh namespace, not "does not exist"


def test_compat_execute_on_a_dead_env_says_it_is_dead(testapp):
    testapp.post("/env/create", {"id": "z"})
    os.kill(testapp.get("/envs/z").json["pid"], signal.SIGKILL)
    wait_for(lambda: testapp.get("/envs/z").json["state"] == "dead", message="dead")
    body = testapp.post("/", {"id": "z", "code": "1"}).json
    assert set(body) == {"error"} and "dead" in body["error"], body
    assert "does not exist" not in body["error"]
    listing = testapp.post("/env/get", {"id": "z"}).json
    assert set(listing) == {"error"} and "dead" in listing["error"], listing
    testapp.post("/env/create", {"id": "z"})  # the tutorial's way back
    assert testapp.post("/", {"id": "z", "code": "1 + 1"}).json == {"message": "2\n"}
