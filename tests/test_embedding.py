"""make_app() embedded in another WSGI application, under a URL prefix, behind the host's auth.

The dispatcher and the auth wrapper are the ones docs/deploy.md shows (the
test runs that block), exercised through WebTest and through a real wsgiref
server.  Also: building the app starts no thread and no process.
"""

import base64
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from socketserver import ThreadingMixIn
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import webtest

from deploy_helpers import doc_block, kill_kernels
from helpers import HANG_GUARD, ROOT

PREFIX = "/kernel"
USERS = {"alice": "s3cret"}
LOGIN = "Basic " + base64.b64encode(b"alice:s3cret").decode()


def host_app(environ, start_response):
    """The rest of the host site."""
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [("host site: %s" % environ.get("PATH_INFO", "")).encode()]


@pytest.fixture
def site(make_test_app, state_dir):
    recipe = {}
    exec(compile(doc_block("embedding"), "docs/deploy.md", "exec"), recipe)
    kernel = make_test_app(token=None)
    try:
        yield recipe["mount"](PREFIX, recipe["require_basic_auth"](kernel, USERS), host_app)
    finally:
        kill_kernels(state_dir)


class WebTestClient:
    def __init__(self, app):
        self.app = webtest.TestApp(app)

    def __call__(self, method, path, body=None, form=None, auth=True, timeout=None):
        headers = {"Authorization": LOGIN} if auth else {}
        kwargs = {}
        if body is not None:
            kwargs = {"body": json.dumps(body).encode(), "content_type": "application/json"}
        elif form is not None:
            kwargs = {"body": urlencode(form).encode(),
                      "content_type": "application/x-www-form-urlencoded"}
        res = self.app.request(path, method=method, headers=headers, expect_errors=True,
                               **kwargs)
        parsed = res.json if "json" in (res.content_type or "") and res.body else res.text
        return res.status_int, res.headers, parsed


class HttpClient:
    def __init__(self, url):
        self.url = url

    def __call__(self, method, path, body=None, form=None, auth=True, timeout=HANG_GUARD):
        headers = {"Authorization": LOGIN} if auth else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif form is not None:
            data = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                status, res_headers, raw = res.status, res.headers, res.read()
        except urllib.error.HTTPError as err:
            status, res_headers, raw = err.code, err.headers, err.read()
        ctype = res_headers.get("Content-Type", "")
        return status, res_headers, json.loads(raw) if "json" in ctype and raw else raw.decode()


