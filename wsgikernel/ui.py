"""The browser console at /ui: static files shipped as package data (wsgikernel/static/).

Served without auth (they hold no secret; the page asks for the token and
keeps it in sessionStorage).  Only plain files that exist in the static
directory, have a name of safe characters and a known type are served; the
name is one path segment (the route's ``{name}`` never matches a ``/``), and a
name starting with a dot, a NUL or a backslash never reaches the file system.

Two Content-Security-Policies:

* ``PAGE_POLICY`` for the page and its own files: scripts and styles only from
  this server, no inline code, fetches only to this server, frames only from
  this server, images from this server or ``data:`` URLs (kernel images).  The
  page itself also allows ``<style>`` elements with a nonce made for that
  response (``page_policy``): the code editor's theme is one.  Scripts have no
  nonce, so the only code that can read it is the page's own.
* ``FRAME_POLICY`` for ``frame.html``, the document each ``text/html`` output
  is rendered in.  The page loads it in ``<iframe sandbox="allow-scripts">``
  (no ``allow-same-origin``) and the policy repeats that sandbox, so even when
  opened on its own it runs in an opaque origin: it can never read the page,
  its storage or its token.  Inside, inline scripts and styles are allowed
  (pandas tables and plotting libraries need them), as are scripts, styles,
  fonts and images from https: (libraries loaded from a CDN, when there is a
  network); it may not fetch anything, and only this server may frame it.
"""

import os
import re
import secrets

from .dispatch import Response
from .errors import NotFound

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
PAGE = "index.html"  # served at /ui only: its relative links assume that address
FRAME = "frame.html"



def page_policy(style_nonce=None):
    """The page's policy; the page itself also allows <style> elements carrying its
    response's nonce (CodeMirror mounts its theme in one: editor.js reads the nonce from
    the page's <meta name="style-nonce"> and gives it to CodeMirror)."""
    styles = "'self'" + (" 'nonce-%s'" % style_nonce if style_nonce else "")
    return ("default-src 'none'; script-src 'self'; style-src %s; img-src 'self' data:; "
            "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'" % styles)


PAGE_POLICY = page_policy()
FRAME_POLICY = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval' https:; "
                "style-src 'unsafe-inline' https:; img-src data: blob: https:; "
                "font-src data: https:; media-src data: blob:; connect-src 'none'; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
                "sandbox allow-scripts")

# Our own table, not ``mimetypes`` (whose answers depend on the machine's /etc/mime.types).
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",  # the vendored libraries' licenses
}
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


class UiApi:
    def __init__(self, app):
        self.app = app

    def ui_page(self, environ):
        """The browser console page, with a style nonce of its own."""
        nonce = secrets.token_urlsafe(18)
        response = static_file(PAGE, page_policy(nonce))
        response.body = response.body.replace(
            b'<meta name="style-nonce" content="">',
            b'<meta name="style-nonce" content="%s">' % nonce.encode("ascii"), 1)
        return response

    def ui_file(self, environ):
        """A static file of the browser console."""
        name = environ["params"]["name"]
        if name == PAGE:
            raise NotFound("the console page is at /ui")
        return static_file(name)


def static_file(name, policy=None):
    """A Response with the file's bytes, its type and its policy; else NotFound."""
    content_type = TYPES.get(os.path.splitext(name)[1].lower()) if _NAME.fullmatch(name) else None
    path = os.path.join(STATIC_DIR, name)
    if content_type is None or not os.path.isfile(path) or os.path.islink(path):
        raise NotFound("no such file in the console: %s" % name[:100])
    with open(path, "rb") as handle:
        body = handle.read()
    policy = policy or (FRAME_POLICY if name == FRAME else PAGE_POLICY)
    headers = [("Content-Security-Policy", policy),
               ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
               ("Cache-Control", "no-cache")]
    if name == PAGE:
        headers.append(("Cross-Origin-Opener-Policy", "same-origin"))
    return Response(body, content_type=content_type, headers=headers)
