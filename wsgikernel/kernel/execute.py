"""Cell execution semantics, as IPython's kernel: the interpreter, separated from I/O.

``Shell.run_cell(code, n)`` runs one cell in the environment's namespace and
returns a plain dict; all output goes through the callables it was given
(``emit`` for display and result outputs; stdout/stderr are the process's own,
set up by the executor).  Its outcomes:

Case 1: the cell does not parse -> ``status: error`` with a SyntaxError whose
        traceback shows the offending line and a caret.
Case 2: the cell runs -> ``status: ok``; if its last statement is an
        expression whose value is not None, that value is emitted as an
        ``execute_result`` and returned as ``result`` (a MIME bundle), and
        ``_``, ``__``, ``___`` shift -- unless the cell ends in ``;`` (Case 2a)
        or the user owns those names (Case 2b).  A ``_repr_*_`` method that
        raises is left out of the bundle and its traceback written to the
        cell's stderr; the cell stays ``ok``.
Case 2a: the cell's last token is ``;`` (``1+1;``, ``x;  # note``) -> the
        expression is evaluated but nothing is shown, ``result`` is None and
        ``_`` does not move, as IPython's DisplayHook.quiet.  A ``;`` inside a
        string or a comment, or before a final expression, does not count.
Case 2b: ``_``, ``__`` or ``___`` in the namespace is not what the shell last
        put there (the user assigned it), or ``_`` is a builtin (gettext) ->
        none of the three is updated in the namespace; the shell keeps its own
        history, so deleting the user's names brings it back (IPython's rule).
Case 3: the cell raises (including KeyboardInterrupt from an interrupt and
        SystemExit from ``sys.exit()``/``exit()``), or the repr of its result
        does -> ``status: error`` with ``{ename, evalue, traceback}``, frames
        of this package removed.

Each cell starts with the namespace's ``__warningregistry__`` emptied, so a
warning shows once per cell and location, not once per kernel (as IPython).

Every top-level statement but the last runs in ``exec`` mode; a final
expression runs in ``single`` mode so ``sys.displayhook`` sees it, exactly as
the interactive prompt does.  Top-level ``await`` works: such code compiles to
a coroutine, run on one event loop kept for the life of the kernel (asyncio is
imported only then).  One ``codeop.Compile`` per shell keeps ``from __future__``
imports in force across cells.  Each cell's source is registered in
``linecache`` as ``<cell N>`` so tracebacks and ``inspect.getsource`` find it.
"""

import __future__
import ast
import builtins
import codeop
import io
import linecache
import os
import sys
import tokenize
import traceback

from .display import format_bundle
from .displaying import Displays

TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0x2000)
CO_COROUTINE = 0x0080
_PARSE_FLAGS = TOP_LEVEL_AWAIT
for _feature in __future__.all_feature_names:
    _PARSE_FLAGS |= getattr(__future__, _feature).compiler_flag
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_UNDERSCORES = ("_", "__", "___")
# Tokens after which a trailing ";" still ends the cell (IPython's list, plus the
# layout tokens a dedent-terminated cell ends with).
_LAYOUT_TOKENS = frozenset((tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT,
                            tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER))


