"""MCP sessions and the tool calls in flight, as files in the state directory.

Any web worker (gunicorn, uWSGI) may answer any request of a session, so what a
session is lives in ``<state_dir>/mcp/<session id>/``: ``session.json`` (the
negotiated protocol version, the client's name, when it began) and one
``call-<request id>.json`` per ``execute_python`` running ({env, execution_count}),
which is how a ``notifications/cancelled`` that reaches another worker finds the
execution to cancel.  A session's directory is touched on every request; sessions
idle for ``IDLE_FOR`` are removed when a new one begins, so the count stays bounded.

Session ids are 32 random URL-safe characters (``secrets``): visible ASCII, as the
transport requires, and unguessable.  Risk: a request id is the client's choice; it
is hashed into the file name, never used as a path.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import time

from ..store import read_json, utcnow, write_json_atomic

IDLE_FOR = 24 * 3600.0   # seconds without a request before a session may be removed
_ID = re.compile(r"[A-Za-z0-9_-]{20,64}")


class Sessions:
    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, "mcp")

    def _dir(self, session_id):
        if not isinstance(session_id, str) or not _ID.fullmatch(session_id):
            return None
        return os.path.join(self.root, session_id)

    def begin(self, version, client):
        """A new session: its id."""
        self._prune()
        session_id = secrets.token_urlsafe(24)
        path = os.path.join(self.root, session_id)
        os.makedirs(path, mode=0o700)
        write_json_atomic(os.path.join(path, "session.json"), {
            "protocol": version, "client": client, "created": utcnow()})
        return session_id

    def find(self, session_id):
        """session.json of a live session (touched: it is in use), or None."""
        path = self._dir(session_id)
        if path is None:
            return None
        found = read_json(os.path.join(path, "session.json"))
        if found is not None:
            try:
                os.utime(path)
            except OSError:
                pass
        return found

    def end(self, session_id):
        """Remove a session; False if there was none."""
        path = self._dir(session_id)
        if path is None or not os.path.isdir(path):
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True

    def _prune(self):
        now = time.time()
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            return
        for name in names:
            path = os.path.join(self.root, name)
            try:
                if now - os.stat(path).st_mtime > IDLE_FOR:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                continue

    # -- tool calls in flight ----------------------------------------------------------

    def _call_file(self, session_id, request_id):
        path = self._dir(session_id)
        if path is None:
            return None
        digest = hashlib.sha256(json.dumps(request_id).encode()).hexdigest()[:32]
        return os.path.join(path, "call-%s.json" % digest)

    def running(self, session_id, request_id, env_id, n):
        """Request ``request_id`` of the session runs execution ``n`` of ``env_id``."""
        path = self._call_file(session_id, request_id)
        if path is not None and os.path.isdir(os.path.dirname(path)):
            write_json_atomic(path, {"env": env_id, "execution_count": n})

    def finished(self, session_id, request_id):
        path = self._call_file(session_id, request_id)
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass

    def call(self, session_id, request_id):
        """{env, execution_count} of a request in flight, or None."""
        path = self._call_file(session_id, request_id)
        return None if path is None else read_json(path)
