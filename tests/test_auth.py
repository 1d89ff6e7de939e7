"""Who may call the API: the token and where it comes from; Host/Origin checks without one."""

import io
import os
import stat
import wsgiref.util

import pytest
import webtest

from helpers import TOKEN, assert_problem
from wsgikernel.dispatch import endpoint

ALLOWED_ORIGIN = "http://app.example"


@pytest.fixture(autouse=True)
def no_auth_env(monkeypatch):
    """The environment must not decide these tests' token."""
    monkeypatch.delenv("WSGIKERNEL_TOKEN", raising=False)
    monkeypatch.delenv("WSGIKERNEL_NO_AUTH", raising=False)


@pytest.fixture
def open_client(make_test_app):
    """Auth off (token=None), one allowed foreign origin."""
    return webtest.TestApp(make_test_app(token=None, allowed_origins=ALLOWED_ORIGIN))


def echo(environ):
    return environ["params"]


class UnreadableInput:
    def read(self, *args):
        raise AssertionError("the body was read")

    readline = readlines = read


def call(app, method, path, **environ):
    """One bare WSGI request (WebTest's lint refuses a length the body does not have)."""
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": UnreadableInput(),
           "wsgi.errors": io.StringIO()}
    env.update(environ)
    wsgiref.util.setup_testing_defaults(env)
    seen = {}
    body = b"".join(app(env, lambda status, headers, exc_info=None:
                        seen.update(status=int(status.split()[0]), headers=dict(headers))))
    return seen["status"], seen["headers"], body


# -- the token ---------------------------------------------------------------------

def test_no_token_is_401_with_www_authenticate(anon):
    res = anon.get("/", status=401)
    assert_problem(res, 401, "unauthorized")
    assert res.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("headers, query", [
    ({"Authorization": "Bearer wrong-token"}, ""),
    ({"Authorization": "Bearer " + TOKEN + "x"}, ""),
    ({"Authorization": "Bearer " + TOKEN[:-1]}, ""),
    ({"Authorization": "Basic " + TOKEN}, ""),
    ({"Authorization": "Bearer"}, ""),
    ({"Authorization": TOKEN}, ""),
    ({}, "?token=wrong"),
    ({}, "?token="),
], ids=["wrong", "longer", "shorter", "basic-scheme", "empty-bearer", "no-scheme",
        "wrong-query", "empty-query"])
def test_wrong_token_is_401(anon, headers, query):
    res = anon.get("/" + query, headers=headers, status=401)
    assert_problem(res, 401, "unauthorized")
    assert res.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("headers, query", [
    ({"Authorization": "Bearer " + TOKEN}, ""),
    ({"Authorization": "bearer " + TOKEN}, ""),
    ({"Authorization": "token " + TOKEN}, ""),
    ({}, "?token=" + TOKEN),
], ids=["bearer", "bearer-lower-case", "token-scheme", "query"])
def test_accepted_token_forms(anon, headers, query):
    res = anon.get("/" + query, headers=headers, status=200)
    assert res.json["name"] == "wsgikernel"


def test_healthz_needs_no_token(anon):
    assert anon.get("/healthz", status=200).json == {"status": "ok"}


def test_openapi_needs_the_token(anon):
    assert_problem(anon.get("/openapi.json", status=401), 401, "unauthorized")


def test_unknown_route_is_401_for_anonymous_clients(anon, testapp):
    """The route table is no oracle: without credentials even a 404 is a 401."""
    assert_problem(anon.get("/no/such/route", status=401), 401, "unauthorized")
    assert_problem(anon.delete("/", status=401), 401, "unauthorized")
    assert_problem(testapp.get("/no/such/route", status=404), 404, "route-not-found")


def test_token_is_checked_before_the_body_is_read(app):
    app.register("POST", "/echo", endpoint(echo))
    huge = {"CONTENT_LENGTH": str(10 ** 12), "CONTENT_TYPE": "application/json"}
    status, headers, _ = call(app, "POST", "/echo", **huge)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = call(app, "POST", "/echo", HTTP_AUTHORIZATION="Bearer " + TOKEN, **huge)
    assert status == 413  # with the token, refused from the length alone: still unread


def test_token_file_is_created_once_and_shared(state_dir):
    from wsgikernel import make_app
    first = make_app(state_dir=state_dir, pool_size=0, kill_grace=1)
    second = make_app(state_dir=state_dir, pool_size=0, kill_grace=1)
    try:
        assert first.token == second.token
        assert len(first.token) >= 32
        path = os.path.join(state_dir, "token")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path) as handle:
            assert handle.read().strip() == first.token
        client = webtest.TestApp(second)
        client.get("/", headers={"Authorization": "Bearer " + first.token}, status=200)
        client.get("/", headers={"Authorization": "Bearer " + TOKEN}, status=401)
    finally:
        first.close()
        second.close()


def test_empty_token_file_does_not_turn_auth_off(state_dir):
    from wsgikernel import make_app
    path = os.path.join(state_dir, "token")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
        handle.write("\n")
    try:
        app = make_app(state_dir=state_dir, pool_size=0, kill_grace=1)
    except ValueError:
        return  # refusing to start is a correct answer too
    try:
        assert app.token
        assert_problem(webtest.TestApp(app).get("/", status=401), 401, "unauthorized")
    finally:
        app.close()


