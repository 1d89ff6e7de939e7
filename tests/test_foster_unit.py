"""kernel/foster.py: a reaper's reports read as waitpid's, whatever arrives (Foster);
what a forkserver or a standby takes as a request (well_formed, read_request); a standby
waiting for its process (await_adoption), over real sockets in this process."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from helpers import HANG_GUARD, ROOT

from wsgikernel.kernel.foster import (ADOPT_FDS, Foster, await_adoption, read_request,
                                      well_formed)
from wsgikernel.store import write_record
from wsgikernel.wire.envelope import message
from wsgikernel.wire.framing import HANDSHAKE_LIMIT, encode, recv_message


def test_reports_are_read_whole_across_partial_writes_and_junk_is_skipped():
    read, write = os.pipe()
    foster = Foster(123, read)
    try:
        assert foster.read() is True and foster.take() == []  # nothing yet: not the end
        os.write(write, b"41 %d\n42 " % (5 << 8))
        assert foster.read() and foster.take() == [(41, 5 << 8)]
        os.write(write, b"%d\nnot a report\n\n43 x\n" % signal.SIGKILL)
        assert foster.read() and foster.take() == [(42, signal.SIGKILL)]
        os.close(write)
        write = None
        assert foster.read() is False  # its end: it had no child left
    finally:
        foster.close()
        if write is not None:
            os.close(write)


ADOPT = {"env_dir": "/e", "pid": 7, "reaper": 8}


@pytest.mark.parametrize("kind, body, count, ok", [
    ("adopt", ADOPT, ADOPT_FDS, True),
    ("standby", {"env_dir": "/e"}, 2, True),
    ("adopt", ADOPT, 2, False),                       # descriptors missing
    ("standby", {"env_dir": "/e"}, 3, False),         # one too many
    ("adopt", dict(ADOPT, pid=0), ADOPT_FDS, False),  # no such process
    ("adopt", dict(ADOPT, reaper=True), ADOPT_FDS, False),
    ("adopt", dict(ADOPT, pid=2.5), ADOPT_FDS, False),
    ("standby", {"env_dir": ""}, 2, False),
    ("standby", {"env_dir": ["/e"]}, 2, False),
    ("standby", ["/e"], 2, False),
    ("launch", {"env_dir": "/e"}, 2, False),          # no such request
], ids=lambda value: repr(value)[:20])
def test_a_request_is_well_formed_only_with_its_fields_and_descriptors(kind, body, count, ok):
    passed = {"spawn": 2, "adopt": ADOPT_FDS, "standby": 2}
    assert well_formed({"type": kind, "body": body}, [0] * count, passed) is ok


def test_a_request_is_read_whole_with_its_descriptors_and_a_probe_is_none():
    ours, theirs = socket.socketpair()
    read, write = os.pipe()
    try:
        frame = encode(message("standby", {"env_dir": "/e" * 20}, id=1))
        socket.send_fds(ours, [frame[:5]], [read])
        ours.sendall(frame[5:])  # the rest of the frame comes later
        request, fds = read_request(theirs, 2)
        assert request["type"] == "standby" and request["body"]["env_dir"] == "/e" * 20
        assert len(fds) == 1
        os.write(write, b"x")
        assert os.read(fds[0], 1) == b"x"  # the pipe itself came over
        os.close(fds[0])
        ours.close()
        assert read_request(theirs, 2) == (None, [])  # connected, and gone
    finally:
        for fd in (read, write):
            os.close(fd)
        ours.close()
        theirs.close()


@pytest.fixture
def standby(tmp_path):
    """A starting env's dir and a standby's listener (fd) on a socket in it."""
    env_dir = str(tmp_path)
    write_record(env_dir, {"id": "e", "state": "starting"})
    path = os.path.join(env_dir, "s.adopt.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    return env_dir, path, listener.detach()


def hand(path, body, count):
    """The copy's side: connect and send an ``adopt`` with ``count`` fresh pipe ends."""
    pipes = [os.pipe() for _ in range(count)]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    socket.send_fds(sock, [encode(message("adopt", body, id=1))], [r for r, _ in pipes])
    for read, write in pipes:
        os.close(read)  # sent: the standby has its own copies
    return sock, [write for _, write in pipes]


def test_a_standby_skips_what_is_not_its_process_and_answers_the_copy_that_hands_it(standby):
    env_dir, path, listener = standby
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.connect(path)
    probe.close()
    bad, bad_writes = hand(path, dict(ADOPT, env_dir=env_dir), 2)  # descriptors missing
    good, writes = hand(path, dict(ADOPT, env_dir=env_dir), ADOPT_FDS)
    try:
        handed = await_adoption(listener, env_dir, timeout=30)
        assert handed is not None
        (pid, control, out_r, err_r), (reaper, status_r) = handed
        assert (pid, reaper) == (7, 8)
        assert recv_message(good, HANDSHAKE_LIMIT)["body"] == {"pid": os.getpid()}
        assert bad.recv(1) == b""  # dropped, unanswered
        for fd, write in zip((control, out_r, err_r, status_r), writes[1:]):
            os.write(write, b"y")
            assert os.read(fd, 1) == b"y"
            os.close(fd)
        assert not os.path.exists(path)  # nobody can hand it another
    finally:
        for fd in writes + bad_writes:
            os.close(fd)
        good.close()
        bad.close()


@pytest.mark.parametrize("change", ["idle", "dead", "deleted", "timeout"])
def test_a_standby_no_process_comes_to_leaves_without_a_trace(standby, change):
    env_dir, path, listener = standby
    if change == "deleted":
        os.unlink(os.path.join(env_dir, "env.json"))
    elif change != "timeout":
        write_record(env_dir, {"id": "e", "state": change})  # another supervisor, or none
    assert await_adoption(listener, env_dir, timeout=0.05) is None
    assert not os.path.exists(path)
    assert sorted(os.listdir(env_dir)) == ([] if change == "deleted" else ["env.json"])


# A supervisor whose loop failed stops its fostered child with Child.stop: in a process
# of its own, whose children it may reap.  The child's parent is a stand-in reaper.
BLOCKING_STOP = r"""
import json, os, subprocess, sys
from wsgikernel.kernel.child import Child
reaper = subprocess.Popen([sys.executable, "-c", '''
import os, time
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    time.sleep(60)  # bounded: nothing outlives a failed run for long
    os._exit(0)
print(pid, flush=True)
os.waitpid(pid, 0)
time.sleep(60)
'''], stdout=subprocess.PIPE)
try:
    pid = int(reaper.stdout.readline())
    child = Child(pid, None, {}, pidfd=os.pidfd_open(pid))
    child.fostered = True
    print(json.dumps(child.stop(3600, roots=(reaper.pid,))))
finally:
    reaper.kill()
    reaper.wait()
"""


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd_open")
def test_a_blocking_stop_of_a_fostered_child_ends_when_it_has_gone_not_after_the_grace():
    # Only its reaper can wait for it; its pidfd says it has gone.  (Before: the whole
    # grace, the kill_grace of the env, waited out for a child that ended at SIGTERM.)
    done = subprocess.run([sys.executable, "-c", BLOCKING_STOP], capture_output=True,
                          text=True, timeout=HANG_GUARD, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [None, None]  # its status is the reaper's to know
