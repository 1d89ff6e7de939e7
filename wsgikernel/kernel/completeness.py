"""is_complete: would this code run as it is, does it need more lines, or can it never run?

The contract of Jupyter's is_complete_request (and of ``codeop``), from the parser
alone: no compiler warnings, no code generation, safe on a thread beside a running
cell.  A cell that is not Python is judged as magics.py would rewrite it.
"""

import re

from .magics import transform as magic_free
from .scanning import indent_of, indent_width, scan

_PENDING_CONTINUATION = re.compile(r"\\\n[ \t\f]*\Z")
_CODE_LINE = re.compile(r"[ \t\f]*[^ \t\f\n#]")
_DEDENT = re.compile(r"(?:pass|break|continue|raise|return)(?!\w)")  # not passed, returns()


def is_complete(namespace, message):
    """is_complete_request: complete, incomplete (with the next line's indent) or invalid.

    Case 1: the code does not parse and more lines cannot fix it -> invalid.
    Case 2: it needs more lines (open bracket, string, ``:`` block, ``\\``), or
            its last line is inside an indented block not yet closed by a
            blank line, as at the interactive prompt -> incomplete + indent.
    Case 3: otherwise -> complete.
    CRLF and CR line endings are read as LF (as ``compile`` does), and a
    backslash continuation whose next line is still empty (``x = \\`` + newline)
    as the same code without that newline, so every Python answers alike.
    """
    code = (message.get("code") or "").replace("\r\n", "\n").replace("\r", "\n")
    pending = _PENDING_CONTINUATION.search(code)
    if pending and scan(code[:pending.start() + 1]).state != "comment":
        code = code[:pending.start() + 1]
    verdict = parse_verdict(code)
    if verdict == "invalid" and ("!" in code or "%" in code):  # shell escapes, magics
        code = magic_free(code)
        verdict = parse_verdict(code)
    if verdict == "invalid":
        return {"status": "invalid"}
    if verdict == "complete" and not in_open_block(code):
        return {"status": "complete"}
    return {"status": "incomplete", "indent": next_indent(code)}


def parse_verdict(code):
    """codeop's three-way contract, from the parser alone (thread-safe: no warning filters)."""
    import ast
    import codeop
    incomplete_flag = getattr(codeop, "PyCF_ALLOW_INCOMPLETE_INPUT", None)
    flags = ast.PyCF_ONLY_AST | codeop.PyCF_DONT_IMPLY_DEDENT | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    source = code if code.strip() else "pass"
    if incomplete_flag is None:
        return legacy_verdict(source, flags)
    try:
        tree = compile(source, "<input>", "exec", flags | incomplete_flag, True)
    except (SyntaxError, ValueError, OverflowError):
        try:
            compile(source + "\n", "<input>", "exec", flags | incomplete_flag, True)
            return "incomplete"
        except SyntaxError as exc:
            if "incomplete input" in str(exc):
                return "incomplete"
        except (ValueError, OverflowError):
            pass
        return "invalid"
    return "invalid" if misplaced_statement(tree, code) else "complete"


def legacy_verdict(source, flags):
    """Python < 3.11: codeop's older algorithm (try the source, then with one and two
    newlines more), parsing to an AST only so no compiler warning is printed."""
    def attempt(text):
        try:
            return compile(text, "<input>", "exec", flags, True), None
        except (SyntaxError, ValueError, OverflowError) as exc:
            return None, exc
    if all(line.lstrip(" \t\f")[:1] in ("", "#") for line in source.split("\n")):
        source = "pass"
    tree, _ = attempt(source)
    if tree is not None:
        return "invalid" if misplaced_statement(tree, source) else "complete"
    tree1, error1 = attempt(source + "\n")
    _, error2 = attempt(source + "\n\n")
    if tree1 is None and repr(error1) == repr(error2):
        return "invalid"
    return "incomplete"


def misplaced_statement(tree, code):
    """True if a statement parses but cannot compile where it stands (``return`` at top
    level, ``break`` outside a loop...): the compiler's checks, without the compiler."""
    import ast
    functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    loops = (ast.For, ast.AsyncFor, ast.While)
    # Only yield hides inside expressions: without it, walking statements is enough.
    kinds = ast.AST if "yield" in code else (
        ast.stmt, ast.excepthandler, getattr(ast, "match_case", ast.stmt))
    if not re.search(r"\b(return|yield|nonlocal|break|continue)\b", code):
        return False
    stack = [(node, False, False) for node in tree.body]
    while stack:
        node, in_function, in_loop = stack.pop()
        if isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom, ast.Nonlocal)) \
                and not in_function:
            return True
        if isinstance(node, (ast.Break, ast.Continue)) and not in_loop:
            return True
        if kinds is not ast.AST and not hasattr(node, "body"):
            continue  # a simple statement: no statement inside
        for field, value in ast.iter_fields(node):
            inner_function, inner_loop = in_function, in_loop
            if field == "body" and isinstance(node, functions + (ast.ClassDef,)):
                inner_function, inner_loop = not isinstance(node, ast.ClassDef), False
            elif field == "body" and isinstance(node, loops):
                inner_loop = True
            stack += [(child, inner_function, inner_loop)
                      for child in (value if isinstance(value, list) else [value])
                      if isinstance(child, kinds)]
    return False


def in_open_block(code):
    """True if the last line belongs to an indented block not closed by a blank line."""
    import io
    import tokenize
    if not code.strip() or "\n" in code and not code.rsplit("\n", 1)[1].strip():
        return False
    depth = last = 0
    tail = code[scan(code).top_start:]  # a line in column 0 is at depth 0: start there
    try:
        for token in tokenize.generate_tokens(io.StringIO(tail).readline):
            if token.type == tokenize.INDENT:
                depth += 1
            elif token.type == tokenize.DEDENT:
                depth -= 1
            elif token.type == tokenize.NEWLINE:
                last = depth
    except Exception:  # tokenize.TokenError, IndentationError: the parser already ruled
        return False
    return last > 0


def next_indent(code):
    """The indent of the next line (code with LF line endings).

    Inside an unfinished statement (open bracket, ``\\`` at the end): the last
    line's.  Else from the last logical line: four more (or a tab, if it is
    indented with tabs) after a ``:`` header; after ``pass``, ``break``,
    ``continue``, ``raise`` or ``return``, the indent of the line that opened
    its block (the nearest code line above with a smaller indentation);
    otherwise the same."""
    found = scan(code)
    if not code.strip() or found.state == "string":
        return ""
    if found.brackets or (found.state == "code" and code.endswith("\\")):
        return indent_of(code.rstrip().rsplit("\n", 1)[-1])  # the last non-blank line's
    ends = found.line_starts[1:] + [len(code)]
    lines = [(start, end) for start, end in zip(found.line_starts, ends)
             if _CODE_LINE.match(code, start)]  # neither blank nor only a comment
    if not lines:
        return ""
    logical = code[lines[-1][0]:lines[-1][1]].rstrip()
    ended = scan(logical)
    body = (logical[:ended.comment_start] if ended.state == "comment" else logical).strip()
    indent = indent_of(logical)
    if body.endswith(":"):
        return indent + ("\t" if indent.endswith("\t") else "    ")
    if _DEDENT.match(body):
        for start, _ in reversed(lines[:-1]):
            outer = indent_of(_CODE_LINE.match(code, start).group(0))
            if indent_width(outer) < indent_width(indent):
                return outer
        return ""
    return indent