class Shell:
    def __init__(self, namespace, emit):
        self.namespace = namespace
        self.emit = emit  # emit(output_dict): display_data / execute_result, in order
        self.displays = Displays(emit, _report_format_error)
        self.compiler = codeop.Compile()
        self.compiler.flags |= TOP_LEVEL_AWAIT
        self.loop = None
        self._result = None
        self._execution_count = None
        self._silent_cells = 0
        self._history = (None, None, None)  # the shell's own _, __, ___ (Case 2b)
        self._name = None  # the running cell's name (linecache, tracebacks)
        self.after_cell = None  # called after each cell's code, error or not

    # -- the cell ------------------------------------------------------------

    def run_cell(self, code, execution_count, *, silent=False, user_expressions=None,
                 magics=True):
        """Run ``code``; return {status, result, error, user_expressions} (see module doc).
        ``magics``: a cell that does not compile may be shell escapes and magics
        (magics.py)."""
        if execution_count is None:  # silent cells have no count: each still gets its own name
            self._silent_cells += 1
            name = "<silent cell %d>" % self._silent_cells
        else:
            name = "<cell %s>" % execution_count
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        self._result = None
        self._execution_count = execution_count
        self._name = name
        _reset_warning_registry(self.namespace)
        try:
            blocks = self._compile_cell(code, name, silent, magics)
        except (SyntaxError, ValueError, OverflowError) as exc:  # Case 1
            return self._error_outcome(exc, syntax=True)
        try:
            for block in blocks:
                self._run_block(block)
        except BaseException as exc:  # Case 3: user code raised, whatever it was
            self._after_cell()
            return self._error_outcome(exc)
        self._after_cell()
        outcome = {"status": "ok", "result": self._result, "error": None,
                   "user_expressions": self.eval_expressions(user_expressions or {})}
        self._result = None
        return outcome  # Case 2

    def _compile_cell(self, code, name, silent, magics):
        """The cell's code objects; one that does not compile may be magics (the same
        lines rewritten: a SyntaxError of the rewritten cell shows the user's line)."""
        try:
            return self._compile(code, name, silent)
        except SyntaxError:
            if not magics or "!" not in code and "%" not in code:
                raise
            from . import magics as rewriting
            rewritten = rewriting.transform(code)
            if rewritten == code:
                raise
            if not hasattr(builtins, rewriting.HELPER):
                setattr(builtins, rewriting.HELPER, rewriting.Magics(self))
            try:
                return self._compile(rewritten, name, silent)
            except SyntaxError as again:
                lines = code.splitlines()
                if again.lineno and 0 < again.lineno <= len(lines):
                    again.text = lines[again.lineno - 1] + "\n"
                raise again from None

    def _after_cell(self):
        """What must follow every cell (figures.py: show the figures still open)."""
        if self.after_cell is not None:
            try:
                self.after_cell()
            except Exception as exc:  # as a failing _repr_: reported, the cell stands
                _report_format_error(exc)

    def run_body(self, body, quiet=False):
        """A cell magic's body (``%%time``, ``%%capture``): run as the rest of the cell,
        its lines numbered as the cell's, its last expression shown unless ``quiet``."""
        for block in self._compile("\n" + body, self._name, quiet):
            self._run_block(block)

    def _compile(self, code, name, silent):
        # Parse with the __future__ flags in force only: codeop's own flags
        # (DONT_IMPLY_DEDENT...) are for line-by-line input, not whole cells.
        flags = ast.PyCF_ONLY_AST | (self.compiler.flags & _PARSE_FLAGS)
        tree = compile(code, name, "exec", flags, True)
        body = tree.body
        last_expression = (not silent and body and isinstance(body[-1], ast.Expr)
                           and not _ends_with_semicolon(code))  # Case 2a: run it in exec
        head = body[:-1] if last_expression else body
        blocks = []
        if head:
            module = ast.Module(body=head, type_ignores=[])
            blocks.append(self.compiler(module, name, "exec"))
        if last_expression:
            blocks.append(self.compiler(ast.Interactive(body=[body[-1]]), name, "single"))
        return blocks

    def _run_block(self, block):
        previous_hook = sys.displayhook
        sys.displayhook = self.displayhook
        try:
            if block.co_flags & CO_COROUTINE:
                self._run_coroutine(eval(block, self.namespace))
            else:
                exec(block, self.namespace)
        finally:
            sys.displayhook = previous_hook

    def _run_coroutine(self, coroutine):
        if self.loop is None:
            import asyncio  # only cells that use await pay for asyncio
            self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(coroutine)

    # -- results ---------------------------------------------------------------

    def displayhook(self, value):
        """What ``single`` mode calls with the last expression's value.

        A failing ``repr()`` raises from here, through the cell's frame, so the
        cell ends in error (Case 3) with nothing shown and the history unmoved.
        """
        self._yield_to_builtin_underscore()
        if value is None:
            return
        data, metadata = format_bundle(value, _report_format_error)
        self._push_history(value)
        self._result = data
        self.emit({"output_type": "execute_result",
                   "execution_count": self._execution_count,
                   "data": data, "metadata": metadata})

    def _yield_to_builtin_underscore(self):
        # Something (gettext.install) made ``_`` a builtin: drop our own ``_`` from
        # the namespace, or it would hide the builtin; a user's own ``_`` stays.
        ns = self.namespace
        if "_" in builtins.__dict__ and "_" in ns and ns["_"] is self._history[0]:
            del ns["_"]

    def _push_history(self, value):
        ns = self.namespace
        # By identity, as IPython: an equal value the user assigned is the user's.
        ours = all(name not in ns or ns[name] is mine
                   for name, mine in zip(_UNDERSCORES, self._history))
        self._history = (value,) + self._history[:2]
        if ours and "_" not in builtins.__dict__:
            ns.update(zip(_UNDERSCORES, self._history))

    def display(self, *objs, **kwargs):
        """The ``display()`` builtin (displaying.py): one display_data output per object.

        A failing ``repr()`` raises into the caller's code, as any call would.
        """
        return self.displays.display(*objs, **kwargs)

    def eval_expressions(self, expressions):
        results = {}
        for key, expression in expressions.items():
            try:
                value = eval(compile(str(expression), "<user_expression>", "eval"),
                             self.namespace)
                data, metadata = format_bundle(value, _report_format_error)
                results[key] = {"status": "ok", "data": data, "metadata": metadata}
            except BaseException as exc:  # one failing expression spoils only its key
                results[key] = {"status": "error", "ename": type(exc).__name__,
                                "evalue": _evalue(exc)}
        return results

    # -- errors ------------------------------------------------------------------

    def _error_outcome(self, exc, syntax=False):
        try:
            if syntax:
                text = _format_syntax_error(exc)
            else:
                text = "".join(_without_kernel_frames(
                    traceback.TracebackException(type(exc), exc, exc.__traceback__)).format())
            return {"status": "error", "result": None, "user_expressions": {},
                    "error": {"ename": type(exc).__name__, "evalue": _evalue(exc),
                              "traceback": text.rstrip("\n").split("\n")}}
        finally:
            exc = None  # break the frame <-> traceback cycle, as code.py does


