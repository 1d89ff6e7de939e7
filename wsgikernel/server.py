"""The standalone server: a threaded wsgiref server, its command line, signals.

``main(argv)`` is what ``scripts/serve.py`` and ``python -m wsgikernel serve``
run.  It binds to 127.0.0.1 by default, refuses ``--no-auth`` on any other
address (an unauthenticated code-execution port on a network is never what
anyone wants), prints where it listens and how to authenticate, and on SIGINT
or SIGTERM stops accepting, gives in-flight requests a short drain, stops every
kernel of its state dir (their envs stay listed as ``stopped``) and exits 0.

The server class is ``httpserver.HTTP11Server``: wsgiref's ``WSGIServer``
speaking HTTP/1.1 (keep-alive, chunked streams) with a growing pool of
pre-started threads, so one long execution, stream or long-poll never makes
another request wait (a plain ``WSGIServer`` answers one request at a time).
"""

import argparse
import errno
import ipaddress
import os
import re
import signal
import sys
import threading
import time
from wsgiref.simple_server import make_server

from . import __version__
from .config import SETTINGS
from .httpserver import HTTP11RequestHandler, HTTP11Server, HTTP11ServerV6
from .statedir import UnsafeDirectory
from .telemetry import UNMATCHED, access_log

DRAIN_SECONDS = 3.0    # in-flight requests get this long after a stop signal
_TOKEN_IN_QUERY = re.compile(r"(?<=[?&])token=[^&\s]*")


class RequestHandler(HTTP11RequestHandler):
    """The HTTP/1.1 handler with a common-log-format access log, ``?token=`` redacted;
    with ``json_log`` the app writes each request's line (telemetry.py) and this
    handler only those of requests refused before the app saw them."""

    quiet = False
    json_log = False
    refused = False  # the request was answered by send_problem, without the app

    def log_message(self, format, *args):
        if self.quiet:
            return
        message = _TOKEN_IN_QUERY.sub("token=REDACTED", format % args)
        if self.json_log:
            access_log.warning("server", extra={"fields": {
                "message": message, "remote_addr": self.address_string()}})
            return
        sys.stderr.write('%s - - [%s] %s\n' % (
            self.address_string(), time.strftime("%d/%b/%Y:%H:%M:%S %z"), message))

    def send_problem(self, exc):
        self.refused = True
        super().send_problem(exc)

    def log_request(self, code="-", size="-"):
        if not self.json_log:
            self.log_message('"%s" %s %s', self.requestline, code, size)
        elif self.refused and not self.quiet:
            self.refused = False
            access_log.info("request", extra={"fields": {
                "request_id": None, "method": None, "route": UNMATCHED, "status": code,
                "bytes": size, "remote_addr": self.address_string()}})

    def address_string(self):
        return self.client_address[0]


def is_loopback(host):
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_parser(prog="wsgikernel serve"):
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve wsgikernel: Python environments over HTTP + JSON.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; anything else exposes "
                             "code execution to that network)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    parser.add_argument("--token", help="the API token (visible in ps; prefer --token-file "
                                        "or WSGIKERNEL_TOKEN)")
    parser.add_argument("--token-file", help="read the API token from this file")
    parser.add_argument("--no-auth", action="store_true",
                        help="no token at all (refused unless --host is a loopback address)")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    for setting in SETTINGS:
        parser.add_argument(setting.flag, dest=setting.key, default=None,  # argparse: %% is %
                            help="%s [%s]" % (setting.help.replace("%", "%%"), setting.env_var))
    parser.add_argument("--version", action="version", version="wsgikernel " + __version__)
    return parser


def config_from_args(args):
    """The make_app() keywords the command line asked for (the rest come from env vars)."""
    config = {s.key: getattr(args, s.key) for s in SETTINGS if getattr(args, s.key) is not None}
    if args.no_auth:
        config["token"] = None
    elif args.token_file:
        with open(args.token_file) as handle:
            config["token"] = handle.read().strip()
    elif args.token:
        config["token"] = args.token
    if "allowed_hosts" not in config and not os.environ.get("WSGIKERNEL_ALLOWED_HOSTS"):
        config["allowed_hosts"] = ",".join(("localhost", "127.0.0.1", "::1", args.host))
    return config


def banner(url, token):
    lines = ["wsgikernel serving on %s" % url]
    if token:
        lines += ["export WSGIKERNEL_TOKEN=%s" % token,
                  "curl -H \"Authorization: Bearer $WSGIKERNEL_TOKEN\" %senvs" % url,
                  "browser console: %sui?token=%s" % (url, token)]
    else:
        lines += ["auth is OFF (--no-auth): anyone who can reach this port can run code",
                  "curl %senvs" % url, "browser console: %sui" % url]
    return "\n".join(lines)


class CannotListen(Exception):
    """The address cannot be bound (in use, not ours, not an address): one clear line."""

    def __init__(self, host, port, exc):
        why = exc.strerror or str(exc)
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = " (another server is running there: stop it or pick another --port)"
        super().__init__("cannot listen on %s port %d: %s%s" % (host, port, why.lower(), hint))


def serve(app, host, port, *, quiet=False, ready=None):
    """Run ``app`` until SIGINT/SIGTERM; drain, close the app, return 0."""
    json_log = getattr(getattr(app, "config", None), "log_format", None) == "json"
    if quiet and json_log:
        app.telemetry.json_log = False  # --quiet: no access log, in either format
    handler = type("Handler", (RequestHandler,), {"quiet": quiet, "json_log": json_log})
    server_class = HTTP11ServerV6 if ":" in host else HTTP11Server
    try:
        server = make_server(host, port, app, server_class=server_class, handler_class=handler)
    except OSError as exc:
        raise CannotListen(host, port, exc) from None
    shown_host = "[%s]" % host if ":" in host else host
    url = "http://%s:%d/" % (shown_host, server.server_port)

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    # Handlers before the banner: whoever reads the banner may signal us at once.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(banner(url, getattr(app, "token", None)), flush=True)
    warm = getattr(app, "warm", None)
    if warm is not None:
        warm()  # pre-start pooled kernels now rather than on the first request
    if ready is not None:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.2)
        server.wait_idle(DRAIN_SECONDS)
    finally:
        server.server_close()
        # A second Ctrl-C while kernels stop must not leave them orphaned: stopping
        # is bounded by kill_grace, so the signals are simply ignored until it is done.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            close = getattr(app, "close", None)
            if close is not None:
                close()
        finally:
            for sig, handler_before in previous.items():
                signal.signal(sig, handler_before)
    return 0


def main(argv=None, prog="wsgikernel serve"):
    args = build_parser(prog).parse_args(argv)
    if args.no_auth and not is_loopback(args.host):
        print("refusing --no-auth on %s: that would let anyone who can reach the port run "
              "code as this user. Bind to 127.0.0.1 or keep the token." % args.host,
              file=sys.stderr)
        return 2
    from .app import make_app
    try:
        app = make_app(**config_from_args(args))
    except (ValueError, OSError, UnsafeDirectory) as exc:
        print("wsgikernel: %s" % exc, file=sys.stderr)
        return 2
    try:
        return serve(app, args.host, args.port, quiet=args.quiet)
    except CannotListen as exc:
        # No app.close(): that stops every kernel of the state dir, and the server
        # already on this port may well be serving them.
        print("wsgikernel: %s" % exc, file=sys.stderr)
        return 2
