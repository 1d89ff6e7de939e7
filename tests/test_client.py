"""wsgikernel.client against a real scripts/serve.py: every method, streaming, error mapping."""

import http.server
import json
import os
import threading
import time

import pytest

from helpers import HANG_GUARD, TOKEN, wait_for
from wsgikernel.client import Client, RemoteError, ServiceError, ServiceUnreachable

RELEASE = "release-%s"  # a file the test creates in the env's cwd to let a cell go on


def release_code(tag, before="first", after="second"):
    """A cell that prints, then waits (bounded) for the test to create a file, then prints."""
    return ("import os, time\n"
            "print(%r, flush=True)\n"
            "deadline = time.monotonic() + %r\n"
            "while not os.path.exists(%r) and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\n"
            "print(%r if os.path.exists(%r) else 'gave up')\n"
            % (before, HANG_GUARD, RELEASE % tag, after, RELEASE % tag))



@pytest.fixture
def client(live):
    return Client(live.url, TOKEN, timeout=HANG_GUARD)


@pytest.fixture
def env(client, request):
    """A fresh env named after the test; deleted afterwards."""
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    client.create(name)
    try:
        yield name
    finally:
        try:
            client.delete(name)
        except ServiceError:
            pass


def release(client, env, tag):
    with open(os.path.join(client.get(env)["cwd"], RELEASE % tag), "w"):
        pass


# -- environments ---------------------------------------------------------------

def test_url_and_token_come_from_the_environment(live, monkeypatch):
    monkeypatch.setenv("WSGIKERNEL_URL", live.url)
    monkeypatch.setenv("WSGIKERNEL_TOKEN", TOKEN)
    client = Client()
    assert client.url == live.url
    assert client.info()["name"] == "wsgikernel"
    assert TOKEN not in repr(client)


def test_create_is_idempotent_with_an_id_and_generates_one_without(client):
    env = client.create("c-create")
    try:
        assert env["id"] == "c-create" and env["state"] in ("starting", "idle")
        again = client.create("c-create")
        assert again["id"] == "c-create" and again["session"] == env["session"]
        assert "c-create" in [e["id"] for e in client.envs()]
        assert client.get("c-create")["id"] == "c-create"
    finally:
        client.delete("c-create")
    generated = client.create()
    client.delete(generated["id"])
    assert generated["id"] not in [e["id"] for e in client.envs()]


def test_create_passes_limits(client):
    env = client.create("c-limits", open_files_limit=256)
    try:
        assert env["limits"]["open_files_limit"] == 256
    finally:
        client.delete("c-limits")


def test_delete_then_get_is_a_404(client):
    client.create("c-gone")
    assert client.delete("c-gone") is None
    with pytest.raises(ServiceError) as caught:
        client.get("c-gone")
    assert caught.value.status == 404


def test_restart_gives_a_fresh_namespace(client, env):
    client.execute(env, "x = 1")
    before = client.get(env)["session"]
    assert client.restart(env)["session"] == before + 1
    record = client.execute(env, "x")
    assert record["status"] == "error" and record["error"]["ename"] == "NameError"


# -- executions ------------------------------------------------------------------

def test_execute_returns_the_record(client, env):
    record = client.execute(env, "print('hello')\nx = 21\nx * 2")
    assert record["status"] == "ok"
    assert record["stdout"] == "hello\n"
    assert record["result"] == {"text/plain": "42"}
    assert record["env"] == env and record["execution_count"] == 1


def test_execute_passes_options(client, env):
    record = client.execute(env, "name = input()\n1", stdin="ada\n",
                            user_expressions={"who": "name.upper()"})
    assert record["status"] == "ok"
    assert record["user_expressions"]["who"]["data"]["text/plain"] == "'ADA'"
    silent = client.execute(env, "name", silent=True)
    assert silent["status"] == "ok" and silent["result"] is None


def test_user_errors_are_records_unless_asked_to_raise(client, env):
    record = client.execute(env, "1/0")
    assert record["status"] == "error"
    assert record["error"]["ename"] == "ZeroDivisionError"
    with pytest.raises(RemoteError) as caught:
        client.execute(env, "def f():\n    raise ValueError('boom')\nf()", raise_on_error=True)
    text = str(caught.value)
    assert text.startswith("Traceback (most recent call last):")
    assert "ValueError: boom" in text and "f()" in text
    assert caught.value.record["status"] == "error"
    assert caught.value.ename == "ValueError"
    assert isinstance(caught.value, Exception) and not isinstance(caught.value, ServiceError)


