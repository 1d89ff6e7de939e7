"""Shell escapes and a small set of IPython's magics, without IPython.

``transform(code)`` rewrites a cell that does not compile as Python, line for line:

* ``!cmd`` (at any indentation) runs ``cmd`` in a shell, its output streamed into the
  cell (fds 1 and 2 are the cell's); ``x = !cmd`` gives its stdout as a list of lines;
* ``%name args`` (and ``x = %name args``) calls a line magic;
* a first line ``%%name args`` makes the rest of the cell that magic's body.

``$name`` and ``{expression}`` in a command or a magic's arguments are expanded from
the namespace, as IPython does (``$$`` is a literal ``$``; what cannot be expanded is
left as it is).  Only lines outside triple-quoted strings are rewritten, each into
exactly one line, so tracebacks keep the user's line numbers (and linecache the
user's text).  A cell that compiles as it is is never touched.

The rewritten lines call ``HELPER`` (a ``Magics`` in builtins): ``shell``, ``line``,
``cell``.  An unknown magic raises ``UsageError`` naming it and the known ones.
What differs from IPython is listed in docs/magics.md.
"""

import os
import re
import shlex
import subprocess
import sys
import time

HELPER = "__wsgikernel_magics__"
_LINE = re.compile(r"^(?P<indent>[ \t]*)(?:(?P<target>[A-Za-z_]\w*(?:[ \t]*,[ \t]*[A-Za-z_]\w*)*)"
                   r"[ \t]*=[ \t]*)?(?P<kind>!|%(?!%))(?P<rest>.*?)(?P<end>\r?\n)?$", re.S)
_TRIPLE = re.compile(r"'''|\"\"\"")
LINE_MAGICS = ("cd", "env", "pwd", "pip", "time", "timeit", "who", "whos", "reset",
               "matplotlib")
CELL_MAGICS = ("bash", "sh", "time", "writefile", "capture")


class UsageError(Exception):
    """A magic used wrongly, or one this kernel does not have."""


def has_magic(code):
    return "!" in code or "%" in code


def transform(code):
    """``code`` with its shell escapes and magics as calls to ``HELPER`` (same lines)."""
    lines = code.splitlines(True)
    if lines and lines[0].startswith("%%"):
        name, _, args = lines[0][2:].strip().partition(" ")
        body = "".join(lines[1:])
        return "%s.cell(%r, %r, %r, globals(), locals())\n%s" % (
            HELPER, name, args.strip(), body, "\n" * (len(lines) - 1))
    out, quote = [], None
    for line in lines:
        match = None if quote else _LINE.match(line)
        if match:
            line = _call(match)
        for found in _TRIPLE.findall(line if match is None else ""):
            quote = None if quote == found else (quote or found)
        out.append(line)
    return "".join(out)


def _call(match):
    rest, end = match.group("rest"), match.group("end") or ""
    if match.group("kind") == "!":
        call = "%s.shell(%r, globals(), locals(), %r)" % (HELPER, rest.strip(),
                                                         bool(match.group("target")))
    else:
        name, _, args = rest.strip().partition(" ")
        call = "%s.line(%r, %r, globals(), locals())" % (HELPER, name, args.strip())
    target = match.group("target")
    return "%s%s%s%s" % (match.group("indent"), target + " = " if target else "", call, end)


def expand(text, scope):
    """IPython's ``$name``, ``$$`` and ``{expression}`` in ``text``, from ``scope``."""
    def brace(found):
        try:
            return str(eval(found.group(1), scope))
        except Exception:
            return found.group(0)

    def dollar(found):
        if found.group(0) == "$$":
            return "$"
        name = found.group(1)
        return str(scope[name]) if name in scope else found.group(0)

    text = re.sub(r"\{([^{}]+)\}", brace, text)
    return re.sub(r"\$\$|\$([A-Za-z_]\w*)", dollar, text)


