"""The bubblewrap sandbox (issue 16), end to end: real kernels in real bwrap.

What a sandboxed cell cannot do -- read the state dir (token, env.json, other
envs), see or signal the server and the supervisor, reach the server's port or
any other address, write the system or the state dir -- and what it still can:
its work dir, a private /tmp, the stdlib and installed packages, subprocesses,
fork.  Then the lifecycle in a sandbox (interrupt, timeout, kill, exit status,
restart, a server restart, DELETE leaving nothing), the pool, the extra binds,
the network settings, and the 422/503 answers.

Cells report what they tried as one JSON line (``probe``); every wait is a poll
with a hang guard; every app, server and kernel is stopped in a ``finally``.
"""

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import pytest
import webtest

from helpers import (HANG_GUARD, SERVE, TOKEN, LiveServer, assert_problem, pid_alive, poll,
                     processes_in, run, submit, value, wait_for)
from wsgikernel.config import UNSET
from wsgikernel.kernel.bwrap import HOME


def bwrap_problem():
    """Why bubblewrap cannot run here (None if it can)."""
    program = shutil.which("bwrap")
    if not program:
        return "bubblewrap (bwrap) is not installed"
    try:
        done = subprocess.run([program, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net",
                               "true"], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=HANG_GUARD)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "bwrap cannot be run: %s" % exc
    if done.returncode:
        return "bwrap cannot create namespaces here: %s" % done.stderr.decode(
            "utf-8", "replace").strip()
    return None


BWRAP_PROBLEM = bwrap_problem()
pytestmark = pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=str(BWRAP_PROBLEM))


# -- clients, cells ------------------------------------------------------------------------

def client(app, token=TOKEN):
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + token})


def create(testapp, env_id, **body):
    res = testapp.post_json("/envs", dict(body, id=env_id))
    assert res.status_int == 201, res.body[:500]
    return res.json


def env_dir(state_dir, env_id):
    return os.path.join(state_dir, "envs", env_id)


def env_record(state_dir, env_id):
    with open(os.path.join(env_dir(state_dir, env_id), "env.json")) as handle:
        return json.load(handle)


# Defined in the cell: each ``attempt`` says whether the action worked, and how it failed.
PROBE = r'''
import errno as _errno, json as _json, os, socket as _socket
def attempt(action):
    try:
        got = action()
    except Exception as exc:
        return {"ok": False, "ename": type(exc).__name__, "oserror": isinstance(exc, OSError),
                "errno": _errno.errorcode.get(getattr(exc, "errno", None) or 0)}
    if not isinstance(got, (str, int, bool, list, type(None))):
        got = repr(got)
    return {"ok": True, "value": got}
def read(path):
    with open(path) as handle:
        return handle.read()
def write(path, text="planted"):
    with open(path, "w") as handle:
        return handle.write(text)
def connect(host, port, timeout=3):
    with _socket.create_connection((host, port), timeout=timeout):
        return "connected"
'''


def probe(execute, **checks):
    """{name: outcome} of each expression of ``checks`` run in one cell by ``execute``
    (code -> finished record)."""
    code = PROBE + "print(_json.dumps({%s}))" % ", ".join(
        "%r: attempt(lambda: %s)" % item for item in checks.items())
    record = execute(code)
    assert record["status"] == "ok", record
    return json.loads(record["stdout"].strip().splitlines()[-1])


def on(testapp, env_id):
    return lambda code: run(testapp, env_id, code)


def live_execute(server, env_id, code, **extra):
    status, _, record = server.request("POST", "/envs/%s/execute" % env_id,
                                       dict(extra, code=code))
    assert status == 200, record
    return record


def failed(outcome, *errnos):
    """The attempt raised an OSError (one of ``errnos`` if given)."""
    assert outcome["ok"] is False and outcome["oserror"], outcome
    if errnos:
        assert outcome["errno"] in errnos, outcome
    return True


# -- processes ---------------------------------------------------------------------------

def parents():
    """{pid: ppid} of every process."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as handle:
                    found[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return found


def descendants(pid):
    table = parents()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        children = [child for child, parent in table.items() if parent == current]
        found += children
        todo += children
    return found


def pid_namespace(pid):
    try:
        return os.readlink("/proc/%d/ns/pid" % pid)
    except OSError:
        return None


def sandbox_processes(env):
    """(PID namespace, host pids) of the processes now running in an env's sandbox: those
    under its bwrap in a namespace of their own (a snapshot: a namespace's inode number
    may be reused once it is gone, so a leftover is a process of the snapshot that still
    runs in that namespace)."""
    pids = descendants(env["pid"])
    spaces = {pid_namespace(pid) for pid in pids} - {None, pid_namespace(os.getpid())}
    assert len(spaces) == 1, (env, spaces)
    namespace = spaces.pop()
    return namespace, [pid for pid in pids if pid_namespace(pid) == namespace]


def still_running(snapshot):
    namespace, pids = snapshot
    return [pid for pid in pids if pid_alive(pid) and pid_namespace(pid) == namespace]


def nothing_left(path, snapshots=()):
    """No process works in or names ``path`` (supervisor, bwrap), and none of the
    sandboxes' ``snapshots`` (the interpreter and what it started) still runs."""
    def clean():
        return (not [pid for pid in processes_in(path) if pid != os.getpid()]
                and not any(still_running(snapshot) for snapshot in snapshots))
    wait_for(clean, message="no process of %s left" % path)


