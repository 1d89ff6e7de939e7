"""Kernels forked by the state dir's forkserver (provisioning/forkserver.py,
kernel/forkserver.py): the same kernels, started in milliseconds.

Real processes throughout: the forkserver is started by the first launch,
forks every kernel after it, is replaced when the code or environment it
would fork changes, is stopped with the app, exits by itself when its state
dir is gone, and is never required: a launch that cannot have it starts a new
interpreter, as memory-limited envs and ``kernel_forkserver = false`` always do.
"""

import glob
import json
import os
import shutil
import signal
import tempfile

import pytest

from helpers import pid_alive, processes_in, run, value, wait_for
from wsgikernel.provisioning import forkserver


def infos(state_dir):
    """The forkservers recorded in ``state_dir`` (one file per identity)."""
    found = []
    for path in sorted(glob.glob(os.path.join(state_dir, forkserver.INFO_FILE % "*"))):
        with open(path) as handle:
            found.append(json.load(handle))
    return found


def info(state_dir):
    recorded = infos(state_dir)
    assert len(recorded) == 1, recorded
    return recorded[0]


def env_json(state_dir, env_id):
    with open(os.path.join(state_dir, "envs", env_id, "env.json")) as handle:
        return json.load(handle)


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return handle.read().decode("utf-8", "replace").split("\0")


def parent(pid):
    with open("/proc/%d/stat" % pid, "rb") as handle:
        return int(handle.read().rsplit(b")", 1)[1].split()[1])


def test_kernels_are_forked_by_one_forkserver_and_work_as_launched_ones(testapp, state_dir):
    testapp.put_json("/envs/f1", {})
    testapp.put_json("/envs/f2", {})
    server = info(state_dir)["pid"]
    assert pid_alive(server)
    assert any("wsgikernel.kernel.forkserver" in arg for arg in cmdline(server))
    for env_id in ("f1", "f2"):
        supervisor = env_json(state_dir, env_id)["supervisor_pid"]
        assert any("wsgikernel.kernel.forkserver" in arg for arg in cmdline(supervisor))
        assert parent(supervisor) != os.getpid()  # never the web worker's child
        assert os.readlink("/proc/%d/cwd" % supervisor) == os.path.join(state_dir, "envs",
                                                                       env_id)
    assert value(testapp, "f1", "import sys; sys.argv") == "['']"
    assert run(testapp, "f2", "y")["error"]["ename"] == "NameError"  # namespaces apart
    assert testapp.post("/envs/f1/restart").json["session"] == 2
    assert info(state_dir)["pid"] == server


def test_the_forkserver_stops_with_the_app_and_nothing_is_left(make_test_app, state_dir):
    import webtest
    from helpers import TOKEN
    app = make_test_app()
    client = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    client.put_json("/envs/s1", {})
    server = info(state_dir)["pid"]
    app.close()
    wait_for(lambda: not pid_alive(server), message="the forkserver stopped")
    wait_for(lambda: [p for p in processes_in(state_dir) if p != os.getpid()] == [],
             message="no process of the state dir left")
    assert infos(state_dir) == []


@pytest.mark.parametrize("config, limits", [({}, {"memory_limit": 512 * 1024 * 1024}),
                                            ({"kernel_forkserver": False}, {})],
                         ids=["memory-limited", "forkserver-off"])
def test_some_kernels_start_as_a_new_interpreter(make_test_app, state_dir, config, limits):
    import webtest
    from helpers import TOKEN
    client = webtest.TestApp(make_test_app(**config),
                             extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    client.put_json("/envs/n1", limits)
    supervisor = env_json(state_dir, "n1")["supervisor_pid"]
    assert os.path.join(state_dir, "envs", "n1") in cmdline(supervisor)
    assert value(client, "n1", "1 + 1") == "2"


def test_a_killed_forkserver_is_replaced_by_the_next_launch(testapp, state_dir):
    testapp.put_json("/envs/k1", {})
    first = info(state_dir)["pid"]
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not pid_alive(first), message="the forkserver is gone")
    testapp.put_json("/envs/k2", {})
    assert info(state_dir)["pid"] != first
    assert value(testapp, "k2", "'forked'") == "'forked'"
    assert value(testapp, "k1", "'still'") == "'still'"  # its kernels live on without it


