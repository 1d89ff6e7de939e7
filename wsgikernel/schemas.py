"""The shapes the API answers with (``SCHEMAS``), as JSON Schema for openapi.py.

The env object, the execution record and its outputs, the problem details, the
checkpoint, the original API's answers: written once here, named by the route
table's responses (routes.py), published in the OpenAPI document's components.
"""

from .config import LIMITS
from .converters import MAX_COUNT
from .params import ENV_ID_RULE

EXECUTION_STATES = ["queued", "running", "waiting_input", "ok", "error", "aborted"]


def ref(name):
    return {"$ref": "#/components/schemas/" + name}


def null_or(schema):
    """``schema`` or JSON null (OpenAPI 3.1 has no ``nullable``)."""
    if "anyOf" in schema:
        return dict(schema, anyOf=schema["anyOf"] + [{"type": "null"}])
    if "type" in schema and "$ref" not in schema and "enum" not in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return dict(schema, type=kinds + ["null"])
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required=(), description=None, **properties):
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


STRING, BOOLEAN, INTEGER = {"type": "string"}, {"type": "boolean"}, {"type": "integer"}
COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
TIMESTAMP = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
MIME_BUNDLE = {"type": "object", "description": "MIME type -> data (text, base64 for "
               "images, JSON for application/json)", "additionalProperties": True}

# -- shapes ------------------------------------------------------------------

RESTORED = obj(["checkpoint", "execution_count"], "a restore's answer and history record "
               "only: the checkpoint, and the last cell it had run",
               checkpoint=STRING, execution_count=COUNT)

