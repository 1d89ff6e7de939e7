"""Real gunicorn / uWSGI / nginx processes on free loopback ports, for the deployment tests.

Every server is started in its own session (so the whole tree — master,
workers, uWSGI's HTTP router — can be killed as one process group), is waited
for by polling ``/healthz`` with a bound, and is stopped in ``finally``
(SIGTERM, then SIGKILL to the group after a guard).  Kernels are never in that
group: they run in sessions of their own and are found, and counted by pid,
through the env.json files of the state dir.
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from helpers import HANG_GUARD, ROOT, TOKEN, pid_alive, wait_for

PORT_ATTEMPTS = 5
DOCS_DEPLOY = os.path.join(ROOT, "docs", "deploy.md")
# An access log line per request naming the worker that served it ("pid=<123>").
GUNICORN_LOG_FORMAT = '"%(m)s %(U)s" %(s)s pid=%(p)s'
UWSGI_LOG_FORMAT = '"%(method) %(var.PATH_INFO)" %(status) pid=%(pid)'
# "METHOD /path[ PROTO]" STATUS ... pid=N  (gunicorn writes the pid as <N>)
_SERVED = re.compile(r'"(\w+) (\S*)[^"\n]*" (\d{3})\b[^\n]*?pid=<?(\d+)>?')
_WORKER_BOOT = re.compile(r"Booting worker with pid: (\d+)|spawned uWSGI worker \d+ \(pid: (\d+)")


def free_port():
    """A port free on 127.0.0.1 right now (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(state_dir, token=TOKEN, **extra):
    """The server's environment: WSGIKERNEL_* settings only, as an operator would set them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGIKERNEL_")}
    env.update(WSGIKERNEL_STATE_DIR=str(state_dir), WSGIKERNEL_KILL_GRACE="1",
               WSGIKERNEL_POOL_SIZE="0")
    if token:
        env["WSGIKERNEL_TOKEN"] = token
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def gunicorn_command(port, *args, app="wsgikernel.app:make_app()", config=None):
    cmd = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:%d" % port,
           "--access-logfile", "-", "--error-logfile", "-"]
    if gunicorn_has_control_socket():
        cmd.append("--no-control-socket")  # gunicorn >= 25.1: one per instance, not shared
    if config:
        cmd += ["-c", config]  # its access_log_format is the one under test
    else:
        cmd += ["--access-logformat", GUNICORN_LOG_FORMAT]
    cmd += list(args)
    if app:
        cmd.append(app)
    return cmd


def gunicorn_has_control_socket():
    import gunicorn
    return tuple(gunicorn.version_info[:2]) >= (25, 1)


def uwsgi_executable():
    """pyuwsgi installs a ``uwsgi`` console script beside the interpreter."""
    beside = os.path.join(os.path.dirname(sys.executable), "uwsgi")
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("uwsgi")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys, pyuwsgi; sys.exit(pyuwsgi.run())"]


def uwsgi_command(port, *args, module="wsgikernel.wsgi:application"):
    return uwsgi_executable() + [
        "--master", "--die-on-term", "--need-app", "--http", "127.0.0.1:%d" % port,
        "--module", module, "--log-format", UWSGI_LOG_FORMAT] + list(args)


def uwsgi_stop_hook():
    """The documented uWSGI shutdown hook, with this interpreter."""
    return ["--hook-as-user-atexit", "exec:%s -m wsgikernel.uwsgi_hooks" % sys.executable]


class Server:
    """One real server process tree: start on a free port, talk to it, stop it.

    ``command(port)`` builds the argv; ``scheme``/``ssl_context`` for TLS.
    """

    def __init__(self, command, env, name="server", scheme="http", ssl_context=None,
                 health="/healthz", token=TOKEN, cwd=ROOT, logs_bind=True):
        self.command, self.env, self.name, self.cwd = command, env, name, cwd
        # gunicorn and uWSGI log the address they bound: until then, whoever answers
        # on the port is another process that took it first
        self.logs_bind = logs_bind
        self.scheme, self.ssl_context, self.health = scheme, ssl_context, health
        self.token = token
        self.proc = None
        self.port = None
        self.log_path = None
        self._log = None

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            fd, self.log_path = tempfile.mkstemp(prefix="wk-%s-" % self.name, suffix=".log")
            self._log = os.fdopen(fd, "wb")
            self.proc = subprocess.Popen(self.command(self.port), stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=self.cwd, start_new_session=True)
            if self._wait_healthy():
                return self
            self.kill()
            log = self.log()
            self._cleanup_log()
            os.unlink(self.log_path)
            self.log_path = None
            if "in use" not in log:  # only a port race is worth another try
                raise AssertionError("%s did not start:\n%s" % (self.name, log[-4000:]))
        raise AssertionError("%s: no free port after %d attempts" % (self.name, PORT_ATTEMPTS))

    def _wait_healthy(self):
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.logs_bind and "127.0.0.1:%d" % self.port not in self.log():
                time.sleep(0.05)
                continue
            try:
                status, _, _ = self.request("GET", self.health, token=False, timeout=2)
                if status == 200:
                    return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        return False

    def request(self, method, path, body=None, token=True, headers=None, timeout=HANG_GUARD,
                form=None):
        """(status, headers, JSON or text) of one request, on a new connection (urllib)."""
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif form is not None:
            from urllib.parse import urlencode
            data = urlencode(form).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if token is True:
            token = self.token
        if token:
            headers.setdefault("Authorization", "Bearer " + token)
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as res:
                status, res_headers, raw = res.status, res.headers, res.read()
        except urllib.error.HTTPError as err:
            status, res_headers, raw = err.code, err.headers, err.read()
        ctype = res_headers.get("Content-Type", "")
        return status, res_headers, (json.loads(raw) if "json" in ctype and raw else
                                     raw.decode("utf-8", "replace"))

    def log(self):
        if not self.log_path:
            return ""
        with open(self.log_path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def served(self, path_part="", status=None):
        """Worker pids that answered requests whose path contains ``path_part``."""
        pids = set()
        for method, path, code, pid in _SERVED.findall(self.log()):
            if path_part in path and (status is None or int(code) == status):
                pids.add(int(pid))
        return pids

    def worker_pids(self):
        """Every worker the master has started so far (from its log)."""
        return {int(a or b) for a, b in _WORKER_BOOT.findall(self.log())}

    def stop(self, sig=signal.SIGTERM, timeout=2 * HANG_GUARD):
        """Signal the master, wait for it, then kill whatever is left of its group.

        The default wait covers gunicorn's graceful_timeout (30 s) plus stopping kernels.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("%s did not exit within %g s after %s; its log:\n%s"
                                     % (self.name, timeout, signal.Signals(sig).name,
                                        self.log()[-4000:]))
        self._kill_group()
        return self.proc.returncode

    def kill(self):
        """SIGKILL the whole process group (master, workers, router) at once."""
        if self.proc is None:
            return
        self._kill_group()
        try:
            self.proc.wait(HANG_GUARD)
        except subprocess.TimeoutExpired:
            pass

    def _kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _cleanup_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self):
        try:
            self.stop()
        finally:
            self._cleanup_log()
            if self.log_path:
                try:
                    os.unlink(self.log_path)
                except OSError:
                    pass

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:  # shown by pytest with the failure
            print("---- %s log (%s) ----\n%s" % (self.name, self.log_path, self.log()[-6000:]))
        self.close()


