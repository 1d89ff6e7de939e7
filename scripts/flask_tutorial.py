#!/usr/bin/env python3
"""The original tutorial's Flask app, served as the tutorial served it: the bench's Flask baseline.

    python3 scripts/flask_tutorial.py [--port 8082] [--quiet]   # needs Flask (pip install Flask)

The first part below is the tutorial's app as it was (52 lines): a Flask app
keeping one dict per environment id in the server process, ``/env/create``,
``/env/delete``, ``/env/get`` and ``POST /`` running code in an environment
with stdout redirected to a ``StringIO`` (the code split on the two characters
backslash-n, each piece exec'd in turn).  The second part adds the JSON shims
``scripts/baseline_server.py`` has (``PUT /envs/{id}``, ``POST
/envs/{id}/execute``, ``GET /envs``), so the same client code drives every
server of the benchmark.

It is served on ``wsgiref.simple_server`` with ``socketserver.ThreadingMixIn``
(a thread per connection, HTTP/1.0, one request per connection, the default
listen backlog of 5), on 127.0.0.1 only: DESIGN.md section 7's "tutorial's
Flask app on threaded wsgiref".  The first line printed is ``flask serving on
http://127.0.0.1:PORT/`` (``--port 0`` picks a free port).

Like the original, this is NOT safe to expose: it runs any code it is sent in
the server process.  Used by scripts/bench.py only; Flask is a bench-only extra.
"""

# -- the tutorial's app ---------------------------------------------------------------
import contextlib
import io
import traceback

from flask import Flask, jsonify, request

app = Flask(__name__)
envs = {}


def param(name):
    """A form field, a query parameter or a key of a JSON object body."""
    data = request.get_json(silent=True)
    if isinstance(data, dict) and name in data:
        return data[name]
    return request.values.get(name)


@app.route("/env/create", methods=["POST"])
def create_env():
    envs.setdefault(str(param("id")), {})
    return jsonify({"envs": list(envs)})


@app.route("/env/delete", methods=["POST"])
def delete_env():
    envs.pop(str(param("id")), None)
    return jsonify({"envs": list(envs)})


@app.route("/env/get", methods=["POST"])
def get_env():
    env = envs.get(str(param("id")))
    if env is None:
        return jsonify({"error": "Environment does not exist!"})
    return jsonify({"env": [k for k in env if not (k.startswith("__") and k.endswith("__"))]})


@app.route("/", methods=["POST"])
def execute():
    env = envs.get(str(param("id")))
    if env is None:
        return jsonify({"error": "Kernel does not exist!"})
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            for line in str(param("code") or "").split("\\n"):
                exec(line, env)
    except Exception:
        return jsonify({"error": out.getvalue() + traceback.format_exc()})
    return jsonify({"message": out.getvalue()})


# -- the JSON shims of scripts/baseline_server.py ---------------------------------------


@app.route("/envs", methods=["GET"])
def list_envs():
    return jsonify({"envs": [{"id": env_id} for env_id in envs]})


@app.route("/envs/<env_id>", methods=["PUT"])
def put_env(env_id):
    created = env_id not in envs
    envs.setdefault(env_id, {})
    return jsonify({"id": env_id}), 201 if created else 200


@app.route("/envs/<env_id>/execute", methods=["POST"])
def execute_cell(env_id):
    """The code as one cell: ``{"status", "stdout", "error"}``."""
    env = envs.get(env_id)
    if env is None:
        return jsonify({"error": "Kernel does not exist!"}), 404
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(str(param("code") or ""), env)
    except Exception:
        return jsonify({"status": "error", "stdout": out.getvalue(),
                        "error": traceback.format_exc()})
    return jsonify({"status": "ok", "stdout": out.getvalue(), "error": None})


# -- the server: threaded wsgiref, as the tutorial's ------------------------------------


def main(argv=None):
    import argparse
    import signal
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # request_queue_size stays socketserver's default, 5

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):
            pass

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8082, help="port (0 picks a free one)")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    server = make_server("127.0.0.1", args.port, app, server_class=ThreadingWSGIServer,
                         handler_class=QuietHandler if args.quiet else WSGIRequestHandler)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    print("flask serving on http://127.0.0.1:%d/" % server.server_port, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
