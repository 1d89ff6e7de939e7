"""The supervisor's side of its socket: accept web workers, greet them, read and write frames.

Non-blocking throughout: a worker that stops reading only grows its own output
buffer, never stalls the supervisor or the other workers.  Every connection
is greeted with ``hello`` (the protocol version, see wire/envelope.py).  On a
Unix socket (0600 in the private runtime directory) file permissions are the
access control; on TCP a connection must first pass the HMAC challenge of
wire/auth.py -- until then its frames are bounded small, anything but ``auth``
drops it, and so does silence past ``AUTH_TIMEOUT``.

A request is handed on as (``Requester``, type, body): the requester is how
its answers find their way back (``reply``, ``event``, ``error``), named by
the request's id.
"""

import selectors
import time

from ..wire import address as addresses
from ..wire import auth
from ..wire.envelope import AUTH_FAILED, hello, message
from ..wire.framing import HANDSHAKE_LIMIT, MAX_MESSAGE, FrameReader, encode

AUTH_TIMEOUT = 10.0  # seconds a TCP connection may take to prove itself
SEND_CHUNK = 256 * 1024  # bytes handed to one send(): more than a socket buffer takes


class Client:
    """One connection from a web worker."""

    def __init__(self, sock, nonce=None):
        self.sock = sock
        self.nonce = nonce  # our challenge, while a TCP peer has not answered it
        self.reader = FrameReader(HANDSHAKE_LIMIT) if nonce else FrameReader()
        self.out = bytearray()  # frames not sent yet, from ``sent`` on
        self.sent = 0
        self.closed = False
        self.deadline = time.monotonic() + AUTH_TIMEOUT if nonce else None


class Requester:
    """Who asked what: the connection and the request's id, which its answers name."""

    __slots__ = ("hub", "client", "parent")

    def __init__(self, hub, client, parent):
        self.hub, self.client, self.parent = hub, client, parent

    def reply(self, body):
        self.hub.send(self.client, message("reply", body, parent=self.parent))

    def event(self, body):
        self.hub.send(self.client, message("event", body, parent=self.parent))

    def error(self, code, **fields):
        self.hub.send(self.client, message("error", dict(fields, code=code),
                                           parent=self.parent))


class Hub:
    def __init__(self, selector, address, on_request, on_drop, key_file=None,
                 before_send=None):
        self.selector = selector
        self.on_request = on_request  # (requester, type, body)
        self.on_drop = on_drop        # (client): forget whatever waits on it
        self.before_send = before_send  # (): whatever must be true before anyone hears
        self.clients = {}
        self.key = auth.read_key(key_file) if addresses.is_tcp(address) else None
        self.listener, self.address = addresses.listen(address)
        selector.register(self.listener, selectors.EVENT_READ, self.on_accept)

    def on_accept(self, listener, mask):
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # out of descriptors, or a connection reset while queued
        sock.setblocking(False)
        client = Client(sock, auth.nonce() if self.key is not None else None)
        self.selector.register(sock, selectors.EVENT_READ, self.on_event)
        self.clients[sock] = client
        fields = {"auth": auth.SCHEME, "nonce": client.nonce} if client.nonce else {}
        self.send(client, hello(**fields))

    def on_event(self, sock, mask):
        client = self.clients.get(sock)
        if client is None:
            return
        if mask & selectors.EVENT_WRITE:
            self.flush(client)
        if not (mask & selectors.EVENT_READ) or client.closed:
            return
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        try:
            messages = client.reader.feed(data) if data else None
        except Exception:  # not our protocol: drop the connection, keep the kernel
            messages = None
        if messages is None:
            self.drop(client)
            return
        for envelope in messages:
            if client.closed:
                return
            if client.nonce is not None:
                self.authenticate(client, envelope)
                continue
            body = envelope.get("body")
            self.on_request(Requester(self, client, envelope.get("id")),
                            envelope.get("type"), body if isinstance(body, dict) else None)

    def authenticate(self, client, envelope):
        """The peer's answer to our challenge: proof of the key, or the door."""
        body = envelope.get("body") if isinstance(envelope.get("body"), dict) else {}
        theirs = body.get("nonce")
        if (envelope.get("type") != "auth" or not isinstance(theirs, str)
                or not auth.verify(auth.client_proof(self.key, client.nonce, theirs),
                                   body.get("mac"))):
            self.send(client, message("error", {"code": AUTH_FAILED}))
            self.flush(client)
            self.drop(client)
            return
        proof = auth.server_proof(self.key, client.nonce, theirs)
        client.nonce = client.deadline = None
        client.reader.limit = MAX_MESSAGE
        self.send(client, message("auth_ok", {"mac": proof}))

    def expire(self, now):
        """Drop the TCP connections that did not prove themselves in time."""
        for client in [c for c in self.clients.values() if c.deadline and now >= c.deadline]:
            self.drop(client)

    def deadlines(self):
        return [c.deadline for c in self.clients.values() if c.deadline]

    def send(self, client, envelope):
        if client.closed:
            return
        if self.before_send is not None:
            self.before_send()
        client.out += encode(envelope)
        self.flush(client)

    def flush(self, client):
        """Send what the socket takes now.  The buffer is consumed from an offset and
        compacted only when mostly sent, so a 100 MiB answer costs linear time (deleting
        each sent piece from the front would move the rest every time)."""
        if client.closed:
            return
        out = client.out
        try:
            while client.sent < len(out):
                client.sent += client.sock.send(out[client.sent:client.sent + SEND_CHUNK])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.drop(client)
            return
        if client.sent == len(out):
            out.clear()
            client.sent = 0
        elif client.sent > SEND_CHUNK and client.sent * 2 > len(out):
            del out[:client.sent]
            client.sent = 0
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
        self.selector.modify(client.sock, events, self.on_event)

    def drop(self, client):
        if client.closed:
            return
        client.closed = True
        self.on_drop(client)
        self.selector.unregister(client.sock)
        self.clients.pop(client.sock, None)
        client.sock.close()

    def close(self):
        """Send what is buffered (best effort), then remove the socket file."""
        for client in list(self.clients.values()):
            self.flush(client)
            client.sock.close()
        self.clients = {}
        addresses.remove(self.address)
        self.listener.close()
