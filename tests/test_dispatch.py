"""PathDispatcher on its own: the pure route matcher, then the WSGI funnel through WebTest."""

import contextlib
import io
import logging

import pytest
import webtest

from helpers import assert_problem
from wsgikernel import dispatch
from wsgikernel.dispatch import PathDispatcher, Response
from wsgikernel.errors import InvalidParam, MethodNotAllowed, RouteNotFound

SECRET = "internal-detail-the-client-must-not-see"


@dispatch.endpoint
def list_envs(environ):
    return {"envs": []}


@dispatch.endpoint
def create_env(environ):
    return Response({"id": "new"}, status=201, headers=[("Location", "/envs/new")])


@dispatch.endpoint
def get_env(environ):
    return {"id": environ["params"]["id"]}


@dispatch.endpoint
def delete_env(environ):
    return Response(status=204)


@dispatch.endpoint
def boom(environ):
    raise RuntimeError(SECRET)


@dispatch.endpoint
def invalid(environ):
    raise InvalidParam("n", "must be even")


def make_dispatcher():
    app = PathDispatcher(max_body=1024, guard=None)
    app.register("GET", "/envs", list_envs)
    app.register("POST", "/envs", create_env)
    app.register("GET", "/envs/{id}", get_env)
    app.register("delete", "/envs/{id}", delete_env)
    app.register("GET", "/boom", boom)
    app.register("GET", "/invalid", invalid)
    return app


@pytest.fixture
def client():
    return webtest.TestApp(make_dispatcher())  # lint is on by default


@contextlib.contextmanager
def no_log_handlers():
    """No logging configured, as in a bare WSGI container.

    A context manager, not a fixture: pytest adds its capture handlers to the
    root logger at the start of the call phase, after fixtures have run.
    """
    loggers = [logging.getLogger(), logging.getLogger("wsgikernel")]
    saved = [(logger, list(logger.handlers)) for logger in loggers]
    for logger, handlers in saved:
        for handler in handlers:
            logger.removeHandler(handler)
    try:
        yield
    finally:
        for logger, handlers in saved:
            for handler in handlers:
                logger.addHandler(handler)


# -- match(): pure ---------------------------------------------------------------

def test_match_returns_route_and_path_args():
    route, args = make_dispatcher().match("GET", "/envs/abc")
    assert (route.method, route.pattern, route.handler) == ("GET", "/envs/{id}", get_env)
    assert args == {"id": "abc"}


def test_match_static_route_has_no_args():
    route, args = make_dispatcher().match("POST", "/envs")
    assert route.handler is create_env
    assert args == {}


def test_register_upper_cases_the_method():
    route, _ = make_dispatcher().match("DELETE", "/envs/abc")
    assert route.method == "DELETE"


@pytest.mark.parametrize("path", ["/nope", "/envs/a/b", "/envs/", "/envsx", ""])
def test_match_unknown_path_raises_route_not_found(path):
    with pytest.raises(RouteNotFound) as caught:
        make_dispatcher().match("GET", path)
    assert caught.value.status == 404


def test_match_wrong_method_raises_method_not_allowed_with_allow():
    with pytest.raises(MethodNotAllowed) as caught:
        make_dispatcher().match("PUT", "/envs/abc")
    error = caught.value
    assert error.status == 405
    assert dict(error.headers)["Allow"] == "DELETE, GET, HEAD, OPTIONS"
    assert error.to_dict()["allowed"] == ["DELETE", "GET", "HEAD", "OPTIONS"]


def test_match_head_falls_back_to_get():
    route, args = make_dispatcher().match("HEAD", "/envs/abc")
    assert route.handler is get_env
    assert args == {"id": "abc"}


def test_match_head_on_a_route_without_get_is_405():
    app = PathDispatcher(max_body=1024)
    app.register("POST", "/only-post", create_env)
    with pytest.raises(MethodNotAllowed) as caught:
        app.match("HEAD", "/only-post")
    assert dict(caught.value.headers)["Allow"] == "OPTIONS, POST"


