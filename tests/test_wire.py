"""The wire layer (wsgikernel/wire/) and its kernel side (wsgikernel/kernel/hub.py).

On real sockets (Unix sockets in conftest's short private dir, TCP on loopback):
framing (split at every byte, the size limit on the header alone, non-object
frames, jsonpolicy for NaN and lone surrogates); envelopes (message, hello,
error, check_hello / ProtocolMismatch, Refused); addresses (parse, listen on
tcp:HOST:0 and on a 0600 Unix socket, remove); auth (the key file, the proofs,
verify); KernelConnection against a hand-driven peer (the old test_protocol.py:
round trip, silence is KernelTimeout and the connection stays usable, a cut
frame or a closed peer is KernelGone, another version is ProtocolMismatch) and
against a real Hub in a thread over unix and tcp (reply, events, Refused, large
frames; a wrong key, anything but auth first, an oversized pre-auth frame and
silence are dropped); a fake TCP kernel without the key is not believed; the
ConnectionPool; control.link's stream (None on silence, then the events).
Every wait is bounded (a few seconds) and everything opened is closed.
"""

import contextlib
import os
import selectors
import socket
import stat
import threading
import time

import pytest

from wsgikernel.kernel import hub as hubmod
from wsgikernel.wire import address, auth
from wsgikernel.wire.connection import ConnectionPool, KernelConnection, KernelGone, KernelTimeout
from wsgikernel.wire.envelope import (AUTH_FAILED, INTERNAL, PROTOCOL_VERSION, ProtocolMismatch,
                                      Refused, check_hello, error, hello, message)
from wsgikernel.wire.framing import (HANDSHAKE_LIMIT, HEADER, FrameReader, ProtocolError, encode,
                                     recv_message, send_message)


def wait_for(condition, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def peer_closed(sock):
    """True if the peer closes ``sock`` (after what it still sends) within its timeout."""
    try:
        while sock.recv(1 << 16):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


# -- framing, envelope -----------------------------------------------------------------


def test_frames_round_trip_split_at_every_byte():
    first, second = {"type": "a", "body": {"x": "é" * 3}}, {"type": "b", "body": {}}
    data = encode(first) + encode(second)
    for cut in range(len(data) + 1):
        reader = FrameReader()
        assert reader.feed(data[:cut]) + reader.feed(data[cut:]) == [first, second]
        assert not reader.buffer
    reader = FrameReader()
    assert [m for i in range(len(data)) for m in reader.feed(data[i:i + 1])] == [first, second]


def test_a_frame_over_the_limit_fails_on_its_header_alone():
    frame = encode({"x": "y" * 50})
    assert FrameReader(limit=len(frame) - HEADER.size).feed(frame) == [{"x": "y" * 50}]
    with pytest.raises(ProtocolError):
        FrameReader(limit=len(frame) - HEADER.size - 1).feed(frame[:HEADER.size])
    with pytest.raises(ProtocolError):  # 4 GiB announced: refused, never allocated
        FrameReader(limit=HANDSHAKE_LIMIT).feed(HEADER.pack(2 ** 32 - 1))


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"3", b"null"])
def test_a_frame_that_is_not_an_object_is_a_protocol_error(payload):
    with pytest.raises(ProtocolError):
        FrameReader().feed(HEADER.pack(len(payload)) + payload)


def test_nan_and_lone_surrogates_go_through_jsonpolicy():
    frame = encode({"x": float("nan"), "s": "a\ud800b"})
    assert b"NaN" not in frame and frame[HEADER.size:].decode("utf-8")  # strict UTF-8
    assert FrameReader().feed(frame) == [{"x": "nan", "s": "a\ufffdb"}]


def test_message_names_id_and_parent_only_when_there_is_one():
    assert message("status") == {"type": "status", "body": {}}
    assert message("run", {"a": 1}, id=7) == {"type": "run", "id": 7, "body": {"a": 1}}
    assert message("reply", {}, parent=7) == {"type": "reply", "parent": 7, "body": {}}
    assert hello(pid=1)["body"] == {"pid": 1, "protocol": PROTOCOL_VERSION}
    assert error(3, "queue_full", limit=2) == {"type": "error", "parent": 3,
                                               "body": {"limit": 2, "code": "queue_full"}}


