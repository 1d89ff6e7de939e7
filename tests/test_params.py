"""environ['params']: every source merged, every bad body refused; converters; config."""

import io
import wsgiref.util

import pytest
import webtest

from helpers import assert_problem
from wsgikernel import config, params
from wsgikernel.dispatch import PathDispatcher, endpoint

MAX_BODY = 1024
SUPPORTED = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"]


def echo(environ):
    return environ["params"]


def need(environ):
    return {"code": params.require(environ["params"], "code")}


def opt(environ):
    return {"timeout": params.optional(environ["params"], "timeout", params.seconds)}


def make_dispatcher():
    app = PathDispatcher(max_body=MAX_BODY, guard=None)
    for method in ("GET", "POST", "PUT"):
        app.register(method, "/echo", endpoint(echo))
    app.register("POST", "/things/{id}", endpoint(echo))
    app.register("GET", "/need", endpoint(need))
    app.register("POST", "/opt", endpoint(opt))
    app.register("GET", "/opt", endpoint(opt))
    return app


@pytest.fixture
def client():
    return webtest.TestApp(make_dispatcher())


class UnreadableInput:
    """A wsgi.input that fails the test if anyone reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = readlines = read

    def __iter__(self):
        raise AssertionError("the body was read")


class Result:
    """A bare WSGI call's outcome, shaped like a WebTest response for assert_problem."""

    def __init__(self, status, headers, body):
        self.status = status
        self.status_int = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body
        self.text = body.decode("utf-8")


def call(app, method, path, body=b"", **environ):
    """One request without WebTest, for environs its lint would refuse (bad lengths...)."""
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body),
           "wsgi.errors": io.StringIO()}
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    env.update(environ)
    wsgiref.util.setup_testing_defaults(env)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen.update(status=status, headers=headers)

    out = b"".join(app(env, start_response))
    return Result(seen["status"], seen["headers"], out)


def post_raw(client, path, body, content_type, **kwargs):
    """POST these exact bytes (webtest's post() re-encodes multipart bodies)."""
    return client.request(path, method="POST", body=body, content_type=content_type, **kwargs)


def multipart(boundary, parts):
    """A multipart/form-data body built by hand: parts are (headers, content bytes)."""
    lines = []
    for headers, content in parts:
        lines.append(b"--" + boundary)
        lines.extend(header.encode("utf-8") for header in headers)
        lines.append(b"")
        lines.append(content)
    lines.append(b"--" + boundary + b"--")
    lines.append(b"")
    return b"\r\n".join(lines)


# -- every source reaches environ['params'] ---------------------------------------

def test_query_string(client):
    res = client.get("/echo?a=1&b=%C3%A9t%C3%A9&empty=", status=200)
    assert res.json == {"a": "1", "b": "été", "empty": ""}


def test_urlencoded_form(client):
    res = client.post("/echo", {"a": "1", "b": "Zoë ✓"}, status=200)
    assert res.json == {"a": "1", "b": "Zoë ✓"}


def test_multipart_form_with_a_file_and_a_utf8_field(client):
    body = multipart(b"b0undary-x", [
        (['Content-Disposition: form-data; name="title"'], "Zoë — ✓".encode("utf-8")),
        (['Content-Disposition: form-data; name="code"; filename="cell.py"',
          "Content-Type: text/x-python"], b"x = 1\r\nprint(x)\r\n"),
        (['Content-Disposition: form-data; name="empty"'], b""),
    ])
    res = post_raw(client, "/echo", body, "multipart/form-data; boundary=b0undary-x", status=200)
    assert res.json == {"title": "Zoë — ✓", "code": "x = 1\r\nprint(x)\r\n", "empty": ""}


def test_multipart_quoted_boundary(client):
    body = multipart(b"q b", [(['Content-Disposition: form-data; name="a"'], b"1")])
    res = post_raw(client, "/echo", body, 'multipart/form-data; boundary="q b"', status=200)
    assert res.json == {"a": "1"}


def test_json_body(client):
    payload = {"a": 1, "text": "日本", "nested": {"x": [1, None, True]}}
    res = client.post_json("/echo", payload, status=200)
    assert res.json == payload


