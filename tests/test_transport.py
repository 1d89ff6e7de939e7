"""Kernels over the TCP transport, the local provisioner, and the version check at connect
(issue 15).

With ``kernel_transport = tcp`` every exchange between the app and its kernels
goes over 127.0.0.1 through the HMAC challenge of wire/auth.py: these tests run
the features that cross it (execute, stream, introspection, restart, the pool's
claim, whose key moves with its directory, delete) on real kernels, and show
that a connection without the key gets nothing.  A kernel of another protocol
version is refused at connect, before any request reaches it.
"""

import json
import os
import socket
import stat
import threading

import pytest
import webtest

from helpers import TOKEN, assert_problem, processes_in, run, value, wait_for
from wsgikernel.provisioning import LocalProvisioner, for_record
from wsgikernel.wire import address as addresses
from wsgikernel.wire.envelope import message
from wsgikernel.wire.framing import FrameReader, encode, recv_message


def read_env_json(state_dir, env_id):
    with open(os.path.join(state_dir, "envs", env_id, "env.json")) as handle:
        return json.load(handle)


def client(app):
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})


@pytest.fixture
def tcp(make_test_app):
    return client(make_test_app(kernel_transport="tcp"))


def test_a_tcp_kernel_serves_every_kind_of_exchange(tcp, state_dir):
    assert tcp.put_json("/envs/t1", {}).status_int == 201
    record = read_env_json(state_dir, "t1")
    kind, (host, port) = addresses.parse(record["address"])
    assert (kind, host) == ("tcp", "127.0.0.1") and port > 0
    key = os.stat(record["key_file"])
    assert stat.S_IMODE(key.st_mode) == 0o600
    assert value(tcp, "t1", "x = 20; x + 1") == "21"
    lines = tcp.post_json("/envs/t1/execute?stream=1", {"code": "print('hi'); x"}).text
    events = [json.loads(line) for line in lines.splitlines()]
    assert events[0]["event"] == "accepted" and events[-1]["event"] == "record"
    assert events[-1]["stdout"] == "hi\n"
    completions = tcp.post_json("/envs/t1/complete", {"code": "x.bit_", "cursor_pos": 6})
    assert "x.bit_length" in completions.json["matches"] or \
        "bit_length" in completions.json["matches"]
    restarted = tcp.post("/envs/t1/restart").json
    assert restarted["session"] == 2 and restarted["state"] == "idle"
    assert run(tcp, "t1", "x")["error"]["ename"] == "NameError"
    tcp.delete("/envs/t1")
    assert processes_in(os.path.join(state_dir, "envs", "t1")) == []


def test_a_pooled_tcp_kernel_is_claimed_with_its_key(make_test_app, state_dir):
    app = make_test_app(kernel_transport="tcp", pool_size=1)
    tcp = client(app)
    app.manager.pool.fill()
    assert tcp.put_json("/envs/pooled", {}).status_int == 201
    record = read_env_json(state_dir, "pooled")
    assert record["key_file"] == os.path.join(state_dir, "envs", "pooled", "kernel.key")
    assert value(tcp, "pooled", "6 * 7") == "42"


def test_a_connection_without_the_key_is_dropped_and_the_kernel_keeps_serving(tcp, state_dir):
    tcp.put_json("/envs/locked", {})
    _, where = addresses.parse(read_env_json(state_dir, "locked")["address"])
    with socket.create_connection(where, timeout=5) as sock:
        hello = recv_message(sock)
        assert hello["type"] == "hello" and hello["body"]["auth"] == "hmac-sha256"
        sock.sendall(encode(message("status", id=1)))  # no auth first
        answers = []
        reader = FrameReader()
        while True:  # bounded by the socket timeout
            data = sock.recv(65536)
            if not data:
                break
            answers += reader.feed(data)
        assert [a["type"] for a in answers] == ["error"]
        assert answers[0]["body"]["code"] == "auth_failed"
    assert value(tcp, "locked", "'still here'") == "'still here'"