def test_execute_follows_a_202_until_done(client, env):
    tag = "follow"
    threading.Timer(0.2, release, (client, env, tag)).start()
    record = client.execute(env, release_code(tag), wait=0)
    assert record["status"] == "ok"
    assert record["stdout"] == "first\nsecond\n"


def test_submit_then_result(client, env):
    tag = "submit"
    submitted = client.submit(env, release_code(tag))
    assert submitted["status"] in ("queued", "running")
    n = submitted["execution_count"]
    assert client.result(env, n, wait=0)["status"] in ("queued", "running")
    release(client, env, tag)
    record = client.result(env, n)
    assert record["status"] == "ok" and record["stdout"] == "first\nsecond\n"


def test_cancel_stops_a_running_execution(client, env):
    submitted = client.submit(env, "import time\nprint('started', flush=True)\n"
                                   "time.sleep(%r)" % HANG_GUARD)
    n = submitted["execution_count"]
    wait_for(lambda: client.result(env, n, wait=0)["stdout"], message="cell started")
    client.cancel(env, n)
    record = client.result(env, n)
    assert record["status"] == "aborted" and record["reason"] == "cancelled"


def test_interrupt_raises_keyboardinterrupt_in_the_cell(client, env):
    submitted = client.submit(env, "import time\nkept = 1\nprint('started', flush=True)\n"
                                   "time.sleep(%r)" % HANG_GUARD)
    n = submitted["execution_count"]
    wait_for(lambda: client.result(env, n, wait=0)["stdout"], message="cell started")
    assert client.interrupt(env)["id"] == env
    record = client.result(env, n)
    assert record["status"] == "error" and record["reason"] == "interrupted"
    assert client.execute(env, "kept")["result"] == {"text/plain": "1"}


# -- streaming -------------------------------------------------------------------------

def test_stream_yields_output_before_the_cell_ends(client, env):
    """The cell cannot finish until the test has seen its first output: a live stream."""
    tag = "stream"
    events, stamps, seen = [], [], ""
    for event in client.stream(env, release_code(tag)):
        events.append(event)
        stamps.append(time.monotonic())
        if event["event"] == "output":  # a print may arrive as several writes
            seen += event.get("text", "")
            if seen == "first\n":
                release(client, env, tag)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "accepted" and kinds[-1] == "record"
    first = next(i for i, e in enumerate(events) if e["event"] == "output")
    assert events[first]["output_type"] == "stream" and events[first]["name"] == "stdout"
    assert stamps[first] <= stamps[-1] and first < len(events) - 1
    record = events[-1]
    assert record["status"] == "ok"
    assert record["stdout"] == "first\nsecond\n"  # not 'gave up': released mid-cell


def test_stream_reports_user_errors_in_the_record(client, env):
    events = list(client.stream(env, "print('x')\n1/0"))
    assert events[-1]["event"] == "record" and events[-1]["status"] == "error"
    assert events[-1]["outputs"][-1]["output_type"] == "error"
    streamed = "".join(e.get("text", "") for e in events if e["event"] == "output")
    assert streamed == "x\n"


def test_stream_errors_raise_before_iteration(client):
    with pytest.raises(ServiceError) as caught:
        client.stream("c-no-such-env", "1")
    assert caught.value.status == 404


def test_attach_replays_then_follows(client, env):
    tag = "attach"
    n = client.submit(env, release_code(tag))["execution_count"]
    wait_for(lambda: client.result(env, n, wait=0)["stdout"], message="first output")
    events, seen = [], ""
    for event in client.attach(env, n):
        events.append(event)
        if event["event"] == "output":
            seen += event.get("text", "")
            if seen == "first\n":
                release(client, env, tag)
    assert events[0]["event"] == "accepted"
    assert events[-1]["event"] == "record" and events[-1]["stdout"] == "first\nsecond\n"


# -- history ------------------------------------------------------------------------------

def test_executions_page_and_history_follows_next(client, env):
    for i in range(5):
        client.execute(env, "%d" % i)
    page = client.executions(env, since=0, limit=2)
    assert [r["execution_count"] for r in page["executions"]] == [1, 2]
    assert page["next"] == 3
    later = client.executions(env, since=4)
    assert [r["execution_count"] for r in later["executions"]] == [4, 5]
    assert later["next"] is None
    history = client.history(env)
    assert [r["code"] for r in history] == ["0", "1", "2", "3", "4"]