def test_json_body_with_a_json_suffix_type(client):
    res = client.post("/echo", b'{"a": 1}', content_type="application/merge-patch+json",
                      status=200)
    assert res.json == {"a": 1}


def test_empty_body_gives_no_params_whatever_its_type(client):
    res = client.post("/echo", b"", content_type="text/plain", status=200)
    assert res.json == {}


def test_body_wins_over_query(client):
    res = client.post_json("/echo?a=query&q=1", {"a": "body"}, status=200)
    assert res.json == {"a": "body", "q": "1"}


def test_form_body_wins_over_query(client):
    res = client.post("/echo?a=query", {"a": "body"}, status=200)
    assert res.json == {"a": "body"}


def test_path_args_win_over_body_and_query(client):
    res = client.post_json("/things/real?id=from-query", {"id": "from-body", "x": 1}, status=200)
    assert res.json == {"id": "real", "x": 1}


def test_body_of_exactly_max_body_is_accepted(client):
    body = b"a=" + b"x" * (MAX_BODY - 2)
    res = client.post("/echo", body, content_type="application/x-www-form-urlencoded",
                      status=200)
    assert res.json == {"a": "x" * (MAX_BODY - 2)}


# -- every failure: status and problem body ----------------------------------------

def test_malformed_json_is_400(client):
    res = client.post("/echo", b'{"a": ', content_type="application/json", status=400)
    assert_problem(res, 400, "malformed-body")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"3", b"null"])
def test_json_that_is_not_an_object_is_400(client, body):
    res = client.post("/echo", body, content_type="application/json", status=400)
    problem = assert_problem(res, 400, "malformed-body")
    assert "object" in problem["detail"]


def test_invalid_utf8_in_json_is_400(client):
    res = client.post("/echo", b'{"a": "\xff\xfe"}', content_type="application/json",
                      status=400)
    assert_problem(res, 400, "malformed-body")


def test_invalid_utf8_in_form_is_400(client):
    res = client.post("/echo", b"a=\xff", content_type="application/x-www-form-urlencoded",
                      status=400)
    assert_problem(res, 400, "malformed-body")


def test_invalid_utf8_in_multipart_field_is_400(client):
    body = multipart(b"bnd", [(['Content-Disposition: form-data; name="a"'], b"\xff")])
    res = post_raw(client, "/echo", body, "multipart/form-data; boundary=bnd", status=400)
    assert_problem(res, 400, "malformed-body")


def test_multipart_without_boundary_is_400(client):
    res = post_raw(client, "/echo", b"--x\r\n\r\n--x--\r\n", "multipart/form-data", status=400)
    assert_problem(res, 400, "malformed-body")


def test_unterminated_multipart_is_400(client):
    body = b'--bnd\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
    res = post_raw(client, "/echo", body, "multipart/form-data; boundary=bnd", status=400)
    assert_problem(res, 400, "malformed-body")


def test_invalid_utf8_in_query_is_400():
    res = call(make_dispatcher(), "GET", "/echo", QUERY_STRING="a=\xff")
    assert_problem(res, 400, "malformed-body")


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "+5", " 5", "0x10", "5.0"])
def test_bad_content_length_is_400(length):
    res = call(make_dispatcher(), "POST", "/echo", body=b"", CONTENT_LENGTH=length,
               CONTENT_TYPE="application/json", **{"wsgi.input": UnreadableInput()})
    assert_problem(res, 400, "invalid-content-length")


@pytest.mark.parametrize("length", ["\xb2", "1" * 5000], ids=["superscript-two", "5000-digits"])
def test_content_length_isdigit_but_not_int_is_400(length):
    res = call(make_dispatcher(), "POST", "/echo", body=b"", CONTENT_LENGTH=length,
               CONTENT_TYPE="application/json", **{"wsgi.input": UnreadableInput()})
    assert_problem(res, 400, "invalid-content-length")


def test_body_shorter_than_content_length_is_400():
    res = call(make_dispatcher(), "POST", "/echo", body=b"{}", CONTENT_LENGTH="10",
               CONTENT_TYPE="application/json")
    assert_problem(res, 400, "invalid-content-length")


def test_missing_required_parameter_is_400(client):
    res = client.get("/need", status=400)
    assert_problem(res, 400, "missing-parameter", param="code")


def test_required_parameter_present(client):
    assert client.get("/need?code=1%2B1", status=200).json == {"code": "1+1"}


