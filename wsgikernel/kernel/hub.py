"""The supervisor's side of its Unix socket: accept web workers, read and write frames.

Non-blocking throughout: a worker that stops reading only grows its own output
buffer, never stalls the supervisor or the other workers.  The socket file is
created 0600 in the private runtime directory: file permissions are the access
control between users of one machine.
"""

import os
import selectors
import socket

from ..protocol import FrameReader, encode


class Client:
    """One connection from a web worker."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = FrameReader()
        self.out = bytearray()
        self.closed = False


class Hub:
    def __init__(self, selector, path, on_message, on_drop):
        self.selector = selector
        self.path = path
        self.on_message = on_message  # (client, message)
        self.on_drop = on_drop        # (client): forget whatever waits on it
        self.clients = {}
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        selector.register(self.listener, selectors.EVENT_READ, self.on_accept)

    def on_accept(self, listener, mask):
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, self.on_event)
        self.clients[sock] = Client(sock)

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
        for message in messages:
            self.on_message(client, message)

    def send(self, client, message):
        if client.closed:
            return
        client.out += encode(message)
        self.flush(client)

    def flush(self, client):
        try:
            while client.out:
                sent = client.sock.send(client.out)
                del client.out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.drop(client)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
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
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self.listener.close()