def test_check_hello():
    assert check_hello(hello(auth="x"))["auth"] == "x"
    with pytest.raises(ProtocolMismatch) as caught:
        check_hello(message("hello", {"protocol": 1}))
    assert caught.value.theirs == 1 and isinstance(caught.value, ProtocolError)
    assert "1" in str(caught.value) and str(PROTOCOL_VERSION) in str(caught.value)
    for first in (message("reply", {"protocol": PROTOCOL_VERSION}), {"type": "hello"}):
        with pytest.raises(ProtocolMismatch) as caught:
            check_hello(first)
        assert caught.value.theirs is None


def test_refused_carries_code_and_body():
    refused = Refused({"code": "queue_full", "limit": 3})
    assert (refused.code, refused.body) == ("queue_full", {"code": "queue_full", "limit": 3})
    assert "queue_full" in str(refused)
    assert "no such thing" in str(Refused({"code": "internal", "detail": "no such thing"}))


# -- address, auth ---------------------------------------------------------------------


@pytest.mark.parametrize("text, parsed", [
    ("unix:/run/k.sock", ("unix", "/run/k.sock")), ("/run/k.sock", ("unix", "/run/k.sock")),
    ("tcp:127.0.0.1:80", ("tcp", ("127.0.0.1", 80))), ("tcp:[::1]:80", ("tcp", ("::1", 80))),
    ("tcp:kernel.example:0", ("tcp", ("kernel.example", 0))),
])
def test_parse_an_address(text, parsed):
    assert address.parse(text) == parsed


@pytest.mark.parametrize("text", [
    "tcp:host", "tcp:h:99999", "tcp::80", "tcp:h:-1", "unix:", "", None, 7, "http://x",
    pytest.param("tcp:h:\u00b2"),
])
def test_an_invalid_address_is_an_address_error(text):
    with pytest.raises(address.AddressError):
        address.parse(text)


def test_listen_on_tcp_port_0_publishes_the_real_port():
    listener, published = address.listen("tcp:127.0.0.1:0")
    try:
        port = listener.getsockname()[1]
        assert port and published == "tcp:127.0.0.1:%d" % port
        address.connect(published, 2).close()
        address.remove(published)  # nothing to remove for TCP
    finally:
        listener.close()


def test_listen_on_unix_makes_a_0600_socket_file_that_remove_deletes(state_dir):
    path = os.path.join(state_dir, "k.sock")
    listener, published = address.listen("unix:" + path)
    try:
        mode = os.stat(path).st_mode
        assert published == "unix:" + path
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    finally:
        listener.close()
        address.remove(published)
    assert not os.path.exists(path)
    address.remove(published)  # already gone, or not an address: no error
    address.remove("not an address")