def gunicorn(state_dir, *args, app="wsgikernel.app:make_app()", config=None, token=TOKEN,
             env=None, **kwargs):
    environ = server_env(state_dir, token=token, **(env or {}))
    return Server(lambda port: gunicorn_command(port, *args, app=app, config=config),
                  environ, name="gunicorn", token=token, **kwargs)


def uwsgi(state_dir, *args, token=TOKEN, env=None, **kwargs):
    environ = server_env(state_dir, token=token, **(env or {}))
    return Server(lambda port: uwsgi_command(port, *args), environ, name="uwsgi",
                  token=token, **kwargs)


# -- the uWSGI recipes of docs/deploy.md, run as they are written there -------------


def _recipe_env(state_dir):
    """server_env() without WSGIKERNEL_STATE_DIR: the recipe itself must set it.  Should it
    not reach the app, the default state dir is still under ``state_dir`` (kill_kernels()
    finds those kernels) and the test fails instead of leaving kernels in ~/.local/state."""
    env = server_env(state_dir)
    del env["WSGIKERNEL_STATE_DIR"]
    env["XDG_STATE_HOME"] = os.path.join(str(state_dir), "default-state-home")
    return env


def kill_recipe_kernels(state_dir, pids=()):
    """kill_kernels() of ``state_dir`` and of the default state dir _recipe_env() sets."""
    kill_kernels(state_dir, pids)
    kill_kernels(os.path.join(str(state_dir), "default-state-home", "wsgikernel"))