def test_new_code_gets_a_new_forkserver_and_the_old_one_is_left_alone(make_test_app,
                                                                       state_dir,
                                                                       monkeypatch):
    """During an upgrade old and new workers run side by side: neither stops the
    other's forkserver; the server's shutdown stops both."""
    import webtest
    from helpers import TOKEN
    app = make_test_app()
    client = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    client.put_json("/envs/c1", {})
    old = info(state_dir)
    monkeypatch.setattr(forkserver, "_code_digest", "another version of the code")
    client.put_json("/envs/c2", {})
    both = infos(state_dir)
    assert len(both) == 2 and {i["identity"] for i in both} >= {old["identity"]}
    assert all(pid_alive(i["pid"]) for i in both)
    assert value(client, "c2", "2 * 21") == "42"
    app.close()
    wait_for(lambda: not any(pid_alive(i["pid"]) for i in both),
             message="both forkservers stopped")
    assert infos(state_dir) == []


def test_a_recorded_pid_that_is_no_longer_the_forkserver_is_never_signalled(testapp,
                                                                            state_dir):
    """A kernel forked by the forkserver has its command line: a stale record naming a
    kernel's pid must not get that kernel killed."""
    testapp.put_json("/envs/v1", {})
    recorded = info(state_dir)
    victim = env_json(state_dir, "v1")["supervisor_pid"]
    path = os.path.join(state_dir, forkserver.INFO_FILE % "stale")
    with open(path, "w") as handle:
        json.dump(dict(recorded, pid=victim, identity="stale"), handle)
    forkserver.stop_one(path)
    assert pid_alive(victim)
    assert value(testapp, "v1", "'alive'") == "'alive'"


def test_a_forkserver_that_cannot_start_means_a_new_interpreter(testapp, state_dir,
                                                                monkeypatch):
    monkeypatch.setattr(forkserver, "BOOT", "import sys; sys.exit(3)")
    testapp.put_json("/envs/b1", {})
    assert value(testapp, "b1", "'launched'") == "'launched'"
    supervisor = env_json(state_dir, "b1")["supervisor_pid"]
    assert os.path.join(state_dir, "envs", "b1") in cmdline(supervisor)
    with open(os.path.join(state_dir, forkserver.LOG), "rb") as handle:
        handle.read()  # it exists: where a failing forkserver says why


def test_a_forkserver_exits_when_its_state_dir_is_gone():
    state_dir = tempfile.mkdtemp(prefix="wk-")
    try:
        server = forkserver.Forkserver(state_dir)
        server.start()
        pid = info(state_dir)["pid"]
        assert pid_alive(pid) and server.answers()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    wait_for(lambda: not pid_alive(pid), message="the forkserver noticed")


def test_a_standby_waits_for_its_process_and_a_bad_request_changes_nothing():
    """A fork's standby supervisor (provisioning/forkserver.py ``Standby``): forked now,
    working in the env dir, waiting on its socket; it leaves once its env is no longer
    starting, without writing env.json.  A request without its descriptors is refused, and the
    forkserver goes on."""
    import socket
    from wsgikernel.store import read_record, write_record
    from wsgikernel.wire.envelope import message
    from wsgikernel.wire.framing import HANDSHAKE_LIMIT, encode, recv_message
    state_dir = tempfile.mkdtemp(prefix="wk-")
    try:
        server = forkserver.Forkserver(state_dir)
        server.start()
        env_dir = os.path.join(state_dir, "envs", "e")
        os.makedirs(env_dir)
        write_record(env_dir, {"id": "e", "state": "starting", "settings": {}})
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(server.address)
            socket.send_fds(sock, [encode(message("standby", {"env_dir": env_dir}, id=1))],
                            [sock.fileno()])  # one descriptor: its listener or its log?
            answer = recv_message(sock, HANDSHAKE_LIMIT)
        assert answer["type"] == "error" and answer["body"]["code"] == "bad_request", answer
        standby = server.standby(env_dir)
        pid = standby.pid()
        assert pid_alive(pid) and os.path.exists(standby.address)
        wait_for(lambda: os.readlink("/proc/%d/cwd" % pid) == env_dir,
                 message="the standby to work in its env dir")
        write_record(env_dir, {"id": "e", "state": "dead", "settings": {}})
        wait_for(lambda: not pid_alive(pid), message="the standby to leave")
        assert not os.path.exists(standby.address)
        assert read_record(env_dir) == {"id": "e", "state": "dead", "settings": {}}
    finally:
        forkserver.stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
