"""The bytes of HTTP/1.1 for ``httpserver``: a request head parsed, a response framed.

``parse_head(bytes)`` is pure: it returns a ``Request`` or raises an
``HTTPError`` (400 malformed, 414 request line too long, 505 not HTTP/1.x).
Framing rules it enforces: ``Content-Length`` and ``Transfer-Encoding``
together, or conflicting lengths, are refused (request smuggling); obsolete
line folding is refused.  ``Body`` is ``wsgi.input``: never reads past the
declared length.  ``Response`` chooses how an answer is delimited --
``Content-Length`` when its size is known, chunked for HTTP/1.1 otherwise, the
close of the connection for HTTP/1.0 -- and sends the head with the first
bytes of the body in one ``sendall``.
"""

import re
import socket
import time

from . import __version__
from .errors import BadRequest, URITooLong, VersionNotSupported

MAX_LINE = 8 * 1024
SMALL_BODY = 64 * 1024      # bodies up to this size go out in the same sendall as the head
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)\Z")
_NO_BODY_STATUS = (b"1", b"204", b"304")
SERVER_NAME = "wsgikernel/%s" % __version__


class ClientGone(Exception):
    """The peer closed, reset or timed out: nothing more can be said on this connection."""


class Connection:
    """One client socket and the bytes read from it but not consumed yet."""

    __slots__ = ("sock", "address", "buffer", "served", "idle_since")

    def __init__(self, sock, address):
        self.sock = sock
        self.address = address
        self.buffer = bytearray()
        self.served = 0
        self.idle_since = time.monotonic()

    def fill(self):
        """Read what the socket has (blocking up to its timeout); ClientGone at EOF."""
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, OSError):
            raise ClientGone() from None
        if not data:
            raise ClientGone()
        self.buffer += data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Body:
    """``wsgi.input``: exactly ``length`` bytes, from the buffer then the socket.

    ``on_first_read`` sends ``100 Continue`` to a client that asked for it, only
    when the app really reads (a 413 decided from the headers sends none).
    """

    def __init__(self, conn, length, on_first_read=None):
        self.conn = conn
        self.left = length
        self.on_first_read = on_first_read

    def _take(self, size):
        if self.on_first_read is not None:
            self.on_first_read()
            self.on_first_read = None
        size = self.left if size is None or size < 0 else min(size, self.left)
        buffer = self.conn.buffer
        while len(buffer) < size:
            try:
                self.conn.fill()
            except ClientGone:
                break  # a short body: the app sees fewer bytes than declared
            buffer = self.conn.buffer
        data = bytes(buffer[:size])
        del buffer[:size]
        self.left -= len(data)
        return data

    def read(self, size=-1):
        return self._take(size) if self.left else b""

    def readline(self, size=-1):
        if not self.left:
            return b""
        limit = self.left if size is None or size < 0 else min(size, self.left)
        while True:
            end = self.conn.buffer.find(b"\n", 0, limit)
            if end >= 0 or len(self.conn.buffer) >= limit:
                return self._take(end + 1 if end >= 0 else limit)
            try:
                self.conn.fill()
            except ClientGone:
                return self._take(limit)

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


class Request:
    """The parsed head of one request."""

    __slots__ = ("method", "target", "version", "line", "headers", "length", "chunked",
                 "keep_alive", "expect_continue")


_HEADERS = re.compile(r"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\n]*(?:\n|\Z))*\Z")


def parse_head(head):
    """A Request from the head's bytes (no final blank line); HTTPError if malformed."""
    text = head.decode("latin-1").replace("\r\n", "\n")
    line, _, block = text.partition("\n")
    if len(line) > MAX_LINE:
        raise URITooLong("the request line is longer than %d bytes" % MAX_LINE)
    parts = line.split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0].encode("latin-1")) or not parts[1]:
        raise BadRequest("malformed request line %r" % line[:100])
    version = _VERSION.match(parts[2].encode("latin-1"))
    if version is None:
        raise BadRequest("malformed HTTP version %r" % parts[2][:20])
    if version.group(1) != b"1":
        raise VersionNotSupported("this server speaks HTTP/1.0 and HTTP/1.1")
    # One match checks every header line: a token, a colon, no folding, no bare CR.
    if block and (not _HEADERS.match(block) or "\r" in block):
        for raw in block.split("\n"):
            if raw[:1] in (" ", "\t"):
                raise BadRequest("obsolete line folding in the request head")
        raise BadRequest("malformed header line in the request head")
    request = Request()
    request.method, request.target = parts[0], parts[1]
    request.version = (1, int(version.group(2)))
    request.line = line
    headers = request.headers = []
    lengths, chunked, connection, expect = set(), False, "", False
    for raw in block.split("\n") if block else ():
        name, _, value = raw.partition(":")
        name, value = name.lower(), value.strip(" \t")
        headers.append((name, value))
        if name == "content-length":
            lengths.add(value)
        elif name == "transfer-encoding":
            chunked = True
        elif name == "connection":
            connection += "," + value.lower()
        elif name == "expect":
            expect = expect or value.lower() == "100-continue"
    _framing(request, lengths, chunked, connection, expect)
    return request


