"""Where a kernel listens: ``unix:PATH`` (this host) or ``tcp:HOST:PORT`` (any host).

A bare absolute path is read as ``unix:PATH``.  ``tcp:HOST:0`` asks the
listener to pick a free port; ``listen`` returns the address to publish
(``tcp:0.0.0.0:0``, every interface, is published under this host's address).
IPv6 hosts are written in brackets (``tcp:[::1]:7000``).
"""

import os
import socket


class AddressError(ValueError):
    pass


def parse(address):
    """("unix", path) or ("tcp", (host, port)); AddressError if neither."""
    if not isinstance(address, str) or not address:
        raise AddressError("no kernel address")
    if address.startswith("/"):
        return "unix", address
    scheme, _, rest = address.partition(":")
    if scheme == "unix" and rest:
        return "unix", rest
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if host and port.isascii() and port.isdigit() and int(port) < 65536:
            return "tcp", (host, int(port))
    raise AddressError("not a kernel address: %r (unix:PATH or tcp:HOST:PORT)" % address)


def is_tcp(address):
    return parse(address)[0] == "tcp"


def format_tcp(host, port):
    return "tcp:%s:%d" % ("[%s]" % host if ":" in host else host, port)


def family(kind, where):
    if kind == "unix":
        return socket.AF_UNIX
    return socket.AF_INET6 if ":" in where[0] else socket.AF_INET


def connect(address, timeout):
    """A connected, blocking socket with ``timeout``; OSError if nobody listens."""
    kind, where = parse(address)
    sock = socket.socket(family(kind, where), socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(where)
        if kind == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


WILDCARDS = ("0.0.0.0", "::", "")


def advertised(host):
    """What others reach a listener on ``host`` by: a wildcard (a kernel in a batch job
    listens on every interface) is published as this host's address, from its name;
    127.0.0.1 where the name does not resolve (a single-node cluster)."""
    if host not in WILDCARDS:
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def listen(address, backlog=64):
    """(listening non-blocking socket, the address to publish).  A Unix socket file is
    created 0600: file permissions are the access control between users of one host."""
    kind, where = parse(address)
    sock = socket.socket(family(kind, where), socket.SOCK_STREAM)
    try:
        if kind == "unix":
            try:
                os.unlink(where)
            except FileNotFoundError:
                pass
            sock.bind(where)
            os.chmod(where, 0o600)
            published = "unix:" + where
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)
            published = format_tcp(advertised(where[0]), sock.getsockname()[1])
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, published


def remove(address):
    """Remove a Unix socket's file (nothing to do for TCP)."""
    try:
        kind, where = parse(address)
    except AddressError:
        return
    if kind == "unix":
        try:
            os.unlink(where)
        except OSError:
            pass
