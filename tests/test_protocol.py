"""The wire layer's server-side connection: framing, timeouts as exceptions, not strings."""

import socket
import threading

import pytest

from wsgikernel.protocol import (HEADER, KernelConnection, KernelGone, KernelTimeout,
                                 encode)


@pytest.fixture
def peer(tmp_path):
    """(a KernelConnection, the server's end of it) over a real Unix socket."""
    path = str(tmp_path / "k.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]))
    thread.start()
    conn = KernelConnection(path, timeout=5)
    thread.join(5)
    try:
        yield conn, accepted[0]
    finally:
        conn.close()
        accepted[0].close()
        listener.close()


def test_a_message_round_trips(peer):
    conn, server = peer
    server.sendall(encode({"ok": True, "n": 1}) + encode({"ok": True, "n": 2}))
    assert conn.receive(1) == {"ok": True, "n": 1}
    assert conn.receive(1) == {"ok": True, "n": 2}


def test_silence_is_a_timeout_and_the_connection_stays_usable(peer):
    conn, server = peer
    with pytest.raises(KernelTimeout):
        conn.receive(0.05)
    server.sendall(encode({"after": "silence"}))
    assert conn.receive(1) == {"after": "silence"}


def test_a_frame_cut_mid_way_is_gone_not_a_timeout(peer):
    conn, server = peer
    data = encode({"x": "y" * 100})
    server.sendall(data[:HEADER.size + 10])  # the head and part of the body, then silence
    with pytest.raises(KernelGone) as caught:
        conn.receive(0.1)
    assert not isinstance(caught.value, KernelTimeout)


def test_a_closed_peer_is_gone(peer):
    conn, server = peer
    server.close()
    with pytest.raises(KernelGone) as caught:
        conn.receive(1)
    assert not isinstance(caught.value, KernelTimeout)


def test_a_silent_stream_yields_heartbeats_then_its_events(tmp_path):
    """control.link's stream: silence becomes None (the HTTP layer's heartbeat), the
    record still arrives after it, on the same connection."""
    from wsgikernel.control.link import KernelLink
    from wsgikernel.protocol import recv_message
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    release = threading.Event()

    def kernel():
        sock = listener.accept()[0]
        recv_message(sock)
        sock.sendall(encode({"ok": True, "event": "accepted", "execution_count": 1}))
        release.wait(10)
        sock.sendall(encode({"event": "record", "status": "ok"}))
        sock.close()

    thread = threading.Thread(target=kernel, daemon=True)
    thread.start()
    try:
        events = KernelLink(registry=None).stream({"socket": path}, {"op": "attach"}, 0.05)
        assert next(events)["event"] == "accepted"
        assert next(events) is None  # 0.05 s of silence
        release.set()
        rest = list(events)
        assert rest[-1] == {"event": "record", "status": "ok"}
        assert all(event is None for event in rest[:-1])
    finally:
        release.set()
        thread.join(10)
        listener.close()
