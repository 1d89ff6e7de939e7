"""The MCP tools: what an agent may do with environments, declared once.

Each tool's arguments are the route table's parameters (routes.Param: the same
converters, limits and descriptions as the REST API), so ``inputSchema`` is made
by openapi.py from the declaration and ``read`` validates with the same code; its
``outputSchema`` is the REST answer's schema (schemas.py), inlined.  A handler
``(call, args)`` returns ``(structured, content)`` and raises what the control
layer raises; server.py turns a raise into a result with ``isError``.

``call`` is the context of one tools/call (server.py): ``manager``, ``config``,
``progress(message)`` (a progress notification, if the client asked for them) and
``running(env, n)`` (so that a cancel finds the execution).
"""

import json

from .. import schemas
from ..api import execution_request, read_limits, read_sandbox
from ..notebook import build_notebook
from ..openapi import body_schema
from ..converters import FalseOnly, Resources, Seconds, Size
from ..errors import InvalidParam
from ..routes import (BODY, CODE, CREATE_PARAMS, CURSOR, ENV_ID, EXECUTE_PARAMS, WAIT,
                      Choice, Count, Operation, Param)

ENV = Param("env", BODY, ENV_ID, required=True, description="the environment's id")
TEXT_KEPT = 20000  # characters of each text part an agent is shown (the record has all)


class Tool:
    def __init__(self, name, title, description, params, output, handler, read_only=False,
                 destructive=False):
        self.name, self.title, self.description = name, title, description
        self.operation = Operation("POST", "mcp:" + name, name, tag="mcp", params=params)
        self.output = output
        self.handler = handler
        self.annotations = {"title": title, "readOnlyHint": read_only,
                            "destructiveHint": destructive, "openWorldHint": False}

    def describe(self, config):
        operation = self.operation.bind(config)
        schema = for_agents(body_schema(operation, False), operation.params)
        schema["additionalProperties"] = False
        return {"name": self.name, "title": self.title, "description": self.description,
                "inputSchema": schema, "outputSchema": inline(schemas.obj(
                    **{key: schemas.ref(name) for key, name in self.output.items()})
                    if isinstance(self.output, dict) else schemas.ref(self.output)),
                "annotations": self.annotations}

    def read(self, config, arguments):
        """The validated arguments; MissingParam/InvalidParam (errors.py) otherwise."""
        operation = self.operation.bind(config)
        unknown = sorted(set(arguments) - {param.name for param in operation.params})
        if unknown:
            raise InvalidParam(unknown[0], "not an argument of %s" % self.name)
        return operation.read(arguments)


def for_agents(schema, params):
    """The input schema as a model reads it: the REST schema's form-text alternatives
    (numbers as strings, with kilobyte-long patterns that bound them) left out, sizes
    still as text ("4G"); arguments this server can only refuse (no network for
    sandboxes, no scheduler for resources) not offered at all."""
    properties = schema["properties"]
    for param in params:
        converter, prop = param.converter, properties.get(param.name)
        if prop is None:
            continue
        if isinstance(converter, FalseOnly) or (isinstance(converter, Resources)
                                                and converter.refused):
            del properties[param.name]
        elif isinstance(converter, (Count, Seconds)) and isinstance(prop.get("type"), list):
            prop.pop("pattern", None)
            if not isinstance(converter, Size):  # a size's description says "512MiB"
                prop["type"] = [kind for kind in prop["type"] if kind != "string"]
    return schema


def inline(schema, seen=()):
    """``schema`` with every $ref to SCHEMAS replaced by the schema it names (an MCP
    client validates a tool's output against its outputSchema alone)."""
    if isinstance(schema, dict):
        target = schema.get("$ref", "")
        if target.startswith("#/components/schemas/"):
            name = target.rsplit("/", 1)[1]
            if name in seen:
                return {}
            return inline(schemas.SCHEMAS[name], seen + (name,))
        return {key: inline(value, seen) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inline(item, seen) for item in schema]
    return schema


# -- handlers ------------------------------------------------------------------------