def test_create_key_writes_a_private_key_that_read_key_reads(tmp_path):
    path = auth.create_key(str(tmp_path))
    assert path == str(tmp_path / auth.KEY_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = (tmp_path / auth.KEY_FILE).read_text().strip()
    assert len(text) == 64 and all(c in "0123456789abcdef" for c in text)
    assert auth.read_key(path) == bytes.fromhex(text)
    assert auth.read_key(auth.create_key(str(tmp_path))) != bytes.fromhex(text)  # replaced


@pytest.mark.parametrize("content", [None, "abcd", "zz" * 32, "é" * 40, ""])
def test_a_missing_short_or_garbage_key_is_an_auth_error(tmp_path, content):
    path = tmp_path / auth.KEY_FILE
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(auth.AuthError):
        auth.read_key(str(path))


def test_proofs_differ_by_role_nonce_and_key():
    key, other = b"k" * 32, b"o" * 32
    proof = auth.client_proof(key, "s1", "c1")
    assert proof == auth.client_proof(key, "s1", "c1") and len(proof) == 64
    assert len({proof, auth.server_proof(key, "s1", "c1"), auth.client_proof(key, "s2", "c1"),
                auth.client_proof(key, "s1", "c2"), auth.client_proof(other, "s1", "c1")}) == 5
    assert auth.nonce() != auth.nonce()


def test_verify_compares_in_constant_time(monkeypatch):
    calls, real = [], auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    proof = auth.client_proof(b"k" * 32, "s", "c")
    assert auth.verify(proof, proof) and calls
    assert not auth.verify(proof, proof[:-1] + ("1" if proof.endswith("0") else "0"))


@pytest.mark.parametrize("given", [None, 5, b"ab", ["ab"],
                                   pytest.param("é" * 64, id="non-ascii")])
def test_verify_rejects_what_is_not_a_proof(given):
    assert auth.verify(auth.client_proof(b"k" * 32, "s", "c"), given) is False


# -- KernelConnection against a hand-driven peer -------------------------------------------


@pytest.fixture
def peer(state_dir):
    """(a KernelConnection, the kernel's end of it) over a real Unix socket."""
    listener, published = address.listen("unix:" + os.path.join(state_dir, "p.sock"))
    listener.settimeout(3)
    conn, server = KernelConnection(published, timeout=3), None  # unix: nothing read yet
    try:
        server = listener.accept()[0]
        server.settimeout(3)
        yield conn, server
    finally:
        conn.close()
        if server is not None:
            server.close()
        listener.close()
        address.remove(published)


def test_envelopes_round_trip_after_the_hello(peer):
    conn, server = peer
    one, two = message("event", {"n": 1}, parent=1), message("reply", {"n": 2}, parent=1)
    server.sendall(encode(hello()) + encode(one) + encode(two))
    assert (conn.receive(1), conn.receive(1)) == (one, two)
    assert conn.hello["protocol"] == PROTOCOL_VERSION


def test_silence_is_a_timeout_and_the_connection_stays_usable(peer):
    conn, server = peer
    with pytest.raises(KernelTimeout):
        conn.receive(0.05)  # not even a hello
    server.sendall(encode(hello()))
    with pytest.raises(KernelTimeout):
        conn.receive(0.05)  # the hello, then silence
    server.sendall(encode(message("reply", {"after": "silence"}, parent=1)))
    assert conn.receive(1)["body"] == {"after": "silence"}


@pytest.mark.parametrize("cut", [True, False], ids=["cut-mid-frame", "closed"])
def test_a_cut_frame_or_a_closed_peer_is_gone_not_a_timeout(peer, cut):
    conn, server = peer
    if cut:  # the hello, then the head and part of a frame, then silence
        frame = encode(message("reply", {"x": "y" * 99}))
        server.sendall(encode(hello()) + frame[:HEADER.size + 10])
    else:
        server.close()
    with pytest.raises(KernelGone) as caught:
        conn.receive(0.1)
    assert not isinstance(caught.value, KernelTimeout)


@pytest.mark.parametrize("first, theirs", [(message("hello", {"protocol": 1}), 1),
                                           (message("reply", {}, parent=1), None)])
def test_a_kernel_of_another_version_is_a_mismatch(peer, first, theirs):
    conn, server = peer
    server.sendall(encode(first) + encode(message("reply", {}, parent=1)))
    with pytest.raises(ProtocolMismatch) as caught:
        conn.request("status", {}, 1)
    assert caught.value.theirs == theirs
    assert recv_message(server) == message("status", {}, id=1)  # pipelined behind the hello


# -- KernelConnection against a real Hub ----------------------------------------------


class Kernel:
    """A Hub served by its own selectors loop in a thread until ``close``."""

    def __init__(self, where, key_file=None):
        self.key_file, self.drops, self.requests, self.errors = key_file, [], [], []
        self.selector = selectors.DefaultSelector()
        self.hub = hubmod.Hub(self.selector, where, self.on_request, self.drops.append, key_file)
        self.address, self.stop = self.hub.address, threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        try:
            while not self.stop.is_set():
                for key, mask in self.selector.select(0.05):
                    key.data(key.fileobj, mask)
                self.hub.expire(time.monotonic())
        except BaseException as exc:  # what would end a supervisor: the tests assert none
            self.errors.append(exc)

    def on_request(self, requester, type, body):
        self.requests.append((type, body))
        if type == "fail":
            return requester.error(INTERNAL, detail="asked to fail")
        for n in range(body["n"] if type == "events" else 0):
            requester.event({"event": "tick", "n": n})
        requester.reply({"echo": body})

    def connect(self, key_file=None):
        return KernelConnection(self.address, 3, key_file or self.key_file)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for client in list(self.hub.clients.values()):
            self.hub.drop(client)
        self.hub.close()
        self.selector.close()


@pytest.fixture(params=["unix", "tcp"])
def kernel(request, state_dir):
    if request.param == "unix":
        kernel = Kernel("unix:" + os.path.join(state_dir, "k.sock"))
    else:
        kernel = Kernel("tcp:127.0.0.1:0", auth.create_key(state_dir))
    try:
        yield kernel
    finally:
        kernel.close()
    assert not kernel.errors


tcp_only = pytest.mark.parametrize("kernel", ["tcp"], indirect=True)


def test_a_request_gets_its_reply_events_or_refusal(kernel):
    conn = kernel.connect()
    try:
        assert conn.request("echo", {"x": 1}, 3) == {"echo": {"x": 1}}
        assert conn.hello["protocol"] == PROTOCOL_VERSION
        with pytest.raises(Refused) as caught:
            conn.request("fail", {}, 3)
        assert caught.value.code == INTERNAL and caught.value.body["detail"] == "asked to fail"
        request_id = conn.submit("events", {"n": 2}, 3)
        assert [conn.answer(request_id, 3) for _ in range(3)] == [
            ("event", {"event": "tick", "n": 0}), ("event", {"event": "tick", "n": 1}),
            ("reply", {"echo": {"n": 2}})]
        blob = {"blob": "x" * (5 * HANDSHAKE_LIMIT)}  # past the pre-auth bound, both ways
        assert conn.request("echo", blob, 3) == {"echo": blob}
    finally:
        conn.close()


@tcp_only
def test_a_wrong_key_is_gone_and_the_hub_drops_it(kernel, tmp_path):
    with pytest.raises(KernelGone):
        kernel.connect(key_file=auth.create_key(str(tmp_path)))
    assert wait_for(lambda: len(kernel.drops) == 1)
    with pytest.raises(KernelGone):
        kernel.connect(key_file=str(tmp_path / "missing.key"))
    assert not kernel.requests


@pytest.mark.parametrize("first", [
    encode(message("echo", {}, id=1)),  # anything but auth: refused, dropped
    HEADER.pack(HANDSHAKE_LIMIT + 1) + b"x" * 10,  # oversized: dropped before the rest comes
    b"",  # silence past AUTH_TIMEOUT (0.2 s here)
    pytest.param(encode(message("auth", {"nonce": "n", "mac": "é" * 64}))),
], ids=["not-auth", "oversized", "silent", "non-ascii-mac"])
@tcp_only
def test_a_tcp_peer_that_does_not_prove_itself_is_dropped(kernel, monkeypatch, first):
    if not first:
        monkeypatch.setattr(hubmod, "AUTH_TIMEOUT", 0.2)
    sock = address.connect(kernel.address, 3)
    try:
        greeting = check_hello(recv_message(sock, HANDSHAKE_LIMIT))
        assert greeting["auth"] == auth.SCHEME and greeting["nonce"]
        sock.sendall(first)
        assert wait_for(lambda: kernel.drops or kernel.errors)
        assert not kernel.errors and peer_closed(sock)
    finally:
        sock.close()
    assert not kernel.requests
    conn = kernel.connect()  # the kernel still serves the others
    try:
        assert conn.request("echo", {}, 3) == {"echo": {}}
    finally:
        conn.close()


# -- fake kernels, the pool, control.link's stream -------------------------------------------


@contextlib.contextmanager
def fake_kernel(where, script):
    """A kernel that runs ``script(sock)`` on its one connection, in a thread."""
    listener, published = address.listen(where)
    listener.settimeout(3)

    def run():
        with contextlib.suppress(OSError, EOFError), listener.accept()[0] as sock:
            sock.settimeout(3)
            script(sock)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield published
    finally:
        thread.join(5)
        listener.close()
        address.remove(published)


def wrong_proof(nonce, theirs):
    return message("auth_ok", {"mac": auth.server_proof(b"s" * 32, nonce, theirs)})


@pytest.mark.parametrize("greeting, answer, expected", [
    ({"auth": auth.SCHEME}, wrong_proof, KernelGone),
    ({}, None, KernelGone),  # no challenge offered
    ({"auth": auth.SCHEME}, lambda n, t: error(None, AUTH_FAILED), KernelGone),
    ({"auth": auth.SCHEME, "protocol": 1}, None, ProtocolMismatch),
    pytest.param({"auth": auth.SCHEME}, lambda n, t: {"type": "auth_ok"}, KernelGone),
    pytest.param({"auth": auth.SCHEME}, lambda n, t: message("auth_ok", {"mac": "é"}),
                 KernelGone),
], ids=["wrong-proof", "no-challenge", "refused", "protocol-1", "no-body", "non-ascii-mac"])
def test_a_tcp_kernel_that_cannot_prove_the_key_is_not_believed(tmp_path, greeting, answer,
                                                                expected):
    key_file, nonce = auth.create_key(str(tmp_path)), auth.nonce()

    def script(sock):
        send_message(sock, message("hello", dict({"protocol": PROTOCOL_VERSION, "nonce": nonce},
                                                 **greeting)))
        if answer is not None:
            send_message(sock, answer(nonce, recv_message(sock)["body"]["nonce"]))
        peer_closed(sock)  # until the client gives up

    with fake_kernel("tcp:127.0.0.1:0", script) as where:
        with pytest.raises(expected):
            KernelConnection(where, 2, key_file).close()


@pytest.mark.parametrize("kernel", ["unix"], indirect=True)
def test_the_pool_reuses_a_released_connection_and_starts_empty_after_a_fork(kernel):
    pool = ConnectionPool(per_address=1)
    opened = [pool.acquire(kernel.address, 3), pool.acquire(kernel.address, 3)]
    first, second = opened
    try:
        assert first is not second and first.request("echo", {}, 3) == {"echo": {}}
        pool.release(first)
        pool.release(second)  # over per_address: closed
        assert second.sock.fileno() == -1
        assert pool.acquire(kernel.address, 3) is first
        assert first.request("echo", {"again": 1}, 3) == {"echo": {"again": 1}}
        pool.release(first)
        pool.pid = -1  # as a forked child sees it
        opened.append(pool.acquire(kernel.address, 3))
        assert opened[-1] is not first and not pool.idle
        pool.release(opened[-1])
        pool.discard_address(kernel.address)
        assert opened[-1].sock.fileno() == -1 and not pool.idle
    finally:
        for conn in opened:
            conn.close()


def test_a_silent_stream_yields_heartbeats_then_its_events(state_dir):
    """control.link's stream: silence becomes None (the HTTP layer's heartbeat), the
    record still arrives after it, on the same connection."""
    from wsgikernel.control.link import KernelLink
    release, asked = threading.Event(), []

    def script(sock):
        sock.sendall(encode(hello()))
        asked.append(recv_message(sock))
        parent = asked[0]["id"]
        send_message(sock, message("event", {"event": "accepted", "n": 1}, parent=parent))
        release.wait(3)
        send_message(sock, message("event", {"event": "record", "status": "ok"}, parent=parent))

    with fake_kernel("unix:" + os.path.join(state_dir, "s.sock"), script) as where:
        events = KernelLink(registry=None).stream({"address": where, "id": "e1"}, "attach",
                                                  {"n": 1}, 0.05)
        seen = []
        try:
            for event in events:  # bounded: the kernel sends the record within 3 s
                seen.append(event)
                if event is None and any(seen):  # a heartbeat after "accepted"
                    release.set()
        finally:
            release.set()
            events.close()
    assert asked == [message("attach", {"n": 1}, id=1)]
    accepted = {"event": "accepted", "n": 1}
    assert [event for event in seen if event] == [accepted, {"event": "record", "status": "ok"}]
    assert None in seen[seen.index(accepted):]
