"""What each request leaves behind: its id, its counts for /metrics, its log line.

``Telemetry.wrap`` is the outermost layer of the application (app.py): it takes
``X-Request-Id`` (validated by the dispatcher: a bad one is a 400) or makes one,
echoes it on the response and sets it for the control layer (requestid.py), and
when the answer is over -- a list body at once, a stream when the server closes
it, so a stream's duration is its whole life -- counts the request by route
template, method and status, observes its duration, and with ``log_format = json``
writes one JSON line: time, request id, method, route, status, duration, bytes,
env, execution_count, remote address.  Paths are never logged, only templates,
and nothing of the query string: ``?token=`` cannot reach a log.

``configure_logging`` makes the ``wsgikernel`` loggers (requests, the kernel
lifecycle events of requestid.event, unexpected errors) write JSON lines to stderr; with the plain
format logging is left as the host configured it (serve.py's access log, or the
WSGI server's).
"""

import json
import logging
import sys
import time

from . import requestid
from .metrics.exposition import observe

UNMATCHED = "unmatched"  # the route label of a request no route answered (404, OPTIONS)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
REQUESTS = "wsgikernel_http_requests_total"
DURATION = "wsgikernel_http_request_duration_seconds"

access_log = logging.getLogger("wsgikernel.access")


class Telemetry:
    def __init__(self, counts, log_format, metrics=True):
        self.counts = counts if metrics else None  # metrics = false: nothing counted
        self.json_log = log_format == "json"

    def wrap(self, app, environ, start_response):
        started = time.perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID")
        if given is not None and requestid.valid(given):
            rid = given
        else:
            rid = requestid.generate()
            if given is not None:  # the dispatcher answers 400 (in its one error funnel)
                environ["wsgikernel.bad_request_id"] = given
        environ["wsgikernel.request_id"] = rid
        statuses = []

        def start(status, headers, exc_info=None):
            headers.append((requestid.HEADER, rid))
            statuses[:] = [status]
            return start_response(status, headers, exc_info)

        token = requestid.current.set(rid)
        try:
            body = app(environ, start)
        finally:
            requestid.current.reset(token)
        if isinstance(body, list):
            self.done(environ, statuses, started, sum(map(len, body)))
            return body
        return Tracked(body, lambda sent: self.done(environ, statuses, started, sent))

    def done(self, environ, statuses, started, sent):
        try:
            self.record(environ, statuses, started, sent)
        except Exception:  # counting or logging must never fail the request it describes
            logging.getLogger("wsgikernel").exception("could not count a request")

    def record(self, environ, statuses, started, sent):
        duration = time.perf_counter() - started
        status = statuses[0][:3] if statuses else "500"
        route = environ.get("wsgikernel.route")
        template = route.pattern if route is not None else UNMATCHED
        method = environ.get("REQUEST_METHOD", "").upper()
        method = method if method in METHODS else "other"
        if self.counts is not None:
            labels = (("route", template),)
            pairs = [((REQUESTS, labels + (("method", method), ("status", status))), 1.0)]
            observe(lambda key, amount: pairs.append((key, amount)), DURATION, labels, duration)
            self.counts.add_all(pairs)
        if self.json_log:
            args = environ.get("wsgikernel.path_args") or {}
            access_log.info("request", extra={"fields": {
                "request_id": environ["wsgikernel.request_id"], "method": method,
                "route": template, "status": int(status), "duration": round(duration, 6),
                "bytes": sent, "env": args.get("id"),
                "execution_count": environ.get("wsgikernel.execution_count") or (
                    int(args["n"]) if str(args.get("n", "")).isdigit() else None),
                "remote_addr": environ.get("REMOTE_ADDR")}})


class Tracked:
    """A streamed body that reports its bytes when the server closes it (PEP 3333)."""

    def __init__(self, body, on_close):
        self.body, self.on_close, self.sent = body, on_close, 0

    def __iter__(self):
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            on_close, self.on_close = self.on_close, None
            if on_close is not None:
                on_close(self.sent)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event (the message), the
    record's ``fields``, and the traceback of an error as text."""

    def format(self, record):
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + ".%03dZ" % record.msecs, "level": record.levelname.lower(),
                "logger": record.name, "event": record.getMessage()}
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True, default=str)


def configure_logging(log_format):
    """JSON lines on stderr for the ``wsgikernel`` loggers (log_format json); once."""
    logger = logging.getLogger("wsgikernel")
    if log_format != "json" or getattr(logger, "wsgikernel_json", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.wsgikernel_json = True

