"""Frames: each message is a JSON object prefixed by its length as 4 big-endian bytes.

The JSON is ``jsonpolicy``'s (strict, valid UTF-8 whatever user code produced).
A frame longer than the reader's bound is a corrupt (or hostile) stream, never
an allocation: readers that have not authenticated their peer use a small bound.
"""

import struct

from .. import jsonpolicy

HEADER = struct.Struct(">I")
MAX_MESSAGE = 256 * 1024 * 1024  # a frame larger than this is a corrupt stream
HANDSHAKE_LIMIT = 64 * 1024  # bytes of a frame before the peer has proved itself


class ProtocolError(Exception):
    """The peer sent something that is not a frame (or message) of this protocol."""


def encode(message):
    data = jsonpolicy.encode(message)
    return HEADER.pack(len(data)) + data


def frame_size(head, limit=MAX_MESSAGE):
    (size,) = HEADER.unpack(head)
    if size > limit:
        raise ProtocolError("frame of %d bytes (at most %d here)" % (size, limit))
    return size


def decode(data):
    try:
        message = jsonpolicy.loads(data)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ProtocolError("a frame that is not JSON: %s" % exc) from None
    if not isinstance(message, dict):
        raise ProtocolError("a frame holds %s, not an object" % type(message).__name__)
    return message


class FrameReader:
    """Incremental decoder for a non-blocking reader: feed bytes, get messages."""

    def __init__(self, limit=MAX_MESSAGE):
        self.buffer = bytearray()
        self.limit = limit

    def feed(self, data):
        self.buffer += data
        messages = []
        while len(self.buffer) >= HEADER.size:
            size = frame_size(self.buffer[:HEADER.size], self.limit)
            end = HEADER.size + size
            if len(self.buffer) < end:
                break
            messages.append(decode(bytes(memoryview(self.buffer)[HEADER.size:end])))
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


def recv_message(sock, limit=MAX_MESSAGE):
    """One message from a blocking socket; EOFError when the peer closed."""
    return decode(recv_exact(sock, frame_size(recv_exact(sock, HEADER.size), limit)))


def send_message(sock, message):
    sock.sendall(encode(message))
