"""The HTTP/1.1 front end (wsgikernel/httpserver.py): keep-alive, chunked streams, the
worker pool, framing errors.  Real sockets on loopback; in-process servers for the
server's own knobs, a real scripts/serve.py for the service."""

import http.client
import json
import os
import socket
import threading
from urllib.parse import urlsplit
from wsgiref.simple_server import make_server

import pytest

from helpers import HANG_GUARD, TOKEN, wait_for

GUARD = 10.0  # seconds a socket waits for the server: a hang guard, not a speed claim


# -- helpers --------------------------------------------------------------------

class Served:
    """An in-process HTTP11Server running ``app`` on a free port, with knobs set."""

    def __init__(self, app, **knobs):
        from wsgikernel.httpserver import HTTP11Server
        from wsgikernel.server import RequestHandler
        server_class = type("Server", (HTTP11Server,), knobs)
        handler = type("Quiet", (RequestHandler,), {"quiet": True})
        self.httpd = make_server("127.0.0.1", 0, app, server_class=server_class,
                                 handler_class=handler)
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(GUARD)

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=GUARD)


def hello(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello " + body]


def lines_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/x-ndjson")])
    return (b'{"n": %d}\n' % n for n in range(3))


def read_one(sock, buffer=b""):
    """(status, headers dict, body, rest) of one response read from ``sock``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("closed before a response head: %r" % buffer)
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(rest) < size:
            chunk = sock.recv(65536)
            assert chunk, "closed mid-body"
            rest += chunk
        return status, headers, rest[:size], rest[size:]
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body, rest = body + rest[:size], rest[size + 2:]
            if size == 0:
                return status, headers, body, rest
    body = rest
    while True:  # close-delimited
        chunk = sock.recv(65536)
        if not chunk:
            return status, headers, body, b""
        body += chunk


def closed_by_server(sock):
    """True once the server has closed ``sock`` (EOF within the guard)."""
    sock.settimeout(GUARD)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# -- parsing (pure) -----------------------------------------------------------------

def test_parse_head_reads_the_request_line_and_headers():
    from wsgikernel.httpwire import parse_head
    request = parse_head(b"POST /envs/a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                         b"X-A: 1\r\nx-a:  2 ")
    assert (request.method, request.target, request.version) == ("POST", "/envs/a?x=1", (1, 1))
    assert request.headers == [("host", "h"), ("content-length", "3"), ("x-a", "1"),
                               ("x-a", "2")]
    assert request.length == 3 and request.keep_alive and not request.chunked
    assert not parse_head(b"GET / HTTP/1.0").keep_alive
    assert parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive").keep_alive
    assert not parse_head(b"GET / HTTP/1.1\r\nConnection: close").keep_alive


@pytest.mark.parametrize("head, status", [
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: -1", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 1e3", 400),
    (b"GET / HTTP/1.1\r\nX: 1\r\n folded", 400),
    (b"GET / HTTP/1.1\r\nBad Header: 1", 400),
    (b"GET /", 400),
    (b"GET / HTTP/1.1 extra", 400),
    (b"GET / HTTP/x", 400),
    (b"GET / HTTP/2.0", 505),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1", 414),
])
def test_parse_head_refuses_bad_framing(head, status):
    from wsgikernel.errors import HTTPError
    from wsgikernel.httpwire import parse_head
    with pytest.raises(HTTPError) as caught:
        parse_head(head)
    assert caught.value.status == status


def test_repeated_equal_content_lengths_are_one():
    from wsgikernel.httpwire import parse_head
    assert parse_head(b"GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2").length == 2


# -- persistent connections ---------------------------------------------------------

def test_keep_alive_serves_several_requests_on_one_socket():
    with Served(hello) as served, served.connect() as sock:
        buffer = b""
        for n in range(5):
            body = b"%d" % n
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            status, headers, answer, buffer = read_one(sock, buffer)
            assert (status, answer) == (200, b"hello " + body)
            assert headers["content-length"] == str(len(answer))
            assert "connection" not in headers
        sock.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        status, headers, _, _ = read_one(sock)
        assert headers["connection"] == "close"
        assert closed_by_server(sock)


def test_http_client_reuses_its_connection():
    with Served(hello) as served:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=GUARD)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            first = conn.sock
            for _ in range(3):
                conn.request("POST", "/", body=b"x")
                res = conn.getresponse()
                assert (res.status, res.read()) == (200, b"hello x")
                assert conn.sock is first  # not reconnected
        finally:
            conn.close()


def test_http10_clients_get_one_answer_and_a_close_unless_they_ask():
    with Served(hello) as served:
        with served.connect() as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            status, headers, body, _ = read_one(sock)
            assert (status, body, headers["connection"]) == (200, b"hello ", "close")
            assert closed_by_server(sock)
        with served.connect() as sock:
            buffer = b""
            for _ in range(2):
                sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                status, headers, body, buffer = read_one(sock, buffer)
                assert headers["connection"] == "keep-alive" and body == b"hello "


def test_http10_stream_is_close_delimited():
    with Served(lines_app) as served, served.connect() as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        status, headers, body, _ = read_one(sock)
        assert "transfer-encoding" not in headers and headers["connection"] == "close"
        assert body == b'{"n": 0}\n{"n": 1}\n{"n": 2}\n'


def test_pipelined_requests_are_answered_in_order():
    with Served(hello) as served, served.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\na"
                     b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nb"
                     b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        bodies, buffer = [], b""
        for _ in range(3):
            _, _, body, buffer = read_one(sock, buffer)
            bodies.append(body)
        assert bodies == [b"hello a", b"hello b", b"hello "]


def test_requests_per_connection_are_capped():
    with Served(hello, max_requests=3) as served, served.connect() as sock:
        buffer, seen = b"", []
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            _, headers, _, buffer = read_one(sock, buffer)
            seen.append(headers.get("connection"))
        assert seen == [None, None, "close"]
        assert closed_by_server(sock)


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout():
    with Served(hello, keepalive_timeout=0.2) as served, served.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        read_one(sock)
        assert closed_by_server(sock)  # parked, then expired: EOF within the guard


def test_expect_100_continue():
    with Served(hello) as served, served.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"body")
        status, _, body, _ = read_one(sock, interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):])
        assert (status, body) == (200, b"hello body")


def test_an_unread_body_does_not_become_the_next_request():
    def ignore(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    with Served(ignore) as served, served.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nGET /evil H"
                     b"GET / HTTP/1.1\r\n\r\n")
        _, _, first, rest = read_one(sock)
        status, _, second, _ = read_one(sock, rest)
        assert (first, status, second) == (b"ok", 200, b"ok")


def test_head_has_no_body_and_keeps_the_connection():
    with Served(hello) as served, served.connect() as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2
        assert data.endswith(b"hello ")


# -- framing errors over the wire ---------------------------------------------------

@pytest.mark.parametrize("request_bytes, status, kind", [
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "bad-request"),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400, "bad-request"),
    (b"GET / HTTP/2.0\r\n\r\n", 505, "http-version-not-supported"),
    (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n", 414, "uri-too-long"),
    (b"GET / HTTP/1.1\r\n" + b"X-Big: %s\r\n" % (b"b" * 4000) * 20 + b"\r\n", 431,
     "headers-too-large"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "bad-request"),
])
def test_bad_framing_is_a_problem_and_a_close(request_bytes, status, kind):
    with Served(hello) as served, served.connect() as sock:
        sock.sendall(request_bytes)
        got, headers, body, _ = read_one(sock)
        assert got == status
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["type"] == "urn:wsgikernel:" + kind
        assert headers["connection"] == "close"
        assert closed_by_server(sock)


# -- the service over a real scripts/serve.py ------------------------------------

def connection(live):
    url = urlsplit(live.url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=HANG_GUARD)


AUTH = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}


def gated_cell(flag, before="first"):
    """Print ``before``, wait (bounded) for ``flag`` to exist, print 'second'."""
    return ("import os, time\nprint(%r, flush=True)\ndeadline = time.monotonic() + %r\n"
            "while not os.path.exists(%r) and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\nprint('second')\n" % (before, HANG_GUARD, flag))


def test_a_stream_is_chunked_and_read_line_by_line_before_the_cell_ends(live, tmp_path):
    assert live.request("PUT", "/envs/chunky", {})[0] == 201
    flag = str(tmp_path / "go")
    conn = connection(live)
    try:
        conn.request("POST", "/envs/chunky/execute", headers=AUTH,
                     body=json.dumps({"code": gated_cell(flag), "stream": True}))
        res = conn.getresponse()
        assert res.getheader("Transfer-Encoding") == "chunked"
        seen = []
        while "first\n" not in "".join(e.get("text", "") for e in seen):
            seen.append(json.loads(res.readline()))  # arrives while the cell still waits
        open(flag, "w").close()
        rest = [json.loads(line) for line in res.read().splitlines()]
        assert rest[-1]["event"] == "record" and rest[-1]["stdout"] == "first\nsecond\n"
        conn.request("GET", "/envs/chunky", headers=AUTH)  # same connection, next request
        assert json.loads(conn.getresponse().read())["id"] == "chunky"
    finally:
        conn.close()
        live.request("DELETE", "/envs/chunky")


def test_requests_iter_lines_streams_line_by_line(live, tmp_path):
    requests = pytest.importorskip("requests")
    assert live.request("PUT", "/envs/rlines", {})[0] == 201
    flag = str(tmp_path / "go")
    try:
        with requests.Session() as session:
            res = session.post(live.url + "envs/rlines/execute", headers=AUTH, stream=True,
                               data=json.dumps({"code": gated_cell(flag), "stream": True}),
                               timeout=HANG_GUARD)
            lines = res.iter_lines(chunk_size=512)
            text = ""
            while "first\n" not in text:
                text += json.loads(next(lines)).get("text", "")
            open(flag, "w").close()
            events = [json.loads(line) for line in lines if line]
            assert events[-1]["event"] == "record"
            for _ in range(3):  # the session's connection is reused and stays good
                assert session.get(live.url + "healthz", timeout=HANG_GUARD).json() == {
                    "status": "ok"}
    finally:
        live.request("DELETE", "/envs/rlines")


def test_a_hundred_long_polls_do_not_starve_a_short_request(live, tmp_path):
    assert live.request("PUT", "/envs/sleepy", {})[0] == 201
    flag = str(tmp_path / "go")
    status, _, record = live.request("POST", "/envs/sleepy/execute",
                                     {"code": gated_cell(flag), "wait": 0})
    assert status == 202, record
    path = "/envs/sleepy/executions/%d?wait=%d" % (record["execution_count"], HANG_GUARD)
    results, threads = [], []

    def poll():
        results.append(live.request("GET", path)[0])

    try:
        for _ in range(100):
            thread = threading.Thread(target=poll, daemon=True)
            thread.start()
            threads.append(thread)
        wait_for(lambda: len(os.listdir("/proc/%d/task" % live.proc.pid)) >= 100,
                 message="100 long-polls in the server")
        assert results == []  # every long-poll is still waiting on the gated cell...
        status, _, body = live.request("GET", "/envs/sleepy", timeout=GUARD)
        assert (status, body["state"]) == (200, "busy")  # ...and a short request got through
        assert live.request("GET", "/healthz", timeout=GUARD)[0] == 200
        assert results == []
    finally:
        open(flag, "w").close()
        for thread in threads:
            thread.join(HANG_GUARD)
        live.request("DELETE", "/envs/sleepy")
    assert results == [200] * 100


def test_keep_alive_clients_on_every_route_kind(live):
    """The check the gunicorn and uWSGI recipes pass, against scripts/serve.py itself."""
    import types
    pytest.importorskip("requests")
    from deploy_helpers import check_keepalive
    try:
        check_keepalive(types.SimpleNamespace(port=urlsplit(live.url).port, token=live.token,
                                              url=live.url.rstrip("/")))
    finally:
        live.request("DELETE", "/envs/keepalive")
