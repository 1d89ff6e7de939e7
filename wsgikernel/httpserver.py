"""A lean HTTP/1.1 server for WSGI apps, built on wsgiref's classes.

``HTTP11Server`` is a ``wsgiref.simple_server.WSGIServer`` (so ``make_server``
builds it) and ``HTTP11RequestHandler`` a ``WSGIRequestHandler`` whose
``handle()`` speaks HTTP/1.1 itself instead of going through
``BaseHTTPRequestHandler``, ``email.parser`` and ``ServerHandler``:

- **Persistent connections.** Keep-alive by default for HTTP/1.1, on request
  for HTTP/1.0; ``Connection: close`` honoured both ways; at most
  ``max_requests`` per connection; pipelined requests answered in order.
- **Framing.** ``Content-Length`` on every response whose size is known (a
  list body); ``Transfer-Encoding: chunked`` for one that is not (NDJSON
  streams), so any HTTP/1.1 client reads it line by line; an HTTP/1.0 client
  gets a close-delimited body.  A request with both ``Content-Length`` and
  ``Transfer-Encoding``, or with conflicting lengths, is a 400 and the
  connection is closed (request smuggling); a chunked request body reaches the
  app as ``HTTP_TRANSFER_ENCODING`` with an empty input (the app answers 411)
  and the connection is closed after the answer, since its body was not read.
- **Threads.** Pre-started threads block in ``accept()`` and answer what
  they accept themselves, without a hand-off (``Acceptors``); one that
  accepts while no other waits in ``accept()`` starts another first, up to
  ``max_threads``, so long-polls and streams (each holds its thread) never
  starve a short request.  Between requests a thread lingers a few
  milliseconds for the next one on its connection, then parks the connection
  in a selector, where an idle keep-alive connection costs no thread; when
  it speaks again a small pool (``WorkerPool``) serves it, and it is closed
  after ``keepalive_timeout`` of silence.  Threads beyond the minimum retire
  when idle.
- **Few syscalls.** The request head is parsed from bytes (no
  ``email.parser``); the response head and a small body go out in one
  ``sendall``; the access log line is written after the answer is sent.

Limits: a request line over 8 KiB is a 414, a head over 64 KiB a 431, a client
that stalls mid-request is dropped after ``request_timeout``.  Errors found
before the app runs are answered as problem+json, like the app's own.
"""

import re
import select
import selectors
import socket
import struct
import sys
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from .dispatch import encode_json
from .errors import HeadersTooLarge, HTTPError, URITooLong
from .httpthreads import Acceptors, Stopped, WorkerPool
from .httpwire import (MAX_LINE, SERVER_NAME, Body, ClientGone, Connection, Response,
                       http_date, parse_head)