def _ends_with_semicolon(code):
    """Whether the last meaningful token of ``code`` is ``;`` (Case 2a); on a
    tokenize error, False: the result is shown rather than lost."""
    if ";" not in code:  # the common case, without tokenizing the cell
        return False
    last = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type not in _LAYOUT_TOKENS:
                last = token
    except (tokenize.TokenError, SyntaxError, ValueError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def _reset_warning_registry(namespace):
    # warnings keys its once-per-location registry on (text, category, lineno) in
    # the warning frame's globals -- this namespace for all cell code -- without
    # the file name, so line 1 of every cell is one "location".  Emptying it in
    # place also covers functions defined in earlier cells (same globals).  No
    # bump of the filters version is needed: an emptied registry has no stale
    # "version" for warnings to trust, so it starts afresh.
    registry = namespace.get("__warningregistry__")
    if isinstance(registry, dict):
        registry.clear()


def _report_format_error(exc):
    """A ``_repr_*_`` method raised: its traceback (user frames) on the cell's
    stderr, where IPython's formatters show it; the cell carries on."""
    report = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    sys.stderr.write("".join(_without_kernel_frames(report).format()))


def _evalue(exc):
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def _format_syntax_error(exc):
    """Like traceback's, but always with a caret under the offending line.

    Python omits the caret for some errors ("unexpected indent"): the offset
    points into the indentation it strips from the line it shows.
    """
    lines = traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    source = (getattr(exc, "text", None) or "").rstrip("\n")
    if not source.strip() or "^" in text:
        return text
    shown = source.strip()
    offset = max(1, (getattr(exc, "offset", None) or 1) - (len(source) - len(source.lstrip())))
    caret = "    " + " " * (min(offset, len(shown) + 1) - 1) + "^\n"
    marker = "    " + shown + "\n"
    if marker in text:
        return text.replace(marker, marker + caret, 1)
    return text


def _is_kernel_file(filename):
    asyncio_dir = os.path.join(os.path.dirname(os.__file__), "asyncio")
    return filename.startswith(_PACKAGE_DIR) or filename.startswith(asyncio_dir)


def _without_kernel_frames(report):
    """Drop this package's frames (and asyncio's running a cell) from a traceback report,
    through its chained causes too: the user sees their own code only."""
    seen = set()
    stack = [report]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = traceback.StackSummary.from_list(
            [frame for frame in current.stack if not _is_kernel_file(frame.filename)])
        stack += [current.__cause__, current.__context__]
    return report
