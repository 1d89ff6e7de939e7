"""The original tutorial's API, kept working: /env/create, /env/delete, /env/get, POST /.

Same routes, same form (or query) fields ``id`` and ``code``, same 200 answers
with ``error`` keys — no problem+json here, because the original clients read
these bodies.  Two deliberate differences (docs/compat.md): code runs as one
cell (the original split it on the two characters backslash-n, which broke
string literals and multi-line statements, and went on after an error), and
each environment is a separate kernel process rather than a dict in the server.
``POST /`` waits for the cell however long it runs, as the original did.
"""

from .control.envid import env_id
from .control.errors import EnvironmentNotFound, EnvironmentNotRunning
from .params import text


class CompatApi:
    def __init__(self, app):
        self.manager = app.manager

    def _id(self, environ):
        value = environ["params"].get("id")
        if value is None:
            raise _Answer({"error": "Missing parameter: id"})
        try:
            return env_id(str(value))
        except ValueError as exc:
            raise _Answer({"error": str(exc)}) from None

    def compat_create(self, environ):
        """Original API: create the environment if absent; the ids of all."""
        try:
            env, _ = self.manager.create(self._id(environ), exist_ok=True)
        except _Answer as answer:
            return answer.body
        if env["state"] in ("dead", "stopped"):
            # The original had no restart: "create" is how its users get a kernel back.
            self.manager.restart(env["id"])
        return {"envs": self.manager.ids()}

    def compat_delete(self, environ):
        """Original API: delete the environment if present; the ids left."""
        try:
            self.manager.delete(self._id(environ))
        except _Answer as answer:
            return answer.body
        except EnvironmentNotFound:
            pass
        return {"envs": self.manager.ids()}

    def compat_get(self, environ):
        """Original API: the names defined in an environment (no __dunder__ names)."""
        try:
            env = self._id(environ)
            code = ("sorted(k for k in globals() if not (k.startswith('__') and k.endswith('__'))"
                    " and k not in ('_', '__', '___'))")  # the shell's result names
            record = self._execute(env, {"code": "", "silent": True,
                                         "user_expressions": {"names": code}})
        except _Answer as answer:
            return answer.body
        except EnvironmentNotFound:
            return {"error": "Environment does not exist!"}
        names = record["user_expressions"].get("names", {})
        import ast
        return {"env": ast.literal_eval(names["data"]["text/plain"])
                if names.get("status") == "ok" else []}

    def compat_execute(self, environ):
        """Original API: run code; {"message": stdout} or {"error": stdout + traceback}."""
        try:
            env = self._id(environ)
            code = environ["params"].get("code")
            if code is None:
                return {"error": "Missing parameter: code"}
            try:
                code = text(code)
            except ValueError as exc:
                return {"error": "Invalid parameter code: %s" % exc}
            record = self._execute(env, {"code": code})
        except _Answer as answer:
            return answer.body
        except EnvironmentNotFound:
            return {"error": "Kernel does not exist!"}
        return compat_message(record)

    def _execute(self, env, request):
        """Run ``request`` to its end; a stopped env (server restart, idle timeout) is
        given a fresh kernel first, as PUT /envs/{id} does, since /env/create lists it."""
        try:
            return self.manager.execute(env, request, None)
        except EnvironmentNotRunning:
            state = self.manager.ensure_running(env)["state"]
            if state in ("dead", "stopped"):
                raise _Answer({"error": "Environment %r is %s: POST /env/create with its id "
                                        "to start a fresh kernel" % (env, state)}) from None
        return self.manager.execute(env, request, None)


def compat_message(record):
    """The original's answer for one execution record."""
    text = record["stdout"]
    if record["status"] == "ok":
        result = record.get("result") or {}
        if "text/plain" in result:
            text += result["text/plain"] + "\n"
        return {"message": text}
    error = record.get("error") or {}
    return {"error": text + "\n".join(error.get("traceback") or []) + "\n"}


class _Answer(Exception):
    """A 200 answer with an ``error`` body, as the original gave for bad input."""

    def __init__(self, body):
        super().__init__(body)
        self.body = body