def test_token_env_var_wins_over_the_file(state_dir, monkeypatch):
    from wsgikernel import make_app
    from_file = make_app(state_dir=state_dir, pool_size=0, kill_grace=1)
    monkeypatch.setenv("WSGIKERNEL_TOKEN", "from-the-environment-0123")
    from_env = make_app(state_dir=state_dir, pool_size=0, kill_grace=1)
    try:
        assert from_env.token == "from-the-environment-0123"
        with open(os.path.join(state_dir, "token")) as handle:
            assert handle.read().strip() == from_file.token != from_env.token
        client = webtest.TestApp(from_env)
        client.get("/", headers={"Authorization": "Bearer from-the-environment-0123"}, status=200)
        client.get("/", headers={"Authorization": "Bearer " + from_file.token}, status=401)
    finally:
        from_file.close()
        from_env.close()


def test_token_argument_wins_over_the_env_var(make_test_app, monkeypatch):
    monkeypatch.setenv("WSGIKERNEL_TOKEN", "from-the-environment-0123")
    assert make_test_app(token="from-the-argument-0123").token == "from-the-argument-0123"


def test_token_none_turns_auth_off(make_test_app, state_dir):
    client = webtest.TestApp(make_test_app(token=None))
    assert client.get("/", status=200).json["name"] == "wsgikernel"
    assert not os.path.exists(os.path.join(state_dir, "token"))


def test_no_auth_env_var_turns_auth_off(state_dir, monkeypatch):
    from wsgikernel import make_app
    monkeypatch.setenv("WSGIKERNEL_NO_AUTH", "1")
    app = make_app(state_dir=state_dir, pool_size=0, kill_grace=1)
    try:
        assert app.token is None
        webtest.TestApp(app).get("/", status=200)
    finally:
        app.close()


def test_empty_token_is_refused(make_test_app):
    with pytest.raises(ValueError):
        make_test_app(token="")


# -- without a token: Host and Origin ------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost.evil.example"])
def test_auth_off_foreign_host_is_403(open_client, host):
    res = open_client.get("/", headers={"Host": host}, status=403)
    assert_problem(res, 403, "forbidden", host=host)


@pytest.mark.parametrize("host", ["localhost:8080", "localhost", "127.0.0.1:5000", "[::1]:8080",
                                  "LOCALHOST:8080"])
def test_auth_off_loopback_host_is_ok(open_client, host):
    open_client.get("/", headers={"Host": host}, status=200)


def test_auth_off_configured_allowed_hosts(make_test_app):
    client = webtest.TestApp(make_test_app(token=None, allowed_hosts="box.lan"))
    client.get("/", headers={"Host": "box.lan:8080"}, status=200)
    assert_problem(client.get("/", headers={"Host": "localhost"}, status=403), 403, "forbidden")


def test_auth_off_foreign_origin_is_403(open_client):
    headers = {"Host": "localhost:8080", "Origin": "http://evil.example"}
    res = open_client.post("/", headers=headers, status=403)
    assert_problem(res, 403, "forbidden", origin="http://evil.example")
    assert_problem(open_client.get("/", headers=headers, status=403), 403, "forbidden")


def test_auth_off_same_origin_as_host_is_ok(open_client):
    res = open_client.get("/", headers={"Host": "localhost:8080",
                                        "Origin": "http://localhost:8080"}, status=200)
    assert "Access-Control-Allow-Origin" not in res.headers


def test_auth_off_origin_on_another_port_is_403(open_client):
    open_client.get("/", headers={"Host": "localhost:8080", "Origin": "http://localhost:9999"},
                    status=403)


def test_auth_off_allowed_origin_gets_cors_headers(open_client):
    res = open_client.get("/", headers={"Host": "localhost:8080", "Origin": ALLOWED_ORIGIN},
                          status=200)
    assert res.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Origin" in res.headers["Vary"]
    assert res.headers["Cache-Control"] == "no-store"


def test_allowed_origin_cors_headers_on_errors_too(open_client):
    res = open_client.get("/nope", headers={"Origin": ALLOWED_ORIGIN}, status=404)
    assert res.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


@pytest.mark.parametrize("token", [None, TOKEN], ids=["auth-off", "auth-on"])
def test_preflight_from_an_allowed_origin(make_test_app, token):
    """Browsers send preflights without credentials: 204 with CORS headers either way."""
    client = webtest.TestApp(make_test_app(token=token, allowed_origins=ALLOWED_ORIGIN))
    res = client.options("/", headers={"Origin": ALLOWED_ORIGIN,
                                       "Access-Control-Request-Method": "GET",
                                       "Access-Control-Request-Headers": "authorization"},
                         status=204)
    assert res.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "GET" in res.headers["Access-Control-Allow-Methods"].split(", ")
    assert "authorization" in res.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in res.headers["Allow"]


def test_preflight_from_a_foreign_origin_gets_no_cors_headers(open_client):
    res = open_client.options("/", headers={"Origin": "http://evil.example",
                                            "Access-Control-Request-Method": "POST"}, status=204)
    assert "Access-Control-Allow-Origin" not in res.headers
