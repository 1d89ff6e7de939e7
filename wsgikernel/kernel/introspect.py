"""complete / inspect / is_complete / variables, answered from a thread beside the cell.

Each handler takes the namespace and the request message and returns a plain
dict with Jupyter messaging 5.x field names (``HANDLERS`` maps op -> handler;
the executor adds ``ok``).  They run on short-lived helper threads while a
cell may be running on the main thread, so they see the namespace as it is at
that instant: a name being rebound by the running cell may show its old or its
new value, never a torn one (dict reads and ``list(ns.items())`` are atomic
under the GIL); values may change while they are being looked at.

Risks and what runs:
- ``complete`` runs no user code (see completion.py).
- ``inspect`` resolves the dotted name statically, then applies the
  ``inspect`` module to functions, methods, classes, modules and values of
  builtin types (it reads their ``__doc__``, ``__signature__``,
  ``__wrapped__``, ``__code__``); any other object is described through its
  class, read statically: its own properties, ``__getattr__`` and
  ``__repr__`` never run.
- ``is_complete`` only parses (completeness.py).
- ``variables`` calls ``repr()`` -- that is its purpose -- on worker threads,
  cut to ``REPR_LENGTH`` and bounded in time: one slow ``__repr__`` is left
  behind (its daemon thread may go on) and shows ``<repr timed out>``.
"""

import sys
import types

from . import completion
from .completion import class_attribute, class_dict, complete, is_class, resolve
from .completeness import is_complete
from .scanning import cursor_of, name_at_cursor
from .variables import REPR_LENGTH, builtin_length, short_repr, variables

SOURCE_LENGTH = 200_000    # characters of source returned by inspect
_SCALARS = (int, float, complex, bool, type(None))
_NOT_FOUND = {"status": "ok", "found": False, "data": {}, "metadata": {}}


# -- inspect ---------------------------------------------------------------------------

def inspect_name(namespace, message):
    """inspect_request: what the name at the cursor (or the callable around it) is."""
    code = message.get("code") or ""
    name = name_at_cursor(code, cursor_of(message, code))
    if not name:
        return dict(_NOT_FOUND)
    try:
        obj = resolve(namespace, name, last_may_be_descriptor=True)
    except LookupError:
        return dict(_NOT_FOUND)
    info = describe(obj, int(message.get("detail_level") or 0) >= 1)
    info["name"] = name
    text, markdown = render(name, info)
    info.update(status="ok", found=True, metadata={},
                data={"text/plain": text, "text/markdown": markdown})
    return info


def introspectable(obj):
    """True if the inspect module may read ``obj``'s attributes without reaching user code:
    functions and methods, C types' instances, properties, modules and classes without
    a ``__getattr__`` hook (a class written in Python has ``__module__`` in its dict and
    its instances may have a ``__getattr__``: those are described through their class)."""
    kind = type(obj)
    if kind is types.MethodType:
        return introspectable(obj.__func__)
    if kind is types.ModuleType:
        return "__getattr__" not in vars(obj)  # PEP 562: inspect would call it
    if is_class(obj):
        return (class_attribute(kind, "__getattr__") is None and
                class_attribute(kind, "__getattribute__") is type.__dict__["__getattribute__"])
    return (kind in completion.FUNCTION_TYPES or kind in completion.C_ACCESSORS
            or kind is property or "__module__" not in class_dict(kind))


def describe(obj, detail):
    """{type, signature, docstring, file[, source][, value, length]} of one object."""
    import inspect
    info = {"type": type.__dict__["__name__"].__get__(type(obj))}
    target = obj.__func__ if type(obj) in (staticmethod, classmethod) else obj
    if introspectable(target):
        source_of = target.fget if type(target) is property else target
        signature = _signature(target) if callable(target) else None
        doc = _guard(inspect.getdoc, target) or ""
    else:  # read dicts only: a class's __init__ and __doc__, an instance's class
        source_of = target if is_class(target) or type(target) is types.ModuleType \
            else type(target)
        if type(target) is types.ModuleType:
            signature, doc = None, vars(target).get("__doc__")
        else:
            method = "__init__" if source_of is target else "__call__"
            signature = _unbound_signature(class_attribute(source_of, method))
            doc = class_dict(source_of).get("__doc__") if source_of is target \
                else class_attribute(source_of, "__doc__")
        doc = inspect.cleandoc(doc) if type(doc) is str else ""
    info.update(signature=signature, docstring=doc, file=file_of(source_of))
    if detail:
        info["source"] = source(source_of)
    if type(obj) in _SCALARS or type(obj) in (str, bytes):
        value = _guard(short_repr, obj, REPR_LENGTH, set())  # int > 4300 digits: ValueError
        if value is not None:
            info["value"] = value
    length = builtin_length(obj)
    if length is not None:
        info["length"] = length
    return info