class LineList(list):
    """What ``x = !cmd`` gives: the lines, with IPython's ``.n`` and ``.s`` joins."""

    @property
    def n(self):
        return "\n".join(self)

    @property
    def s(self):
        return " ".join(self)


class Magics:
    def __init__(self, runner):
        self.runner = runner  # execute.Shell: runs a %%time or %%capture body as a cell

    # -- what the rewritten lines call -------------------------------------------------

    def shell(self, command, globals_, locals_, capture=False):
        command = expand(command, dict(globals_, **locals_))
        _flush()
        if capture:
            done = subprocess.run(command, shell=True, stdout=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, executable=_sh(), text=True,
                                  errors="replace")
            return LineList(done.stdout.splitlines())
        subprocess.run(command, shell=True, stdin=subprocess.DEVNULL, executable=_sh())
        return None

    def line(self, name, args, globals_, locals_):
        handler = getattr(self, "line_" + name, None) if name in LINE_MAGICS else None
        if handler is None:
            raise UsageError("Line magic function `%%%s` not found (this kernel has: %s)"
                             % (name, ", ".join("%" + known for known in LINE_MAGICS)))
        if name not in ("time", "timeit"):  # their argument is Python
            args = expand(args, dict(globals_, **locals_))
        return handler(args, globals_, locals_)

    def cell(self, name, args, body, globals_, locals_):
        handler = getattr(self, "cell_" + name, None) if name in CELL_MAGICS else None
        if handler is None:
            raise UsageError("Cell magic `%%%%%s` not found (this kernel has: %s)"
                             % (name, ", ".join("%%" + known for known in CELL_MAGICS)))
        return handler(expand(args, dict(globals_, **locals_)), body, globals_, locals_)

    # -- line magics ---------------------------------------------------------------------

    def line_cd(self, args, globals_, locals_):
        target = os.path.expanduser(_unquote(args) or "~")
        os.chdir(target)
        print(os.getcwd())

    def line_pwd(self, args, globals_, locals_):
        return os.getcwd()

    def line_env(self, args, globals_, locals_):
        if not args:
            return dict(os.environ)
        name, sep, value = args.partition("=")
        if not sep:
            name, _, value = args.partition(" ")
            if not value:
                return os.environ.get(name.strip())
        os.environ[name.strip()] = value.strip()
        print("env: %s=%s" % (name.strip(), value.strip()))

    def line_pip(self, args, globals_, locals_):
        _flush()
        subprocess.run([sys.executable, "-m", "pip"] + shlex.split(args),
                       stdin=subprocess.DEVNULL)
        if args.split()[:1] in (["install"], ["uninstall"]):
            print("Note: you may need to restart the kernel to use updated packages.")

    def line_matplotlib(self, args, globals_, locals_):
        if args.strip() not in ("", "inline"):
            print("only inline figures are shown here (asked: %s)" % args.strip())

    def line_time(self, statement, globals_, locals_):
        value, seconds = _timed(lambda: _run(statement, globals_, locals_))
        _report_times(*seconds)
        return value

    def line_timeit(self, statement, globals_, locals_):
        import timeit
        timer = timeit.Timer(statement, globals=dict(globals_, **locals_))
        number, _ = timer.autorange()
        runs = [t / number for t in timer.repeat(7, number)]
        mean = sum(runs) / len(runs)
        spread = (sum((t - mean) ** 2 for t in runs) / len(runs)) ** 0.5
        print("%s ± %s per loop (mean ± std. dev. of %d runs, %d loop%s each)" % (
            _format_time(mean), _format_time(spread), len(runs), number,
            "" if number == 1 else "s"))

    def line_who(self, args, globals_, locals_):
        names = _user_names(globals_)
        print("\t".join(names) if names else "Interactive namespace is empty.")

    def line_whos(self, args, globals_, locals_):
        names = _user_names(globals_)
        if not names:
            print("Interactive namespace is empty.")
            return
        rows = [(name, type(globals_[name]).__name__, _info(globals_[name])) for name in names]
        widths = [max(len(row[i]) for row in rows + [("Variable", "Type", "")])
                  for i in range(2)]
        print("%-*s   %-*s   Data/Info" % (widths[0], "Variable", widths[1], "Type"))
        print("-" * (widths[0] + widths[1] + 16))
        for name, kind, info in rows:
            print("%-*s   %-*s   %s" % (widths[0], name, widths[1], kind, info))

    def line_reset(self, args, globals_, locals_):
        if "-f" not in args.split():
            raise UsageError("%reset asks for a confirmation in IPython; there is no prompt "
                             "here: use %reset -f")
        for name in [name for name in globals_ if not name.startswith("__")]:
            del globals_[name]

    # -- cell magics ---------------------------------------------------------------------

    def cell_bash(self, args, body, globals_, locals_):
        _flush()
        subprocess.run(["bash", "-c", body] + shlex.split(args), stdin=subprocess.DEVNULL)

    def cell_sh(self, args, body, globals_, locals_):
        _flush()
        subprocess.run([_sh(), "-c", body] + shlex.split(args), stdin=subprocess.DEVNULL)

    def cell_writefile(self, args, body, globals_, locals_):
        words = shlex.split(args)
        append = "-a" in words or "--append" in words
        names = [word for word in words if word not in ("-a", "--append")]
        if len(names) != 1:
            raise UsageError("%%writefile [-a] FILENAME")
        path = os.path.expanduser(names[0])
        verb = "Appending to" if append else (
            "Overwriting" if os.path.exists(path) else "Writing")
        with open(path, "a" if append else "w", encoding="utf-8") as handle:
            handle.write(body)
        print("%s %s" % (verb, names[0]))

    def cell_time(self, args, body, globals_, locals_):
        _, seconds = _timed(lambda: self.runner.run_body(body))
        _report_times(*seconds)

    def cell_capture(self, args, body, globals_, locals_):
        import io
        captured = Captured()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
        try:
            self.runner.run_body(body, quiet=True)
        finally:
            captured.stdout, captured.stderr = sys.stdout.getvalue(), sys.stderr.getvalue()
            sys.stdout, sys.stderr = saved
        name = args.split()[0] if args.split() else None
        if name:
            globals_[name] = captured


