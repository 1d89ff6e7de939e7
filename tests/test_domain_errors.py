"""The control layer's domain errors, and the one table that answers them over HTTP.

Every domain error has an entry in ``dispatch.DOMAIN_ERRORS``; raised from a
handler it is rendered by the dispatcher's funnel as the same problem+json the
HTTP class gives (status, type, detail, fields, headers).
"""

import json

import pytest

from wsgikernel import dispatch
from wsgikernel import errors as http
from wsgikernel.control import errors as domain
from wsgikernel.control.envid import ENV_ID_RULE_TEXT, env_id

# One instance of each domain error, and the HTTP error it must be answered with.
CASES = [
    (domain.EnvironmentNotFound("e1"), http.EnvironmentNotFound("e1")),
    (domain.EnvironmentExists("e1"), http.EnvironmentExists("e1")),
    (domain.EnvironmentNotRunning("e1", "dead"), http.EnvironmentNotRunning("e1", "dead")),
    (domain.ExecutionNotFound("e1", 3), http.ExecutionNotFound("e1", 3)),
    (domain.ExecutionNotWaiting("e1", 3, "it is running"),
     http.ExecutionNotWaiting("e1", 3, "it is running")),
    (domain.KernelUnavailable("e1", "it did not answer in time"),
     http.KernelUnavailable("e1", "it did not answer in time")),
    (domain.KernelIncompatible("e1", "the kernel speaks wire protocol 1, this server 2"),
     http.KernelIncompatible("e1", "the kernel speaks wire protocol 1, this server 2")),
    (domain.QueueFull(4), http.QuotaExceeded("max_queue", 4, retry_after=1)),
    (domain.QuotaExceeded("max_envs", 8), http.QuotaExceeded("max_envs", 8, retry_after=5)),
    (domain.InvalidEnvId(".x", ENV_ID_RULE_TEXT), http.InvalidParam("id", ENV_ID_RULE_TEXT)),
    (domain.InvalidLimit("cpu_limit", "the server allows at most 5"),
     http.InvalidParam("cpu_limit", "the server allows at most 5")),
    (domain.InvalidSandbox("sandbox", "this server runs every environment in a bwrap sandbox"),
     http.InvalidParam("sandbox", "this server runs every environment in a bwrap sandbox")),
    (domain.InvalidResources("Requested node configuration is not available"),
     http.InvalidParam("resources", "Requested node configuration is not available")),
    (domain.KernelQueued("e1", "its Slurm job 7 is queued (PENDING: Resources)"),
     http.KernelUnavailable("e1", "its Slurm job 7 is queued (PENDING: Resources)")),
    (domain.CheckpointNotFound("e1", "before"), http.CheckpointNotFound("e1", "before")),
    (domain.CheckpointConflict("e1", "a cell is running"),
     http.CheckpointConflict("e1", "a cell is running")),
    (domain.SandboxUnavailable("bubblewrap is not installed"),
     http.SandboxUnavailable("bubblewrap is not installed")),
]


def subclasses(cls):
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | subclasses(sub)
    return found


def test_every_domain_error_has_an_entry_in_the_table():
    assert subclasses(domain.ControlError) == set(dispatch.DOMAIN_ERRORS)
    assert {type(error) for error, _ in CASES} == set(dispatch.DOMAIN_ERRORS)


@pytest.mark.parametrize("error,expected", CASES, ids=lambda e: type(e).__name__)
def test_the_table_gives_the_http_error_of_before(error, expected):
    answer = dispatch.http_error(error)
    assert type(answer) is type(expected)
    assert answer.to_dict() == expected.to_dict()
    assert answer.headers == expected.headers


def test_domain_errors_carry_identifiers_not_statuses():
    error = domain.EnvironmentNotRunning("e1", "stopped")
    assert (error.env_id, error.state) == ("e1", "stopped")
    assert "e1" in str(error) and not hasattr(error, "status")
    assert not any(issubclass(cls, http.HTTPError) for cls in subclasses(domain.ControlError))


def test_an_unmapped_domain_error_is_none():
    class Unlisted(domain.ControlError):
        pass
    assert dispatch.http_error(Unlisted("?")) is None


def call(app, path="/x"):
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen.update(status=status, headers=dict(headers))
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": path, "wsgi.errors": None},
                        start_response))
    return seen["status"], seen["headers"], json.loads(body)


@pytest.mark.parametrize("error,expected", CASES, ids=lambda e: type(e).__name__)
def test_the_funnel_renders_a_raised_domain_error_as_its_problem(error, expected):
    app = dispatch.PathDispatcher(max_body=1024)

    def handler(environ):
        raise error
    app.register("GET", "/x", dispatch.endpoint(handler))
    status, headers, body = call(app)
    assert status == expected.status_line
    assert headers["Content-Type"] == http.PROBLEM_JSON
    assert body == expected.to_dict()
    for name, value in expected.headers:
        assert headers[name] == value


def test_the_funnel_answers_an_unmapped_domain_error_as_a_bare_500(caplog):
    class Unlisted(domain.ControlError):
        pass
    app = dispatch.PathDispatcher(max_body=1024)

    def handler(environ):
        raise Unlisted("the table forgot me")
    app.register("GET", "/x", dispatch.endpoint(handler))
    status, _, body = call(app)
    assert status.startswith("500") and body["type"] == http.InternalError.type
    assert "the table forgot me" not in json.dumps(body)
    assert "Unlisted" in caplog.text


def test_the_env_id_rule():
    assert env_id("demo-1.x_y") == "demo-1.x_y"
    for bad in ("", ".hidden", "a/b", "x" * 65, None, 3):
        with pytest.raises(ValueError) as caught:
            env_id(bad)
        assert str(caught.value) == ENV_ID_RULE_TEXT


def test_a_domain_error_mid_stream_ends_the_stream_with_its_problem():
    from wsgikernel.api import stream_response

    def events():
        yield {"event": "accepted", "execution_count": 1, "status": "running"}
        raise domain.KernelUnavailable("e1", "it did not answer in time")
    lines = [json.loads(line) for line in stream_response(events(), "e1").body]
    expected = http.KernelUnavailable("e1", "it did not answer in time").to_dict()
    assert lines[-1] == {"event": "error", "detail": expected["detail"], "problem": expected}
