"""The Python client of a wsgikernel service: standard library only (``urllib``).

    from wsgikernel.client import Client
    kernel = Client()                       # WSGIKERNEL_URL, WSGIKERNEL_TOKEN
    kernel.create("demo")                   # idempotent (PUT)
    record = kernel.execute("demo", "x = 21\\nx * 2")
    record["result"]["text/plain"]          # '42'
    for event in kernel.stream("demo", "for i in range(3): print(i)"):
        ...                                 # {'event': 'output', 'name': 'stdout', ...}

Two kinds of failure, kept apart as the service keeps them apart:

- the service refused or failed (a problem+json answer, or no answer at all):
  ``ServiceError`` with ``status``, ``type``, ``title``, ``detail`` and the
  whole ``problem`` dict (``ServiceUnreachable`` when there was no answer);
- the user's code raised: that is data, the execution record with
  ``status: "error"``; ``execute(..., raise_on_error=True)`` turns it into a
  ``RemoteError`` whose ``str()`` is the remote traceback.

The token goes in the ``Authorization`` header only, never in a URL, and
redirects are not followed (a redirect could carry the header to another host).
"""

import json
import os
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode, urljoin, urlsplit

from . import __version__

DEFAULT_URL = "http://127.0.0.1:8080"
POLL_SECONDS = 20.0   # one long-poll; below gunicorn's default 30 s worker timeout
STREAM_IDLE = 60.0    # the service sends a heartbeat every 15 s of silence
UNFINISHED = ("queued", "running", "waiting_input")
NDJSON = "application/x-ndjson"
NO_TIMEOUT = object()  # a socket that waits as long as the service takes

__all__ = ["Client", "ServiceError", "ServiceUnreachable", "RemoteError"]


class ServiceError(Exception):
    """The service answered with an error (RFC 9457 problem) or not at all."""

    def __init__(self, status, problem):
        self.status = status
        self.problem = dict(problem)
        self.type = self.problem.get("type", "about:blank")
        self.title = self.problem.get("title", "")
        self.detail = self.problem.get("detail") or self.title
        prefix = "" if status is None else "%d " % status
        super().__init__("%s%s: %s" % (prefix, self.title, self.detail))


class ServiceUnreachable(ServiceError):
    """No HTTP answer: connection refused, DNS failure, timeout."""

    def __init__(self, url, reason):
        super().__init__(None, {"type": "urn:wsgikernel:client:unreachable",
                                "title": "Service unreachable",
                                "detail": "%s: %s" % (url, reason)})


class RemoteError(Exception):
    """The user's code raised; ``record`` is the execution record, str() the traceback."""

    def __init__(self, record):
        self.record = record
        error = record.get("error") or {}
        self.ename = error.get("ename")
        self.evalue = error.get("evalue")
        self.traceback = list(error.get("traceback") or ())
        text = "\n".join(self.traceback) or "%s: %s" % (self.ename, self.evalue)
        super().__init__(text)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # urllib then raises the 3xx as an HTTPError