MAX_HEAD = 64 * 1024
DRAIN_LIMIT = 64 * 1024     # unread body bytes read and dropped to keep a connection usable
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class HTTP11RequestHandler(WSGIRequestHandler):
    """Answers the requests of one connection; parks it between requests (see the module doc)."""

    def __init__(self, conn, server):
        # No BaseRequestHandler.__init__: no makefile(), no email.parser.
        self.conn = conn
        self.request = conn.sock
        self.client_address = conn.address
        self.server = server
        self.requestline = ""
        self.request_version = "HTTP/1.1"
        self.command = None

    # -- the connection ------------------------------------------------------

    def handle(self):
        """Serve requests while they come; True to park the connection, False to close it."""
        conn = self.conn
        while True:
            try:
                keep = self.handle_one()
            except ClientGone:
                return False
            if not keep or self.server.stopping:
                return False
            if conn.buffer:
                continue  # pipelined: the next request is already here
            if not self.server.wait_readable(conn.sock, self.server.linger):
                return True

    def read_head(self):
        """The next request head's bytes, or None at a clean end of the connection."""
        conn = self.conn
        while True:
            while conn.buffer[:2] == b"\r\n":  # RFC 9112 2.2: ignore blank lines before it
                del conn.buffer[:2]
            found = _HEAD_END.search(conn.buffer)
            if found is not None:
                if found.start() > MAX_HEAD:
                    raise HeadersTooLarge("the request head is larger than %d bytes" % MAX_HEAD)
                head = bytes(conn.buffer[:found.start()])
                del conn.buffer[:found.end()]
                return head
            if len(conn.buffer) > MAX_HEAD:
                raise HeadersTooLarge("the request head is larger than %d bytes" % MAX_HEAD)
            if conn.buffer.find(b"\n") < 0 and len(conn.buffer) > MAX_LINE:
                raise URITooLong("the request line is longer than %d bytes" % MAX_LINE)
            try:
                conn.fill()
            except ClientGone:
                if conn.buffer:
                    raise
                return None

    def handle_one(self):
        """One request and its answer; True if the connection may serve another."""
        try:
            head = self.read_head()
            if head is None:
                return False
            request = parse_head(head)
        except HTTPError as exc:
            self.send_problem(exc)
            return False
        self.requestline = request.line
        self.command = request.method
        self.request_version = "HTTP/%d.%d" % request.version
        self.conn.served += 1
        keep = request.keep_alive and not request.chunked
        if self.conn.served >= self.server.max_requests:
            keep = False
        body = Body(self.conn, request.length or 0,
                    self.send_continue if request.expect_continue and request.length else None)
        keep = self.run_app(request, body, keep)
        if keep and body.left:
            # The app left part of the body unread: its bytes would be taken for the
            # next request.  Drop a small rest; close rather than read a large one, or
            # one the client holds back until it hears 100 Continue.
            if body.left > DRAIN_LIMIT or body.on_first_read is not None:
                return False
            body.read()
            keep = not body.left
        return keep

    def send_continue(self):
        try:
            self.conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        except OSError:
            raise ClientGone() from None

    # -- the app ---------------------------------------------------------------

    def environ_for(self, request, body):
        env = self.server.base_environ.copy()
        path, _, query = request.target.partition("?")
        if "%" in path:
            from urllib.parse import unquote
            path = unquote(path, "latin-1")
        env.update({
            "REQUEST_METHOD": request.method, "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_PROTOCOL": self.request_version, "REMOTE_ADDR": self.conn.address[0],
            "wsgi.input": body, "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0), "SERVER_SOFTWARE": SERVER_NAME,
        })
        for name, value in request.headers:
            if name == "content-type":
                env["CONTENT_TYPE"] = value
            elif name == "content-length":
                env["CONTENT_LENGTH"] = value
            elif "_" not in name:  # X_Forwarded_For must not pass for X-Forwarded-For
                key = "HTTP_" + name.upper().replace("-", "_")
                env[key] = env[key] + "," + value if key in env else value
        return env

    def run_app(self, request, body, keep):
        """Call the app and send its answer; True if the connection stays usable."""
        response = Response(self, request, keep)
        environ = self.environ_for(request, body)
        result = None
        try:
            result = self.server.get_app()(environ, response.start)
            response.send(result)
        except ClientGone:
            response.keep = False
        except Exception:
            self.server.handle_error(self.conn.sock, self.client_address)
            if not response.head_sent:
                self.send_problem(HTTPError("the server failed to answer this request"))
            response.keep = False
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self.server.handle_error(self.conn.sock, self.client_address)
        self.log_request(response.status_code, response.sent_body or "-")
        return response.keep

    def send_problem(self, exc):
        """An error found before (or instead of) the app: problem+json, then close."""
        body = encode_json(exc.to_dict())
        head = ("HTTP/1.1 %s\r\nContent-Type: application/problem+json\r\n"
                "Content-Length: %d\r\nConnection: close\r\nDate: %s\r\nServer: %s\r\n\r\n"
                % (exc.status_line, len(body), http_date(), SERVER_NAME))
        try:
            self.conn.sock.sendall(head.encode("latin-1") + body)
        except OSError:
            pass
        if not self.requestline:
            self.requestline = "-"
        self.log_request(exc.status, len(body))