def test_history_pages_through_more_than_one_page(client, env, monkeypatch):
    for i in range(3):
        client.execute(env, "%d" % i)
    original = client.executions
    monkeypatch.setattr(client, "executions",
                        lambda id, since=0, limit=100: original(id, since, limit=1))
    assert [r["execution_count"] for r in client.history(env)] == [1, 2, 3]


def test_notebook_is_a_dict(client, env):
    client.execute(env, "print('nb')")
    notebook = client.notebook(env)
    assert notebook["nbformat"] == 4
    assert notebook["cells"][0]["source"] == "print('nb')"
    assert notebook["cells"][0]["outputs"][0]["text"] == "nb\n"


# -- introspection ---------------------------------------------------------------------------

def test_introspection(client, env):
    client.execute(env, "import json\nvalue = [1, 2, 3]\n_hidden = 1")
    assert "value" in client.complete(env, "val")["matches"]
    completion = client.complete(env, "json.du + 1", cursor_pos=len("json.du"))
    assert "dumps" in completion["matches"] and completion["cursor_end"] == len("json.du")
    inspected = client.inspect(env, "json.dumps")
    assert inspected["found"] is True and "dumps" in inspected["data"]["text/plain"]
    assert "source" in client.inspect(env, "json.dumps", detail_level=1)
    assert client.is_complete(env, "for i in value:")["status"] == "incomplete"
    assert client.is_complete(env, "x = 1")["status"] == "complete"
    names = [v["name"] for v in client.variables(env)]
    assert "value" in names and "_hidden" not in names and "json" not in names
    assert "_hidden" in [v["name"] for v in client.variables(env, all=True)]


# -- errors ----------------------------------------------------------------------------------

def test_unknown_env_is_a_service_error_with_the_problem(client):
    with pytest.raises(ServiceError) as caught:
        client.execute("c-missing", "1")
    error = caught.value
    assert error.status == 404
    assert error.type == "urn:wsgikernel:env-not-found"
    assert error.title and "c-missing" in error.detail
    assert error.problem["env_id"] == "c-missing"


def test_wrong_token_is_a_401(live):
    with pytest.raises(ServiceError) as caught:
        Client(live.url, "wrong-token").envs()
    assert caught.value.status == 401
    assert caught.value.type == "urn:wsgikernel:unauthorized"


def test_invalid_parameters_are_422(client, env):
    with pytest.raises(ServiceError) as caught:
        client.create("bad id")
    assert caught.value.status == 422
    with pytest.raises(ServiceError) as caught:
        client.inspect(env, "x", detail_level=7)
    assert caught.value.status == 422 and caught.value.problem["param"] == "detail_level"


def test_no_server_is_service_unreachable():
    with pytest.raises(ServiceUnreachable) as caught:
        Client("http://127.0.0.1:1", TOKEN, timeout=5).envs()
    assert caught.value.status is None
    assert isinstance(caught.value, ServiceError)


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with a redirect to another origin; remembers what it saw."""

    seen = []

    def do_GET(self):
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(302)
        self.send_header("Location", "http://127.0.0.2:9/steal")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_token_travels_in_the_header_only_and_redirects_are_not_followed():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = Client("http://127.0.0.1:%d" % server.server_port, "s3cret", timeout=5)
        with pytest.raises(ServiceError) as caught:
            client.variables("demo", all=True)
        assert caught.value.status == 302
    finally:
        server.shutdown()
        server.server_close()
    assert len(Recorder.seen) == 1
    path, authorization = Recorder.seen[0]
    assert "s3cret" not in path and path == "/envs/demo/variables?all=1"
    assert authorization == "Bearer s3cret"


def test_service_error_reads_non_problem_bodies():
    from wsgikernel.client import _service_error
    error = _service_error(502, {}, b"<html>bad gateway</html>")
    assert error.status == 502 and error.title == "Bad Gateway"
    assert "bad gateway" in error.detail
    assert json.loads(json.dumps(error.problem))["status"] == 502


class NotTheService(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html>some other server</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_answer_that_is_not_json_is_a_service_error():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotTheService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ServiceError) as caught:
            Client("http://127.0.0.1:%d" % server.server_port, "t", timeout=5).envs()
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.status == 200 and "not JSON" in caught.value.detail


def test_request_is_the_escape_hatch(client):
    status, headers, body = client.request("GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}
    assert headers["Content-Type"] == "application/json"
