"""wsgikernel under real gunicorn processes (and nginx, systemd recipes) on free loopback ports.

Configured by WSGIKERNEL_* environment variables alone, as docs/deploy.md says.
Every test starts the servers it needs and stops them in ``finally``; kernels
left by a failing test are killed through the state dir's env.json files.
"""

import getpass
import grp
import http.client
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from deploy_helpers import (Server, alive, assert_all_stopped, check_concurrent_increments,
                            check_keepalive,
                            check_workers_share_envs_and_token_file, client_tls_context,
                            doc_block, execute, free_port, gunicorn, kernel_pids, kill_kernels,
                            self_signed_cert, server_env, start_busy_and_idle_envs, text_result,
                            wait_gone)
from helpers import HANG_GUARD, TOKEN, wait_for

CONFIG = "python:wsgikernel.gunicorn_conf"


# The 35 s test comes first so that, under xdist, it starts early and the others
# run beside it.
def test_long_cell_under_worker_timeout(state_dir):
    """Sync workers, timeout 30: a 35 s cell answers 202 (default_wait 25 s), then polls."""
    try:
        with gunicorn(state_dir, "--workers", "2", "--timeout", "30") as server:
            assert server.request("PUT", "/envs/long")[0] == 201
            status, headers, record = execute(server, "long",
                                              "import time; time.sleep(35); 'done'",
                                              timeout=HANG_GUARD + 30)
            assert status == 202, record
            assert record["status"] in ("queued", "running")
            location = headers["Location"]
            assert location == "/envs/long/executions/%d" % record["execution_count"]

            def finished():
                status, _, polled = server.request("GET", location + "?wait=20",
                                                   timeout=HANG_GUARD + 20)
                assert status in (200, 202), polled
                return polled if polled["status"] not in ("queued", "running") else None

            final = wait_for(finished, timeout=4 * HANG_GUARD, interval=0)
            assert final["status"] == "ok" and text_result(final) == "'done'", final
            log = server.log()
            assert "WORKER TIMEOUT" not in log, log
            assert len(server.worker_pids()) == 2, log  # no worker was killed and replaced
    finally:
        kill_kernels(state_dir)


def test_workers_share_envs_and_the_token_file(state_dir):
    """-w 3 --threads 4, no WSGIKERNEL_TOKEN: all workers share <state_dir>/token and the envs."""
    try:
        with gunicorn(state_dir, "--workers", "3", "--threads", "4", token=None) as server:
            check_workers_share_envs_and_token_file(server, state_dir)
    finally:
        kill_kernels(state_dir)


def test_concurrent_increments_are_not_lost(state_dir):
    try:
        with gunicorn(state_dir, "--workers", "3", "--threads", "4") as server:
            check_concurrent_increments(server)
    finally:
        kill_kernels(state_dir)


def test_worker_recycling_keeps_the_namespace(state_dir):
    """--max-requests 7: workers restart all the time; a 100-request session goes on."""
    try:
        with gunicorn(state_dir, "--workers", "2", "--max-requests", "7") as server:
            assert server.request("PUT", "/envs/recycled")[0] == 201
            status, _, record = execute(server, "recycled",
                                        "import os; n = 0; kernel = os.getpid()")
            assert status == 200 and record["status"] == "ok", record
            for _ in range(97):
                status, _, record = execute(server, "recycled", "n += 1")
                assert status == 200 and record["status"] == "ok", record
            status, _, record = execute(server, "recycled", "n, os.getpid() == kernel")
            assert status == 200 and text_result(record) == "(97, True)", record
            # 100 requests to the env, and more than the first two workers served them
            assert len(server.served("/envs/recycled", 200)) > 2, server.log()
            assert "Autorestarting worker" in server.log()
    finally:
        kill_kernels(state_dir)


def test_config_module_stops_every_kernel_on_exit(state_dir, make_test_app):
    """gunicorn -c python:wsgikernel.gunicorn_conf ...; kill -TERM <master>: no kernel left."""
    server = gunicorn(state_dir, config=CONFIG)  # threads=8, workers=2 from the module
    pids = set()
    try:
        server.start()
        pids = start_busy_and_idle_envs(server, state_dir)
        # the browser console's way of passing the token must not reach the log
        assert server.request("GET", "/envs?token=" + TOKEN, token=False)[0] == 200
        assert server.stop(signal.SIGTERM) == 0
        wait_gone(pids)
        log = server.log()
        assert "stopped 2 kernel(s)" in log, log
        assert TOKEN not in log
        assert "GET /envs " in log  # the access log is on, without the query string
    finally:
        server.close()
        kill_kernels(state_dir, pids)
    assert_all_stopped(make_test_app(), ("idle-env", "busy-env"))