class Client:
    """One service: ``url`` (default $WSGIKERNEL_URL or http://127.0.0.1:8080) and token.

    ``timeout`` bounds each wait for bytes from the server; calls that wait on
    purpose (execute, result) add their own wait to it.
    """

    def __init__(self, url=None, token=None, timeout=60.0):
        url = url or os.environ.get("WSGIKERNEL_URL") or DEFAULT_URL
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/") + "/"
        self.token = token if token is not None else os.environ.get("WSGIKERNEL_TOKEN")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self):
        return "Client(%r)" % self.url  # never the token

    # -- HTTP ------------------------------------------------------------------

    def _url(self, path, query=None):
        """``path`` is relative to the service URL (a leading '/' too), or a full URL."""
        url = path if "://" in path else urljoin(self.url, path.lstrip("/"))
        if query:
            query = {k: _query_value(v) for k, v in query.items() if v is not None}
            if query:
                url += "?" + urlencode(query)
        return url

    def _open(self, method, url, body=None, timeout=None, accept="application/json"):
        headers = {"Accept": accept, "User-Agent": "wsgikernel-client/" + __version__}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        if timeout is None:
            timeout = self.timeout
        elif timeout is NO_TIMEOUT:
            timeout = None
        try:
            return self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            with err:
                raise _service_error(err.code, err.headers, err.read()) from None
        except urllib.error.URLError as err:
            raise ServiceUnreachable(url, err.reason) from None
        except OSError as err:  # a timeout or reset before the status line
            raise ServiceUnreachable(url, err) from None

    def request(self, method, path, body=None, query=None, timeout=None):
        """(status, headers, parsed JSON body or None) of one call; errors raise ServiceError."""
        url = self._url(path, query)
        with self._open(method, url, body, timeout) as response:
            try:
                raw = response.read()
            except OSError as err:
                raise ServiceUnreachable(url, err) from None
            status, headers = response.status, response.headers
        try:
            return status, headers, (json.loads(raw) if raw else None)
        except ValueError:
            raise ServiceError(status, {"title": "Not a wsgikernel answer", "detail": "%s "
                                        "answered something that is not JSON: %r"
                                        % (url, raw[:80])}) from None

    def _call(self, method, path, body=None, query=None, timeout=None):
        return self.request(method, path, body, query, timeout)[2]

    # -- environments ------------------------------------------------------------

    def info(self):
        """Service name, version, env count and links."""
        return self._call("GET", "/")

    def envs(self):
        """Every environment (a list of env dicts)."""
        return self._call("GET", "/envs")["envs"]

    def create(self, id=None, **options):
        """Create an env; with an id it is idempotent (PUT: the existing env if present).
        ``options``: limits (``memory_limit=...``), ``sandbox``, ``sandbox_network``."""
        if id is None:
            return self._call("POST", "/envs", options)
        return self._call("PUT", _env(id), options)

    def get(self, id):
        return self._call("GET", _env(id))

    def delete(self, id):
        """Stop the kernel and remove the env with its directory."""
        self._call("DELETE", _env(id))

    def restart(self, id):
        """A fresh namespace under the same id (session + 1)."""
        return self._call("POST", _env(id, "restart"))

    def interrupt(self, id):
        """KeyboardInterrupt in the running cell; the namespace survives."""
        return self._call("POST", _env(id, "interrupt"))

    # -- executions ----------------------------------------------------------------

    def execute(self, id, code, raise_on_error=False, input=None, **opts):
        """Run ``code`` and return its record once it has finished, however long it runs.

        ``opts``: silent, store_history, user_expressions, stdin, timeout.  A 202
        (not done within one poll) is followed by long-polling its Location.
        ``raise_on_error=True`` raises RemoteError for a record that is not ok.
        ``input(prompt, password)`` answers the cell's ``input()`` (None: end of input); with
        ``allow_stdin=True`` alone, a ``waiting_input`` record is returned to ``answer()``."""
        if input is not None:
            opts["allow_stdin"] = True
        if opts.get("silent"):  # synchronous on the service side: no wait, no 202
            timeout = NO_TIMEOUT if opts.get("timeout") is None else opts["timeout"] + self.timeout
            record = self._call("POST", _env(id, "execute"), dict(opts, code=code),
                                timeout=timeout)
        else:
            wait = opts.pop("wait", None)
            wait = POLL_SECONDS if wait is None else wait
            status, headers, record = self.request(
                "POST", _env(id, "execute"), dict(opts, code=code, wait=wait),
                timeout=wait + self.timeout)
            if status == 202:
                record = self._follow(headers.get("Location"), id, record, input)
        if raise_on_error and record.get("status") != "ok":
            raise RemoteError(record)
        return record

    def submit(self, id, code, **opts):
        """Queue ``code`` and return at once with the record so far (usually ``queued``)."""
        return self._call("POST", _env(id, "execute"), dict(opts, code=code, wait=0))

    def result(self, id, n, wait=None, input=None):
        """The record of execution ``n``: wait=None waits for the end (``input`` answers
        what it asks, as in ``execute``), else up to ``wait`` s."""
        if wait is not None:
            return self._call("GET", _env(id, "executions", n), query={"wait": wait},
                              timeout=wait + self.timeout)
        return self._follow(None, id, {"execution_count": n, "status": "queued"}, input)

    def _follow(self, location, id, record, ask=None):
        """Long-poll until the execution has finished (or waits for input and ``ask``,
        which would answer it, is None)."""
        path = _env(id, "executions", record["execution_count"])
        if location:
            url = urljoin(self.url, location)
            if urlsplit(url)[:2] == urlsplit(self.url)[:2]:  # the token stays on this origin
                path = url
        while record.get("status") in UNFINISHED:
            if record["status"] == "waiting_input":
                if ask is None:
                    return record
                self._answer(id, record, ask)
            record = self._call("GET", path, query={"wait": POLL_SECONDS},
                                timeout=POLL_SECONDS + self.timeout)
        return record

    def stream(self, id, code, heartbeats=False, input=None, **opts):
        """Run ``code`` and yield its events as the service sends them.

        ``accepted`` first, then ``output`` events (an nbformat output plus
        ``"event": "output"``), ``record`` (the finished record) last;
        ``heartbeat`` events only with ``heartbeats=True``.  Closing the
        generator early leaves the execution running on the service.
        ``input_request`` events (``prompt``, ``password``) come with ``allow_stdin=True``
        for ``answer()``, or ``input(prompt, password)`` answers each before it is yielded.
        """
        if input is not None:
            opts["allow_stdin"] = True
        response = self._open("POST", self._url(_env(id, "execute")),
                              dict(opts, code=code, stream=True),
                              timeout=max(self.timeout, STREAM_IDLE), accept=NDJSON)
        events = self._events(response, heartbeats)
        return events if input is None else self._answering(id, events, input)

    def _answering(self, id, events, ask):
        for event in events:
            if event.get("event") == "input_request":
                self._answer(id, event, ask)
            yield event

    def answer(self, id, n, value):
        """The line execution ``n`` waits for (None: end of input); its record; 409 if none."""
        path = _env(id, "executions", n, "eof" if value is None else "input")
        return self._call("POST", path, None if value is None else {"value": str(value)})

    def _answer(self, id, asking, ask):
        """Send ``ask``'s answer to ``asking`` (a record or an input_request event); 409: late."""
        request = asking.get("input_request") or asking
        try:
            self.answer(id, asking["execution_count"], ask(request.get("prompt", ""),
                                                           bool(request.get("password"))))
        except ServiceError as error:
            if error.status != 409:
                raise

    def attach(self, id, n, heartbeats=False):
        """Follow execution ``n``: its outputs so far, then live, then its record."""
        response = self._open("GET", self._url(_env(id, "executions", n), {"stream": True}),
                              timeout=max(self.timeout, STREAM_IDLE), accept=NDJSON)
        return self._events(response, heartbeats)

    @staticmethod
    def _events(response, heartbeats):
        with response:
            while True:
                try:
                    line = response.readline()  # as each line arrives, not buffered
                except OSError as err:
                    raise ServiceUnreachable(response.url, err) from None
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("event") == "heartbeat" and not heartbeats:
                    continue
                yield event

    def cancel(self, id, n):
        """Drop execution ``n`` if queued, interrupt it if running; its record."""
        return self._call("POST", _env(id, "executions", n, "cancel"))

    def executions(self, id, since=0, limit=100):
        """One page: ``{"executions": [record, ...], "next": n or None}``, oldest first."""
        return self._call("GET", _env(id, "executions"), query={"since": since, "limit": limit})

    def history(self, id):
        """Every execution record of the env, oldest first (follows ``next``)."""
        records, since = [], 0
        while since is not None:
            page = self.executions(id, since=since)
            records.extend(page["executions"])
            following = page.get("next")
            since = following if following is not None and following > since else None
        return records

    def notebook(self, id):
        """The history as an nbformat v4 notebook (a dict; json.dump it to a .ipynb)."""
        return self._call("GET", _env(id, "notebook"))

    # -- checkpoints and forks ----------------------------------------------------------

    def checkpoint(self, id, name=None, force=False):
        """Keep the namespace as the last cell left it (a parked copy); its description."""
        return self._call("POST", _env(id, "checkpoints"), _drop_none(name=name, force=force))

    def checkpoints(self, id):
        """[{"name", "execution_count", "session", "created", "auto", "memory"}, ...]."""
        return self._call("GET", _env(id, "checkpoints"))["checkpoints"]

    def drop_checkpoint(self, id, name):
        self._call("DELETE", _env(id, "checkpoints", name))

    def restore(self, id, name):
        """The checkpoint's namespace again (session + 1); the env, with ``restored``."""
        return self._call("POST", _env(id, "checkpoints", name, "restore"))

    def undo(self, id):
        """The state before the last cell (the server's auto_checkpoints); the env."""
        return self._call("POST", _env(id, "undo"))

    def fork(self, id, new_id=None, force=False):
        """A new env with a copy of ``id``'s namespace; the new env."""
        return self._call("POST", _env(id, "fork"), _drop_none(id=new_id, force=force))

    # -- introspection ----------------------------------------------------------------

    def complete(self, id, code, cursor_pos=None):
        return self._call("POST", _env(id, "complete"),
                          _drop_none(code=code, cursor_pos=cursor_pos))

    def inspect(self, id, code, cursor_pos=None, detail_level=0):
        return self._call("POST", _env(id, "inspect"), _drop_none(
            code=code, cursor_pos=cursor_pos, detail_level=detail_level))

    def is_complete(self, id, code):
        return self._call("POST", _env(id, "is_complete"), {"code": code})

    def variables(self, id, all=False):
        """[{"name", "type", "repr", "len"?}, ...]; ``all`` shows _names and modules too."""
        return self._call("GET", _env(id, "variables"), query={"all": all})["variables"]


def _env(id, *rest):
    """'envs/<id>/<rest...>', each segment percent-encoded (relative to the service URL)."""
    return "/".join(["envs", quote(str(id), safe="")] + [quote(str(p), safe="") for p in rest])


def _query_value(value):
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def _drop_none(**fields):
    return {k: v for k, v in fields.items() if v is not None}


def _service_error(status, headers, raw):
    """A ServiceError from an error answer, problem+json or not."""
    try:
        problem = json.loads(raw) if raw else {}
    except ValueError:
        problem = {}
    problem = problem if isinstance(problem, dict) else {}
    if "title" not in problem:
        from http import HTTPStatus
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "HTTP %d" % status
        problem = dict(problem, title=title,
                       detail=problem.get("detail") or raw[:200].decode("utf-8", "replace")
                       or title)
    problem.setdefault("status", status)
    return ServiceError(status, problem)