def _replace_once(text, replacements):
    for old, new in replacements:
        assert text.count(old) == 1, "expected %r once in the recipe:\n%s" % (old, text)
        text = text.replace(old, new)
    return text


def uwsgi_ini_recipe(state_dir, folder):
    """A Server on the ini of docs/deploy.md; only its port, python and state dir changed."""
    ini = doc_block("uwsgi-ini")

    def command(port):
        text = _replace_once(ini, (("http = 127.0.0.1:8080", "http = 127.0.0.1:%d" % port),
                                   ("/opt/wsgikernel/venv/bin/python", sys.executable),
                                   ("/var/lib/wsgikernel", str(state_dir))))
        path = os.path.join(str(folder), "uwsgi.ini")
        with open(path, "w") as handle:
            handle.write(text)
        return uwsgi_executable() + ["--ini", path]

    return Server(command, _recipe_env(state_dir), name="uwsgi-ini")


def uwsgi_command_recipe(state_dir):
    """A Server on the shell lines of docs/deploy.md, run by bash as they are written;
    only the port and the state dir changed.  ``uwsgi`` and ``python3`` are this test's,
    first on PATH as in an activated venv; bash ``exec``s uwsgi, so the pid is the master."""
    script = doc_block("uwsgi-command")
    assert script.count("\nuwsgi ") == 1, script  # one uwsgi command, at the start of a line
    uwsgi_bin = uwsgi_executable()[0]
    bindir = os.path.dirname(uwsgi_bin if os.path.basename(uwsgi_bin) == "uwsgi"
                             else sys.executable)
    env = _recipe_env(state_dir)
    env["PATH"] = os.pathsep.join(p for p in (bindir, env.get("PATH")) if p)
    assert shutil.which("uwsgi", path=env["PATH"]), "no uwsgi command on " + env["PATH"]
    assert shutil.which("python3", path=env["PATH"]), "no python3 on " + env["PATH"]

    def command(port):
        text = _replace_once(script, (("127.0.0.1:8080", "127.0.0.1:%d" % port),
                                      ("/var/lib/wsgikernel", str(state_dir)),
                                      ("\nuwsgi ", "\nexec uwsgi ")))
        return ["bash", "-c", "set -e\n" + text]

    return Server(command, env, name="uwsgi-command")


