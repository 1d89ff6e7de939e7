"""Tab completion without running user code, and the static lookups it rests on.

``complete(namespace, message)`` answers a Jupyter 5.x ``complete_request``:
``{matches, cursor_start, cursor_end, metadata, status}``.  Matches replace
``code[cursor_start:cursor_end]``; ``cursor_pos`` counts code points.  What the
text before the cursor is decides what is completed:

Case 1: inside a comment -> nothing.
Case 2: inside an f-string's replacement field (``f'{obj.me``) -> the field's
        expression (from ``scanning.fstring_field``) is completed as code, by
        cases 2 to 5, with ``cursor_start`` counted in the whole code.
Case 3: inside a string literal that is a subscript (``d['ke``) -> the keys of
        a dict (or ``os.environ``); any other string -> file names relative
        to the kernel's current directory (directories end in ``/``).  Either
        way ``cursor_start`` is the start of the string's text.
Case 4: ``import a.b`` / ``from a.b`` -> module names; ``from a import x`` ->
        the names of ``a`` if it is already imported, and its submodules.
Case 5: a dotted name ``a.b.c`` -> the attributes of ``a.b``; a plain name ->
        the namespace, builtins and keywords (listed here rather than by
        ``rlcompleter.global_matches``, which appends ``(`` to callables and
        a space to keywords for readline).

Risks: completion never runs user code.  Names are resolved with
``inspect.getattr_static`` and plain ``dict`` reads: no property getter, no
``__getattr__``/``__getattribute__``, no ``__dir__``, no user descriptor's
``__get__``, no ``isinstance`` (which may read a user ``__class__``).  Only
C-level accessors (slots, getset descriptors such as ``ndarray.T``) are read
when a dotted name goes through them.  No module is imported: packages not
yet imported are found on ``sys.path`` by the path finder, which only lists
directories.  Failures are swallowed (as ``rlcompleter`` does): a completion
that cannot be computed is an empty list, never an error.
"""

import builtins
import keyword
import os
import re
import sys
import types

from .scanning import NAME_END, cursor_of, dotted_name, fstring_field, scan

MAX_MATCHES = 1000  # beyond this the reply says metadata.truncated
_SUBSCRIPT = re.compile(r"((?:[^\W\d]\w*\.)*[^\W\d]\w*)\s*\[\s*$")
_IMPORT = re.compile(r"import\s+(?:[\w.]+(?:\s+as\s+\w+)?\s*,\s*)*([\w.]*)$")
_FROM = re.compile(r"from\s+([\w.]*)$")
_FROM_IMPORT = re.compile(
    r"from\s+([\w.]+)\s+import\s+(?:\(\s*)?(?:\w+(?:\s+as\s+\w+)?\s*,\s*)*(\w*)$")
FUNCTION_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                   types.MethodDescriptorType, types.WrapperDescriptorType,
                   types.MethodWrapperType, types.ClassMethodDescriptorType,
                   staticmethod, classmethod)
C_ACCESSORS = (types.GetSetDescriptorType, types.MemberDescriptorType)
_C_METHODS = (types.MethodDescriptorType, types.WrapperDescriptorType,
              types.ClassMethodDescriptorType)
_MISSING = object()


# -- static lookups ------------------------------------------------------------------

def is_class(obj):
    return issubclass(type(obj), type)  # never isinstance: it may read a user __class__


def mro(klass):
    """klass.__mro__ read from the type slot (no metaclass code runs)."""
    try:
        return type.__dict__["__mro__"].__get__(klass)
    except TypeError:
        return ()


def class_dict(klass):
    return type.__dict__["__dict__"].__get__(klass)


def class_attribute(klass, name, default=None):
    """klass.name from the class dicts along the MRO: no descriptor runs."""
    for entry in mro(klass):
        namespace = class_dict(entry)
        if name in namespace:
            return namespace[name]
    return default


