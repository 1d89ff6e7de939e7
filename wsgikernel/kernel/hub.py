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

import collections
import selectors
import time

from ..wire import address as addresses
from ..wire import auth
from ..wire.envelope import AUTH_FAILED, hello, message
from .. import jsonpolicy
from ..wire.framing import HANDSHAKE_LIMIT, HEADER, MAX_MESSAGE, FrameReader

AUTH_TIMEOUT = 10.0  # seconds a TCP connection may take to prove itself
SEND_CHUNK = 256 * 1024  # bytes handed to one send(): more than a socket buffer takes
SMALL = 64 * 1024        # pieces below this are gathered into one buffer before sending
ACCEPT_PAUSE = 0.1       # seconds without accepting after accept() failed
MAX_UNPROVEN = 64        # TCP connections at once that have not passed the challenge


class Client:
    """One connection from a web worker."""

    def __init__(self, sock, nonce=None):
        self.sock = sock
        self.nonce = nonce  # our challenge, while a TCP peer has not answered it
        self.reader = FrameReader(HANDSHAKE_LIMIT) if nonce else FrameReader()
        self.out = collections.deque()  # pieces of frames not sent yet (Hub.queue)
        self.sent = 0                   # bytes of out[0] sent already
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

    def reply_record(self, key, record):
        """reply {key, record} with ``record`` already JSON (bytes): spliced, not encoded."""
        self.hub.send_payload(
            self.client, b'{"type":"reply","parent":%s,"body":{"key":%s,"record":'
            % (jsonpolicy.encode(self.parent), jsonpolicy.encode(key)), record, b"}}")

    def event_record(self, record):
        """The stream's last event: the record (JSON bytes) with ``"event": "record"``."""
        self.hub.send_payload(
            self.client, b'{"type":"event","parent":%s,"body":' % jsonpolicy.encode(
                self.parent), memoryview(record)[:-1], b',"event":"record"}}')

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
        self.paused_until = None  # accepting paused (out of descriptors) until then
        selector.register(self.listener, selectors.EVENT_READ, self.on_accept)

    def on_accept(self, listener, mask):
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # out of descriptors (or a reset while queued): pause, not spin
            self.selector.unregister(listener)
            self.paused_until = time.monotonic() + ACCEPT_PAUSE
            return
        if self.key is not None and sum(1 for c in self.clients.values() if c.nonce) >= \
                MAX_UNPROVEN:
            sock.close()  # strangers do not get to hold every descriptor
            return
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
        """Drop the TCP connections that did not prove themselves in time; accept again
        after a pause."""
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None
            self.selector.register(self.listener, selectors.EVENT_READ, self.on_accept)
        for client in [c for c in self.clients.values() if c.deadline and now >= c.deadline]:
            self.drop(client)

    def deadlines(self):
        found = [c.deadline for c in self.clients.values() if c.deadline]
        return found + ([self.paused_until] if self.paused_until is not None else [])

    def send(self, client, envelope):
        self.send_payload(client, jsonpolicy.encode(envelope))

    def send_payload(self, client, *pieces):
        """Send one frame whose JSON is the concatenation of ``pieces`` (bytes-like)."""
        if client.closed:
            return
        if self.before_send is not None:
            self.before_send()
        self.queue(client, (HEADER.pack(sum(len(piece) for piece in pieces)),) + pieces)
        self.flush(client)

    @staticmethod
    def queue(client, pieces):
        """Small pieces are gathered into one buffer (one send() for many events), large
        ones queued as they are: a 100 MiB record is never copied here."""
        out = client.out
        for piece in pieces:
            if len(piece) >= SMALL:
                out.append(piece)
            elif out and isinstance(out[-1], bytearray) and len(out[-1]) < SEND_CHUNK:
                out[-1] += piece
            else:
                out.append(bytearray(piece))

    def flush(self, client):
        """Send what the socket takes now, piece by piece from an offset (linear in
        what is sent, however large)."""
        if client.closed:
            return
        out = client.out
        try:
            while out:
                piece = out[0]
                client.sent += client.sock.send(
                    memoryview(piece)[client.sent:client.sent + SEND_CHUNK])
                if client.sent >= len(piece):
                    out.popleft()
                    client.sent = 0
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.drop(client)
            return
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
