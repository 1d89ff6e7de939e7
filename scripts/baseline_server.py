#!/usr/bin/env python3
"""The in-process baseline for scripts/bench.py: the original tutorial's server, stdlib only.

The tutorial's Flask app kept one dict per environment id in the server process
and ran code in it with ``exec``, stdout redirected to a ``StringIO`` by
``contextlib.redirect_stdout``.  This is that app ported to plain WSGI and
served by the SAME server class as ``scripts/serve.py``
(``wsgikernel.httpserver.HTTP11Server`` with its request handler, access log
off), so the benchmark compares process isolation against no isolation and
nothing else.

Routes (form fields, query string or a JSON object body, as the original):

- ``POST /env/create`` ``id``  -> ``{"envs": [ids]}`` (creates the dict if absent)
- ``POST /env/delete`` ``id``  -> ``{"envs": [ids]}``
- ``POST /env/get``    ``id``  -> ``{"env": [names]}`` or ``{"error": ...}``
- ``POST /``  ``id``, ``code`` -> ``{"message": stdout}`` or ``{"error": ...}``; like the
  original, the code is split on the two characters backslash-n and each piece is
  exec'd in turn.
- ``PUT /envs/{id}`` -> 201 ``{"id": id}`` (200 if it exists) and
  ``POST /envs/{id}/execute`` with JSON ``{"code": ...}`` -> ``{"status", "stdout",
  "error"}``: the same client code can drive this server and wsgikernel.  Here the
  code runs as one cell.
- ``GET /envs`` -> ``{"envs": [{"id": id}, ...]}``.

``--floor`` serves a trivial WSGI app instead (every request answers ``ok``): the
cost of the HTTP server alone.

Like the original, this is NOT safe to expose: it runs any code it is sent, in
the server process, and ``redirect_stdout`` swaps the process-wide
``sys.stdout`` (concurrent cells that print can capture each other's output).
It binds to 127.0.0.1 only.
"""

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import threading
import traceback
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsgikernel.httpserver import HTTP11Server  # noqa: E402
from wsgikernel.server import RequestHandler  # noqa: E402

MAX_BODY = 10 * 1024 * 1024


class QuietHandler(RequestHandler):
    quiet = True


def read_params(environ):
    """Query string, then the form or JSON body (the body wins), as one dict of strings."""
    params = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if 0 < length <= MAX_BODY:
        body = environ["wsgi.input"].read(length)
        kind = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict):
                params.update(data)
        else:
            params.update({k: v[-1] for k, v in
                           parse_qs(body.decode("utf-8", "replace")).items()})
    return params


class TutorialApp:
    """The tutorial's server: environments are dicts in this process."""

    def __init__(self):
        self.envs = {}

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "") or "/"
        params = read_params(environ)
        status, body = "200 OK", None
        if method == "POST" and path == "/":
            body = self.execute_tutorial(params)
        elif method == "POST" and path == "/env/create":
            self.envs.setdefault(str(params.get("id")), {})
            body = {"envs": list(self.envs)}
        elif method == "POST" and path == "/env/delete":
            self.envs.pop(str(params.get("id")), None)
            body = {"envs": list(self.envs)}
        elif method == "POST" and path == "/env/get":
            env = self.envs.get(str(params.get("id")))
            body = ({"error": "Environment does not exist!"} if env is None else
                    {"env": [k for k in env if not (k.startswith("__") and k.endswith("__"))]})
        elif method == "GET" and path == "/envs":
            body = {"envs": [{"id": env_id} for env_id in self.envs]}
        elif path.startswith("/envs/"):
            parts = path[len("/envs/"):].split("/")
            if method == "PUT" and len(parts) == 1:
                created = parts[0] not in self.envs
                self.envs.setdefault(parts[0], {})
                status, body = ("201 Created" if created else "200 OK"), {"id": parts[0]}
            elif method == "POST" and len(parts) == 2 and parts[1] == "execute":
                if parts[0] not in self.envs:
                    status, body = "404 Not Found", {"error": "Kernel does not exist!"}
                else:
                    body = self.execute_cell(self.envs[parts[0]], str(params.get("code", "")))
        if body is None:
            status, body = "404 Not Found", {"error": "not found"}
        data = json.dumps(body).encode("utf-8")
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(data)))])
        return [data]

    def execute_tutorial(self, params):
        """The original POST /: split on backslash-n, exec each piece, stdout as message."""
        env = self.envs.get(str(params.get("id")))
        if env is None:
            return {"error": "Kernel does not exist!"}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                for line in str(params.get("code", "")).split("\\n"):
                    exec(line, env)
        except Exception:
            return {"error": out.getvalue() + traceback.format_exc()}
        return {"message": out.getvalue()}

    def execute_cell(self, env, code):
        """The JSON equivalent: the code as one cell."""
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(code, env)
        except Exception:
            return {"status": "error", "stdout": out.getvalue(), "error": traceback.format_exc()}
        return {"status": "ok", "stdout": out.getvalue(), "error": None}


def floor_app(environ, start_response):
    """The HTTP server alone: read the body, answer ``ok``."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length:
        environ["wsgi.input"].read(min(length, MAX_BODY))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8081, help="port (0 picks a free one)")
    parser.add_argument("--floor", action="store_true",
                        help="serve a trivial app answering 'ok' (the HTTP floor)")
    args = parser.parse_args(argv)
    app = floor_app if args.floor else TutorialApp()
    server = make_server("127.0.0.1", args.port, app, server_class=HTTP11Server,
                         handler_class=QuietHandler)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    print("%s serving on http://127.0.0.1:%d/" % ("floor" if args.floor else "baseline",
                                                   server.server_port), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
