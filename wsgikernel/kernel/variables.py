"""``variables``: the environment's names with a type, a bounded repr and a cheap length.

``repr()`` is user code and may be slow or hang, so reprs run on worker
threads: one that takes longer than ``ITEM_BUDGET`` is given up (its entry
says ``<repr timed out>``; the daemon thread may go on) and the whole call
stops waiting after ``VARIABLES_BUDGET``.  Builtin containers are walked only
as far as the cut repr needs.  ``len`` is given only where it costs nothing
and runs no user code: builtin containers, and a ``shape`` held as a plain
value.  Hidden unless ``all=1``: names starting with ``_``, modules and the
helpers an IPython user would not count as theirs.
"""

import sys
import threading
import time
import types

from . import completion

REPR_LENGTH = 200          # characters of a variable's repr, ellipsis included
VARIABLES_BUDGET = 2.0     # seconds for all the reprs of one variables call
ITEM_BUDGET = 0.5          # seconds before one repr is given up and the next ones go on
MAX_ABANDONED = 3          # reprs given up per call before all the rest are skipped
TIMED_OUT = "<repr timed out>"
HIDDEN_NAMES = frozenset(("In", "Out", "exit", "quit", "get_ipython"))
_CONTAINERS = (str, bytes, bytearray, list, tuple, dict, set, frozenset, range)


# -- variables -------------------------------------------------------------------------

def variables(namespace, message):
    """The namespace's variables: [{name, type, repr, len?}] sorted by name.

    Hidden unless ``all``: names starting with ``_``, modules, and In, Out,
    exit, quit, get_ipython.  ``__builtins__`` is never listed.  ``len`` is
    the length of builtin containers, or the ``shape`` (a list) of objects
    that carry one as a plain value or a C-level attribute (numpy arrays).
    """
    show_all = bool(message.get("all"))
    chosen = sorted(((name, value) for name, value in list(namespace.items())
                     if listed(name, value, show_all)), key=lambda item: item[0])
    details = bounded_details([value for _, value in chosen])
    out = []
    for (name, value), (text, length) in zip(chosen, details):
        entry = {"name": name, "type": type.__dict__["__name__"].__get__(type(value)),
                 "repr": text}
        if length is not None:
            entry["len"] = length
        out.append(entry)
    return {"variables": out}


def listed(name, value, show_all):
    if type(name) is not str or name == "__builtins__":
        return False
    return show_all or not (name.startswith("_") or name in HIDDEN_NAMES
                            or issubclass(type(value), types.ModuleType))


class _Worker:
    """One thread computing reprs from ``start`` on; given up if it sticks on one."""

    def __init__(self, values, results, start):
        self.values, self.results = values, results
        self.index, self.started = start, time.monotonic()
        self.lock = threading.Lock()
        self.abandoned = False
        self.done = threading.Event()
        threading.Thread(target=self.run, name="wsgikernel-variables", daemon=True).start()

    def run(self):
        for index in range(self.index, len(self.values)):
            with self.lock:
                if self.abandoned:
                    return
                self.index, self.started = index, time.monotonic()
            detail = describe_value(self.values[index])
            with self.lock:
                if self.abandoned:
                    return
                self.results[index] = detail
        self.done.set()

    def give_up(self, now, deadline):
        """Index of the repr it is stuck on (results no longer taken), or None if not stuck."""
        with self.lock:
            if now < deadline and now - self.started <= ITEM_BUDGET:
                return None
            self.abandoned = True
            return self.index


def bounded_details(values):
    """[(repr, len)] for each value, within VARIABLES_BUDGET whatever the reprs do."""
    results = [None] * len(values)
    deadline = time.monotonic() + VARIABLES_BUDGET
    start, abandoned = 0, 0
    while start < len(values) and abandoned < MAX_ABANDONED:
        worker = _Worker(values, results, start)
        while not worker.done.wait(min(0.02, max(0.0, deadline - time.monotonic()))):
            now = time.monotonic()
            stuck = worker.give_up(now, deadline)
            if stuck is not None:
                results[stuck] = results[stuck] or (TIMED_OUT, None)
                start, abandoned = stuck + 1, abandoned + 1
                if now >= deadline:
                    start = len(values)
                break
        else:
            break  # the worker got through every value
    return [detail or (TIMED_OUT, None) for detail in results]


def describe_value(value):
    """(bounded repr, len or shape or None) of one value; runs its __repr__."""
    try:
        text = short_repr(value, REPR_LENGTH, set())
    except BaseException as exc:  # anything a user's __repr__ may raise
        text = "<repr failed: %s>" % type(exc).__name__
    if len(text) > REPR_LENGTH:
        text = text[:REPR_LENGTH - 3] + "..."
    try:
        size = builtin_length(value)
        if size is None:
            size = shape_of(value)
    except Exception:
        size = None
    return text, size


def short_repr(value, limit, seen):
    """repr(), but walking only as much of a builtin container as the limit shows."""
    kind = type(value)
    if kind is types.ModuleType:  # as module.__repr__, without a PEP 562 __getattr__
        state = vars(value)
        where = state.get("__file__")
        return "<module %r%s>" % (state.get("__name__"), " from %r" % where if where else "")
    if kind in (str, bytes, bytearray):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    if kind not in (list, tuple, set, frozenset, dict):
        return repr(value)
    if id(value) in seen:
        return "{...}" if kind is dict else "[...]"
    seen = seen | {id(value)}
    parts, used = [], 0
    items = dict.items(value) if kind is dict else value
    for item in items:
        if used > limit:
            break
        part = (short_repr(item[0], limit, seen) + ": " + short_repr(item[1], limit, seen)
                if kind is dict else short_repr(item, limit, seen))
        parts.append(part)
        used += len(part) + 2
    body = ", ".join(parts) + (", ..." if len(parts) < len(value) else "")
    if kind is tuple:
        return "(%s)" % (body + "," if len(value) == 1 else body)
    if kind is list:
        return "[%s]" % body
    if kind is dict:
        return "{%s}" % body
    if not value:
        return "%s()" % kind.__name__
    return ("{%s}" if kind is set else "frozenset({%s})") % body


def builtin_length(value):
    """len() of a builtin container (its own __len__, never a subclass's), else None."""
    for base in _CONTAINERS + tuple(_deque()):
        if issubclass(type(value), base):
            try:
                return base.__len__(value)
            except (OverflowError, TypeError):
                return None
    return None


def _deque():
    collections = sys.modules.get("collections")
    return [collections.deque] if collections is not None else []


def shape_of(value):
    """A ``shape`` held as a plain value or by a C-level attribute (numpy), as a list."""
    import inspect
    found = inspect.getattr_static(value, "shape", None)
    if type(found) in completion.C_ACCESSORS:
        found = found.__get__(value, type(value))
    if type(found) in (tuple, list) and all(type(n) is int for n in found):
        return list(found)
    return None