def test_json_null_counts_as_missing(client):
    res = client.request("/need", method="GET", body=b'{"code": null}',
                         content_type="application/json", status=400)
    assert_problem(res, 400, "missing-parameter", param="code")


def test_chunked_body_without_length_is_411():
    res = call(make_dispatcher(), "POST", "/echo", HTTP_TRANSFER_ENCODING="chunked",
               CONTENT_TYPE="application/json", **{"wsgi.input": UnreadableInput()})
    assert_problem(res, 411, "length-required")


@pytest.mark.parametrize("length", [MAX_BODY + 1, 10 ** 12])
def test_body_over_max_body_is_413_before_reading(length):
    res = call(make_dispatcher(), "POST", "/echo", CONTENT_LENGTH=str(length),
               CONTENT_TYPE="application/json", **{"wsgi.input": UnreadableInput()})
    assert_problem(res, 413, "payload-too-large", max_body=MAX_BODY)


def test_text_plain_body_is_415(client):
    res = client.post("/echo", b"print(1)", content_type="text/plain", status=415)
    assert_problem(res, 415, "unsupported-media-type", supported=SUPPORTED)


def test_body_without_content_type_is_415():
    res = call(make_dispatcher(), "POST", "/echo", body=b"a=1")
    assert_problem(res, 415, "unsupported-media-type")


def test_optional_parameter_with_a_bad_value_is_422(client):
    res = client.get("/opt?timeout=soon", status=422)
    assert_problem(res, 422, "invalid-parameter", param="timeout")


def test_optional_parameter_converted_or_defaulted(client):
    assert client.get("/opt?timeout=1.5", status=200).json == {"timeout": 1.5}
    assert client.post_json("/opt", {"timeout": 2}, status=200).json == {"timeout": 2.0}
    assert client.get("/opt", status=200).json == {"timeout": None}


def test_huge_integer_seconds_is_422(client):
    body = b'{"timeout": 1' + b"0" * 400 + b"}"
    res = client.post("/opt", body, content_type="application/json", expect_errors=True)
    assert_problem(res, 422, "invalid-parameter", param="timeout")


def test_deeply_nested_json_is_400(client):
    body = b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    app = webtest.TestApp(PathDispatcher(max_body=len(body), guard=None))
    app.app.register("POST", "/echo", endpoint(echo))
    res = app.post("/echo", body, content_type="application/json", expect_errors=True)
    assert_problem(res, 400, "malformed-body")


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_number_tokens_are_400(client, token):
    res = client.post("/echo", b'{"a": ' + token + b"}", content_type="application/json",
                      expect_errors=True)
    assert_problem(res, 400, "malformed-body")


# -- converters --------------------------------------------------------------------

@pytest.mark.parametrize("value", [True, 1, "1", "true", "TRUE", "yes", "on"])
def test_boolean_true(value):
    assert params.boolean(value) is True


@pytest.mark.parametrize("value", [False, 0, "0", "false", "No", "off", ""])
def test_boolean_false(value):
    assert params.boolean(value) is False


@pytest.mark.parametrize("value", ["maybe", 2, -1, 1.0, None, [], {}])
def test_boolean_invalid(value):
    with pytest.raises(ValueError):
        params.boolean(value)


@pytest.mark.parametrize("value, expected", [("1.5", 1.5), (0, 0.0), (2, 2.0), ("0", 0.0),
                                             (0.25, 0.25)])
def test_seconds_valid(value, expected):
    assert params.seconds(value) == expected


@pytest.mark.parametrize("value", [-1, "-0.5", "abc", "", True, None, [], "nan", "inf",
                                   float("inf"), float("nan"), "1e400"])
def test_seconds_invalid(value):
    with pytest.raises(ValueError):
        params.seconds(value)


def test_seconds_huge_integer_is_a_value_error():
    with pytest.raises(ValueError):
        params.seconds(10 ** 400)


@pytest.mark.parametrize("value, expected", [("3", 3), (0, 0), (2.0, 2), (10 ** 20, 10 ** 20)])
def test_count_valid(value, expected):
    assert params.count(value) == expected


@pytest.mark.parametrize("value", [-1, "-1", "1.5", 1.5, True, "abc", "", None, [],
                                   float("inf"), float("nan")])
