"""The wire protocol between web workers and kernels, and the server-side connection.

Framing: each message is a JSON object (under ``jsonpolicy``: strict JSON,
valid UTF-8, whatever user code produced) prefixed by its length as 4
big-endian bytes.  The same framing is used between a kernel's
supervisor and its user-code process.  Requests carry an ``op``; replies carry
``ok`` (and ``error`` when false); a streaming request gets any number of
``event`` messages and ends with one whose ``event`` is ``record``.

``KernelConnection`` is the only server-side code that speaks this protocol.
Every call has a timeout, so a web worker never hangs on a kernel.  Nothing
here imports the HTTP layer: the kernel process imports this module too.
"""

import socket
import struct
import threading

from . import jsonpolicy

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")
MAX_MESSAGE = 256 * 1024 * 1024  # a frame larger than this is a corrupt stream


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


class KernelGone(Exception):
    """The kernel's socket refused, closed or timed out."""


class KernelTimeout(KernelGone):
    """No message began within the timeout; the connection is still usable (nothing of
    a frame was read), so a caller may wait again."""


def encode(message):
    data = jsonpolicy.encode(message)
    return HEADER.pack(len(data)) + data


class FrameReader:
    """Incremental decoder for a non-blocking reader: feed bytes, get messages."""

    def __init__(self):
        self.buffer = bytearray()

    def feed(self, data):
        self.buffer += data
        messages = []
        while len(self.buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self.buffer)
            if size > MAX_MESSAGE:
                raise ProtocolError("frame of %d bytes" % size)
            end = HEADER.size + size
            if len(self.buffer) < end:
                break
            messages.append(jsonpolicy.loads(bytes(self.buffer[HEADER.size:end])))
            del self.buffer[:end]
        return messages


def recv_exact(sock, size):
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_message(sock):
    """One message from a blocking socket; EOFError when the peer closed."""
    (size,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    if size > MAX_MESSAGE:
        raise ProtocolError("frame of %d bytes" % size)
    return jsonpolicy.loads(recv_exact(sock, size))


def send_message(sock, message):
    sock.sendall(encode(message))


class KernelConnection:
    """A blocking connection from a web worker to one kernel's socket."""

    def __init__(self, address, timeout):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(address)
        except OSError as exc:
            self.sock.close()
            raise KernelGone("cannot connect to %s: %s" % (address, exc)) from None

    def send(self, message, timeout):
        try:
            self.sock.settimeout(timeout)
            send_message(self.sock, message)
        except OSError as exc:
            raise KernelGone("send failed: %s" % exc) from None

    def receive(self, timeout):
        """The next message; KernelTimeout if none began within ``timeout`` seconds,
        KernelGone if the connection failed (then it is unusable)."""
        try:
            self.sock.settimeout(timeout)
            first = self.sock.recv(HEADER.size)
        except socket.timeout:
            raise KernelTimeout("no message within %g s" % timeout) from None
        except OSError as exc:
            raise KernelGone("receive failed: %s" % exc) from None
        try:
            if not first:
                raise EOFError("connection closed")
            head = first + recv_exact(self.sock, HEADER.size - len(first))
            (size,) = HEADER.unpack(head)
            if size > MAX_MESSAGE:
                raise ProtocolError("frame of %d bytes" % size)
            return jsonpolicy.loads(recv_exact(self.sock, size))
        except (OSError, EOFError, ValueError, ProtocolError) as exc:
            raise KernelGone("receive failed: %s" % (exc or type(exc).__name__)) from None

    def request(self, message, timeout):
        """Send one request and return its reply (a dict with ``ok``)."""
        self.send(message, timeout)
        return self.receive(timeout)

    def close(self):
        self.sock.close()


class ConnectionPool:
    """Idle connections per kernel address, reused across requests of one worker process.

    A connection is checked out for the length of one exchange; one that failed
    is closed, never returned.  After a fork (gunicorn, uWSGI) the pool starts
    empty: sharing a socket between processes would interleave their frames.
    """

    def __init__(self, per_address=4):
        self.per_address = per_address
        self.idle = {}
        self.lock = threading.Lock()
        self.pid = None

    def acquire(self, address, timeout):
        import os
        with self.lock:
            if self.pid != os.getpid():
                self.idle, self.pid = {}, os.getpid()
            free = self.idle.get(address)
            if free:
                return free.pop()
        return KernelConnection(address, timeout)

    def release(self, conn):
        with self.lock:
            free = self.idle.setdefault(conn.address, [])
            if len(free) < self.per_address:
                free.append(conn)
                return
        conn.close()

    def discard_address(self, address):
        with self.lock:
            for conn in self.idle.pop(address, ()):
                conn.close()