def test_the_local_provisioner_follows_a_kernel_through_its_life(tcp, state_dir):
    tcp.put_json("/envs/p1", {})
    record = read_env_json(state_dir, "p1")
    provisioner = for_record(record)
    assert isinstance(provisioner, LocalProvisioner) and record["provisioner"] == "local"
    assert provisioner.poll() is None and provisioner.running()
    assert not provisioner.wait(0.05)
    assert provisioner.stop(grace=5)
    assert provisioner.poll() is not None
    provisioner.cleanup()
    assert not os.path.exists(record["key_file"])
    wait_for(lambda: tcp.get("/envs/p1").json["state"] in ("dead", "stopped"),
             message="the env shows its kernel gone")


def old_kernel(path, stop):
    """A kernel of protocol 1 on a Unix socket: it greets with protocol 1 and answers
    every request with an error the server must never get to read."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    listener.settimeout(0.05)

    def serve():
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except socket.timeout:
                continue
            with sock:
                sock.sendall(encode({"type": "hello", "body": {"protocol": 1}}))
                sock.settimeout(1)
                try:
                    recv_message(sock)
                    sock.sendall(encode({"type": "reply", "parent": 1, "body": {
                        "record": {"status": "ok"}}}))
                except (OSError, EOFError):
                    pass
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_kernel_of_another_protocol_version_is_refused_at_connect(testapp, app, state_dir):
    testapp.put_json("/envs/old", {})
    env_dir = os.path.join(state_dir, "envs", "old")
    record = read_env_json(state_dir, "old")
    path = os.path.join(state_dir, "old-kernel.sock")
    stop = threading.Event()
    thread = old_kernel(path, stop)
    try:
        swapped = dict(record, address="unix:" + path)
        with open(os.path.join(env_dir, "env.json"), "w") as handle:
            json.dump(swapped, handle)
        app.manager.records.clear()
        res = testapp.post_json("/envs/old/execute", {"code": "1"}, expect_errors=True)
        body = assert_problem(res, 409, "kernel-incompatible", env_id="old")
        assert "protocol 1" in body["detail"] and "restart" in body["detail"]
        env = testapp.get("/envs/old").json
        assert (env["state"], env["reason"]) == ("dead", "protocol_mismatch")
    finally:
        stop.set()
        thread.join(5)
        with open(os.path.join(env_dir, "env.json"), "w") as handle:
            json.dump(record, handle)  # the real kernel is stopped with the app


def test_delete_answers_once_the_kernels_processes_are_gone(testapp, state_dir):
    """Not merely "no longer looking like a kernel": a supervisor that is exiting has an
    empty command line for a moment, and DELETE must not answer before it is gone."""
    from helpers import pid_alive
    for n in range(6):
        env_id = "gone%d" % n
        testapp.put_json("/envs/" + env_id, {})
        record = read_env_json(state_dir, env_id)
        pids = [record["supervisor_pid"], record["pid"]]
        assert all(pid_alive(pid) for pid in pids)
        testapp.delete("/envs/" + env_id)
        assert [pid for pid in pids if pid_alive(pid)] == [], env_id


def test_a_kernel_from_before_the_envelope_is_incompatible_not_unavailable(testapp, app,
                                                                           state_dir):
    """Protocol 1 recorded a ``socket`` path and no ``address``: 409 with the way out."""
    testapp.put_json("/envs/v1rec", {})
    path = os.path.join(state_dir, "envs", "v1rec", "env.json")
    record = read_env_json(state_dir, "v1rec")
    old = {k: v for k, v in record.items() if k != "address"}
    old.update(socket=record["address"][len("unix:"):], protocol=1)
    with open(path, "w") as handle:
        json.dump(old, handle)
    try:
        res = testapp.post_json("/envs/v1rec/execute", {"code": "1"}, expect_errors=True)
        assert_problem(res, 409, "kernel-incompatible", env_id="v1rec")
    finally:
        with open(path, "w") as handle:
            json.dump(record, handle)
