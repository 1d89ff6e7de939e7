"""REST handlers: service info, environments, executions.

Each handler reads ``environ['params']``, calls the manager and returns data
(a dict, or a ``Response`` for other statuses and headers); none of them talks
WSGI or catches errors: the dispatcher does both.  Links honour SCRIPT_NAME so
the service can be mounted under a prefix.
"""

from . import __version__
from .dispatch import Response
from .openapi import build_document


def base_url(environ):
    """The mount point (SCRIPT_NAME) with no trailing slash."""
    return environ.get("SCRIPT_NAME", "").rstrip("/")


class Api:
    def __init__(self, app):
        self.app = app
        self.manager = app.manager
        self.config = app.config

    def service_info(self, environ):
        """Service name, version, environment count and links."""
        base = base_url(environ)
        return {"name": "wsgikernel", "version": __version__,
                "envs": self.manager.count(),
                "links": {"envs": base + "/envs", "openapi": base + "/openapi.json",
                          "health": base + "/healthz", "ui": base + "/ui"}}

    def health(self, environ):
        """Liveness: answers without auth and without touching any kernel."""
        return {"status": "ok"}

    def openapi_document(self, environ):
        """The OpenAPI 3.1 description of every route."""
        return build_document(self.app.routes, base_url(environ))