SCHEMAS = {
    "Problem": obj(
        ["type", "title", "status", "detail"],
        "RFC 9457 problem details; extra members (env_id, param, ...) name what failed.",
        type={"type": "string", "description": "a stable URN per error class, "
              "e.g. urn:wsgikernel:env-not-found"},
        title=STRING, status={"type": "integer", "minimum": 400, "maximum": 599},
        detail=STRING, env_id=STRING, param=STRING, allowed={"type": "array", "items": STRING},
        quota=STRING, limit=INTEGER, state=null_or(STRING), name=STRING),
    "EnvId": {"type": "string", "pattern": "^%s$" % ENV_ID_RULE,
              "description": "1-64 characters of A-Z a-z 0-9 _ . -, not starting with '.'"},
    "Limits": obj(
        description="Resource limits of the user-code process (null: none).",
        **{limit.key: null_or({"type": limit.json_type, "minimum": 0,
                               "description": limit.help})
           for limit in LIMITS}),
    "Env": obj(
        ["id", "state", "session", "execution_count", "queued", "created", "last_activity",
         "pid", "limits", "cwd", "sandbox"],
        "An environment: one kernel process and its namespace.",
        id=ref("EnvId"),
        state={"enum": ["starting", "idle", "busy", "dead", "stopped"]},
        session={"type": "integer", "minimum": 0, "description": "+1 on every restart"},
        execution_count=COUNT, queued=COUNT,
        created=null_or(TIMESTAMP), last_activity=null_or(TIMESTAMP),
        pid=null_or({"type": "integer", "description": "the user-code process"}),
        limits=ref("Limits"), cwd=null_or(STRING),
        sandbox={"enum": ["none", "bwrap"], "description": "where user code runs"},
        sandbox_network={"type": "boolean", "description": "bwrap envs only: whether the "
                         "sandbox has a network"},
        slurm=obj(["job_id", "state", "reason", "node"], "launcher slurm only: the env's "
                  "job, in Slurm's words (PENDING, RUNNING...; Resources, Priority...)",
                  job_id=null_or(STRING), state=null_or(STRING), reason=null_or(STRING),
                  node=null_or(STRING)),
        resources={"type": "object", "description": "launcher slurm only: the resources "
                   "the env's job asked for"},
        exit=null_or(obj(["code", "signal"], "how the kernel ended (dead or stopped envs)",
                         code=null_or(INTEGER), signal=null_or(STRING))),
        reason=null_or({"type": "string", "description": "why it is dead or stopped"}),
        detail={"type": "string", "description": "dead envs with reason start_failed, "
                "corrupt_record or unreadable_record only: what went wrong, in one line"},
        log={"type": "string", "description": "reason start_failed only: the last lines "
             "of the kernel's log (kernel.log), which say why it could not start"},
        restarted={"type": "boolean", "description": "in a PUT answer only: true when the "
                   "env was stopped and PUT started a fresh kernel (session + 1)"},
        auto_checkpoints={"type": "integer", "minimum": 1, "description": "envs that "
                          "keep automatic checkpoints only: how many (POST .../undo)"},
        forked_from=obj(["env", "execution_count"], "a fork only: the env it was forked "
                        "from, and the last cell of it that the copy had run",
                        env=ref("EnvId"), execution_count=COUNT),
        checkpoints={"type": "integer", "minimum": 0, "description": "running envs: how "
                     "many checkpoints it keeps"},
        checkpoint_memory=null_or({"type": "integer", "minimum": 0, "description": "GET "
                                   "/envs/{id} only: the bytes its checkpoints pin (PSS)"}),
        restored=RESTORED),
    "EnvList": obj(["envs"], envs={"type": "array", "items": ref("Env")}),
    "Checkpoint": obj(
        ["name", "execution_count", "session", "created", "auto"],
        "A parked copy of the namespace, as a cell boundary left it.",
        name=ref("EnvId"), execution_count=COUNT,
        session={"type": "integer", "minimum": 0}, created=TIMESTAMP,
        auto={"type": "boolean", "description": "taken before a cell (auto_checkpoints)"},
        memory=null_or({"type": "integer", "minimum": 0, "description": "bytes it pins "
                        "(PSS of its process: pages the env changed since)"})),
    "CheckpointList": obj(["checkpoints", "memory"],
                          checkpoints={"type": "array", "items": ref("Checkpoint")},
                          memory=null_or({"type": "integer", "minimum": 0,
                                          "description": "summed PSS, bytes"})),
    "ExecutionError": obj(["ename", "evalue", "traceback"], ename=STRING, evalue=STRING,
                          traceback={"type": "array", "items": STRING,
                                     "description": "plain-text lines"}),
    "StreamOutput": obj(["output_type", "name", "text"],
                        output_type={"const": "stream"},
                        name={"enum": ["stdout", "stderr"]}, text=STRING),
    "ExecuteResult": obj(["output_type", "execution_count", "data", "metadata"],
                         output_type={"const": "execute_result"},
                         execution_count=null_or(COUNT), data=MIME_BUNDLE,
                         metadata={"type": "object"}),
    "DisplayData": obj(["output_type", "data", "metadata"],
                       output_type={"const": "display_data"}, data=MIME_BUNDLE,
                       metadata={"type": "object"}, transient={"type": "object"}),
    "ErrorOutput": obj(["output_type", "ename", "evalue", "traceback"],
                       output_type={"const": "error"}, ename=STRING, evalue=STRING,
                       traceback={"type": "array", "items": STRING}),
    "Output": {"description": "An nbformat v4 output object.",
               "oneOf": [ref("StreamOutput"), ref("ExecuteResult"), ref("DisplayData"),
                         ref("ErrorOutput")]},
    "UserExpression": {"oneOf": [
        obj(["status", "data"], status={"const": "ok"}, data=MIME_BUNDLE,
            metadata={"type": "object"}),
        obj(["status", "ename", "evalue"], status={"const": "error"}, ename=STRING,
            evalue=STRING, traceback={"type": "array", "items": STRING})]},
    "ExecutionRecord": obj(
        ["env", "session", "execution_count", "code", "status", "reason", "stdout", "stderr",
         "result", "outputs", "error", "user_expressions", "truncated", "queued_at",
         "started", "finished", "duration"],
        "One execution, the same shape everywhere it appears (docs/API.md).",
        env=ref("EnvId"), session={"type": "integer", "minimum": 0},
        execution_count=null_or(COUNT), code=STRING,
        status={"enum": EXECUTION_STATES},
        reason={"enum": [None, "interrupted", "timeout", "cancelled", "kernel_died",
                         "previous_error", "kernel_lost"]},
        stdout=STRING, stderr=STRING, result=null_or(MIME_BUNDLE),
        outputs={"type": "array", "items": ref("Output")},
        error=null_or(ref("ExecutionError")),
        user_expressions={"type": "object", "additionalProperties": ref("UserExpression")},
        truncated=BOOLEAN, queued_at=null_or(TIMESTAMP), started=null_or(TIMESTAMP),
        finished=null_or(TIMESTAMP), duration=null_or({"type": "number", "minimum": 0}),
        restored=RESTORED,
        input_request=obj(["prompt", "password"], "Only while `status` is `waiting_input`: "
                          "what input() or getpass() asks (answer with POST "
                          ".../executions/{n}/input).", prompt=STRING, password=BOOLEAN)),
    "ExecutionPage": obj(["executions", "next"],
                         executions={"type": "array", "items": ref("ExecutionRecord")},
                         next=null_or(dict(COUNT, description="`since` of the next page"))),
    "StreamEvent": {
        "description": "One line of an application/x-ndjson stream: `accepted` first, then "
                       "`output`, `input_request` (with `prompt` and `password`) and "
                       "`heartbeat` lines, `record` (the full record) last.",
        "type": "object", "required": ["event"],
        "properties": {"event": {"enum": ["accepted", "output", "input_request",
                                          "heartbeat", "record", "error"]},
                       "execution_count": null_or(COUNT),
                       "status": {"enum": EXECUTION_STATES}}},
    "ServiceInfo": obj(["name", "version", "envs", "links"], name=STRING, version=STRING,
                       envs=COUNT, links={"type": "object",
                                          "additionalProperties": STRING}),
    "Health": obj(["status"], status={"const": "ok"}),
    "Ready": obj(["status", "checks"], "Readiness: every check passed (a 503 problem "
                 "names the ones that did not, in ``checks``).", status={"const": "ready"},
                 checks={"type": "object", "additionalProperties": STRING}),
    "Completion": obj(["matches", "cursor_start", "cursor_end", "metadata"],
                      matches={"type": "array", "items": STRING}, cursor_start=COUNT,
                      cursor_end=COUNT, metadata={"type": "object"}, status=STRING),
    "Inspection": obj(["found", "data"], found=BOOLEAN, data=MIME_BUNDLE,
                      metadata={"type": "object"}, status=STRING, name=STRING, type=STRING,
                      signature=null_or(STRING), docstring=null_or(STRING),
                      file=null_or(STRING), source=null_or(STRING)),
    "IsComplete": obj(["status"], status={"enum": ["complete", "incomplete", "invalid",
                                                   "unknown"]},
                      indent={"type": "string", "description": "for incomplete code"}),
    "Variable": obj(["name", "type", "repr"], name=STRING, type=STRING,
                    repr={"type": "string", "description": "cut to a bounded length"},
                    len=COUNT),
    "Variables": obj(["variables"], variables={"type": "array", "items": ref("Variable")}),
    "LateOutput": obj(
        ["late_output"], "Output that came after its execution's record was final: the "
        "newest 64 KiB of text, oldest first.",
        late_output={"type": "array", "items": obj(
            ["execution_count", "name", "text", "time"],
            execution_count=null_or(dict(COUNT, description="the execution whose thread "
                                         "wrote it; null: unknown (fd writes, silent cells)")),
            name={"enum": ["stdout", "stderr", "display_data"]}, text=STRING,
            time=TIMESTAMP)}),
    "Notebook": obj(["nbformat", "nbformat_minor", "metadata", "cells"],
                    "An nbformat v4 notebook (.ipynb) of the env's history.",
                    nbformat={"const": 4}, nbformat_minor=INTEGER,
                    metadata={"type": "object"},
                    cells={"type": "array", "items": obj(
                        ["cell_type", "source", "metadata"],
                        cell_type={"enum": ["code", "markdown", "raw"]}, id=STRING,
                        source=STRING, metadata={"type": "object"},
                        execution_count=null_or(COUNT),
                        outputs={"type": "array", "items": ref("Output")})}),
    "CompatError": obj(["error"], "The original API's answer to bad input (still 200).",
                       error=STRING),
    "CompatEnvs": {"oneOf": [obj(["envs"], envs={"type": "array", "items": STRING}),
                             ref("CompatError")]},
    "CompatNames": {"oneOf": [obj(["env"], env={"type": "array", "items": STRING}),
                              ref("CompatError")]},
    "CompatMessage": {"oneOf": [obj(["message"], message=STRING), ref("CompatError")]},
}