def instance_dict(obj):
    """obj.__dict__ if Python would use it (not shadowed by a class attribute), else {}."""
    for entry in mro(type(obj)):
        shadow = class_dict(entry).get("__dict__")
        if shadow is not None and not (type(shadow) in C_ACCESSORS
                                       and shadow.__name__ == "__dict__"):
            return {}
    try:
        found = object.__getattribute__(obj, "__dict__")
    except (AttributeError, TypeError):
        return {}
    return found if type(found) is dict else {}


def static_attribute(obj, name):
    """obj.name as far as it can be known without running Python code (LookupError if not).

    Descriptors found on the class are bound the way Python would bind them
    when that is free of user code (functions, staticmethod, classmethod, C
    methods, slots and getset descriptors); a property or any other user
    descriptor seen from an instance has an unknowable value: for the last
    part of a name the descriptor itself is returned (``unknowable`` lets a
    caller refuse it).
    """
    import inspect
    try:
        value = inspect.getattr_static(obj, name)
    except AttributeError:
        raise LookupError(name) from None
    if type(obj) is types.ModuleType or (
            name in instance_dict(obj) and instance_dict(obj)[name] is value):
        return value  # from an instance (or module) dict: never bound
    if type(value) is staticmethod:
        return value.__func__
    if is_class(obj) and class_attribute(obj, name, _MISSING) is value:  # Class.attr
        if type(value) is classmethod:
            return types.MethodType(value.__func__, obj)
        return value
    # From the class of an instance (or the metaclass of a class): bind it.
    if type(value) is types.FunctionType:
        return types.MethodType(value, obj)
    if type(value) is classmethod:
        return types.MethodType(value.__func__, type(obj))
    if type(value) in C_ACCESSORS or type(value) in _C_METHODS:
        try:
            return value.__get__(obj, type(obj))
        except AttributeError:
            raise LookupError(name) from None
    return value


def unknowable(value):
    """True for a descriptor whose value depends on running it (property, user __get__)."""
    if type(value) in FUNCTION_TYPES or is_class(value):
        return False
    return class_attribute(type(value), "__get__") is not None


def resolve(namespace, name, last_may_be_descriptor=False):
    """The object a dotted name names, looked up statically (LookupError if unknown)."""
    head, *rest = name.split(".")
    try:
        obj = namespace[head]
    except KeyError:
        try:
            obj = vars(builtins)[head]
        except KeyError:
            raise LookupError(head) from None
    for index, part in enumerate(rest):
        obj = static_attribute(obj, part)
        if unknowable(obj) and not (last_may_be_descriptor and index == len(rest) - 1):
            raise LookupError(name)
    return obj


def attribute_names(obj):
    """What dir(obj) would list, read from dicts only (a user __dir__ is never called)."""
    names = set(k for k in list(instance_dict(obj)) if type(k) is str)
    for klass in mro(obj if is_class(obj) else type(obj)):
        names.update(k for k in list(class_dict(klass)) if type(k) is str)
    return names


def kind_of(value):
    """The completion type JupyterLab shows for a value."""
    if type(value) is types.ModuleType:
        return "module"
    if is_class(value):
        return "class"
    if type(value) in FUNCTION_TYPES:
        return "function"
    if type(value) is property or type(value) in C_ACCESSORS:
        return "property"
    return "instance"


# -- completers -----------------------------------------------------------------------

def complete(namespace, message):
    """complete_request: the matches for the text before the cursor (see the module doc)."""
    code = message.get("code") or ""
    cursor = cursor_of(message, code)
    try:
        start, matches = complete_text(namespace, code[:cursor])
    except Exception:  # completion is a convenience: never an error
        start, matches = cursor, []
    matches = sorted(dict(matches).items())
    truncated = len(matches) > MAX_MATCHES
    matches = matches[:MAX_MATCHES]
    types_ = [{"start": start, "end": cursor, "text": match, "type": kind, "signature": ""}
              for match, kind in matches]
    metadata = {"_jupyter_types_experimental": types_}
    if truncated:
        metadata["truncated"] = True
    return {"matches": [match for match, _ in matches], "cursor_start": start,
            "cursor_end": cursor, "metadata": metadata, "status": "ok"}