def test_match_options_returns_the_allowed_methods():
    route, allowed = make_dispatcher().match("OPTIONS", "/envs")
    assert route is None
    assert allowed == ["GET", "HEAD", "OPTIONS", "POST"]


def test_match_decoded_non_ascii_segment():
    _, args = make_dispatcher().match("GET", "/envs/café-日本")
    assert args == {"id": "café-日本"}


def test_route_repr():
    route, _ = make_dispatcher().match("GET", "/envs/x")
    assert repr(route) == "<GET /envs/{id} -> get_env>"


# -- the WSGI funnel ---------------------------------------------------------------

def test_handler_result_is_json(client):
    res = client.get("/envs/abc", status=200)
    assert res.headers["Content-Type"] == "application/json"
    assert res.json == {"id": "abc"}


def test_unknown_path_is_404_problem(client):
    res = client.get("/nope", status=404)
    assert_problem(res, 404, "route-not-found", path="/nope")


def test_wrong_method_is_405_with_allow_header(client):
    res = client.put("/envs/abc", status=405)
    assert res.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS"
    assert_problem(res, 405, "method-not-allowed", allowed=["DELETE", "GET", "HEAD", "OPTIONS"])


def test_head_of_a_get_route_has_headers_but_no_body(client):
    get = client.get("/envs/abc", status=200)
    head = client.head("/envs/abc", status=200)
    assert head.body == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == str(len(get.body))
    assert head.headers["Content-Type"] == get.headers["Content-Type"]


def test_options_is_204_with_allow(client):
    res = client.options("/envs", status=204)
    assert res.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert res.body == b""
    assert "Content-Type" not in res.headers


def test_unexpected_exception_is_a_bare_500_and_logged(client, caplog):
    with caplog.at_level(logging.ERROR, logger="wsgikernel"):
        res = client.get("/boom", status=500)
    assert_problem(res, 500, "internal-error")
    assert SECRET not in res.text
    assert "RuntimeError" not in res.text
    assert "Traceback" in caplog.text and SECRET in caplog.text


def test_unexpected_exception_traceback_goes_to_wsgi_errors_without_logging(client):
    with no_log_handlers():
        # expect_errors: webtest otherwise fails on anything written to wsgi.errors
        res = client.get("/boom", expect_errors=True)
    assert_problem(res, 500, "internal-error")
    assert SECRET not in res.text
    assert "Traceback" in res.errors and SECRET in res.errors


def test_invalid_param_from_a_handler_is_422(client):
    res = client.get("/invalid", status=422)
    assert_problem(res, 422, "invalid-parameter", param="n")


def test_handler_response_sets_status_and_headers(client):
    res = client.post("/envs", status=201)
    assert res.headers["Location"] == "/envs/new"
    assert res.json == {"id": "new"}


def test_204_response_has_no_body_and_no_content_type(client):
    res = client.delete("/envs/abc", status=204)
    assert res.body == b""
    assert "Content-Type" not in res.headers


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/envs", 200),
    ("HEAD", "/envs", 200),
    ("POST", "/envs", 201),
    ("OPTIONS", "/envs", 204),
    ("GET", "/nope", 404),
    ("PUT", "/envs", 405),
    ("GET", "/invalid", 422),
    ("GET", "/boom", 500),
])
def test_every_response_is_no_store(client, method, path, status):
    res = client.request(path, method=method, status=status)
    assert res.headers["Cache-Control"] == "no-store"


def test_non_ascii_utf8_path_segment_is_decoded(client):
    res = client.get("/envs/caf%C3%A9-%E6%97%A5%E6%9C%AC", status=200)
    assert res.json == {"id": "café-日本"}


def test_non_ascii_path_info_as_pep3333_latin1():
    """A server hands PATH_INFO over as the raw bytes decoded as latin-1."""
    path_info = "/envs/Zoë".encode("utf-8").decode("latin-1")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path_info,
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO()}
    seen = {}
    body = b"".join(make_dispatcher()(environ, lambda status, headers, exc=None:
                                      seen.update(status=status)))
    assert seen["status"] == "200 OK"
    assert body.decode("utf-8") == '{"id":"Zoë"}\n'
