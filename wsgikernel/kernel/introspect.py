"""complete / inspect / is_complete / variables, answered from a thread beside the cell.

Each handler takes the namespace and the request message and returns a plain
dict (Jupyter messaging 5.x field names).  They run on helper threads while a
cell may be running on the main thread, so they see the namespace as it is at
that instant: a value being rebound by the running cell may be the old or the
new one, never a torn object (dict reads are atomic under the GIL).

Risks: completion must never run user code.  Plain names come from the
namespace, builtins and keywords; dotted names are resolved with
``inspect.getattr_static`` (no properties, no ``__getattr__``; descriptors are
not invoked) — ``rlcompleter.attr_matches`` would evaluate the expression.
``variables`` does call ``repr()`` (that is its purpose) but cuts the text and
stops after a time budget, so one slow ``__repr__`` cannot hang the call.
"""

import builtins
import codeop
import keyword
import re
import time

REPR_LENGTH = 200
VARIABLES_BUDGET = 2.0  # seconds for all reprs of one variables call
_NAME_AT_END = re.compile(r"[A-Za-z_][\w.]*$")
_HIDDEN_BUILTINS = ("display", "input")


def _resolve(namespace, dotted):
    """The object a dotted name names, without running properties or __getattr__."""
    import inspect
    parts = dotted.split(".")
    if parts[0] in namespace:
        obj = namespace[parts[0]]
    elif hasattr(builtins, parts[0]):
        obj = getattr(builtins, parts[0])
    else:
        raise LookupError(parts[0])
    for part in parts[1:]:
        obj = inspect.getattr_static(obj, part)
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
    return obj


def complete(namespace, message):
    code = message.get("code", "")
    cursor = message.get("cursor_pos")
    cursor = len(code) if cursor is None else int(cursor)
    found = _NAME_AT_END.search(code[:cursor])
    token = found.group(0) if found else ""
    start = cursor - len(token)
    if "." in token:
        base, _, prefix = token.rpartition(".")
        try:
            obj = _resolve(namespace, base)
            names = set(dir(type(obj))) | set(getattr(obj, "__dict__", {}) or {})
        except Exception:
            names = set()
        matches = sorted(n for n in names if n.startswith(prefix)
                         and (prefix.startswith("_") or not n.startswith("_")))
        return {"matches": matches, "cursor_start": cursor - len(prefix),
                "cursor_end": cursor, "metadata": {}, "status": "ok"}
    names = set(namespace) | set(dir(builtins)) | set(keyword.kwlist)
    matches = sorted(n for n in names if n.startswith(token)
                     and (token.startswith("_") or not n.startswith("_")))
    return {"matches": matches, "cursor_start": start, "cursor_end": cursor,
            "metadata": {}, "status": "ok"}


def inspect_name(namespace, message):
    import inspect
    code = message.get("code", "")
    cursor = message.get("cursor_pos")
    cursor = len(code) if cursor is None else int(cursor)
    found = _NAME_AT_END.search(code[:cursor])
    name = found.group(0).rstrip(".") if found else ""
    try:
        obj = _resolve(namespace, name)
    except Exception:
        return {"found": False, "data": {}, "metadata": {}, "status": "ok"}
    try:
        signature = str(inspect.signature(obj))
    except (TypeError, ValueError):
        signature = None
    doc = inspect.getdoc(obj) or ""
    text = "%s%s\n%s" % (name, signature or "", doc)
    reply = {"found": True, "name": name, "type": type(obj).__name__,
             "signature": signature, "docstring": doc,
             "data": {"text/plain": text.strip()}, "metadata": {}, "status": "ok"}
    if int(message.get("detail_level") or 0) >= 1:
        try:
            reply["source"] = inspect.getsource(obj)
        except (TypeError, OSError):
            reply["source"] = None
    return reply


def is_complete(namespace, message):
    code = message.get("code", "")
    try:
        compiled = codeop.compile_command(code, "<input>", "exec")
    except (SyntaxError, ValueError, OverflowError):
        return {"status": "invalid"}
    if compiled is None:
        last = code.rstrip("\n").split("\n")[-1]
        indent = last[:len(last) - len(last.lstrip())]
        if last.rstrip().endswith(":"):
            indent += "    "
        return {"status": "incomplete", "indent": indent}
    return {"status": "complete"}


def variables(namespace, message):
    show_all = bool(message.get("all"))
    deadline = time.monotonic() + VARIABLES_BUDGET
    out = []
    for name, value in list(namespace.items()):
        if not show_all and (name.startswith("_") or type(value).__name__ == "module"):
            continue
        entry = {"name": name, "type": type(value).__name__}
        if time.monotonic() < deadline:
            try:
                text = repr(value)
            except Exception as exc:
                text = "<repr failed: %s>" % type(exc).__name__
        else:
            text = "<repr skipped: time budget used>"
        entry["repr"] = text if len(text) <= REPR_LENGTH else text[:REPR_LENGTH - 3] + "..."
        try:
            if hasattr(type(value), "__len__"):
                entry["len"] = len(value)
        except Exception:
            pass
        out.append(entry)
    out.sort(key=lambda entry: entry["name"])
    return {"variables": out}


HANDLERS = {"complete": complete, "inspect": inspect_name,
            "is_complete": is_complete, "variables": variables}