_MAGIC_NAME = re.compile(r"(?:\A|\n)[ \t]*(%%?\w*)\Z")
_SHELL_WORD = re.compile(r"(?:\A|\n)[ \t]*(?:[A-Za-z_]\w*[ \t]*=[ \t]*)?(?:!|%cd[ \t]+)"
                         r"(?:[^\n]*[ \t])?([^ \t\n]*)\Z")


def complete_magic(text):
    """(cursor_start, [(match, kind)]) for a magic's name (``%ti``) or a path after ``!``
    or ``%cd`` (magics.py); None if the line is not one."""
    from .magics import CELL_MAGICS, LINE_MAGICS
    found = _MAGIC_NAME.search(text)
    if found:
        typed, cell = found.group(1), found.group(1).startswith("%%")
        names = ["%" * (1 + cell) + name for name in (CELL_MAGICS if cell else LINE_MAGICS)]
        return found.start(1), [(name, "magic") for name in names if name.startswith(typed)]
    found = _SHELL_WORD.search(text)
    if found:
        return found.start(1), complete_path(found.group(1), '"', True)
    return None


def complete_text(namespace, text):
    """(cursor_start, [(match, kind)]) for the code before the cursor."""
    magic = complete_magic(text)
    if magic is not None:
        return magic
    found = scan(text)
    if found.state == "code":
        return complete_code(namespace, text, found)
    if found.state != "string":
        return len(text), []
    prefix = found.prefix.lower()
    field = fstring_field(text[found.content_start:], "r" in prefix) if "f" in prefix else None
    if field is not None:  # in an f-string's {expression}: complete that code
        offset = found.content_start + field
        start, matches = complete_text(namespace, text[offset:])
        return offset + start, matches
    return found.content_start, complete_string(namespace, text, found)


def complete_code(namespace, text, found):
    """(cursor_start, [(match, kind)]) outside strings: imports, attributes, names."""
    statement = text[found.stmt_start:].lstrip()
    if re.match(r"(import|from)\s", statement):
        prefix, matches = complete_import(statement)
        return len(text) - len(prefix), matches
    token = NAME_END.search(text).group(0)
    token_start = len(text) - len(token)
    if token[:1].isdigit() or (token_start and text[token_start - 1] == "."):
        return len(text), []  # a number, or an attribute of an expression we will not run
    if "." not in token:
        return token_start, global_matches(namespace, token)
    base, _, prefix = token.rpartition(".")
    if not dotted_name(base):
        return len(text), []
    obj = resolve(namespace, base)
    return len(text) - len(prefix), [
        (name, attribute_kind(obj, name))
        for name in attribute_names(obj) if visible(name, prefix)]


def visible(name, prefix):
    """Starts with the prefix; names starting with _ only when the prefix does."""
    return name.startswith(prefix) and (prefix.startswith("_") or not name.startswith("_"))


def global_matches(namespace, prefix):
    """[(name, kind)]: keywords, builtins and the namespace (which shadows builtins)."""
    found = [(name, "keyword") for name in keyword.kwlist if name.startswith(prefix)]
    for source in (vars(builtins), namespace):
        found += [(name, kind_of(value)) for name, value in list(source.items())
                  if type(name) is str and visible(name, prefix)]
    return found


def attribute_kind(obj, name):
    try:
        return kind_of(resolve({"obj": obj}, "obj." + name, last_may_be_descriptor=True))
    except Exception:
        return "instance"


def complete_string(namespace, text, found):
    """[(match, kind)] inside a string literal: dict keys after ``[``, else file names."""
    typed = text[found.content_start:]
    raw = "r" in found.prefix.lower()
    subscript = _SUBSCRIPT.search(text[:found.string_start])
    if subscript:
        if "f" in found.prefix.lower() or text[:subscript.start()].endswith("."):
            return []
        keys = mapping_keys(resolve(namespace, subscript.group(1)))
        wanted = bytes if "b" in found.prefix.lower() else str
        shown = (escape(key.decode("latin-1") if wanted is bytes else key, found.quote, raw)
                 for key in keys if type(key) is wanted)
        return [(key, "dict key") for key in shown if key is not None and key.startswith(typed)]
    if "\n" in typed or ("f" in found.prefix.lower() and "{" in typed):
        return []
    return complete_path(typed, found.quote, raw)