def list_environments(call, args):
    envs = call.manager.list()
    lines = ["%s: %s" % (env["id"], env.get("state")) for env in envs]
    return {"envs": envs}, [_text("\n".join(lines) or "no environments")]


def create_environment(call, args):
    env, created = call.manager.create(args["id"], limits=read_limits(args), exist_ok=True,
                                       **read_sandbox(args))
    what = "created" if created else "already existed"
    return env, [_text("environment %s %s (%s)" % (env["id"], what, env.get("state")))]


def execute_python(call, args):
    request = execution_request(dict(args, silent=False, store_history=None,
                                     user_expressions={}, stdin="", allow_stdin=False,
                                     stop_on_error=False, figure_format=None))
    # As the REST API's execute: below the worker and proxy timeouts of docs/deploy.md.
    wait = call.config.default_wait if args["wait"] is None else args["wait"]
    events = call.manager.open_stream(args["env"], "execute", request, call.heartbeat)
    record, n = None, None
    try:
        for event in call.bounded(events, wait):
            if event is None:
                call.progress("execution %s still running" % n)
                continue
            kind = event.get("event")
            if kind == "accepted":
                n = event.get("execution_count")
                call.running(args["env"], n)
            elif kind == "output":
                call.progress(_progress_text(event))
            elif kind == "record":
                record = {k: v for k, v in event.items() if k != "event"}
    finally:
        events.close()
    if record is None:  # still running at the end of the wait
        record = call.manager.execution(args["env"], n, 0)
        return record, [_text("execution %s of %s is still %s after %g s: call get_execution "
                              "with n=%s to follow it" % (n, args["env"], record["status"],
                                                          wait, n))]
    return record, record_content(record)


def get_execution(call, args):
    record = call.manager.execution(args["env"], args["n"], args["wait"] or 0)
    return record, record_content(record)


def introspection(kind, *names):
    def handler(call, args):
        found = call.manager.introspect(args["env"], kind, {name: args[name] for name in names})
        return found, [_text(json.dumps(found, ensure_ascii=False)[:TEXT_KEPT])]
    handler.__name__ = kind
    return handler


def interrupt(call, args):
    env = call.manager.interrupt(args["env"])
    return env, [_text("interrupted; environment %s is %s" % (env["id"], env.get("state")))]


def restart_environment(call, args):
    env = call.manager.restart(args["env"])
    return env, [_text("environment %s restarted: a fresh namespace (session %s)"
                       % (env["id"], env.get("session")))]


def delete_environment(call, args):
    call.manager.delete(args["env"])
    return {"deleted": args["env"]}, [_text("environment %s deleted" % args["env"])]


def export_notebook(call, args):
    record = call.manager.read(args["env"])
    notebook = build_notebook(args["env"], call.manager.history(args["env"]).read(),
                              record.get("forked_from"))
    return {"notebook": notebook}, [_text(json.dumps(notebook, ensure_ascii=False))]


# -- results as content ------------------------------------------------------------

def record_content(record):
    """What an agent reads of an execution: text parts, and its images as images."""
    parts = []
    if record.get("stdout"):
        parts.append(_text(_cut(record["stdout"])))
    if record.get("stderr"):
        parts.append(_text("stderr:\n" + _cut(record["stderr"])))
    for output in record.get("outputs") or ():
        data = output.get("data") or {}
        for mime in ("image/png", "image/jpeg"):
            if isinstance(data.get(mime), str):
                parts.append({"type": "image", "data": data[mime], "mimeType": mime})
                break
    result = (record.get("result") or {}).get("text/plain")
    if result is not None:
        parts.append(_text("Out[%s]: %s" % (record.get("execution_count"), _cut(result))))
    error = record.get("error")
    if error:
        parts.append(_text(_cut("\n".join(error.get("traceback") or ()) or "%s: %s" % (
            error.get("ename"), error.get("evalue")))))
    if record.get("status") not in ("ok", "error", "aborted"):
        parts.append(_text("status: %s" % record.get("status")))
    return parts or [_text("(no output)")]


