import os
import shutil
import tempfile

import pytest
import webtest

from helpers import TOKEN, LiveServer


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
