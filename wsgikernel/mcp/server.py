"""MCP's methods: what a JSON-RPC request to POST /mcp is answered with (no HTTP here).

``McpServer.answer(method, params, call)`` returns the ``result`` or raises RpcError;
``call`` is the context of the request (its session, progress, cancellation).  The
methods (ipykernel style, one ``do_<method>`` each):

  initialize      version negotiation: the client's revision if supported, else ours
  ping            {}
  tools/list      the tools ``mcp_tools`` allows, with input and output schemas
  tools/call      Case 1: unknown tool, or params without a name/arguments object
                          -> RpcError INVALID_PARAMS
                  Case 2: arguments that fail the tool's schema -> by revision: from
                          2025-11-25 a result with isError (the spec's "input validation
                          errors" are tool execution errors, so a model can correct
                          itself); before, RpcError INVALID_PARAMS
                  Case 3: the service refuses (unknown env, dead kernel, quota...) ->
                          isError, the problem details as structuredContent
                  Case 4: the user's code raised or was stopped -> isError, the record
                          as structuredContent
                  Case 5: -> the result, the record (or env...) as structuredContent
  resources/list  each env's history and notebook; resources/read: one of them

``notifications/cancelled`` (``cancel``) cancels the execution the named request runs,
whichever worker runs it (sessions.py).  Unexpected failures are logged and answered
INTERNAL_ERROR, never with a traceback.
"""

import json
import logging

from .. import __version__
from ..control.errors import ControlError
from ..dispatch import http_error
from ..errors import HTTPError, InternalError
from ..notebook import build_notebook
from . import tools as toolbox
from .jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, RpcError

log = logging.getLogger("wsgikernel")

# Newest first.  Not 2025-03-26: it requires receiving batches, which MCP dropped since.
VERSIONS = ("2025-11-25", "2025-06-18")
INPUT_ERRORS_AS_RESULTS = "2025-11-25"  # from this revision on (Case 2)
RESOURCE_NOT_FOUND = -32002
INSTRUCTIONS = (
    "Python environments that keep their state between calls, like notebook kernels. "
    "Create one (create_environment), then run code in it (execute_python); variables, "
    "imports and files persist. Use get_execution for long runs and interrupt to stop one.")