def mapping_keys(obj):
    """Keys of a dict (any subclass: read with dict's own methods) or of os.environ."""
    if issubclass(type(obj), dict):
        return list(dict.keys(obj))
    if type(obj) is getattr(os, "_Environ", None):
        state = instance_dict(obj)
        data, decode = state.get("_data"), state.get("decodekey")
        if type(data) is dict and type(decode) is types.FunctionType:
            return [decode(key) for key in list(data)]
    return []


def escape(text, quote, raw):
    """How ``text`` is written inside a literal with ``quote`` (None if it cannot be)."""
    if raw:
        return None if (quote[0] in text or "\\" in text or "\n" in text) else text
    text = text.replace("\\", "\\\\").replace(quote[0], "\\" + quote[0])
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def complete_path(typed, quote, raw):
    """File names under the directory typed so far, relative to the kernel's cwd."""
    head, slash, tail = typed.rpartition("/")
    directory = os.path.expanduser(head + slash) if slash else "."
    matches = []
    with os.scandir(directory) as entries:
        for count, entry in enumerate(entries):
            if count >= 10 * MAX_MATCHES:
                break
            if not entry.name.startswith(tail) or (
                    entry.name.startswith(".") and not tail.startswith(".")):
                continue
            name = escape(entry.name, quote, raw)
            if name is None:
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            matches.append((head + slash + name + ("/" if is_dir else ""), "path"))
    return matches


def complete_import(statement):
    """(prefix, [(match, kind)]) for ``import a.b``, ``from a.b``, ``from a import x``."""
    found = _FROM_IMPORT.match(statement)
    if found:
        module, prefix = found.group(1), found.group(2)
        names = {name: "module" for name in module_names(module)}
        loaded = sys.modules.get(module)
        if type(loaded) is types.ModuleType:
            names.update((name, kind_of(value)) for name, value in list(vars(loaded).items())
                         if type(name) is str)
        return prefix, [(name, kind) for name, kind in names.items() if visible(name, prefix)]
    found = _FROM.match(statement) or _IMPORT.match(statement)
    if not found or found.group(1).startswith("."):
        return "", []
    package, _, prefix = found.group(1).rpartition(".")
    return prefix, [(name, "module") for name in module_names(package) if visible(name, prefix)]


def module_names(package):
    """Names of the top-level modules (package ''), or of a package's submodules.

    Nothing is imported: an imported package's ``__path__`` is read from its
    dict; one not imported yet is located by ``PathFinder`` (directory
    listings only); ``sys.modules`` adds what is loaded from elsewhere.
    """
    import pkgutil
    if package:
        path = package_path(package)
        names = {info.name for info in pkgutil.iter_modules(path)} if path else set()
        prefix = package + "."
        names.update(name[len(prefix):] for name in list(sys.modules)
                     if name.startswith(prefix) and "." not in name[len(prefix):])
    else:
        names = set(sys.builtin_module_names)
        names.update(info.name for info in pkgutil.iter_modules())
        names.update(name for name in list(sys.modules) if "." not in name)
    return {name for name in names if name.isidentifier()}


def package_path(package):
    """The directories of a package's submodules, found without importing it (or None)."""
    from importlib.machinery import PathFinder
    parts, path = package.split("."), None
    for index in range(len(parts)):
        name = ".".join(parts[:index + 1])
        loaded = sys.modules.get(name)
        if loaded is not None:
            found = vars(loaded).get("__path__") if type(loaded) is types.ModuleType else None
        else:
            spec = PathFinder.find_spec(name, path)
            found = spec.submodule_search_locations if spec is not None else None
        if found is None:
            return None
        path = list(found)
    return path