class Captured:
    """What ``%%capture NAME`` keeps: ``stdout``, ``stderr``; ``show()`` prints them."""
    stdout = stderr = ""

    def show(self):
        sys.stdout.write(self.stdout)
        sys.stderr.write(self.stderr)

    def __repr__(self):
        return "<Captured stdout: %d chars, stderr: %d chars>" % (len(self.stdout),
                                                                   len(self.stderr))


def _run(statement, globals_, locals_):
    """``statement``'s value if it is an expression (None otherwise)."""
    try:
        code = compile(statement, "<timed>", "eval")
    except SyntaxError:
        exec(compile(statement, "<timed>", "exec"), globals_, locals_)
        return None
    return eval(code, globals_, locals_)


def _timed(call):
    """(what ``call()`` returned, (user CPU s, system CPU s, wall s))."""
    import resource
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    value = call()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return value, (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, wall)


def _report_times(user, system, wall):
    print("CPU times: user %s, sys: %s, total: %s" % (
        _format_time(user), _format_time(system), _format_time(user + system)))
    print("Wall time: %s" % _format_time(wall))


def _format_time(seconds):
    """IPython's style: 3 significant digits, s / ms / µs / ns."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return "%.3g %s" % (seconds / scale, unit)
    return "0 ns"


def _user_names(namespace):
    return sorted(name for name, value in namespace.items()
                  if not name.startswith("_") and type(value).__name__ != "module")


def _info(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unquote(text):
    text = text.strip()
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" else text


def _sh():
    return "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"


def _flush():
    """What the cell printed goes out before a subprocess writes to fds 1 and 2."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
