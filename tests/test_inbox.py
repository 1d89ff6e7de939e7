"""kernel/inbox.py on its own: the control socket lent to the reader thread during a cell
and taken back after, over a real socketpair; every wait bounded."""

import socket
import threading
import time

import pytest

from wsgikernel.kernel import inbox as inboxmod
from wsgikernel.kernel.inbox import Inbox
from wsgikernel.wire.envelope import message
from wsgikernel.wire.framing import encode

BOUND = 5.0


@pytest.fixture
def inbox(monkeypatch):
    def die():  # not the test run's process group: end the reading thread only
        raise SystemExit
    monkeypatch.setattr(inboxmod, "die", die)
    ours, theirs = socket.socketpair()
    dispatched = []
    box = Inbox(ours, dispatched.append)
    threading.Thread(target=box.read_while_lent, daemon=True).start()
    try:
        yield box, theirs, dispatched
    finally:
        theirs.close()
        ours.close()


def bounded(action):
    """Run ``action`` on a thread; fail if it does not return within BOUND seconds."""
    result = []
    thread = threading.Thread(target=lambda: result.append(action()), daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), "it hung"
    return result[0] if result else None


def test_lending_and_taking_back_at_once_never_hangs(inbox):
    """A cell that ends before the reader even woke: the loan is simply over."""
    box, _, _ = inbox

    def many():
        for _ in range(2000):
            box.lend()
            box.take_back()
        return True

    assert bounded(many)


def test_executions_read_during_a_cell_come_next_in_order(inbox):
    box, peer, dispatched = inbox
    peer.sendall(encode(message("execute", {"n": 1}, id=1)))
    assert bounded(box.next_execute)["id"] == 1  # read by the main thread itself
    box.lend()
    peer.sendall(encode(message("execute", {"n": 2}, id=2)) +
                 encode(message("complete", {"code": "x"}, id=3)) +
                 encode(message("execute", {"n": 3}, id=4)))
    deadline = time.monotonic() + BOUND
    while len(box.executions) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [e["id"] for e in box.executions] == [2, 4]
    assert [d["id"] for d in dispatched] == [3]  # introspection is handled while lent
    assert bounded(box.next_execute)["id"] == 2
    assert bounded(box.next_execute)["id"] == 4


def test_between_cells_the_main_thread_dispatches_what_is_not_a_cell(inbox):
    box, peer, dispatched = inbox
    peer.sendall(encode(message("rebind", {"work_dir": "/w"})) +
                 encode(message("execute", {"n": 1}, id=9)))
    assert bounded(box.next_execute)["id"] == 9
    assert [d["type"] for d in dispatched] == ["rebind"]


def test_a_frame_being_read_when_the_loan_ends_is_read_whole(inbox):
    box, peer, _ = inbox
    box.take_back()
    box.lend()
    frame = encode(message("execute", {"code": "y" * 100000}, id=5))
    peer.sendall(frame[:1000])  # the reader is now inside the frame
    time.sleep(0.05)
    taker = threading.Thread(target=box.take_back, daemon=True)
    taker.start()
    peer.sendall(frame[1000:])
    taker.join(BOUND)
    assert not taker.is_alive()
    assert bounded(box.next_execute)["body"]["code"] == "y" * 100000
