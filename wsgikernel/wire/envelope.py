"""The envelope every message travels in, kept apart from its content.

    {"type": "execute", "id": 7, "body": {...}}            a request
    {"type": "reply", "parent": 7, "body": {...}}          its answer
    {"type": "error", "parent": 7, "body": {"code": ...}}  or its refusal
    {"type": "event", "parent": 7, "body": {"event": ...}} one of a stream's events

A request's ``id`` is chosen by the asker and unique on its connection; the
messages answering it name it as their ``parent``.  The kernel speaks first on
every connection: ``hello`` with its ``protocol`` version, which the asker
checks before it believes any answer (``check_hello``) -- an execute never
reaches a kernel of another version.  Inside one kernel, the supervisor and its
user-code process use the same envelope (``type`` is ``stream``, ``done``,
``execute``... and ``parent`` the execution a message belongs to).
"""

from .framing import ProtocolError

PROTOCOL_VERSION = 2

# Error codes a kernel answers with; control/link.py maps them to domain errors.
NOT_RUNNING = "not_running"
NOT_WAITING = "not_waiting"              # the execution does not wait for input
QUEUE_FULL = "queue_full"
UNKNOWN_EXECUTION = "unknown_execution"
UNKNOWN_TYPE = "unknown_type"
INTERNAL = "internal"
AUTH_FAILED = "auth_failed"
BUSY = "busy"                            # a cell runs or waits: not now
UNKNOWN_CHECKPOINT = "unknown_checkpoint"
CHECKPOINT_EXISTS = "checkpoint_exists"
CHECKPOINT_REFUSED = "checkpoint_refused"  # the process cannot be copied safely (detail)
NOTHING_TO_UNDO = "nothing_to_undo"


class Refused(Exception):
    """The kernel answered a request with an ``error``: ``code`` and the body's fields."""

    def __init__(self, body):
        self.body = body
        self.code = body.get("code")
        super().__init__("%s: %s" % (self.code, body.get("detail") or body))


class ProtocolMismatch(ProtocolError):
    """The kernel speaks another version of this protocol."""

    def __init__(self, theirs):
        self.theirs = theirs
        if theirs is None:
            super().__init__("the kernel does not speak wire protocol %s (it did not say "
                             "hello first)" % PROTOCOL_VERSION)
        else:
            super().__init__("the kernel speaks wire protocol %s, this server %s"
                             % (theirs, PROTOCOL_VERSION))


def message(type, body=None, id=None, parent=None):
    """An envelope; ``id`` and ``parent`` only when there is one."""
    envelope = {"type": type, "body": {} if body is None else body}
    if id is not None:
        envelope["id"] = id
    if parent is not None:
        envelope["parent"] = parent
    return envelope


def hello(**fields):
    return message("hello", dict(fields, protocol=PROTOCOL_VERSION))


def error(parent, code, **fields):
    return message("error", dict(fields, code=code), parent=parent)


def body_of(envelope):
    """The body of an envelope, checked to be one."""
    body = envelope.get("body")
    if not isinstance(envelope.get("type"), str) or not isinstance(body, dict):
        raise ProtocolError("not an envelope: %.200r" % (envelope,))
    return body


def check_hello(envelope):
    """The body of the kernel's ``hello``; ProtocolMismatch if its version is not ours."""
    if envelope.get("type") != "hello" or not isinstance(envelope.get("body"), dict):
        raise ProtocolMismatch(None)
    body = envelope["body"]
    if body.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolMismatch(body.get("protocol"))
    return body