def exercise_every_route(call):
    """Every route of the service, under the prefix; Locations and links carry it."""
    k = PREFIX
    # the host's own auth comes first; the rest of the site is the host's
    status, headers, body = call("GET", k + "/envs", auth=False)
    assert status == 401 and "Basic" in headers["WWW-Authenticate"], body
    assert call("GET", "/about", auth=False)[2] == "host site: /about"
    assert call("GET", "/kernelish")[2] == "host site: /kernelish"

    status, _, info = call("GET", k + "/")
    assert status == 200 and info["name"] == "wsgikernel"
    assert info["links"] and all(v.startswith(k + "/") for v in info["links"].values()), info
    assert call("GET", k)[0] == 200  # the mount point itself is the service root
    assert call("GET", k + "/healthz")[2] == {"status": "ok"}
    status, _, document = call("GET", k + "/openapi.json")
    assert status == 200 and document["servers"] == [{"url": k}], document.get("servers")
    status, headers, page = call("GET", k + "/ui")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'src="ui/app.js"' in page  # relative: resolves to /kernel/ui/app.js

    status, headers, env = call("POST", k + "/envs", {"id": "e1"})
    assert status == 201 and headers["Location"] == k + "/envs/e1", env
    status, headers, env = call("PUT", k + "/envs/e2")
    assert status == 201 and headers["Location"] == k + "/envs/e2", env
    assert call("PUT", k + "/envs/e2")[0] == 200
    status, _, listing = call("GET", k + "/envs")
    assert sorted(e["id"] for e in listing["envs"]) == ["e1", "e2"]
    assert call("GET", k + "/envs/e1")[2]["state"] == "idle"

    status, _, record = call("POST", k + "/envs/e1/execute", {"code": "x = 40; x + 2"})
    assert status == 200 and record["result"]["text/plain"] == "42", record
    status, headers, record = call("POST", k + "/envs/e1/execute",
                                   {"code": "import time; time.sleep(1); 'later'", "wait": 0})
    assert status == 202, record
    location = headers["Location"]
    assert location == "%s/envs/e1/executions/%d" % (k, record["execution_count"])
    status, _, record = call("GET", location + "?wait=20", timeout=HANG_GUARD + 20)
    assert status == 200 and record["result"]["text/plain"] == "'later'", record
    status, _, page = call("GET", k + "/envs/e1/executions?limit=1")
    assert status == 200 and page["executions"][0]["execution_count"] == 1 and page["next"] == 2
    assert call("GET", k + "/envs/e1/executions/1")[2]["status"] == "ok"
    assert call("POST", k + "/envs/e1/executions/1/cancel")[2]["status"] == "ok"
    status, _, notebook = call("GET", k + "/envs/e1/notebook")
    assert status == 200 and notebook["nbformat"] == 4, notebook
    status, _, completions = call("POST", k + "/envs/e1/complete", {"code": "x.bit_"})
    assert status == 200, completions
    assert "bit_length" in [m.rsplit(".", 1)[-1] for m in completions["matches"]], completions
    status, _, inspected = call("POST", k + "/envs/e1/inspect", {"code": "x"})
    assert status == 200 and inspected["found"], inspected
    status, _, verdict = call("POST", k + "/envs/e1/is_complete", {"code": "for i in x:"})
    assert status == 200 and verdict["status"] == "incomplete", verdict
    status, _, variables = call("GET", k + "/envs/e1/variables")
    assert status == 200 and "x" in [v["name"] for v in variables["variables"]], variables
    assert call("POST", k + "/envs/e1/interrupt")[0] == 200
    status, _, env = call("POST", k + "/envs/e1/restart")
    assert status == 200 and env["session"] == 2, env
    assert call("DELETE", k + "/envs/e2")[0] == 204
    assert call("GET", k + "/envs/e2")[0] == 404

    # the original tutorial's routes, under the prefix too
    assert "c1" in call("POST", k + "/env/create", form={"id": "c1"})[2]["envs"]
    status, _, answer = call("POST", k + "/", form={"id": "c1", "code": "y = 1\nprint('hi')"})
    assert status == 200 and answer == {"message": "hi\n"}, answer
    assert "y" in call("POST", k + "/env/get", form={"id": "c1"})[2]["env"]
    assert "c1" not in call("POST", k + "/env/delete", form={"id": "c1"})[2]["envs"]


def test_every_route_under_a_prefix_with_webtest(site):
    exercise_every_route(WebTestClient(site))


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_every_route_under_a_prefix_with_a_real_wsgiref_server(site):
    server = make_server("127.0.0.1", 0, site, server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        exercise_every_route(HttpClient("http://127.0.0.1:%d" % server.server_port))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(HANG_GUARD)


PROBE = r"""
import json, os, sys, threading

def children():
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                        found.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return found

before = threading.active_count()
import wsgikernel.app
app = wsgikernel.app.make_app(pool_size=2)
import wsgikernel.wsgi
import wsgikernel.gunicorn_conf
print(json.dumps({"before": before, "after": threading.active_count(),
                  "threads": [t.name for t in threading.enumerate()],
                  "children": children(), "state": sorted(os.listdir(sys.argv[1]))}))
"""


def test_building_the_app_starts_nothing(state_dir):
    """Importing wsgikernel.app / wsgikernel.wsgi and make_app(): no thread, no process,
    no kernel (not even the pool's): safe in a pre-forking master."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGIKERNEL_")}
    env.update(WSGIKERNEL_STATE_DIR=state_dir, WSGIKERNEL_POOL_SIZE="2",
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p))
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, state_dir], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=HANG_GUARD)
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen["after"] == seen["before"] == 1, seen
        assert seen["children"] == [], seen
        assert seen["state"] == ["token"], seen  # no envs/, no pool/: nothing was started
    finally:
        kill_kernels(state_dir)
