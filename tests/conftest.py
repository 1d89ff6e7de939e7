import os
import shutil
import tempfile

import pytest
import webtest

from helpers import TOKEN, LiveServer, command_lines


@pytest.fixture
def state_dir():
    """A fresh private state dir (short path, so socket paths stay well under the limit)."""
    path = tempfile.mkdtemp(prefix="wk-")
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_test_app(state_dir):
    """make_app(**config) with test defaults; every app made is closed afterwards."""
    from wsgikernel import make_app
    made = []

    def factory(**config):
        config.setdefault("state_dir", state_dir)
        config.setdefault("token", TOKEN)
        config.setdefault("kill_grace", 1)
        config.setdefault("pool_size", 0)
        app = make_app(**config)
        made.append(app)
        return app

    try:
        yield factory
    finally:
        for app in made:
            app.close()


@pytest.fixture
def app(make_test_app):
    return make_test_app()


@pytest.fixture
def testapp(app):
    """WebTest client (lint on) that sends the token on every request."""
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})


@pytest.fixture
def anon(app):
    """WebTest client without credentials."""
    return webtest.TestApp(app)


@pytest.fixture(scope="module")
def live():
    """One real scripts/serve.py (no pool, no access log) shared by a test module."""
    path = tempfile.mkdtemp(prefix="wk-live-")
    try:
        with LiveServer("--pool-size", "0", "--quiet", state_dir=path) as server:
            yield server
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- no kernel left behind -----------------------------------------------------------

# Every process this run starts inherits the mark (xdist workers, servers, kernels: the
# launcher drops WSGIKERNEL_* variables only), so the check below sees only this run's
# kernels, never those of another run on the same machine.
SESSION_MARK = "WK_TEST_SESSION"
os.environ.setdefault(SESSION_MARK, "%d-%d" % (os.getpid(), id(object())))


def _leftover_kernels():
    """(pid, cmdline) of kernel processes this test run started that still run."""
    temp = tempfile.gettempdir()
    mark = ("%s=%s" % (SESSION_MARK, os.environ[SESSION_MARK])).encode()
    found = []
    for pid, text in command_lines():
        if pid == os.getpid() or not (any("wsgikernel.kernel" in arg for arg in text) and any(
                arg.startswith(os.path.join(temp, "wk")) for arg in text)):
            continue
        try:
            with open("/proc/%d/environ" % pid, "rb") as handle:
                if mark not in handle.read().split(b"\0"):
                    continue  # another run's kernel
        except OSError:
            continue
        found.append((pid, " ".join(text)[:200]))
    return found


def pytest_sessionfinish(session, exitstatus):
    """After the whole run (the xdist controller, once every worker is done): every kernel
    a test started must be gone.  Any left is killed, listed, and fails the run."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: others may still be running tests
    import signal
    import time
    deadline = time.monotonic() + 10  # kernels stopped in a test's finally may still be exiting
    left = _leftover_kernels()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _leftover_kernels()
    if not left:
        return
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["kernel processes left behind by the test run (now killed):"]
    lines += ["  %d %s" % item for item in left]
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True)
    session.exitstatus = 1