def _progress_text(event):
    text = event.get("text") or (event.get("data") or {}).get("text/plain") or ""
    return str(text).strip()[-200:] or event.get("output_type") or "output"


def _cut(text):
    return text if len(text) <= TEXT_KEPT else (
        text[:TEXT_KEPT] + "\n[... %d more characters in the structured record]"
        % (len(text) - TEXT_KEPT))


def _text(text):
    return {"type": "text", "text": text}


def _param(name, converter, description, required=False, default=None):
    return Param(name, BODY, converter, required=required, default=default,
                 description=description)


_EXECUTE = {param.name: param for param in EXECUTE_PARAMS}

TOOLS = (
    Tool("list_environments", "List environments", "Every Python environment on this "
         "server with its state (idle, busy, starting, stopped, dead).", (), "EnvList",
         list_environments, read_only=True),
    Tool("create_environment", "Create an environment", "Create a persistent Python "
         "environment (a kernel whose variables survive between calls). Idempotent: an "
         "existing id is returned as it is. Limits may only be tighter than the server's.",
         (Param("id", BODY, ENV_ID, required=True, description="the new environment's id "
                "(letters, digits, '.', '_', '-')"),) + CREATE_PARAMS, "Env",
         create_environment),
    Tool("execute_python", "Run Python code", "Run Python code in an environment, as one "
         "notebook cell: variables, imports and functions persist across calls. Returns "
         "what it printed, the value of the last expression, images it displayed, or the "
         "traceback. `!cmd` and `%magics` work as in IPython. Long runs: set `timeout`; a "
         "call that outlasts `wait` answers with the execution number for get_execution.",
         (ENV, _param("code", CODE, "Python source, run as one cell", required=True),
          _EXECUTE["timeout"],
          _param("wait", WAIT, "seconds to wait for the end before answering 'still running' "
                 "(default: the server's default_wait, 25 s)")), "ExecutionRecord",
         execute_python),
    Tool("get_execution", "Get an execution", "An execution's record by number (its "
         "status, output, result or error), waiting up to `wait` seconds for it to end.",
         (ENV, _param("n", Count(1), "the execution number", required=True),
          _param("wait", WAIT, "seconds to wait for it to finish (default 0)")),
         "ExecutionRecord", get_execution, read_only=True),
    Tool("list_variables", "List variables", "The environment's variables: name, type, a "
         "short repr and length.", (ENV, _param("all", _EXECUTE["stream"].converter,
                                                "also _names and modules", default=False)),
         "Variables", introspection("variables", "all"), read_only=True),
    Tool("inspect", "Inspect a name", "What the name at the cursor is: its signature and "
         "docstring (detail_level 1 adds the source).",
         (ENV, _param("code", CODE, "code containing the name", required=True), CURSOR,
          _param("detail_level", Choice(0, 1), "1 adds the source", default=0)),
         "Inspection", introspection("inspect", "code", "cursor_pos", "detail_level"),
         read_only=True),
    Tool("complete", "Complete code", "Completions of the code at the cursor (default: its "
         "end), from the live namespace.",
         (ENV, _param("code", CODE, "the code so far", required=True), CURSOR),
         "Completion", introspection("complete", "code", "cursor_pos"), read_only=True),
    Tool("interrupt", "Interrupt", "KeyboardInterrupt in the running code; the variables "
         "survive.", (ENV,), "Env", interrupt),
    Tool("restart_environment", "Restart an environment", "A fresh Python process under the "
         "same id: every variable is lost.", (ENV,), "Env", restart_environment,
         destructive=True),
    Tool("delete_environment", "Delete an environment", "Stop the environment's kernel and "
         "remove it with its files.", (ENV,), {"deleted": "EnvId"}, delete_environment,
         destructive=True),
    Tool("export_notebook", "Export as a notebook", "The environment's history as a Jupyter "
         "notebook (nbformat 4 JSON).", (ENV,), {"notebook": "Notebook"}, export_notebook,
         read_only=True),
)
BY_NAME = {tool.name: tool for tool in TOOLS}
READ_ONLY = tuple(tool.name for tool in TOOLS if tool.annotations["readOnlyHint"])
