"""The HTTPError hierarchy: every class renders an RFC 9457 body with a stable, unique type."""

import json
import re
from http import HTTPStatus

import pytest

from wsgikernel import errors


def subclasses(cls):
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= subclasses(sub)
    return found


ALL = sorted(subclasses(errors.HTTPError), key=lambda cls: cls.__name__)

# Constructor arguments of the classes that take more than a detail string.
ARGS = {
    errors.MissingParam: ("code",),
    errors.Unauthorized: ("no token",),
    errors.RouteNotFound: ("/nope",),
    errors.EnvironmentNotFound: ("e1",),
    errors.ExecutionNotFound: ("e1", 3),
    errors.ExecutionNotWaiting: ("e1", 3, "it is running"),
    errors.CheckpointNotFound: ("e1", "before"),
    errors.CheckpointConflict: ("e1", "a cell is running"),
    errors.MethodNotAllowed: ("PUT", {"POST", "GET"}),
    errors.EnvironmentExists: ("e1",),
    errors.EnvironmentNotRunning: ("e1", "stopped"),
    errors.PayloadTooLarge: (2048, 1024),
    errors.UnsupportedMediaType: ("text/plain", ("application/json",)),
    errors.InvalidParam: ("timeout", "must be positive"),
    errors.QuotaExceeded: ("max_envs", 64),
    errors.InternalError: (),
    errors.InvalidHeader: ("X-Request-Id", "expected 1 to 200 characters"),
    errors.NotReady: ({"state_dir": "ok", "pool": "starting (0 of 2 pooled kernels ready)"},),
    errors.KernelUnavailable: ("e1", "it did not start"),
    errors.KernelIncompatible: ("e1", "the kernel speaks wire protocol 1, this server 2"),
}


def make(cls):
    """An instance of ``cls``; a new class with another signature needs an ARGS entry."""
    return cls(*ARGS.get(cls, ("something went wrong",)))


def test_the_hierarchy_is_found():
    assert len(ALL) >= len(ARGS)
    assert set(ARGS) <= set(ALL)


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_to_dict_has_the_problem_members(cls):
    error = make(cls)
    body = error.to_dict()
    assert re.fullmatch(r"urn:wsgikernel:[a-z0-9]+(-[a-z0-9]+)*", body["type"]), body
    assert body["type"] == cls.type
    assert isinstance(body["title"], str) and body["title"] == cls.title
    assert isinstance(body["status"], int) and body["status"] == cls.status
    assert 400 <= body["status"] <= 599
    assert isinstance(body["detail"], str) and body["detail"]
    json.dumps(body, allow_nan=False)  # renderable as it is


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_status_line_and_message(cls):
    error = make(cls)
    assert error.status_line == "%d %s" % (cls.status, HTTPStatus(cls.status).phrase)
    assert str(error) == error.detail
    assert cls.__name__ in repr(error)


def test_types_are_unique_per_class():
    seen = {}
    for cls in ALL:
        seen.setdefault(cls.type, []).append(cls.__name__)
    shared = {urn: names for urn, names in seen.items() if len(names) > 1}
    assert not shared


def test_detail_defaults_to_the_title():
    assert errors.Conflict().detail == "Conflict"
    assert errors.Conflict().to_dict()["detail"] == "Conflict"


def test_extra_fields_follow_the_standard_members():
    body = errors.EnvironmentNotFound("e1").to_dict()
    assert list(body) == ["type", "title", "status", "detail", "env_id"]
    assert body["env_id"] == "e1"


@pytest.mark.parametrize("error, fields", [
    (errors.MissingParam("code"), {"param": "code"}),
    (errors.InvalidParam("timeout", "negative"), {"param": "timeout"}),
    (errors.RouteNotFound("/x"), {"path": "/x"}),
    (errors.ExecutionNotFound("e1", 3), {"env_id": "e1", "execution_count": 3}),
    (errors.EnvironmentExists("e1"), {"env_id": "e1"}),
    (errors.EnvironmentNotRunning("e1", "stopped"), {"env_id": "e1", "state": "stopped"}),
    (errors.PayloadTooLarge(2048, 1024), {"max_body": 1024}),
    (errors.UnsupportedMediaType("text/plain", ("application/json",)),
     {"supported": ["application/json"]}),
    (errors.QuotaExceeded("max_envs", 64), {"quota": "max_envs", "limit": 64}),
    (errors.KernelUnavailable("e1", "gone"), {"env_id": "e1"}),
], ids=lambda value: type(value).__name__ if isinstance(value, errors.HTTPError) else "")
def test_identifying_fields(error, fields):
    body = error.to_dict()
    for key, value in fields.items():
        assert body[key] == value


def test_method_not_allowed_has_a_sorted_allow_header():
    error = errors.MethodNotAllowed("PUT", {"POST", "GET", "OPTIONS"})
    assert error.headers == [("Allow", "GET, OPTIONS, POST")]
    assert error.to_dict()["allowed"] == ["GET", "OPTIONS", "POST"]


def test_quota_exceeded_has_retry_after():
    assert errors.QuotaExceeded("max_envs", 64).headers == [("Retry-After", "1")]
    assert errors.QuotaExceeded("max_queue", 100, retry_after=5).headers == [("Retry-After", "5")]


def test_unauthorized_has_www_authenticate_bearer():
    (name, value), = errors.Unauthorized("no token").headers
    assert name == "WWW-Authenticate"
    assert value.startswith("Bearer")


def test_kernel_unavailable_has_retry_after():
    assert dict(errors.KernelUnavailable("e1", "gone").headers)["Retry-After"].isdigit()


def test_internal_error_reveals_nothing():
    body = errors.InternalError().to_dict()
    assert body["status"] == 500
    assert body["type"] == "urn:wsgikernel:internal-error"
    assert set(body) == {"type", "title", "status", "detail"}