def _framing(request, lengths, chunked, connection, expect):
    if chunked and lengths:
        raise BadRequest("a request may not carry both Content-Length and Transfer-Encoding")
    if len(lengths) > 1:
        raise BadRequest("conflicting Content-Length headers")
    request.length = None
    if lengths:
        value = lengths.pop()
        if not value.isdigit() or not value.isascii() or len(value) > 19:
            raise BadRequest("Content-Length must be a non-negative integer")
        request.length = int(value)
    request.chunked = chunked
    tokens = {token.strip() for token in connection.split(",")}
    if request.version >= (1, 1):
        request.keep_alive = "close" not in tokens
    else:
        request.keep_alive = "keep-alive" in tokens
    request.expect_continue = request.version >= (1, 1) and expect


_date_cache = [0, ""]


def http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))]
    return _date_cache[1]


class Response:
    """start_response, the framing decision and the sends of one answer."""

    def __init__(self, handler, request, keep):
        self.handler = handler
        self.sock = handler.conn.sock
        self.request = request
        self.keep = keep
        self.status = None
        self.headers = None
        self.head_sent = False
        self.chunked = False
        self.length = None
        self.no_body = request.method == "HEAD"
        self.status_code = None
        self.sent_body = 0

    def start(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        self.status = status
        self.headers = headers
        self.status_code = int(status[:3])
        return self.write

    def head(self, body_size):
        """The response head, choosing the framing: length known, chunked or close."""
        status = self.status.encode("latin-1")
        if status.startswith(_NO_BODY_STATUS):
            self.no_body = True
        lines = [b"HTTP/1.1 " + status]
        names = set()
        for name, value in self.headers:
            lower = name.lower()
            names.add(lower)
            if lower == "connection":
                if "close" in value.lower():
                    self.keep = False
                continue
            if lower == "content-length":
                self.length = int(value)
            lines.append(("%s: %s" % (name, value)).encode("latin-1"))
        if self.length is None and not self.no_body:
            if body_size is not None:
                self.length = body_size
                lines.append(b"Content-Length: %d" % body_size)
            elif self.request.version >= (1, 1):
                self.chunked = True
                lines.append(b"Transfer-Encoding: chunked")
            else:
                self.keep = False  # HTTP/1.0 without a length: the close ends the body
        if "date" not in names:
            lines.append(b"Date: " + http_date().encode("ascii"))
        if "server" not in names:
            lines.append(b"Server: " + SERVER_NAME.encode("ascii"))
        if not self.keep:
            lines.append(b"Connection: close")
        elif self.request.version < (1, 1):
            lines.append(b"Connection: keep-alive")
        self.head_sent = True
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def frame(self, data):
        if self.no_body or not data:
            return b""
        self.sent_body += len(data)
        if self.chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def sendall(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            raise ClientGone() from None

    def write(self, data):
        """The legacy WSGI write(): the head first, then the bytes as they come."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        out = self.head(None) if not self.head_sent else b""
        self.sendall(out + self.frame(bytes(data)))

    def send(self, result):
        if isinstance(result, (list, tuple)):
            data = b"".join(result)
            if self.status is None:
                raise AssertionError("the app returned before calling start_response()")
            out = b"" if self.head_sent else self.head(len(data))
            if len(data) <= SMALL_BODY:
                self.sendall(out + self.frame(data))
            else:
                self.sendall(out)
                self.sendall(self.frame(data))
        else:
            for data in result:
                if not data:
                    continue
                out = b"" if self.head_sent else self.head(None)
                self.sendall(out + self.frame(data))
            if not self.head_sent:
                self.sendall(self.head(0 if not self.chunked else None))
        if self.chunked and not self.no_body:
            self.sendall(b"0\r\n\r\n")