class McpServer:
    METHODS = {"initialize": "do_initialize", "ping": "do_ping", "tools/list": "do_tools_list",
               "tools/call": "do_tools_call", "resources/list": "do_resources_list",
               "resources/read": "do_resources_read"}

    def __init__(self, manager, config):
        self.manager = manager
        self.config = config
        allowed = tuple(config.mcp_tools) or tuple(tool.name for tool in toolbox.TOOLS)
        unknown = sorted(set(allowed) - set(toolbox.BY_NAME))
        if unknown:
            raise ValueError("mcp_tools names no tool %s: the tools are %s" % (
                ", ".join(unknown), ", ".join(toolbox.BY_NAME)))
        self.tools = [toolbox.BY_NAME[name] for name in toolbox.BY_NAME if name in allowed]
        # Resources are each env's history and notebook: what export_notebook reads.
        self.resources = "export_notebook" in allowed

    def answer(self, method, params, call):
        name = self.METHODS.get(method)
        if name is None:
            raise RpcError(METHOD_NOT_FOUND, "no method %.100r here: %s" % (
                method, ", ".join(sorted(self.METHODS))))
        return getattr(self, name)(params, call)

    # -- lifecycle -----------------------------------------------------------------------

    @staticmethod
    def negotiate(params):
        asked = params.get("protocolVersion")
        return asked if asked in VERSIONS else VERSIONS[0]

    def do_initialize(self, params, call):
        return {"protocolVersion": call.version,
                "capabilities": dict({"tools": {"listChanged": False}}, **(
                    {"resources": {"listChanged": False, "subscribe": False}}
                    if self.resources else {})),
                "serverInfo": {"name": "wsgikernel", "title": "wsgikernel",
                               "version": __version__},
                "instructions": INSTRUCTIONS}

    def do_ping(self, params, call):
        return {}

    # -- tools -------------------------------------------------------------------------

    def do_tools_list(self, params, call):
        return {"tools": [tool.describe(self.config) for tool in self.tools]}

    def do_tools_call(self, params, call):
        name, arguments = params.get("name"), params.get("arguments", {})
        tool = next((t for t in self.tools if t.name == name), None)
        if tool is None:
            raise RpcError(INVALID_PARAMS, "no tool %.100r: the tools are %s" % (
                name, ", ".join(t.name for t in self.tools)))
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "arguments must be an object")
        try:
            args = tool.read(self.config, arguments)
        except HTTPError as exc:  # MissingParam / InvalidParam: Case 2
            if call.version >= INPUT_ERRORS_AS_RESULTS:
                return problem_result(exc)
            raise RpcError(INVALID_PARAMS, exc.detail, data=exc.to_dict()) from None
        try:
            structured, content = tool.handler(call, args)
        except HTTPError as exc:  # Case 3
            return problem_result(exc)
        except ControlError as exc:
            error = http_error(exc)
            if error is None:
                log.exception("MCP tool %s failed", name)
                error = InternalError()
            return problem_result(error)
        failed = structured.get("status") in ("error", "aborted")  # Case 4
        return {"content": content, "structuredContent": structured, "isError": failed}

    # -- resources ---------------------------------------------------------------------

    def do_resources_list(self, params, call):
        if not self.resources:
            raise RpcError(METHOD_NOT_FOUND, "no resources here (mcp_tools leaves out "
                           "export_notebook)")
        resources = []
        for env in self.manager.list():
            for kind, mime in (("history", "application/json"),
                               ("notebook", "application/x-ipynb+json")):
                resources.append({"uri": "wsgikernel://envs/%s/%s" % (env["id"], kind),
                                  "name": "%s %s" % (env["id"], kind), "mimeType": mime,
                                  "description": "the %s of environment %s" % (kind, env["id"])})
        return {"resources": resources}

    def do_resources_read(self, params, call):
        if not self.resources:
            raise RpcError(METHOD_NOT_FOUND, "no resources here (mcp_tools leaves out "
                           "export_notebook)")
        uri = params.get("uri")
        parts = uri.split("/") if isinstance(uri, str) else []
        if len(parts) != 5 or parts[:3] != ["wsgikernel:", "", "envs"] or parts[4] not in (
                "history", "notebook"):
            raise RpcError(RESOURCE_NOT_FOUND, "no resource %.200r" % (uri,), {"uri": uri})
        env_id, kind = parts[3], parts[4]
        try:
            record = self.manager.read(env_id)
            history = self.manager.history(env_id).read()
        except (ControlError, HTTPError):
            raise RpcError(RESOURCE_NOT_FOUND, "no environment %r" % env_id,
                           {"uri": uri}) from None
        if kind == "history":
            text, mime = json.dumps(history, ensure_ascii=False), "application/json"
        else:
            text = json.dumps(build_notebook(env_id, history, record.get("forked_from")),
                              ensure_ascii=False)
            mime = "application/x-ipynb+json"
        return {"contents": [{"uri": uri, "mimeType": mime, "text": text}]}

    # -- notifications -------------------------------------------------------------------

    def cancel(self, params, call):
        """notifications/cancelled: the execution the request runs is cancelled (a request
        that runs none, or has ended, is left alone, as the spec allows)."""
        found = call.sessions.call(call.session, params.get("requestId"))
        if found is None:
            return
        try:
            self.manager.cancel(found["env"], found["execution_count"])
        except (ControlError, HTTPError):
            pass  # it ended, or its env went away: nothing left to cancel


def problem_result(error):
    """A tool result with isError: the problem details, for a model to act on."""
    problem = error.to_dict()
    return {"content": [{"type": "text", "text": "%s: %s" % (problem["title"],
                                                             problem["detail"])}],
            "structuredContent": problem, "isError": True}
