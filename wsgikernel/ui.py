"""The browser console at /ui: static files shipped as package data (wsgikernel/static/).

Served without auth (they hold no secret; the page asks for the token and
keeps it in sessionStorage).  Only files that exist in the static directory
and have a known type are served.
"""

import mimetypes
import os

from .dispatch import Response
from .errors import NotFound

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")


class UiApi:
    def __init__(self, app):
        self.app = app

    def ui_page(self, environ):
        """The browser console page."""
        return static_file("index.html")

    def ui_file(self, environ):
        """A static file of the browser console."""
        return static_file(environ["params"]["name"])


def static_file(name):
    path = os.path.join(STATIC_DIR, name)
    if name.startswith(".") or os.sep in name or not os.path.isfile(path):
        raise NotFound("no such file in the console: %s" % name)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type.endswith("javascript"):
        content_type += "; charset=utf-8"
    with open(path, "rb") as handle:
        body = handle.read()
    return Response(body, content_type=content_type, headers=[
        ("Content-Security-Policy", PAGE_POLICY), ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-cache")])
