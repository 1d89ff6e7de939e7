"""Shared test helpers: the pinned error shape, live servers, polling."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE = os.path.join(ROOT, "scripts", "serve.py")
TOKEN = "test-token-0123456789"
HANG_GUARD = 30.0  # seconds: generous bound for waits on real processes, never a speed claim


def assert_problem(res, status, type=None, **fields):
    """Pin the service's error shape: problem+json with the RFC 9457 members."""
    assert res.status_int == status, (res.status, res.body[:500])
    assert res.headers["Content-Type"] == "application/problem+json", res.headers
    body = json.loads(res.body)
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["type"].startswith("urn:wsgikernel:"), body
    assert "Traceback" not in res.text
    if type is not None:
        assert body["type"] == "urn:wsgikernel:" + type, body
    for key, value in fields.items():
        assert body[key] == value, (key, body)
    return body


def wait_for(condition, timeout=HANG_GUARD, interval=0.02, message="condition"):
    """Poll ``condition()`` until truthy; fail after ``timeout`` (a hang guard)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % message)
        time.sleep(interval)


def kill_if_alive(pid, signum=signal.SIGKILL):
    """Signal ``pid`` unless it is gone already (a checkpoint's spare ends by itself once
    its checkpoint is killed)."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def groups(pids):
    """The process groups of ``pids`` (a checkpoint leads one, with its spare in it)."""
    found = set()
    for pid in pids:
        try:
            found.add(os.getpgid(pid))
        except OSError:
            pass
    return found


def command_lines():
    """(pid, [argument, ...]) of every process whose /proc entry can be read."""
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        yield int(name), [arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg]


def processes_in(path):
    """pids of live processes working in ``path`` or below it, or naming it in their
    command line: the kernels of a state or env directory (a supervisor works in its
    env dir, its user-code process in the work dir; one started by the forkserver has
    the forkserver's command line, one started as a new python names its env dir)."""
    path = os.path.abspath(path)
    found = []
    for pid, args in command_lines():
        try:
            cwd = os.readlink("/proc/%d/cwd" % pid)
        except OSError:
            cwd = ""
        if (cwd == path or cwd.startswith(path + os.sep) or path in args
                or any(arg.startswith(path + os.sep) for arg in args)) and pid_alive(pid):
            found.append(pid)
    return found


class LiveServer:
    """A real ``scripts/serve.py`` on a free loopback port; use as a context manager."""

    def __init__(self, *args, state_dir, token=TOKEN, env=None):
        self.args = list(args)
        self.state_dir = str(state_dir)
        self.token = token
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("WSGIKERNEL_TOKEN", None)
        self.proc = None
        self.url = None
        self.banner = []

    def start(self):
        cmd = [sys.executable, SERVE, "--port", "0", "--state-dir", self.state_dir,
               "--kill-grace", "1"]
        if self.token and "--no-auth" not in self.args:
            cmd += ["--token", self.token]
        self.proc = subprocess.Popen(cmd + self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self.env, text=True)
        first = self.proc.stdout.readline()
        if not first.startswith("wsgikernel serving on "):
            self.proc.kill()
            raise AssertionError("server did not start: %r %s" % (first, self.proc.stderr.read()))
        self.banner.append(first)
        self.url = first.split(" on ", 1)[1].strip()
        return self

    def stop(self, sig=signal.SIGTERM, timeout=HANG_GUARD):
        """Signal the server and wait for it; return its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    def request(self, method, path, body=None, headers=None, token=True, timeout=HANG_GUARD):
        """(status, headers, parsed JSON or text) of one request with urllib."""
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        if token and self.token:
            headers.setdefault("Authorization", "Bearer " + self.token)
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data,
                                     headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                status, res_headers, raw = res.status, res.headers, res.read()
        except urllib.error.HTTPError as err:
            status, res_headers, raw = err.code, err.headers, err.read()
        ctype = res_headers.get("Content-Type", "")
        return status, res_headers, (json.loads(raw) if "json" in ctype and raw else raw.decode())


def run(testapp, env_id, code, **extra):
    """POST execute through WebTest and return the finished record (200 expected)."""
    res = testapp.post_json("/envs/%s/execute" % env_id, dict(extra, code=code))
    assert res.status_int == 200, res.body[:500]
    return res.json


def submit(testapp, env_id, code, **fields):
    """Start a cell without waiting for it (202); its record so far."""
    res = testapp.post_json("/envs/%s/execute" % env_id, dict(fields, code=code, wait=0))
    assert res.status_int == 202, res.body[:500]
    return res.json


def poll(testapp, env_id, n):
    """Execution ``n``'s record, long-polled until it finishes (or 30 s)."""
    res = testapp.get("/envs/%s/executions/%d" % (env_id, n), {"wait": 30})
    assert res.status_int == 200, res.body[:500]
    return res.json


def value(testapp, env_id, code):
    """text/plain of the cell's last expression (the cell must succeed)."""
    record = run(testapp, env_id, code)
    assert record["status"] == "ok", record
    return record["result"]["text/plain"]
