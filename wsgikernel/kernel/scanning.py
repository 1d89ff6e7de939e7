"""Where the cursor is in partial Python code: strings, comments, brackets, f-string fields.

A small scanner with Python's lexical rules for string literals, comments,
brackets and line continuations, used by completion, inspect and
is_complete.  It never raises and behaves the same on every Python version
(``tokenize`` does not: it was rewritten on top of the C tokenizer in 3.12 and
reports unfinished code differently).  Both ``\\n`` and ``\\r\\n`` end lines.
"""

import keyword
import re

_OPEN = {")": "(", "]": "[", "}": "{"}
_PREFIX_CHARS = "rRbBuUfF"
NAME_END = re.compile(r"[\w.]*$")
_CALLABLE_BEFORE = re.compile(r"([\w.]+)\s*$")


class Scan:
    """Where a tokenizer would be at the end of some text (the code before the cursor).

    ``state`` is ``code``, ``string`` or ``comment``; for a string, ``quote``,
    ``prefix`` and the offsets of its prefix and text; ``brackets`` holds the
    unclosed ``([{`` with their offsets; ``stmt_start`` is where the current
    statement begins (after the last newline or ``;`` outside brackets);
    ``top_start`` where the last line that starts in column 0 begins;
    ``line_starts`` where each logical line begins (0, then after each newline
    outside brackets, strings and backslash continuations).
    """

    def __init__(self, state, brackets, stmt_start, quote="", prefix="",
                 string_start=0, content_start=0, comment_start=0, top_start=0,
                 line_starts=()):
        self.state, self.brackets, self.stmt_start = state, brackets, stmt_start
        self.top_start, self.line_starts = top_start, line_starts
        self.quote, self.prefix = quote, prefix
        self.string_start, self.content_start = string_start, content_start
        self.comment_start = comment_start


def string_end(text, i):
    """(quote, offset after the literal) for the string whose quote is at ``i``; the
    offset is None if the string is still open at the end of ``text``."""
    c = text[i]
    quote = c * 3 if text.startswith(c * 3, i) else c
    j, n = i + len(quote), len(text)
    while j < n:
        if text[j] == "\\":
            j += 2
        elif len(quote) == 1 and text[j] == "\n":
            return quote, j  # unterminated one-line string: it ends at the newline
        elif text.startswith(quote, j):
            return quote, j + len(quote)
        else:
            j += 1
    return quote, None


def _continued(text, i):
    """True if the newline at ``i`` follows a backslash (``\\`` + LF or CRLF)."""
    return text[i - 1:i] == "\\" or text[max(0, i - 2):i] == "\\\r"


def scan(text):
    """Scan ``text`` with Python's string, comment and bracket rules (never raises)."""
    i, n, brackets, stmt_start, top_start, lines = 0, len(text), [], 0, 0, [0]
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            if end < 0:
                return Scan("comment", brackets, stmt_start, comment_start=i,
                            top_start=top_start, line_starts=lines)
            i = end
            continue
        if c in "'\"":
            start = i
            while start > 0 and i - start < 2 and text[start - 1] in _PREFIX_CHARS:
                start -= 1
            if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
                start = i  # letters of a longer name, not a string prefix
            quote, end = string_end(text, i)
            if end is None:
                return Scan("string", brackets, stmt_start, quote, text[start:i],
                            start, i + len(quote), top_start=top_start, line_starts=lines)
            i = end
            continue
        if c in "([{":
            brackets.append((c, i))
        elif c in ")]}":
            if brackets and brackets[-1][0] == _OPEN[c]:
                brackets.pop()
        elif (c == "\n" and not _continued(text, i) or c == ";") and not brackets:
            stmt_start = i + 1
            if c == "\n":
                lines.append(i + 1)
                if text[i + 1:i + 2] not in ("", " ", "\t", "\n", "\r", "#", "\f"):
                    top_start = i + 1
        i += 1
    return Scan("code", brackets, stmt_start, top_start=top_start, line_starts=lines)


def fstring_field(content, raw=False):
    """Where the expression of the f-string replacement field that the end of
    ``content`` (the f-string's text before the cursor) is in starts, or None if
    the end is in literal text, a ``!r`` conversion or a format spec's text.

    ``{{`` and ``}}`` are literal braces, ``\\N{...}`` a named character (unless
    ``raw``); a spec may hold nested fields (``{x:{width}}``).  A string inside
    the expression (``{d["k"]}``) is skipped; if the end is inside one, the
    field's start is returned (the caller completes inside that string).
    """
    fields = []  # the open fields, innermost last: [expression start, in expression, depth]
    i, n = 0, len(content)
    while i < n:
        c = content[i]
        if fields and fields[-1][1]:  # inside a field's expression
            field = fields[-1]
            if c in "'\"":
                end = string_end(content, i)[1]
                if end is None:
                    return field[0]
                i = end
                continue
            if c in "([{":
                field[2] += 1
            elif c in ")]}":
                if field[2]:
                    field[2] -= 1
                elif c == "}":
                    fields.pop()
            elif field[2] == 0 and (c == ":" or c == "!" and content[i + 1:i + 2] != "="):
                field[1] = False  # a format spec or conversion follows
            i += 1
            continue
        if c == "\\" and not raw:  # an escape in literal text
            if content.startswith("N{", i + 1):
                end = content.find("}", i)
                if end < 0:
                    return None
                i = end + 1
            else:
                i += 1 if content[i + 1:i + 2] in ("{", "}") else 2
            continue
        if c == "{":
            if not fields and content.startswith("{{", i):
                i += 1
            else:
                fields.append([i + 1, True, 0])
        elif c == "}":
            if fields:
                fields.pop()
            elif content.startswith("}}", i):
                i += 1
        i += 1
    return fields[-1][0] if fields and fields[-1][1] else None


def indent_of(line):
    """The leading whitespace of a line, after any form feed (which resets the column)."""
    indent = line[:len(line) - len(line.lstrip(" \t\f"))]
    return indent[indent.rfind("\f") + 1:]


def indent_width(indent):
    """The column an indent reaches, with tabs to multiples of 8 (as the tokenizer)."""
    column = 0
    for char in indent:
        column = (column // 8 + 1) * 8 if char == "\t" else 0 if char == "\f" else column + 1
    return column


def cursor_of(message, code):
    """cursor_pos (code points) clamped to the code; None means the end."""
    cursor = message.get("cursor_pos")
    return len(code) if cursor is None else max(0, min(int(cursor), len(code)))


def dotted_name(token):
    """``token`` if it is a dotted name of identifiers that are not keywords, else None."""
    parts = token.split(".")
    if all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
        return token
    return None


def name_at_cursor(code, cursor):
    """The dotted name under the cursor, else the callable of the call around it, else None."""
    text = code[:cursor]
    found = scan(text)
    if found.state == "code":
        left = NAME_END.search(text).group(0)
        right = re.match(r"\w*", code[cursor:]).group(0)
        token = (left + right).rstrip(".")
        if token and not left.startswith(".") and dotted_name(token):
            return token
    if found.state == "comment":
        return None
    for char, offset in reversed(found.brackets):
        if char == "(":
            before = _CALLABLE_BEFORE.search(text[:offset])
            if before and (before.start() == 0 or text[before.start() - 1] != "."):
                return dotted_name(before.group(1))
            return None
    return None
