"""A web worker's connection to one kernel, and the pool that reuses them.

``KernelConnection`` is the only worker-side code that speaks the protocol.
Every call has a timeout, so a web worker never hangs on a kernel; failures
are exceptions, never strings to match: ``KernelTimeout`` (silence; the
connection is still usable), ``KernelGone`` (refused, closed, cut: unusable),
``ProtocolMismatch`` (the kernel speaks another version), ``Refused`` (the
kernel answered with an error).

The kernel's ``hello`` is read before the first answer is believed.  Over a
Unix socket a request is sent at once, pipelined behind the hello in flight
(no extra round trip); over TCP the HMAC challenge (``auth``) comes first.
"""

import itertools
import os
import socket
import threading

from . import auth
from .address import connect, is_tcp
from .envelope import Refused, body_of, check_hello, message
from .framing import (HANDSHAKE_LIMIT, HEADER, ProtocolError, decode, encode, frame_size,
                      recv_exact)


class KernelGone(Exception):
    """The kernel's socket refused, closed or timed out."""


class KernelTimeout(KernelGone):
    """No message began within the timeout; the connection is still usable (nothing of
    a frame was read), so a caller may wait again."""


class KernelConnection:
    """A blocking connection from a web worker to one kernel."""

    def __init__(self, address, timeout, key_file=None):
        self.address = address
        self.ids = itertools.count(1)
        self.hello = None
        try:
            self.sock = connect(address, timeout)
        except (OSError, ValueError) as exc:
            raise KernelGone("cannot connect to %s: %s" % (address, exc)) from None
        try:
            if is_tcp(address):
                self.authenticate(key_file, timeout)
        except BaseException:
            self.sock.close()
            raise

    def authenticate(self, key_file, timeout):
        """The challenge of wire/auth.py; KernelGone if either side fails it."""
        if not key_file:
            raise KernelGone("no key for the TCP kernel at %s" % self.address)
        try:
            key = auth.read_key(key_file)
        except auth.AuthError as exc:
            raise KernelGone(str(exc)) from None
        self.hello = check_hello(self._read(timeout, HANDSHAKE_LIMIT))
        theirs, ours = self.hello.get("nonce"), auth.nonce()
        if self.hello.get("auth") != auth.SCHEME or not isinstance(theirs, str):
            raise KernelGone("the kernel at %s offers no %s challenge" % (self.address,
                                                                      auth.SCHEME))
        self.send(message("auth", {"nonce": ours,
                                   "mac": auth.client_proof(key, theirs, ours)}), timeout)
        answer = self._read(timeout, HANDSHAKE_LIMIT)
        try:
            body = body_of(answer)
        except ProtocolError as exc:
            raise KernelGone("the kernel at %s answered the challenge with %s"
                             % (self.address, exc)) from None
        if answer["type"] != "auth_ok" or not auth.verify(
                auth.server_proof(key, theirs, ours), body.get("mac")):
            raise KernelGone("the kernel at %s failed or refused authentication: %s"
                             % (self.address, body.get("code") or "wrong proof"))

    def send(self, envelope, timeout):
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(encode(envelope))
        except OSError as exc:
            raise KernelGone("send failed: %s" % exc) from None

    def receive(self, timeout):
        """The next envelope; KernelTimeout if none began within ``timeout`` seconds,
        KernelGone if the connection failed (then it is unusable), ProtocolMismatch if
        the kernel is of another version."""
        if self.hello is None:
            self.hello = check_hello(self._read(timeout, HANDSHAKE_LIMIT))
        envelope = self._read(timeout)
        try:
            body_of(envelope)
        except ProtocolError as exc:
            raise KernelGone(str(exc)) from None
        return envelope

    def _read(self, timeout, limit=None):
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
            size = frame_size(head) if limit is None else frame_size(head, limit)
            return decode(recv_exact(self.sock, size))
        except (OSError, EOFError, ValueError, ProtocolError) as exc:
            raise KernelGone("receive failed: %s" % (exc or type(exc).__name__)) from None

    def submit(self, type, body, timeout):
        """Send a request; its id, which ``answer`` expects its answers to name."""
        request_id = next(self.ids)
        self.send(message(type, body, id=request_id), timeout)
        return request_id

    def answer(self, request_id, timeout):
        """(type, body) of the next answer to ``request_id``: ``reply`` or ``event``;
        Refused if it is an ``error``."""
        envelope = self.receive(timeout)
        if envelope.get("parent") != request_id:
            raise KernelGone("the kernel answered request %r to request %r"
                             % (envelope.get("parent"), request_id))
        if envelope["type"] == "error":
            raise Refused(envelope["body"])
        return envelope["type"], envelope["body"]

    def request(self, type, body, timeout):
        """Send one request and return its reply's body; Refused if it is an error."""
        return self.answer(self.submit(type, body, timeout), timeout)[1]

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

    def acquire(self, address, timeout, key_file=None):
        with self.lock:
            if self.pid != os.getpid():
                self.idle, self.pid = {}, os.getpid()
            free = self.idle.get(address)
            if free:
                return free.pop()
        return KernelConnection(address, timeout, key_file)

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