def _unbound_signature(function):
    """The signature of a method found in a class dict, without its first parameter."""
    import inspect
    if type(function) is not types.FunctionType:
        return None
    signature = _guard(inspect.signature, function)
    if signature is None:
        return None
    return str(signature.replace(parameters=list(signature.parameters.values())[1:]))


def _guard(function, *args):
    try:
        return function(*args)
    except Exception:
        return None


def _signature(obj):
    import inspect
    signature = _guard(inspect.signature, obj)
    return None if signature is None else str(signature)


def file_of(obj):
    """The file an object was defined in (``<cell N>`` for cells), read statically."""
    if type(obj) in (types.MethodType, staticmethod, classmethod):
        obj = obj.__func__
    if type(obj) is types.FunctionType:
        return obj.__code__.co_filename
    if type(obj) is types.ModuleType:
        found = vars(obj).get("__file__")
        return found if type(found) is str else None
    if is_class(obj):
        module = sys.modules.get(class_dict(obj).get("__module__"))
        found = vars(module).get("__file__") if type(module) is types.ModuleType else None
        if type(found) is str:
            return found
        for function in _class_functions(obj):  # defined in a cell: ask its methods
            if function.__code__.co_filename.startswith("<cell "):
                return function.__code__.co_filename
    return None


def _class_functions(klass):
    for value in list(class_dict(klass).values()):
        if type(value) in (staticmethod, classmethod):
            value = value.__func__
        elif type(value) is property:
            value = value.fget
        if type(value) is types.FunctionType:
            yield value


def source(obj):
    """inspect.getsource, and for classes defined in cells the class statement (or None)."""
    import inspect
    text = None
    if is_class(obj) and class_dict(obj).get("__module__") == "__main__":
        text = _class_source_from_cells(obj)  # inspect would look in __main__.__file__
    if text is None and obj is not None and introspectable(obj):
        text = _guard(inspect.getsource, obj)
    if text is not None and len(text) > SOURCE_LENGTH:
        text = text[:SOURCE_LENGTH] + "\n... (source cut at %d characters)\n" % SOURCE_LENGTH
    return text


def _class_source_from_cells(klass, max_cells=100):
    """``class X`` from the cell that defined one of its methods, else from the latest
    cells (a class with no method of its own, a dataclass)."""
    import ast
    import linecache
    name = type.__dict__["__name__"].__get__(klass)
    wanted = [(function.__code__.co_filename, function.__code__.co_firstlineno)
              for function in _class_functions(klass)
              if function.__code__.co_filename.startswith("<cell ")]
    if class_dict(klass).get("__module__") == "__main__":
        cells = [key for key in list(linecache.cache) if str(key).startswith("<cell ")]
        wanted += [(cell, None) for cell in sorted(cells, key=_cell_number)[-max_cells:][::-1]]
    for filename, line in wanted:
        lines = linecache.getlines(filename)
        tree = _guard(ast.parse, "".join(lines))
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.ClassDef) and node.name == name and (
                    line is None or node.lineno <= line <= node.end_lineno):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                return "".join(lines[first - 1:node.end_lineno])
    return None


def _cell_number(filename):
    digits = filename[len("<cell "):-1]
    return int(digits) if digits.isdigit() else -1


def render(name, info):
    """(text/plain, text/markdown) in the layout of IPython's ``obj?``."""
    extras = [(label, str(info[key])) for key, label in (("value", "Value"), ("length", "Length"))
              if key in info]
    rows = [("Signature", name + info["signature"])] if info.get("signature") else []
    plain = ["%-10s %s" % (label + ":", value) for label, value in rows + extras]
    plain.append("Docstring:" + ("\n" + info["docstring"] if info["docstring"]
                                 else " <no docstring>"))
    if info.get("source"):
        plain.append("Source:\n" + info["source"].rstrip("\n"))
    plain += ["%-10s %s" % ("File:", info["file"])] if info.get("file") else []
    plain.append("%-10s %s" % ("Type:", info["type"]))
    markdown = ["**%s** (`%s`)" % (name, info["type"])]
    if info.get("signature"):
        markdown.append(_fence(name + info["signature"], "python"))
    markdown += ["%s: `%s`" % (label, value) for label, value in extras]
    if info["docstring"]:
        markdown.append(_fence(info["docstring"], "text"))
    if info.get("source"):
        markdown.append(_fence(info["source"].rstrip("\n"), "python"))
    if info.get("file"):
        markdown.append("File: `%s`" % info["file"])
    return "\n".join(plain), "\n\n".join(markdown)


def _fence(text, language):
    fence = "```"
    while fence in text:
        fence += "`"
    return "%s%s\n%s\n%s" % (fence, language, text, fence)


HANDLERS = {"complete": complete, "inspect": inspect_name,
            "is_complete": is_complete, "variables": variables}