class HTTP11Server(WSGIServer):
    """wsgiref's WSGIServer with acceptor threads, parked keep-alive sockets and a pool."""

    request_queue_size = 1024  # the default 5 drops SYNs under 8+ concurrent clients
    allow_reuse_address = True
    min_threads = 8
    max_threads = 512
    linger = 0.005             # seconds a worker waits for the next request before parking
    keepalive_timeout = 15.0   # seconds an idle keep-alive connection is kept
    request_timeout = 30.0     # seconds a started request or a send may stall
    max_requests = 1000        # per connection

    def __init__(self, *args, **kwargs):
        self.stopping = False
        self._stopped = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._parked_lock = threading.Lock()
        self._to_park = []
        self._wake_r, self._wake_w = socket.socketpair()  # before a bind that may fail
        self._wake_r.setblocking(False)
        super().__init__(*args, **kwargs)
        self.selector = selectors.DefaultSelector()
        # Parked keep-alive connections that speak again are served by this pool;
        # new connections by the acceptor threads (see Acceptors).
        self.pool = WorkerPool(self._serve_connection, 2, self.max_threads)

    # -- the acceptor loop -------------------------------------------------------

    def serve_forever(self, poll_interval=0.5):
        """Start the acceptor threads, then watch parked connections until shutdown()."""
        self.socket.settimeout(None)  # blocking accept(): see Acceptors; shutdown() wakes them
        self.acceptors = Acceptors(self._accept_one, self.min_threads, self.max_threads)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        next_expiry = 0.0
        try:
            while not self.stopping:
                for key, _ in self.selector.select(poll_interval):
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                    else:
                        self.selector.unregister(key.fileobj)
                        self.pool.submit(key.data)
                self._register_parked()
                now = time.monotonic()
                if now >= next_expiry:
                    next_expiry = now + 1.0
                    self._expire_idle(now)
        finally:
            self.acceptors.close()
            self._close_parked()
            self.pool.close()
            self._stopped.set()

    def shutdown(self):
        self.stopping = True
        try:  # wakes every thread blocked in accept() (Linux: EINVAL); they see ``stopping``
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._wake()
        self._stopped.wait()

    def _accept_one(self):
        """Accept one connection for an acceptor thread (None: nothing usable came)."""
        try:
            sock, address = self.socket.accept()
        except (socket.timeout, BlockingIOError, InterruptedError):
            return None
        except OSError:
            if self.stopping:
                raise Stopped() from None
            return None
        if self.stopping:
            sock.close()
            raise Stopped()
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                # several small writes (stream lines) must not wait for delayed ACKs
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A blocking socket with kernel timeouts, not Python's settimeout(): that
            # makes every recv and send a poll() plus the call.  A stall past the
            # timeout fails the call (EAGAIN), which ends the connection.
            sock.settimeout(None)
            timeval = struct.pack("ll", int(self.request_timeout),
                                  int(self.request_timeout % 1 * 1e6))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        except OSError:  # reset already: the first read will say so
            pass
        return Connection(sock, address), self._serve_connection

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError, OSError):
            pass

    def park(self, conn):
        """Keep an idle keep-alive connection without a thread until it speaks again."""
        conn.idle_since = time.monotonic()
        with self._parked_lock:
            self._to_park.append(conn)
        self._wake()

    def _register_parked(self):
        with self._parked_lock:
            parked, self._to_park = self._to_park, []
        for conn in parked:
            try:
                self.selector.register(conn.sock, selectors.EVENT_READ, conn)
            except (ValueError, OSError):
                conn.close()

    def _expire_idle(self, now):
        deadline = now - self.keepalive_timeout
        for key in list(self.selector.get_map().values()):
            conn = key.data
            if conn is not None and conn.idle_since < deadline:
                self.selector.unregister(key.fileobj)
                conn.close()

    def _close_parked(self):
        for key in list(self.selector.get_map().values()):
            if key.data is not None:
                key.data.close()
        self.selector.close()

    # -- a worker's job ---------------------------------------------------------

    def _serve_connection(self, conn):
        with self._idle:
            self._in_flight += 1
        park = False
        try:
            park = self.RequestHandlerClass(conn, self).handle()
        except Exception:
            self.handle_error(conn.sock, conn.address)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
        if park and not self.stopping:
            self.park(conn)
        else:
            conn.close()

    def wait_readable(self, sock, timeout):
        """True if ``sock`` has bytes (or EOF) within ``timeout`` seconds."""
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def wait_idle(self, timeout):
        """Wait up to ``timeout`` seconds for requests being answered; True if none are left."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def server_close(self):
        super().server_close()
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def handle_error(self, request, client_address):
        import traceback
        sys.stderr.write("error answering %s:\n%s" % (client_address[0] if client_address
                                                        else "?", traceback.format_exc()))


class HTTP11ServerV6(HTTP11Server):
    address_family = socket.AF_INET6