def test_config_module_keeps_connections_alive(state_dir):
    """The config module's gthread workers (keepalive 5): http.client and requests.Session
    clients send every request on one connection, streams included (chunked)."""
    server = gunicorn(state_dir, config=CONFIG)
    try:
        server.start()
        check_keepalive(server)
    finally:
        server.close()
        kill_kernels(state_dir)


def test_on_exit_leaves_kernels_to_a_new_master(state_dir, make_test_app, monkeypatch):
    """on_exit of an old master during a USR2 upgrade stops nothing; a real exit does."""
    from wsgikernel import gunicorn_conf

    class FakeArbiter:
        def __init__(self, reexec_pid=0, master_pid=0):
            self.reexec_pid, self.master_pid = reexec_pid, master_pid
            self.log = self
            self.messages = []

        def info(self, message, *args):
            self.messages.append(message % args)

        error = info

    monkeypatch.setenv("WSGIKERNEL_STATE_DIR", state_dir)
    monkeypatch.setenv("WSGIKERNEL_KILL_GRACE", "1")
    assert gunicorn_conf.timeout > make_test_app().config.default_wait
    app = make_test_app()
    env, _ = app.manager.create("kept")
    pids = kernel_pids(state_dir)
    try:
        gunicorn_conf.on_exit(FakeArbiter(reexec_pid=4242))
        gunicorn_conf.on_exit(FakeArbiter(master_pid=4242))
        assert alive(pids) == pids
        arbiter = FakeArbiter()
        gunicorn_conf.on_exit(arbiter)
        wait_gone(pids)
        assert arbiter.messages == ["wsgikernel: stopped 1 kernel(s) of %s" % state_dir]
        assert app.manager.describe("kept")["state"] == "stopped"
    finally:
        kill_kernels(state_dir, pids)


def test_reattach_after_sigkill(state_dir):
    """The whole gunicorn SIGKILLed: kernels live on; the next gunicorn re-attaches."""
    first = gunicorn(state_dir, "--workers", "2", "--threads", "2")
    pids = set()
    try:
        first.start()
        assert first.request("PUT", "/envs/survivor")[0] == 201
        status, _, record = execute(first, "survivor", "x = 42")
        assert status == 200 and record["status"] == "ok", record
        pids = kernel_pids(state_dir)
        gunicorns = {first.pid} | first.worker_pids()
        first.kill()  # SIGKILL to the master and its workers (one process group)
        wait_for(lambda: not alive(gunicorns), message="gunicorn to die")
        assert alive(pids) == pids  # kernels run in sessions of their own

        with gunicorn(state_dir, "--workers", "2", "--threads", "2") as second:
            status, _, listing = second.request("GET", "/envs")
            assert status == 200
            assert [(e["id"], e["state"]) for e in listing["envs"]] == [("survivor", "idle")]
            status, _, record = execute(second, "survivor", "x")
            assert status == 200 and text_result(record) == "42", record

            # a stale record: its kernel is gone without anyone writing it down
            with open(os.path.join(state_dir, "envs", "survivor", "env.json")) as handle:
                import json
                stale = json.load(handle)
            for key in ("supervisor_pid", "pid"):
                os.kill(stale[key], signal.SIGKILL)
            wait_gone(pids)
            status, _, env = second.request("GET", "/envs/survivor")
            assert status == 200 and env["state"] == "dead", env
            status, _, problem = execute(second, "survivor", "x")
            assert status == 409, problem
    finally:
        first.close()
        kill_kernels(state_dir, pids)


def test_preload(state_dir):
    """--preload builds the app in the master: it must start no thread there."""
    try:
        with gunicorn(state_dir, "--preload", "--workers", "2", "--threads", "2") as server:
            with open("/proc/%d/status" % server.pid) as handle:
                assert "Threads:\t1\n" in handle.read()
            assert server.request("PUT", "/envs/pre")[0] == 201
            status, _, record = execute(server, "pre", "y = 7")
            assert status == 200 and record["status"] == "ok", record

            def both_workers_served():
                status, _, record = execute(server, "pre", "y * 6")
                assert status == 200 and text_result(record) == "42", record
                return len(server.served("/envs/pre/execute", 200)) == 2

            wait_for(both_workers_served, interval=0, message="both workers to serve the env")
    finally:
        kill_kernels(state_dir)


