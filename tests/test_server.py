"""The real thing: scripts/serve.py on a free loopback port, hit with urllib and raw sockets."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from helpers import HANG_GUARD, SERVE, TOKEN, LiveServer

SOCKET_GUARD = 10.0  # seconds a raw socket waits for the server: a hang guard, not a speed claim

# Common log format: host ident authuser [date] "request line" status bytes
CLF = re.compile(r'^(?P<host>\S+) - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
                 r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-)$')


@pytest.fixture
def server(state_dir):
    with LiveServer(state_dir=state_dir) as live:
        yield live


def connect(live):
    url = urlsplit(live.url)
    return socket.create_connection((url.hostname, url.port), timeout=SOCKET_GUARD)


def read_response(sock):
    """(status, header text, body) of the one response the server sends before closing."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            if b"\r\n\r\n" in data:
                break
            raise
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head.decode("latin-1"), body


def raw_request(method, path, headers, body=b""):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1", "Connection: close"]
    lines += ["%s: %s" % item for item in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def test_serves_the_api_over_http(server):
    assert server.url.startswith("http://127.0.0.1:")
    status, headers, body = server.request("GET", "/")
    assert status == 200
    assert body["name"] == "wsgikernel"
    assert headers["Cache-Control"] == "no-store"
    status, _, body = server.request("GET", "/healthz", token=False)
    assert (status, body) == (200, {"status": "ok"})


def test_errors_over_http_are_problems(server):
    status, headers, body = server.request("GET", "/", token=False)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert headers["Content-Type"] == "application/problem+json"
    assert body["type"] == "urn:wsgikernel:unauthorized"
    status, headers, body = server.request("GET", "/no/such/route")
    assert (status, body["type"]) == (404, "urn:wsgikernel:route-not-found")


def test_banner_shows_how_to_authenticate(state_dir):
    with LiveServer(state_dir=state_dir) as live:
        assert live.request("GET", "/healthz")[0] == 200
        assert live.stop() == 0
        lines = live.banner + live.proc.stdout.read().splitlines()
    assert "export WSGIKERNEL_TOKEN=%s" % TOKEN in lines
    curls = [line for line in lines if line.startswith("curl ")]
    assert curls and "Authorization: Bearer $WSGIKERNEL_TOKEN" in curls[0]
    assert live.url in curls[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_exits_zero(state_dir, sig):
    with LiveServer(state_dir=state_dir) as live:
        assert live.request("GET", "/healthz")[0] == 200  # serving, so the handlers are set
        assert live.stop(sig) == 0
        assert "Traceback" not in live.proc.stderr.read()


def test_no_auth_on_a_non_loopback_host_is_refused(state_dir):
    result = subprocess.run(
        [sys.executable, SERVE, "--no-auth", "--host", "0.0.0.0", "--port", "0",
         "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode == 2
    assert "--no-auth" in result.stderr and "0.0.0.0" in result.stderr
    assert "serving on" not in result.stdout


def test_unsafe_state_dir_is_refused_with_a_message(state_dir):
    shared = os.path.join(str(state_dir), "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    result = subprocess.run([sys.executable, SERVE, "--port", "0", "--state-dir", shared],
                            capture_output=True, text=True, timeout=HANG_GUARD)
    assert "serving on" not in result.stdout
    assert "writable by group or others" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == 2


def test_no_auth_on_loopback_serves_without_a_token(state_dir):
    with LiveServer("--no-auth", state_dir=state_dir, token=None) as live:
        status, _, body = live.request("GET", "/")
        assert (status, body["name"]) == (200, "wsgikernel")
        assert live.stop() == 0
        banner = "".join(live.banner) + live.proc.stdout.read()
    assert "WSGIKERNEL_TOKEN" not in banner
    assert "auth is OFF" in banner


def test_access_log_is_common_log_format_with_the_token_redacted(state_dir):
    with LiveServer(state_dir=state_dir) as live:
        assert live.request("GET", "/?token=" + TOKEN, token=False)[0] == 200
        assert live.request("GET", "/?a=1&token=%s&b=2" % TOKEN, token=False)[0] == 200
        assert live.request("GET", "/healthz")[0] == 200
        assert live.stop() == 0
        log = live.proc.stderr.read()
    assert TOKEN not in log
    entries = [CLF.match(line) for line in log.splitlines() if '"GET ' in line]
    assert len(entries) == 3 and all(entries), log
    # Each request thread logs after its answer is sent: the order is not guaranteed.
    assert sorted(entry["request"] for entry in entries) == sorted([
        "GET /?token=REDACTED HTTP/1.1", "GET /?a=1&token=REDACTED&b=2 HTTP/1.1",
        "GET /healthz HTTP/1.1"])
    assert all(entry["host"] == "127.0.0.1" and entry["status"] == "200" for entry in entries)
    assert all(int(entry["size"]) > 0 for entry in entries)


@pytest.mark.parametrize("method, path", [("POST", "/envs"), ("GET", "/")])
def test_huge_declared_body_gets_413_without_being_sent(server, method, path):
    with connect(server) as sock:
        sock.sendall(raw_request(method, path, {
            "Authorization": "Bearer " + TOKEN, "Content-Type": "application/json",
            "Content-Length": "1000000000"}))
        status, head, body = read_response(sock)  # bounded by SOCKET_GUARD
    assert status == 413, head
    assert json.loads(body)["type"] == "urn:wsgikernel:payload-too-large"


def test_idle_connections_do_not_block_requests(server):
    idle = [connect(server) for _ in range(10)]
    try:
        status, _, body = server.request("GET", "/healthz", timeout=SOCKET_GUARD)
        assert (status, body) == (200, {"status": "ok"})
    finally:
        for sock in idle:
            sock.close()


def test_slow_clients_do_not_block_others(server):
    body = b'{"a": 1}'
    slow_body = connect(server)
    slow_head = connect(server)
    try:
        request = raw_request("GET", "/", {"Authorization": "Bearer " + TOKEN,
                                           "Content-Type": "application/json",
                                           "Content-Length": str(len(body))}, body)
        slow_body.sendall(request[:-4])  # headers and half the body
        half = raw_request("GET", "/healthz", {})
        slow_head.sendall(half[:20])     # half a request line

        status, _, answer = server.request("GET", "/", timeout=SOCKET_GUARD)
        assert (status, answer["name"]) == (200, "wsgikernel")

        slow_body.sendall(request[-4:])
        assert read_response(slow_body)[0] == 200
        slow_head.sendall(half[20:])
        assert read_response(slow_head)[0] == 200
    finally:
        slow_body.close()
        slow_head.close()
