"""The request id: accepted from ``X-Request-Id`` (validated) or generated, per request.

The HTTP layer sets it for the request being served (``current``, a context variable:
one per thread of a threaded server); the control layer sends it with every call to
a kernel (control/link.py), which writes it into the log lines that call causes, so
one id ties the access log, the kernel's log and the client's report together.
``event`` logs a kernel lifecycle event with the id of the request that caused it.
"""

import contextvars
import logging
import re
import secrets

HEADER = "X-Request-Id"
# What proxies and tracing systems send (UUIDs, AWS's Root=1-...;Parent=..., W3C-like
# ids): visible ASCII without quotes, backslashes or spaces, which log lines and
# headers carry unescaped.  Anything else is a 400, not silently replaced.
RULE = re.compile(r"[A-Za-z0-9._:;=+/@-]{1,200}")
RULE_TEXT = "1 to 200 characters of A-Z, a-z, 0-9 and . _ : ; = + / @ -"

current = contextvars.ContextVar("wsgikernel_request_id", default=None)


def generate():
    return secrets.token_hex(8)


def valid(value):
    return RULE.fullmatch(value) is not None


def event(name, **fields):
    """A kernel lifecycle event (kernel_started, kernel_stopped, kernel_died) as its own
    line of the ``wsgikernel.events`` log (JSON with log_format json; INFO, so silent
    unless the host's logging shows INFO)."""
    fields.setdefault("request_id", current.get())
    logging.getLogger("wsgikernel.events").info(name, extra={"fields": fields})