def check_keepalive(server, rounds=5, session_requests=30):
    """Requests over one ``http.client.HTTPConnection`` and over one ``requests.Session``:
    every one answered, on the connection the first one opened.  Only an answer that says
    ``Connection: close`` (an NDJSON stream, which has no length) may end its connection."""
    import http.client

    import requests

    auth = {"Authorization": "Bearer " + server.token}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HANG_GUARD)
    try:
        def ask(method, path, body=None, headers=auth):
            sent = dict(headers)
            data = None
            if body is not None:
                data = json.dumps(body)
                sent["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=sent)
            res = conn.getresponse()
            raw = res.read()
            return res, raw

        plan = [("GET", "/healthz", None, auth, 200), ("PUT", "/envs/keepalive", None, auth, 201),
                ("POST", "/envs/keepalive/execute", {"code": "n = 0"}, auth, 200)]
        plan += [("POST", "/envs/keepalive/execute", {"code": "n += 1; n"}, auth, 200),
                 ("GET", "/envs", None, auth, 200),
                 ("GET", "/envs/no-such-env", None, auth, 404),
                 ("GET", "/envs", None, {"Authorization": "Bearer not-the-token"}, 401)] * rounds
        first_socket = None
        for number, (method, path, body, headers, expected) in enumerate(plan):
            res, raw = ask(method, path, body, headers)
            assert res.status == expected, (number, method, path, res.status, raw[:300])
            assert not res.will_close, (number, method, path, res.getheaders())
            first_socket = first_socket or conn.sock
            assert conn.sock is first_socket, (number, method, path)  # never reconnected
        res, raw = ask("POST", "/envs/keepalive/execute", {"code": "n"})
        assert res.status == 200 and json.loads(raw)["result"]["text/plain"] == str(rounds), raw
        assert conn.sock is first_socket

        # a stream has no length: uWSGI ends it by closing, and says so
        res, raw = ask("POST", "/envs/keepalive/execute",
                       {"code": "for i in range(3): print(i)", "stream": True})
        lines = [json.loads(line) for line in raw.splitlines()]
        assert res.status == 200 and lines[-1]["status"] == "ok", raw[:500]
        if res.will_close:
            assert res.getheader("Connection", "").lower() == "close", res.getheaders()
        res, raw = ask("GET", "/envs")  # http.client reconnects after an announced close
        assert res.status == 200, raw[:300]
    finally:
        conn.close()

    with requests.Session() as session:
        session.headers.update(auth)
        for number in range(session_requests):
            res = session.get(server.url + "/envs", timeout=HANG_GUARD)
            assert res.status_code == 200, (number, res.status_code, res.text[:300])
        pools = session.get_adapter(server.url).poolmanager.pools
        opened = sum(pools[key].num_connections for key in pools.keys())
        assert opened == 1, "requests.Session opened %d connections for %d requests" % (
            opened, session_requests)


def check_token_not_logged(server, path="/envs/token-check"):
    """A request with ``?token=`` reaches uWSGI's access log without the token."""
    status, _, problem = server.request("GET", "%s?token=%s" % (path, server.token), token=False)
    assert status == 404, problem  # authenticated by the query token, then: no such env
    # uWSGI writes the access log line once the answer is out: it may come after the answer
    line = wait_for(lambda: next((line for line in server.log().splitlines()
                                  if "GET %s" % path in line), None),
                    message="the access log line of GET %s" % path)
    assert server.token not in server.log(), line


# -- kernels ---------------------------------------------------------------------


def kernel_records(state_dir):
    """env.json of every environment (and pooled kernel) of the state dir."""
    records = []
    for sub in ("envs", "pool"):
        folder = os.path.join(str(state_dir), sub)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        for name in names:
            try:
                with open(os.path.join(folder, name, "env.json")) as handle:
                    records.append(json.load(handle))
            except (OSError, ValueError):
                continue
    return records


def kernel_pids(state_dir):
    """Supervisor and user-code pids recorded in the state dir."""
    pids = set()
    for record in kernel_records(state_dir):
        for key in ("supervisor_pid", "pid"):
            if record.get(key):
                pids.add(int(record[key]))
    return pids


def alive(pids):
    return {pid for pid in pids if pid_alive(pid)}


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def kill_kernels(state_dir, pids=()):
    """Safety net for ``finally``: SIGKILL the groups of this state dir's kernels still alive."""
    for pid in set(pids) | kernel_pids(state_dir):
        if pid_alive(pid) and str(state_dir) in _cmdline(pid):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def wait_gone(pids, timeout=HANG_GUARD):
    wait_for(lambda: not alive(pids), timeout=timeout, interval=0.05,
             message="kernel processes %s to exit" % sorted(alive(pids)))


# -- docs -------------------------------------------------------------------------


def doc_block(name):
    """The fenced code block that follows ``<!-- tested: NAME -->`` in docs/deploy.md."""
    with open(DOCS_DEPLOY, encoding="utf-8") as handle:
        text = handle.read()
    found = re.search(r"<!-- tested: %s -->\s*```[\w-]*\n(.*?)```" % re.escape(name), text, re.S)
    assert found, "docs/deploy.md has no block marked <!-- tested: %s -->" % name
    return found.group(1)


def self_signed_cert(folder):
    """(cert, key) for 127.0.0.1, made with the openssl command line."""
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True,
                   timeout=HANG_GUARD)
    return cert, key


def client_tls_context(cert):
    context = ssl.create_default_context(cafile=cert)
    return context