def kill_everything_in(path, snapshots=()):
    """Safety net after a failed test: SIGKILL whatever of ``path`` still runs."""
    pids = [pid for pid in processes_in(path) if pid != os.getpid()]
    for snapshot in snapshots:
        pids += still_running(snapshot)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def sandboxed(make_test_app):
    """A client of an app whose every env is sandboxed (extra config as keywords)."""
    return lambda **config: client(make_test_app(sandbox="bwrap", **config))


@pytest.fixture
def with_token_file(make_test_app, state_dir, monkeypatch):
    """(client, token) of an app that generated its token into <state_dir>/token."""
    monkeypatch.delenv("WSGIKERNEL_TOKEN", raising=False)
    monkeypatch.delenv("WSGIKERNEL_NO_AUTH", raising=False)

    def factory(**config):
        app = make_test_app(token=UNSET, **config)
        with open(os.path.join(state_dir, "token")) as handle:
            token = handle.read().strip()
        assert token
        return client(app, token), token
    return factory


def listener():
    """A TCP listener of the test's own on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def accepted(sock):
    """Whether a connection is waiting on ``sock`` (closed at once)."""
    sock.setblocking(False)
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


# -- what a sandboxed cell cannot reach ------------------------------------------------------

def test_the_state_dir_is_invisible_from_a_sandboxed_cell(with_token_file, state_dir):
    testapp, token = with_token_file(sandbox="bwrap")
    mine, other = create(testapp, "mine"), create(testapp, "other")
    assert mine["sandbox"] == "bwrap" and mine["sandbox_network"] is False, mine
    assert run(testapp, "other", "open('secret.txt', 'w').write('of other')")["status"] == "ok"
    assert os.path.exists(os.path.join(other["cwd"], "secret.txt"))
    other_socket = env_record(state_dir, "other")["address"]
    assert other_socket.startswith("unix:"), other_socket
    mine_dir, other_dir = env_dir(state_dir, "mine"), env_dir(state_dir, "other")
    seen = probe(on(testapp, "mine"),
                 token="read(%r)" % os.path.join(state_dir, "token"),
                 own_record="read(%r)" % os.path.join(mine_dir, "env.json"),
                 own_log="read(%r)" % os.path.join(mine_dir, "kernel.log"),
                 own_history="read(%r)" % os.path.join(mine_dir, "history.jsonl"),
                 other_record="read(%r)" % os.path.join(other_dir, "env.json"),
                 other_work="os.listdir(%r)" % other["cwd"],
                 other_secret="read(%r)" % os.path.join(other["cwd"], "secret.txt"),
                 other_socket="os.stat(%r)" % other_socket[len("unix:"):],
                 envs="sorted(os.listdir(%r))" % os.path.join(state_dir, "envs"))
    for name in ("token", "own_record", "own_log", "own_history", "other_record",
                 "other_work", "other_secret", "other_socket"):
        assert failed(seen[name], "ENOENT", "EACCES"), name
    # at most an empty mount point of its own: no other env's name shows
    assert not seen["envs"]["ok"] or "other" not in seen["envs"]["value"], seen["envs"]
    assert token not in json.dumps(seen)


def test_writes_to_the_system_and_the_state_dir_do_not_reach_the_host(sandboxed, state_dir):
    testapp = sandboxed()
    env = create(testapp, "w")
    before = env_record(state_dir, "w")
    name = "wk-planted-" + uuid.uuid4().hex
    seen = probe(on(testapp, "w"),
                 usr="write(%r)" % os.path.join("/usr", name),
                 usr_lib="write(%r)" % os.path.join(sys.base_prefix, name),
                 state="write(%r)" % os.path.join(state_dir, name),
                 record="write(%r, '{}')" % os.path.join(env_dir(state_dir, "w"), "env.json"))
    assert failed(seen["usr"], "EROFS", "EACCES", "EPERM")
    assert failed(seen["usr_lib"], "EROFS", "EACCES", "EPERM", "ENOENT")
    # Whatever the cell managed to write landed in its own private file system.
    assert not os.path.exists(os.path.join("/usr", name))
    assert not os.path.exists(os.path.join(sys.base_prefix, name))
    assert not os.path.exists(os.path.join(state_dir, name))
    after = env_record(state_dir, "w")
    assert after["id"] == "w" and after["kernel_id"] == before["kernel_id"], after
    assert testapp.get("/envs/w").json["pid"] == env["pid"]


def test_the_hosts_kernel_knobs_under_proc_are_read_only(sandboxed):
    """As root, without it a cell could write /proc/sys/kernel/core_pattern (a known
    container escape) or /proc/sysrq-trigger.  Opened for writing only: nothing is written
    even where the open succeeded."""
    testapp = sandboxed()
    create(testapp, "knobs")
    knobs = ("/proc/sys/kernel/core_pattern", "/proc/sys/fs/file-max", "/proc/sysrq-trigger")
    seen = probe(on(testapp, "knobs"), **{
        "k%d" % i: "os.close(os.open(%r, os.O_WRONLY))" % path for i, path in enumerate(knobs)})
    for outcome in seen.values():
        assert failed(outcome, "EROFS", "EACCES", "EPERM", "ENOENT")


def test_a_sandboxed_cell_cannot_see_signal_or_reach_the_server(state_dir):
    outside = listener()
    server = LiveServer("--pool-size", "0", "--quiet", "--sandbox", "bwrap", state_dir=state_dir)
    namespaces = []
    try:
        server.start()
        status, _, env = server.request("POST", "/envs", {"id": "s"})
        assert status == 201 and env["sandbox"] == "bwrap", env
        namespaces.append(sandbox_processes(env))
        supervisor = env_record(state_dir, "s")["supervisor_pid"]
        server_pid, port = server.proc.pid, urlsplit(server.url).port
        execute = functools.partial(live_execute, server, "s")
        seen = probe(execute,
                     me="os.getpid()",
                     pids="sorted(int(p) for p in os.listdir('/proc') if p.isdigit())",
                     server_proc="os.stat('/proc/%d')" % server_pid,
                     supervisor_proc="os.stat('/proc/%d')" % supervisor,
                     kill_server="os.kill(%d, 0)" % server_pid,
                     kill_supervisor="os.kill(%d, 0)" % supervisor,
                     server_port="connect('127.0.0.1', %d)" % port,
                     listener="connect('127.0.0.1', %d)" % outside.getsockname()[1],
                     outbound="connect('192.0.2.1', 80, timeout=2)",
                     public="connect('1.1.1.1', 80, timeout=2)")
        pids = seen["pids"]["value"]
        # its own small PID namespace: bwrap's init, the interpreter, nothing of the host
        assert seen["me"]["value"] in pids and seen["me"]["value"] != env["pid"], seen
        assert len(pids) <= 4, pids
        for pid, name in ((server_pid, "server"), (supervisor, "supervisor")):
            if pid in pids:
                continue  # a host pid that happens to be a small number: nothing to tell
            assert failed(seen[name + "_proc"], "ENOENT"), name
            assert seen["kill_" + name]["ename"] == "ProcessLookupError", seen
        for name in ("server_port", "listener", "outbound", "public"):
            assert failed(seen[name], "ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH"), name
        assert not accepted(outside)
        assert pid_alive(server_pid) and pid_alive(supervisor)
        assert server.request("GET", "/envs/s")[2]["state"] == "idle"
        assert server.stop() == 0
        nothing_left(state_dir, namespaces)
    finally:
        outside.close()
        if server.proc is not None:
            server.__exit__(None, None, None)
        kill_everything_in(state_dir, namespaces)


def test_a_sandboxed_and_a_local_env_side_by_side(with_token_file, state_dir):
    testapp, token = with_token_file()  # the server's sandbox: none
    local = create(testapp, "local")
    boxed = create(testapp, "boxed", sandbox="bwrap")
    assert local["sandbox"] == "none" and "sandbox_network" not in local, local
    assert boxed["sandbox"] == "bwrap" and boxed["sandbox_network"] is False, boxed
    listed = {e["id"]: e for e in testapp.get("/envs").json["envs"]}
    assert (listed["local"]["sandbox"], listed["boxed"]["sandbox"]) == ("none", "bwrap")
    checks = {"token": "read(%r)" % os.path.join(state_dir, "token"),
              "record": "read(%r)" % os.path.join(env_dir(state_dir, "boxed"), "env.json"),
              "work": "os.listdir(%r)" % boxed["cwd"]}
    in_local = probe(on(testapp, "local"), **checks)
    in_boxed = probe(on(testapp, "boxed"), **checks)
    assert in_local["token"] == {"ok": True, "value": token}, in_local
    assert json.loads(in_local["record"]["value"])["id"] == "boxed"
    assert in_local["work"]["ok"], in_local
    for name in checks:
        assert failed(in_boxed[name], "ENOENT", "EACCES"), name
    # the local one runs in the host's PID namespace, the sandboxed one in its own
    assert sandbox_processes(boxed)[0] != pid_namespace(local["pid"])
    assert value(testapp, "local", "import os; os.getpid()") == str(local["pid"])


# -- what a sandboxed cell can do -------------------------------------------------------------

def test_work_dir_private_tmp_subprocesses_and_fork_work(sandboxed, tmp_path):
    testapp = sandboxed()
    env = create(testapp, "can")
    with open(os.path.join(env["cwd"], "from-host.txt"), "w") as handle:
        handle.write("hello from the host")
    name = "wk-private-" + uuid.uuid4().hex
    seen = probe(on(testapp, "can"),
                 cwd="os.getcwd()",
                 home="os.environ['HOME']",
                 read_work="read('from-host.txt')",
                 write_work="write('from-cell.txt', 'hello from the cell')",
                 write_tmp="write('/tmp/%s', 'private')" % name,
                 read_tmp="read('/tmp/%s')" % name,
                 sh="__import__('subprocess').run(['sh', '-c', 'echo hi'], "
                    "capture_output=True, text=True).stdout",
                 python="__import__('subprocess').run([__import__('sys').executable, '-c', "
                        "'print(6 * 7)'], capture_output=True, text=True).stdout",
                 fork="(lambda pid: os._exit(7) if pid == 0 else "
                      "os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))(os.fork())",
                 hostname="__import__('socket').gethostname()")
    assert seen["cwd"] == {"ok": True, "value": HOME}, seen
    assert seen["home"] == {"ok": True, "value": HOME}, seen
    assert seen["read_work"]["value"] == "hello from the host", seen
    assert seen["write_work"]["ok"] and seen["write_tmp"]["ok"], seen
    assert seen["read_tmp"]["value"] == "private", seen
    assert seen["sh"]["value"] == "hi\n", seen
    assert seen["python"]["value"] == "42\n", seen
    assert seen["fork"] == {"ok": True, "value": 7}, seen
    assert seen["hostname"]["value"] == "sandbox", seen
    with open(os.path.join(env["cwd"], "from-cell.txt")) as handle:
        assert handle.read() == "hello from the cell"
    assert not os.path.exists(os.path.join("/tmp", name))  # its /tmp is its own
    assert testapp.get("/envs/can").json["state"] == "idle"


@pytest.mark.parametrize("package", ["json", "sqlite3", "ssl", "ctypes", "webtest", "numpy"])
def test_stdlib_and_installed_packages_import(sandboxed, package):
    module = pytest.importorskip(package)
    testapp = sandboxed()
    create(testapp, "imports")
    record = run(testapp, "imports", "import %s\n%s.__name__, getattr(%s, '__file__', None)"
                 % (package, package, package))
    assert record["status"] == "ok", record
    assert record["result"]["text/plain"] == repr((package, getattr(module, "__file__", None)))
    if package == "numpy":
        assert value(testapp, "imports", "int(numpy.arange(10).sum())") == "45"


# -- extra binds, network ------------------------------------------------------------------

def test_extra_read_only_and_read_write_binds(make_test_app, tmp_path):
    data, cache, shared = tmp_path / "data", tmp_path / "cache", tmp_path / "shared"
    for folder in (data, cache, shared):
        folder.mkdir()
    (data / "input.txt").write_text("dataset")
    testapp = client(make_test_app(
        sandbox="bwrap", sandbox_ro_binds=[str(data), "%s:/mnt/wk-data" % data],
        sandbox_rw_binds="%s,%s:/mnt/wk-shared" % (cache, shared)))
    create(testapp, "binds")
    seen = probe(on(testapp, "binds"),
                 read="read(%r)" % str(data / "input.txt"),
                 read_dest="read('/mnt/wk-data/input.txt')",
                 write="write(%r)" % str(data / "output.txt"),
                 write_dest="write('/mnt/wk-data/output.txt')",
                 cache="write(%r, 'cached')" % str(cache / "model.bin"),
                 shared="write('/mnt/wk-shared/note.txt', 'shared')",
                 others="os.listdir(%r)" % str(tmp_path))
    assert seen["read"] == {"ok": True, "value": "dataset"}, seen
    assert seen["read_dest"] == {"ok": True, "value": "dataset"}, seen
    assert failed(seen["write"], "EROFS", "EACCES", "EPERM")
    assert failed(seen["write_dest"], "EROFS", "EACCES", "EPERM")
    assert not (data / "output.txt").exists()
    assert seen["cache"]["ok"] and seen["shared"]["ok"], seen
    assert (cache / "model.bin").read_text() == "cached"
    assert (shared / "note.txt").read_text() == "shared"
    # the parent of the binds is not exposed beyond the bound directories
    assert not seen["others"]["ok"] or set(seen["others"]["value"]) <= {"cache", "data"}, seen


def test_network_per_env(sandboxed):
    testapp = sandboxed(sandbox_network="per-env")
    outside = listener()
    try:
        port = outside.getsockname()[1]
        closed = create(testapp, "closed")
        opened = create(testapp, "opened", sandbox_network=True)
        explicit = create(testapp, "explicit", sandbox_network=False)
        assert closed["sandbox_network"] is False and explicit["sandbox_network"] is False
        assert opened["sandbox_network"] is True, opened
        assert testapp.get("/envs/opened").json["sandbox_network"] is True
        for env_id in ("closed", "explicit"):
            seen = probe(on(testapp, env_id), conn="connect('127.0.0.1', %d)" % port)
            assert failed(seen["conn"], "ECONNREFUSED", "ENETUNREACH"), env_id
            assert not accepted(outside)
        seen = probe(on(testapp, "opened"), conn="connect('127.0.0.1', %d)" % port)
        assert seen["conn"] == {"ok": True, "value": "connected"}, seen
        outside.settimeout(HANG_GUARD)
        outside.accept()[0].close()  # the host's listener saw it
    finally:
        outside.close()


def test_network_on_is_the_default_and_a_create_may_refuse_it(sandboxed):
    testapp = sandboxed(sandbox_network="on")
    outside = listener()
    try:
        port = outside.getsockname()[1]
        assert create(testapp, "net")["sandbox_network"] is True
        assert create(testapp, "nonet", sandbox_network=False)["sandbox_network"] is False
        seen = probe(on(testapp, "net"), conn="connect('127.0.0.1', %d)" % port)
        assert seen["conn"]["ok"], seen
        outside.settimeout(HANG_GUARD)
        outside.accept()[0].close()
        seen = probe(on(testapp, "nonet"), conn="connect('127.0.0.1', %d)" % port)
        assert failed(seen["conn"], "ECONNREFUSED", "ENETUNREACH")
        assert not accepted(outside)
    finally:
        outside.close()


# -- the lifecycle inside a sandbox --------------------------------------------------------

def test_interrupt_and_timeout_in_a_sandbox(sandboxed):
    testapp = sandboxed()
    env = create(testapp, "int")
    run(testapp, "int", "kept = 41")
    pending = submit(testapp, "int", "open('started', 'w').close()\n"
                                     "import time\ntime.sleep(30)")
    wait_for(lambda: os.path.exists(os.path.join(env["cwd"], "started")),
             message="the cell to start")
    res = testapp.post("/envs/int/interrupt")
    assert res.status_int == 200, res.body[:500]
    record = poll(testapp, "int", pending["execution_count"])
    assert (record["status"], record["reason"]) == ("error", "interrupted"), record
    assert record["error"]["ename"] == "KeyboardInterrupt", record
    assert value(testapp, "int", "kept + 1") == "42"

    record = run(testapp, "int", "import time\nbefore = True\ntime.sleep(10)", timeout=0.5)
    assert (record["status"], record["reason"]) == ("aborted", "timeout"), record
    assert record["error"]["ename"] == "ExecutionTimeout", record
    assert value(testapp, "int", "kept, before") == "(41, True)"
    after = testapp.get("/envs/int").json
    assert after["state"] == "idle" and after["pid"] == env["pid"], after
    assert after["sandbox"] == "bwrap", after


def test_a_cell_that_leaves_the_process_group_is_still_interrupted(sandboxed):
    """Inside, the interpreter is not its group's leader, so setsid() succeeds there (it
    fails locally): the interrupt goes to the interpreter itself as well."""
    testapp = sandboxed()
    env = create(testapp, "away")
    pending = submit(testapp, "away", "import os, time\nos.setsid()\n"
                                      "open('started', 'w').close()\ntime.sleep(30)")
    wait_for(lambda: os.path.exists(os.path.join(env["cwd"], "started")),
             message="the cell to start")
    assert testapp.post("/envs/away/interrupt").status_int == 200
    record = poll(testapp, "away", pending["execution_count"])
    assert (record["status"], record["reason"]) == ("error", "interrupted"), record


def test_a_restart_gives_the_cell_its_sigterm_grace(sandboxed):
    """SIGTERM reaches the user code, not the outer bwrap (whose death would take the
    sandbox down at once): a handler that takes a moment still finishes."""
    testapp = sandboxed(kill_grace=5)
    env = create(testapp, "grace")
    run(testapp, "grace", "import signal, time\n"
                          "def bye(*_):\n"
                          "    time.sleep(0.3)\n"
                          "    open('said-goodbye', 'w').close()\n"
                          "    raise SystemExit(0)\n"
                          "signal.signal(signal.SIGTERM, bye)")
    restarted = testapp.post("/envs/grace/restart").json
    assert restarted["state"] == "idle" and restarted["sandbox"] == "bwrap", restarted
    assert os.path.exists(os.path.join(env["cwd"], "said-goodbye"))


def test_a_cell_that_ignores_sigint_is_killed_and_the_sandbox_is_gone(sandboxed, state_dir):
    testapp = sandboxed(kill_grace=0.5)
    env = create(testapp, "deaf")
    sandbox = sandbox_processes(env)
    try:
        record = run(testapp, "deaf", "import signal, time\n"
                                      "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                      "time.sleep(30)", timeout=0.5)
        assert (record["status"], record["reason"]) == ("aborted", "timeout"), record
        assert record["error"]["ename"] == "ExecutionTimeout", record
        wait_for(lambda: not pid_alive(env["pid"]), message="the killed sandbox to be gone")
        wait_for(lambda: not still_running(sandbox), message="the sandbox's processes gone")
        dead = testapp.get("/envs/deaf").json
        assert dead["state"] == "dead" and dead["reason"] == "timeout", dead
        restarted = testapp.post("/envs/deaf/restart").json
        assert restarted["state"] == "idle" and restarted["sandbox"] == "bwrap", restarted
        assert value(testapp, "deaf", "1 + 1") == "2"
    finally:
        kill_everything_in(state_dir, [sandbox])


@pytest.mark.parametrize("code, exit_", [
    ("import os; os._exit(3)", {"code": 3, "signal": None}),
    ("import os; os.kill(os.getpid(), 9)", {"code": None, "signal": "SIGKILL"}),
])
def test_the_exit_status_of_sandboxed_user_code(sandboxed, code, exit_):
    testapp = sandboxed()
    create(testapp, "quit")
    record = run(testapp, "quit", code)
    assert (record["status"], record["reason"]) == ("aborted", "kernel_died"), record
    assert record["error"]["ename"] == "KernelDied", record
    dead = wait_for(lambda: (lambda e: e if e["state"] == "dead" else None)(
        testapp.get("/envs/quit").json), message="the env dead")
    assert dead["exit"] == exit_, dead
    assert dead["reason"] == "kernel_died" and dead["pid"] is None, dead
    assert_problem(testapp.post_json("/envs/quit/execute", {"code": "1"}, expect_errors=True),
                   409, "env-not-running", env_id="quit")
    assert testapp.post("/envs/quit/restart").json["state"] == "idle"
    assert value(testapp, "quit", "2 + 2") == "4"


def test_a_restarted_sandboxed_env_is_still_sandboxed(sandboxed, state_dir):
    testapp = sandboxed()
    env = create(testapp, "again")
    before = sandbox_processes(env)
    run(testapp, "again", "x = 1")
    restarted = testapp.post("/envs/again/restart").json
    assert restarted["state"] == "idle" and restarted["session"] == env["session"] + 1
    assert restarted["pid"] != env["pid"], restarted
    got = testapp.get("/envs/again").json
    assert got["sandbox"] == "bwrap" and got["sandbox_network"] is False, got
    wait_for(lambda: not still_running(before), message="the old sandbox gone")
    assert not set(sandbox_processes(got)[1]) & set(before[1])
    assert run(testapp, "again", "x")["error"]["ename"] == "NameError"
    seen = probe(on(testapp, "again"),
                 record="read(%r)" % os.path.join(env_dir(state_dir, "again"), "env.json"),
                 net="connect('192.0.2.1', 80, timeout=2)", cwd="os.getcwd()")
    assert failed(seen["record"], "ENOENT", "EACCES")
    assert failed(seen["net"], "ENETUNREACH", "EHOSTUNREACH")
    assert seen["cwd"]["value"] == HOME


def test_history_of_a_sandboxed_env(sandboxed, state_dir):
    testapp = sandboxed()
    create(testapp, "hist")
    run(testapp, "hist", "a = 20")
    run(testapp, "hist", "print(a * 2 + 2)")
    listed = testapp.get("/envs/hist/executions").json["executions"]
    assert [r["code"] for r in listed] == ["a = 20", "print(a * 2 + 2)"], listed
    assert poll(testapp, "hist", 2)["stdout"] == "42\n"
    with open(os.path.join(env_dir(state_dir, "hist"), "history.jsonl")) as handle:
        assert len(handle.read().splitlines()) >= 2
    seen = probe(on(testapp, "hist"),
                 history="read(%r)" % os.path.join(env_dir(state_dir, "hist"), "history.jsonl"))
    assert failed(seen["history"], "ENOENT", "EACCES")


def test_a_sandboxed_env_survives_a_server_restart_and_delete_leaves_nothing(state_dir):
    flags = ("--pool-size", "0", "--quiet", "--sandbox", "bwrap")
    first = LiveServer(*flags, state_dir=state_dir)
    second = LiveServer(*flags, state_dir=state_dir)
    namespaces = []
    try:
        first.start()
        status, _, env = first.request("POST", "/envs", {"id": "keep"})
        assert status == 201 and env["sandbox"] == "bwrap", env
        # a process the cell leaves behind, in a session of its own
        record = live_execute(first, "keep", "x = 41\nimport subprocess\n"
                              "sleeper = subprocess.Popen(['sleep', '300'], "
                              "start_new_session=True)\nsleeper.pid")
        assert record["status"] == "ok", record
        namespaces.append(sandbox_processes(env))
        assert len(namespaces[0][1]) >= 3, namespaces  # init, interpreter, sleep
        supervisor = env_record(state_dir, "keep")["supervisor_pid"]
        first.proc.kill()  # SIGKILL: no shutdown of any kind
        first.proc.wait(HANG_GUARD)
        assert pid_alive(env["pid"]) and pid_alive(supervisor)
        assert all(pid_alive(pid) for pid in namespaces[0][1])

        second.start()
        status, _, again = second.request("GET", "/envs/keep")
        assert status == 200, again
        assert (again["state"], again["pid"], again["sandbox"]) == ("idle", env["pid"], "bwrap")
        assert live_execute(second, "keep", "x + 1")["result"]["text/plain"] == "42"
        seen = probe(lambda code: live_execute(second, "keep", code),
                     record="read(%r)" % os.path.join(env_dir(state_dir, "keep"), "env.json"),
                     sleeper="os.kill(sleeper.pid, 0)")
        assert failed(seen["record"], "ENOENT", "EACCES")
        assert seen["sleeper"]["ok"], seen

        status, _, _ = second.request("DELETE", "/envs/keep")
        assert status == 204
        nothing_left(env_dir(state_dir, "keep"), namespaces)
        assert not pid_alive(supervisor) and not pid_alive(env["pid"])
        assert not os.path.exists(env_dir(state_dir, "keep"))
        assert second.stop() == 0
        nothing_left(state_dir, namespaces)
    finally:
        for server in (first, second):
            if server.proc is not None:
                server.__exit__(None, None, None)
        kill_everything_in(state_dir, namespaces)



def test_after_a_clean_stop_a_put_revives_the_env_still_sandboxed(make_test_app, state_dir):
    first = make_test_app(sandbox="bwrap")
    testapp = client(first)
    env = create(testapp, "revive")
    sandbox = sandbox_processes(env)
    run(testapp, "revive", "x = 1")
    first.close()  # what a clean server shutdown does: the env stays, stopped
    assert env_record(state_dir, "revive")["state"] == "stopped"
    nothing_left(env_dir(state_dir, "revive"), [sandbox])
    # the next server runs envs unsandboxed by default; this env asked for a sandbox
    testapp = client(make_test_app())
    res = testapp.put_json("/envs/revive", {})
    assert res.status_int == 200, res.body[:500]
    revived = res.json
    assert revived["restarted"] is True and revived["state"] == "idle", revived
    assert revived["sandbox"] == "bwrap" and revived["session"] == env["session"] + 1, revived
    assert run(testapp, "revive", "x")["error"]["ename"] == "NameError"
    seen = probe(on(testapp, "revive"),
                 record="read(%r)" % os.path.join(env_dir(state_dir, "revive"), "env.json"))
    assert failed(seen["record"], "ENOENT", "EACCES")


def test_an_env_whose_record_was_lost_restarts_sandboxed(make_test_app, state_dir):
    first = make_test_app(sandbox="bwrap")
    create(client(first), "lost")
    first.close()
    with open(os.path.join(env_dir(state_dir, "lost"), "env.json"), "w") as handle:
        handle.write("{not json")
    testapp = client(make_test_app(sandbox="bwrap"))
    restarted = testapp.post("/envs/lost/restart").json
    assert restarted["state"] == "idle", restarted
    seen = probe(on(testapp, "lost"),
                 record="read(%r)" % os.path.join(env_dir(state_dir, "lost"), "env.json.bad"),
                 cwd="os.getcwd()")
    assert restarted["sandbox"] == "bwrap", restarted
    assert failed(seen["record"], "ENOENT", "EACCES")
    assert seen["cwd"]["value"] == HOME, seen

# -- the pool ----------------------------------------------------------------------------------

def pooled(state_dir):
    """{supervisor_pid: env.json} of the ready pooled kernels."""
    found = {}
    folder = os.path.join(state_dir, "pool")
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        try:
            with open(os.path.join(folder, name, "env.json")) as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            continue
        if record.get("state") == "idle":
            found[record["supervisor_pid"]] = record
    return found


def test_a_create_claims_a_pooled_sandboxed_kernel(make_test_app, state_dir):
    app = make_test_app(sandbox="bwrap", pool_size=1)
    testapp = client(app)
    app.manager.pool.fill()
    ready = wait_for(lambda: pooled(state_dir), message="a pooled kernel")
    assert all(r.get("provisioner") == "bwrap" for r in ready.values()), ready
    env = create(testapp, "claimed")
    assert env_record(state_dir, "claimed")["supervisor_pid"] in ready, (env, ready)
    assert env["sandbox"] == "bwrap" and env["cwd"] == os.path.join(
        env_dir(state_dir, "claimed"), "work"), env
    seen = probe(on(testapp, "claimed"),
                 cwd="os.getcwd()",
                 write="write('claimed.txt', 'mine')",
                 record="read(%r)" % os.path.join(env_dir(state_dir, "claimed"), "env.json"),
                 pool="os.listdir(%r)" % os.path.join(state_dir, "pool"))
    assert seen["cwd"]["value"] == HOME and seen["write"]["ok"], seen
    with open(os.path.join(env["cwd"], "claimed.txt")) as handle:
        assert handle.read() == "mine"  # the renamed directory is still its work dir
    assert failed(seen["record"], "ENOENT", "EACCES")
    assert failed(seen["pool"], "ENOENT", "EACCES")


def test_a_per_env_sandbox_starts_cold_next_to_a_pool_of_local_kernels(make_test_app,
                                                                       state_dir):
    app = make_test_app(pool_size=1)  # the server's sandbox: none
    testapp = client(app)
    app.manager.pool.fill()
    ready = wait_for(lambda: pooled(state_dir), message="a pooled kernel")
    env = create(testapp, "cold", sandbox="bwrap")
    assert env["sandbox"] == "bwrap", env
    assert env_record(state_dir, "cold")["supervisor_pid"] not in ready
    assert set(pooled(state_dir)) == set(ready)  # the pooled local kernel is still there
    seen = probe(on(testapp, "cold"),
                 record="read(%r)" % os.path.join(env_dir(state_dir, "cold"), "env.json"))
    assert failed(seen["record"], "ENOENT", "EACCES")
    local = create(testapp, "warm")
    assert local["sandbox"] == "none"
    assert env_record(state_dir, "warm")["supervisor_pid"] in ready


# -- refused creates -------------------------------------------------------------------------

def refused(testapp, method, path, body, status, type, **fields):
    res = getattr(testapp, method + "_json")(path, body, expect_errors=True)
    return assert_problem(res, status, type, **fields)


def test_per_env_settings_may_tighten_never_loosen(make_test_app, tmp_path):
    strict = client(make_test_app(sandbox="bwrap"))
    for method, path, body, param in (
            ("post", "/envs", {"id": "a", "sandbox": "none"}, "sandbox"),
            ("put", "/envs/a", {"sandbox": "none"}, "sandbox"),
            ("post", "/envs", {"id": "a", "sandbox_network": True}, "sandbox_network"),
            ("put", "/envs/a", {"sandbox_network": True}, "sandbox_network"),
            ("post", "/envs", {"id": "a", "sandbox": "bwrap", "sandbox_network": True},
             "sandbox_network"),
            ("post", "/envs", {"id": "a", "sandbox": "docker"}, "sandbox"),
            ("post", "/envs", {"id": "a", "sandbox_network": "yes"}, "sandbox_network")):
        body = refused(strict, method, path, body, 422, "invalid-parameter", param=param)
        assert param in body["detail"], body
    assert strict.get("/envs").json["envs"] == []
    assert create(strict, "a", sandbox="bwrap", sandbox_network=False)["sandbox"] == "bwrap"

    loose = client(make_test_app(state_dir=str(tmp_path / "loose"), sandbox_network="per-env"))
    refused(loose, "post", "/envs", {"id": "b", "sandbox": "none", "sandbox_network": False},
            422, "invalid-parameter", param="sandbox_network")
    assert loose.get("/envs").json["envs"] == []
    # Asking for the sandbox's network asks for a sandbox.
    implied = create(loose, "b", sandbox_network=True)
    assert (implied["sandbox"], implied["sandbox_network"]) == ("bwrap", True), implied


def test_a_missing_bubblewrap_is_503_and_local_envs_still_work(make_test_app, tmp_path):
    testapp = client(make_test_app(sandbox_bwrap="/nonexistent/bwrap"))
    body = refused(testapp, "post", "/envs", {"id": "box", "sandbox": "bwrap"}, 503,
                   "sandbox-unavailable")
    assert "bubblewrap is not installed" in body["detail"], body
    assert "/nonexistent/bwrap" in body["detail"], body
    refused(testapp, "put", "/envs/box", {"sandbox": "bwrap"}, 503, "sandbox-unavailable")
    assert testapp.get("/envs/box", expect_errors=True).status_int == 404
    assert create(testapp, "plain")["sandbox"] == "none"
    assert value(testapp, "plain", "6 * 7") == "42"

    everyone = client(make_test_app(state_dir=str(tmp_path / "everyone"), sandbox="bwrap",
                                    sandbox_bwrap="/nonexistent/bwrap"))
    body = refused(everyone, "post", "/envs", {"id": "box"}, 503, "sandbox-unavailable")
    assert "bubblewrap is not installed" in body["detail"], body
    assert everyone.get("/envs").json["envs"] == []


def test_a_bind_that_does_not_exist_is_503_naming_it(make_test_app, tmp_path):
    missing = str(tmp_path / "no-such-dataset")
    testapp = client(make_test_app(sandbox="bwrap", sandbox_ro_binds=[missing]))
    body = refused(testapp, "post", "/envs", {"id": "box"}, 503, "sandbox-unavailable")
    assert "bubblewrap cannot create the sandbox" in body["detail"], body
    assert missing in body["detail"], body
    assert testapp.get("/envs/box", expect_errors=True).status_int == 404


@pytest.mark.parametrize("setting", ["sandbox_rw_binds", "sandbox_ro_binds"])
def test_a_bind_that_would_show_the_state_dir_is_503(make_test_app, state_dir, setting):
    parent = os.path.dirname(state_dir)
    testapp = client(make_test_app(sandbox="bwrap", **{setting: ["%s:/data" % parent]}))
    body = refused(testapp, "post", "/envs", {"id": "box"}, 503, "sandbox-unavailable")
    assert parent in body["detail"] and "state" in body["detail"], body
    assert testapp.get("/envs/box", expect_errors=True).status_int == 404


UNSHARE_ALLOWED = shutil.which("unshare") is not None and subprocess.run(
    ["unshare", "--user", "--map-root-user", "sh", "-c",
     "echo 0 > /proc/sys/user/max_pid_namespaces"],
    stdin=subprocess.DEVNULL, capture_output=True, timeout=HANG_GUARD).returncode == 0


class NoNamespacesServer(LiveServer):
    """A LiveServer run in a user namespace that may create no PID or mount namespace."""

    def start(self):
        script = ("echo 0 > /proc/sys/user/max_pid_namespaces && "
                  "echo 0 > /proc/sys/user/max_mnt_namespaces && exec \"$@\"")
        cmd = ["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh",
               sys.executable, SERVE, "--port", "0", "--state-dir", self.state_dir,
               "--kill-grace", "1", "--token", self.token] + self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env, text=True)
        first = self.proc.stdout.readline()
        if not first.startswith("wsgikernel serving on "):
            self.proc.kill()
            raise AssertionError("server did not start: %r %s" % (first, self.proc.stderr.read()))
        self.url = first.split(" on ", 1)[1].strip()
        return self


@pytest.mark.skipif(not UNSHARE_ALLOWED, reason="unshare --user is not permitted here")
def test_namespaces_refused_is_503_naming_the_cause(state_dir):
    server = NoNamespacesServer("--pool-size", "0", "--quiet", state_dir=state_dir)
    try:
        server.start()
        status, headers, body = server.request("POST", "/envs", {"id": "box",
                                                                  "sandbox": "bwrap"})
        assert status == 503, body
        assert headers["Content-Type"] == "application/problem+json"
        assert body["type"] == "urn:wsgikernel:sandbox-unavailable", body
        assert body["status"] == 503 and body["title"], body
        assert "bubblewrap cannot create the sandbox" in body["detail"], body
        assert "namespace" in body["detail"].lower(), body
        assert server.request("GET", "/envs/box")[0] == 404
        status, _, env = server.request("POST", "/envs", {"id": "plain"})
        assert status == 201 and env["sandbox"] == "none", env
        assert live_execute(server, "plain", "6 * 7")["result"]["text/plain"] == "42"
        assert server.stop() == 0
        nothing_left(state_dir)
    finally:
        if server.proc is not None:
            server.__exit__(None, None, None)
        kill_everything_in(state_dir)