def test_count_invalid(value):
    with pytest.raises(ValueError):
        params.count(value)


@pytest.mark.parametrize("value", ["a", "a" * 64, "my-env_1.2", "0", "_x", "-x", "A.b"])
def test_env_id_valid(value):
    assert params.env_id(value) == value


@pytest.mark.parametrize("value", ["", "a" * 65, ".hidden", ".", "..", "a/b", "/a", "a b",
                                   "café", "a\n", "a\\b", 5, None],
                         ids=["empty", "65-chars", "leading-dot", "dot", "dotdot", "slash",
                              "leading-slash", "space", "non-ascii", "newline", "backslash",
                              "int", "none"])
def test_env_id_invalid(value):
    with pytest.raises(ValueError):
        params.env_id(value)


@pytest.mark.parametrize("value, expected", [({"a": 1}, {"a": 1}), ('{"a": [1]}', {"a": [1]}),
                                             ({}, {}), ("{}", {})])
def test_json_object_valid(value, expected):
    assert params.json_object(value) == expected


@pytest.mark.parametrize("value", ["[1]", "nope", "", "3", [1], 3, None, True])
def test_json_object_invalid(value):
    with pytest.raises(ValueError):
        params.json_object(value)


# -- config ------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("2MiB", 2 * 1024 ** 2), ("512M", 512 * 1024 ** 2), ("10k", 10 * 1024),
    ("1.5GB", int(1.5 * 1024 ** 3)), ("1048576", 1048576), (" 7 ", 7), (1024, 1024),
    ("none", None), ("", None), (None, None),
])
def test_size(value, expected):
    assert config.size(value) == expected


@pytest.mark.parametrize("value", ["lots", "-1", "1 XB", "MiB", "1.2.3", True])
def test_size_invalid(value):
    with pytest.raises(ValueError):
        config.size(value)


def test_load_config_reads_env_var_sizes():
    loaded = config.load_config({}, environ={"WSGIKERNEL_MAX_BODY": "2MiB"})
    assert loaded.max_body == 2 * 1024 * 1024


def test_load_config_keyword_wins_over_env_var():
    loaded = config.load_config({"max_body": 100}, environ={"WSGIKERNEL_MAX_BODY": "2MiB"})
    assert loaded.max_body == 100


def test_load_config_defaults():
    loaded = config.load_config({}, environ={})
    assert loaded.max_body == 10 * 1024 * 1024
    assert loaded.token is config.UNSET


def test_make_app_reads_max_body_from_the_environment(make_test_app, monkeypatch):
    monkeypatch.setenv("WSGIKERNEL_MAX_BODY", "2MiB")
    assert make_test_app().max_body == 2 * 1024 * 1024


def test_load_config_unknown_keyword_is_type_error():
    with pytest.raises(TypeError, match="max_bodyy"):
        config.load_config({"max_bodyy": 1}, environ={})


def test_make_app_unknown_keyword_is_type_error(make_test_app):
    with pytest.raises(TypeError):
        make_test_app(no_such_setting=1)


def test_load_config_bad_env_value_names_the_variable():
    with pytest.raises(ValueError, match="WSGIKERNEL_MAX_BODY"):
        config.load_config({}, environ={"WSGIKERNEL_MAX_BODY": "lots"})


def test_load_config_bad_keyword_value_names_the_key():
    with pytest.raises(ValueError, match="max_envs"):
        config.load_config({"max_envs": "many"}, environ={})



def test_multipart_part_with_an_empty_name_is_a_field_like_any_other(client):
    body = multipart(b"bnd", [(['Content-Disposition: form-data; name="a"'], b"1"),
                              (['Content-Disposition: form-data; name=""'], b"{}")])
    res = post_raw(client, "/echo", body, "multipart/form-data; boundary=bnd", status=200)
    assert res.json == {"a": "1", "": "{}"}


def test_multipart_part_without_a_name_is_400(client):
    body = multipart(b"bnd", [(["Content-Disposition: form-data"], b"1")])
    res = post_raw(client, "/echo", body, "multipart/form-data; boundary=bnd", status=400)
    assert_problem(res, 400, "malformed-body")


# -- routes: declared parameters, read before the handler runs ------------------------

