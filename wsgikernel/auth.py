"""Who may call the API: the bearer token, and Host/Origin checks when there is none.

The service executes arbitrary code as its own user, so a request that reaches
a handler is as powerful as a shell.  With a token, every guarded route needs
``Authorization: Bearer <token>`` (or ``token <token>``, or ``?token=``),
compared in constant time before the body is read.  Without one (only when
asked for explicitly) the remaining defences are against the browser: a
``Host`` outside ``allowed_hosts`` is refused (DNS rebinding), and so is an
``Origin`` that is neither the server's own nor in ``allowed_origins`` (a
cross-site form POST).  ``allowed_origins`` also gets CORS headers.
"""

import hmac
import os
import secrets
from urllib.parse import parse_qsl

from .config import UNSET, flag
from .errors import Forbidden, Unauthorized
from .statedir import ensure_private_dir, write_private_file

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
TOKEN_FILE = "token"


def generate_token():
    return secrets.token_urlsafe(32)


def resolve_token(given, state_dir, environ=None):
    """The token in force: argument, else WSGIKERNEL_TOKEN, else the state dir's token file.

    ``given=None`` (or WSGIKERNEL_NO_AUTH=1 without a WSGIKERNEL_TOKEN) turns auth
    off; the file is created 0600 with a random token, so every worker process
    on one state dir shares it.
    """
    environ = os.environ if environ is None else environ
    if given is not UNSET:
        if given == "":
            raise ValueError("token must not be empty; pass token=None to turn auth off")
        return given
    if environ.get("WSGIKERNEL_TOKEN"):
        return environ["WSGIKERNEL_TOKEN"]
    if flag(environ.get("WSGIKERNEL_NO_AUTH", "")):
        return None
    ensure_private_dir(state_dir)
    path = os.path.join(state_dir, TOKEN_FILE)
    token = write_private_file(path, generate_token()).strip()
    if not token:  # never let an empty file mean "no auth"
        raise ValueError("the token file %s is empty: delete it to get a new token" % path)
    return token


def host_name(host):
    """'example.org:8080' -> 'example.org'; '[::1]:80' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def request_token(environ):
    """The token a request presents, or None."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and value.strip():
            return value.strip()
        return None
    query = environ.get("QUERY_STRING", "")
    if "token=" in query:
        return dict(parse_qsl(query)).get("token")
    return None


class Guard:
    """Checks one request; ``check()`` returns headers for the response or raises."""

    def __init__(self, token, allowed_hosts=(), allowed_origins=()):
        self.token = token.encode("utf-8") if token else None
        hosts = allowed_hosts or LOOPBACK_HOSTS
        self.any_host = "*" in hosts
        self.allowed_hosts = frozenset(host_name(h) for h in hosts)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    @property
    def enabled(self):
        return self.token is not None

    def check(self, environ):
        cors = self._origin_headers(environ)
        if self.token is not None:
            given = request_token(environ)
            if given is None:
                raise Unauthorized("this route needs the token: send "
                                   "'Authorization: Bearer <token>'")
            if not hmac.compare_digest(given.encode("utf-8"), self.token):
                raise Unauthorized("the token is not valid")
            return cors
        host = environ.get("HTTP_HOST")
        if host is not None and not self.any_host and host_name(host) not in self.allowed_hosts:
            raise Forbidden("the Host %r is not in allowed_hosts" % host, host=host)
        return cors

    def _origin_headers(self, environ):
        """CORS headers for an allowed foreign Origin; 403 for others when auth is off."""
        origin = environ.get("HTTP_ORIGIN")
        if not origin or origin.rstrip("/").lower() == own_origin(environ):
            return []
        if origin.rstrip("/").lower() in self.allowed_origins:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
                    ("Access-Control-Expose-Headers", "Location, Retry-After, Mcp-Session-Id")]
        if self.token is None:
            raise Forbidden("the Origin %r is not allowed (allowed_origins)" % origin,
                            origin=origin)
        return []

    def preflight_headers(self, environ, methods):
        origin = environ.get("HTTP_ORIGIN", "")
        if origin.rstrip("/").lower() not in self.allowed_origins:
            return []
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
                ("Access-Control-Allow-Methods", ", ".join(methods)),
                ("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, "
                 "Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID"),
                ("Access-Control-Max-Age", "600")]


def own_origin(environ):
    """scheme://host[:port] of this server as the browser addressed it."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "")
        port = environ.get("SERVER_PORT", "")
        if port and port != {"http": "80", "https": "443"}.get(scheme):
            host = "%s:%s" % (host, port)
    return ("%s://%s" % (scheme, host)).lower()