def test_script_name_prefix(state_dir):
    """Behind a proxy under /kernel: gunicorn --env SCRIPT_NAME=/kernel; links follow."""
    try:
        with gunicorn(state_dir, "--env", "SCRIPT_NAME=/kernel", "--threads", "2",
                      health="/kernel/healthz") as server:
            status, _, info = server.request("GET", "/kernel/")
            assert status == 200
            assert all(link.startswith("/kernel/") for link in info["links"].values()), info
            status, headers, env = server.request("POST", "/kernel/envs", {"id": "sub"})
            assert status == 201 and headers["Location"] == "/kernel/envs/sub", env
            status, headers, record = server.request(
                "POST", "/kernel/envs/sub/execute",
                {"code": "import time; time.sleep(1); 'later'", "wait": 0})
            assert status == 202, record
            assert headers["Location"].startswith("/kernel/envs/sub/executions/")
            status, _, record = server.request("GET", headers["Location"] + "?wait=20")
            assert status == 200 and text_result(record) == "'later'", record
    finally:
        kill_kernels(state_dir)


def test_gunicorn_tls(state_dir, tmp_path):
    """gunicorn terminating TLS itself; the config module's wsgi_app names the app."""
    cert, key = self_signed_cert(str(tmp_path))
    try:
        with gunicorn(state_dir, "--certfile", cert, "--keyfile", key, app=None, config=CONFIG,
                      scheme="https", ssl_context=client_tls_context(cert)) as server:
            status, headers, env = server.request("PUT", "/envs/tls")
            assert status == 201 and headers["Location"] == "/envs/tls", env
            status, _, record = execute(server, "tls", "6 * 7")
            assert status == 200 and text_result(record) == "42", record
    finally:
        kill_kernels(state_dir)


def _unit_settings(unit):
    settings = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit(state_dir, tmp_path, make_test_app):
    """The unit of docs/deploy.md: systemd-analyze accepts it; its ExecStart + Environment
    serve, and SIGTERM to the main process only (KillMode=mixed) stops every kernel."""
    unit = doc_block("systemd-unit")
    settings = _unit_settings(unit)
    assert settings["KillMode"] == ["mixed"]
    gunicorn_bin = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    exec_start = shlex.split(settings["ExecStart"][0])
    assert exec_start[0] == "/opt/wsgikernel/venv/bin/gunicorn"

    analyze = shutil.which("systemd-analyze")
    if analyze and os.path.exists(gunicorn_bin):
        local = (unit.replace("/opt/wsgikernel/venv/bin/gunicorn", gunicorn_bin)
                 .replace("User=wsgikernel", "User=" + getpass.getuser())
                 .replace("Group=wsgikernel", "Group=" + grp.getgrgid(os.getgid()).gr_name))
        path = tmp_path / "wsgikernel.service"
        path.write_text(local)
        checked = subprocess.run([analyze, "verify", str(path)], capture_output=True,
                                 text=True, timeout=HANG_GUARD)
        complaints = [line for line in checked.stderr.splitlines() if str(path) in line]
        assert checked.returncode == 0 and not complaints, checked.stderr

    runtime = tempfile.mkdtemp(prefix="wk-run-")  # short: socket paths stay short
    env = server_env(state_dir)
    for assignment in settings["Environment"]:
        key, _, value = assignment.partition("=")
        env[key] = {"WSGIKERNEL_STATE_DIR": state_dir, "XDG_RUNTIME_DIR": runtime}.get(key, value)
    argv = [sys.executable, "-m", "gunicorn"] + exec_start[1:]
    server = Server(lambda port: argv + ["--bind", "127.0.0.1:%d" % port, "--no-control-socket"],
                    env, name="systemd-gunicorn", cwd=state_dir)
    pids = set()
    try:
        server.start()
        assert server.request("PUT", "/envs/unit")[0] == 201
        status, _, record = execute(server, "unit", "import os; os.environ.get('XDG_RUNTIME_DIR')")
        assert status == 200 and record["status"] == "ok", record
        pids = kernel_pids(state_dir)
        with open(os.path.join(state_dir, "envs", "unit", "env.json")) as handle:
            assert handle.read().count(runtime) == 1  # the socket lives in the runtime dir
        assert server.stop(signal.SIGTERM) == 0  # what systemctl stop does with KillMode=mixed
        wait_gone(pids)
    finally:
        server.close()
        kill_kernels(state_dir, pids)
        shutil.rmtree(runtime, ignore_errors=True)
    assert_all_stopped(make_test_app(), ["unit"])