# -- checks shared by the gunicorn and uWSGI tests ----------------------------------


def execute(server, env_id, code, timeout=HANG_GUARD, **params):
    return server.request("POST", "/envs/%s/execute" % env_id, dict(params, code=code),
                          timeout=timeout)


def text_result(record):
    return (record.get("result") or {}).get("text/plain")


def check_workers_share_envs_and_token_file(server, state_dir):
    """Started without WSGIKERNEL_TOKEN: every worker accepts <state_dir>/token, and an
    env created through one request is used through every worker."""
    path = os.path.join(str(state_dir), "token")
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path) as handle:
        server.token = handle.read().strip()
    assert server.token
    check_refused(server)

    status, headers, env = server.request("POST", "/envs", {"id": "shared"})
    assert status == 201 and headers["Location"] == "/envs/shared", env
    status, _, record = execute(server, "shared", "made = 'once'; import os; os.getpid()")
    assert status == 200 and record["status"] == "ok", record
    kernel_pid = text_result(record)
    workers = wait_for(lambda: (lambda pids: pids if len(pids) == 3 else None)(
        server.worker_pids()), message="three workers to boot")

    from concurrent.futures import ThreadPoolExecutor

    def read_back(_):
        status, _, record = execute(server, "shared", "made, os.getpid()")
        assert status == 200 and record["status"] == "ok", record
        return text_result(record)

    def every_worker_served():
        with ThreadPoolExecutor(6) as pool:
            answers = set(pool.map(read_back, range(12)))
        assert answers == {"('once', %s)" % kernel_pid}, answers  # one kernel, one namespace
        return server.served("/envs/shared/execute", 200) >= workers

    wait_for(every_worker_served, interval=0,
             message="every worker to serve the env (log:\n%s)" % server.log()[-3000:])


def check_refused(server):
    """A wrong token and an unknown env: complete problem+json answers."""
    status, headers, problem = server.request("GET", "/envs", token="not-the-token")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), problem
    assert problem["status"] == 401, problem
    status, _, problem = server.request("GET", "/envs/no-such-env")
    assert status == 404 and problem["type"] == "urn:wsgikernel:env-not-found", problem


def check_concurrent_increments(server, env_id="counter", clients=6, each=10):
    """``x += 1`` from ``clients`` threads, ``each`` times, a new connection each: none lost."""
    from concurrent.futures import ThreadPoolExecutor

    status, _, env = server.request("PUT", "/envs/" + env_id)
    assert status == 201, env
    status, _, record = execute(server, env_id, "x = 0")
    assert status == 200 and record["status"] == "ok", record

    def client(_):
        return [execute(server, env_id, "x += 1") for _ in range(each)]

    with ThreadPoolExecutor(clients) as pool:
        results = [result for batch in pool.map(client, range(clients)) for result in batch]
    assert len(results) == clients * each
    for status, _, record in results:
        assert status == 200 and record["status"] == "ok", record
    counts = {record["execution_count"] for _, _, record in results}
    assert len(counts) == clients * each  # every cell ran once, under its own number
    status, _, record = execute(server, env_id, "x")
    assert status == 200 and text_result(record) == str(clients * each), record


def start_busy_and_idle_envs(server, state_dir):
    """Two envs, one of them running a long cell; the pids of their kernels (all alive)."""
    for env_id in ("idle-env", "busy-env"):
        status, _, env = server.request("PUT", "/envs/" + env_id)
        assert status == 201, env
    status, _, record = execute(server, "busy-env", "import time; time.sleep(600)", wait=0)
    assert status == 202, record
    pids = kernel_pids(state_dir)
    assert len(pids) == 4 and alive(pids) == pids, pids  # two supervisors, two user-code processes
    return pids


def assert_all_stopped(app, env_ids, reason="server_shutdown"):
    """A new app on the same state dir lists the envs as stopped, history kept."""
    import webtest
    client = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    envs = {env["id"]: env for env in client.get("/envs").json["envs"]}
    for env_id in env_ids:
        assert envs[env_id]["state"] == "stopped", envs[env_id]
        assert envs[env_id]["reason"] == reason, envs[env_id]
    return client