def declared_route(*params, conflicts=()):
    from wsgikernel.routes import Operation
    operation = Operation("POST", "/things/{id}", "handle", tag="t", params=params,
                          conflicts=conflicts)

    def handle(environ):
        """Echo the validated parameters."""
        return environ["params"]
    app = PathDispatcher(max_body=MAX_BODY, guard=None)
    app.register("POST", operation.pattern, endpoint(operation.wrap(handle)))
    return webtest.TestApp(app), operation


def test_declared_parameters_reach_the_handler_converted_with_defaults():
    from wsgikernel.converters import Boolean, Count
    from wsgikernel.routes import BODY, PATH, Param
    client, operation = declared_route(
        Param("id", PATH, Count()), Param("flag", BODY, Boolean(), default=False),
        Param("size", BODY, Count(0, 10), required=True))
    assert operation.summary == "Echo the validated parameters."
    res = client.post_json("/things/7?extra=1", {"size": "3", "ignored": True}, status=200)
    assert res.json == {"id": 7, "flag": False, "size": 3}  # only what is declared
    assert_problem(client.post_json("/things/7", {}, status=400), 400, "missing-parameter",
                   param="size")
    assert_problem(client.post_json("/things/7", {"size": 11}, status=422), 422,
                   "invalid-parameter", param="size")
    assert_problem(client.post_json("/things/x", {"size": 1}, status=422), 422,
                   "invalid-parameter", param="id")


def test_a_conflict_names_the_parameter_that_excludes_the_others():
    from wsgikernel.converters import Anything, Boolean, Seconds
    from wsgikernel.routes import BODY, PATH, Conflict, Param
    client, _ = declared_route(
        Param("id", PATH, Anything()), Param("quiet", BODY, Boolean(), default=False),
        Param("wait", BODY, Seconds()), conflicts=(Conflict("quiet", ("wait",), "no"),))
    assert_problem(client.post_json("/things/a", {"quiet": "yes", "wait": 0}, status=422),
                   422, "invalid-parameter", param="quiet")
    for body in ({"quiet": True, "wait": None}, {"quiet": False, "wait": 0}, {"wait": 5}):
        client.post_json("/things/a", body, status=200)


def test_configured_converters_are_built_from_the_config():
    from wsgikernel.routes import ROUTES
    loaded = config.load_config({"max_timeout": 7, "max_body": 100, "open_files_limit": 64},
                                environ={})
    execute = next(op for op in ROUTES if op.name == "execute_code").bind(loaded)
    declared = {param.name: param.converter for param in execute.params}
    assert declared["timeout"](7) == 7.0 and declared["code"]("x" * 100) == "x" * 100
    for converter, value in ((declared["timeout"], 7.5), (declared["code"], "x" * 101)):
        with pytest.raises(ValueError):
            converter(value)
    create = next(op for op in ROUTES if op.name == "create_environment").bind(loaded)
    files = next(param.converter for param in create.params if param.name == "open_files_limit")
    assert files(64) == 64
    with pytest.raises(ValueError):
        files(65)  # above the server's own limit


# -- the limits table ------------------------------------------------------------------

def test_the_limits_table_drives_the_settings_the_cli_and_the_kernel_keys():
    from wsgikernel import cli
    assert config.LIMIT_KEYS == ("memory_limit", "cpu_limit", "file_size_limit",
                                 "open_files_limit")
    for limit in config.LIMITS:
        setting = config.BY_KEY[limit.key]
        assert setting.parse is limit.parse and setting.default is None
        assert limit.rlimit.startswith("RLIMIT_")
    create = cli.build_parser()._subparsers._group_actions[0].choices["create"]
    flags = {opt for action in create._actions for opt in action.option_strings}
    assert {limit.flag for limit in config.LIMITS} <= flags


@pytest.mark.parametrize("key, value", [("memory_limit", "255MiB"), ("cpu_limit", "0"),
                                        ("file_size_limit", "0"), ("open_files_limit", "0")])
def test_limits_below_their_minimum_are_refused_everywhere(key, value):
    limit = config.LIMIT_BY_KEY[key]
    with pytest.raises(ValueError, match="at least"):
        limit.read(value)
    with pytest.raises(ValueError, match=key):
        config.load_config({key: value}, environ={})