NGINX_MAIN = """
daemon off;
master_process off;
pid %(dir)s/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
%(site)s
}
"""


def find_nginx():
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def test_nginx_tls_proxy(state_dir, tmp_path):
    """The nginx recipe in front of gunicorn, TLS terminated by nginx: streams arrive
    unbuffered, long-polls pass, http redirects to https, Location stays relative."""
    nginx = find_nginx()
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    cert, key = self_signed_cert(str(tmp_path))
    site = doc_block("nginx")
    go = tmp_path / "go"
    ports = {}
    try:
        with gunicorn(state_dir, config=CONFIG) as upstream:
            def command(port):
                ports["https"], ports["http"] = port, free_port()
                text = site
                for old, new in (("server 127.0.0.1:8080;", "server 127.0.0.1:%d;" % upstream.port),
                                 ("listen 80;", "listen 127.0.0.1:%d;" % ports["http"]),
                                 ("listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % port),
                                 ("/etc/ssl/certs/kernel.example.org.pem", cert),
                                 ("/etc/ssl/private/kernel.example.org.key", key)):
                    assert text.count(old) == 1, old
                    text = text.replace(old, new)
                conf = tmp_path / "nginx.conf"
                conf.write_text(NGINX_MAIN % {"dir": tmp_path, "site": text})
                return [nginx, "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"]

            with Server(command, dict(os.environ), name="nginx", scheme="https",
                        ssl_context=client_tls_context(cert), logs_bind=False) as proxy:
                status, headers, env = proxy.request("PUT", "/envs/proxied")
                assert status == 201 and headers["Location"] == "/envs/proxied", env

                # a stream: the first output must arrive while the cell still runs (it
                # waits for a file the test creates only after reading that output)
                code = ("print('ping', flush=True)\nimport os, time\n"
                        "while not os.path.exists(%r): time.sleep(0.02)\n'pong'" % str(go))
                conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=HANG_GUARD,
                                                   context=proxy.ssl_context)
                try:
                    import json
                    conn.request("POST", "/envs/proxied/execute",
                                 json.dumps({"code": code, "stream": True}),
                                 {"Authorization": "Bearer " + TOKEN,
                                  "Content-Type": "application/json"})
                    res = conn.getresponse()
                    assert res.status == 200
                    assert res.getheader("Content-Type") == "application/x-ndjson"
                    events = []

                    def printed():
                        return "".join(e.get("text", "") for e in events
                                       if e.get("event") == "output")

                    while "ping\n" not in printed():
                        line = res.readline()  # a buffering proxy would block here
                        assert line, events
                        events.append(json.loads(line))
                    go.write_text("go")
                    while events[-1].get("event") != "record":
                        line = res.readline()
                        assert line, events
                        events.append(json.loads(line))
                    assert events[-1]["status"] == "ok" and text_result(events[-1]) == "'pong'"
                finally:
                    go.write_text("go")  # never leave the cell waiting
                    conn.close()

                status, headers, record = execute(proxy, "proxied",
                                                  "import time; time.sleep(2); 'slow'", wait=0)
                assert status == 202, record
                status, _, record = proxy.request("GET", headers["Location"] + "?wait=20")
                assert status == 200 and text_result(record) == "'slow'", record

                plain = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=HANG_GUARD)
                try:
                    plain.request("GET", "/envs")
                    res = plain.getresponse()
                    assert res.status == 301
                    assert res.getheader("Location").startswith("https://")
                finally:
                    plain.close()
    finally:
        go.write_text("go")
        kill_kernels(state_dir)


def test_deploy_doc_names_tests_that_exist():
    """docs/deploy.md says which test runs each recipe: those tests must exist."""
    import re
    from deploy_helpers import DOCS_DEPLOY
    from helpers import ROOT
    with open(DOCS_DEPLOY, encoding="utf-8") as handle:
        named = re.findall(r"`(tests/\w+\.py)(?:::(\w+))?`", handle.read())
    assert len(named) >= 15, named
    for path, name in named:
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            source = handle.read()
        if name:
            assert re.search(r"^def %s\(" % name, source, re.M), (path, name)
