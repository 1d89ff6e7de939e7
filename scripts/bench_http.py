#!/usr/bin/env python3
"""The HTTP side of scripts/bench.py: servers, clients, latency and concurrency runs, the table.

    python3 scripts/bench_http.py [--quick] [--json]   # the HTTP front end figures alone

``scripts/bench.py`` imports this module for everything about HTTP: the
servers it starts (:class:`Fleet`: serve.py, the baselines, the Flask app,
gunicorn), requests on new or kept-alive connections (:func:`call`,
:class:`Client`), latency runs taking turns (:func:`interleaved`,
:func:`output_round_trips`), N concurrent clients (:func:`concurrent`), the
long-poll probe and issue 14's figures built from them, each beside the
tutorial's Flask app (``scripts/flask_tutorial.py``) measured in the same run.
Without Flask the Flask baselines fall back to DESIGN.md section 7's figure
where there is one, else ``n/a``, with a note.

Run alone, it starts ``scripts/serve.py`` (``--pool-size 0``: no refill
competing for the CPU), the HTTP floor (``scripts/baseline_server.py
--floor``) and the Flask app, prints the front end figures and stops all
three.  Standard library only (Flask is only imported by the Flask server's
own process).  Every loop is bounded by a count and a deadline.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE = os.path.join(ROOT, "scripts", "serve.py")
BASELINE = os.path.join(ROOT, "scripts", "baseline_server.py")
FLASK_APP = os.path.join(ROOT, "scripts", "flask_tutorial.py")
PYTHON = sys.executable  # one interpreter for everything (a PATH python3 may be a slow shim)

FLASK_REFERENCE_MS = 1.35  # DESIGN.md section 7; used only when Flask cannot be imported
TRIVIAL = "x=1+1"
SLEEP_CELL = "import time; time.sleep(40)"  # what the long-polls wait on (interrupted after)
START_TIMEOUT = 30.0   # seconds a server may take to print its URL
STOP_TIMEOUT = 120.0   # seconds a server may take to stop (it stops every kernel first)
REQUEST_TIMEOUT = 60.0
PROBE_TIMEOUT = 15.0   # a short request while long-polls are open
PHASE_DEADLINE = 300.0  # no phase runs longer than this
LONGPOLL_WAIT = 30     # seconds each long-poll asks the server to hold it
SLOW_CONNECT = 1.0     # a connect() this slow is a dropped SYN retransmitted (1 s, 3 s, ...)
CLIENTS = (8, 32)

COUNTS = {
    # name: (full, quick)
    "warmup": (30, 5),
    "execute": (400, 30),
    "concurrent": (3000, 80),   # requests per concurrency run (1 s SYN stalls: not fewer)
    "longpolls": (100, 20),
    "longpoll_probe": (200, 20),  # short requests without (half before, half after) and with
}


class BenchError(RuntimeError):
    pass


# -- processes ------------------------------------------------------------------


class Server:
    """One server process we started: its URL line, its port, how to stop it."""

    def __init__(self, name, cmd, state_dir=None, env=None):
        self.name, self.cmd, self.state_dir, self.env = name, cmd, state_dir, env
        self.proc = None
        self.port = None
        self.log = tempfile.TemporaryFile()

    def launch(self):
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log, cwd=ROOT, env=self.env)
        return self

    def wait_url(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        line = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in line:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            line += chunk
        first = line.split(b"\n", 1)[0].decode("utf-8", "replace")
        if " serving on http://" not in first:
            raise BenchError("%s did not start: %r\n%s" % (self.name, first, self.stderr()))
        self.port = int(first.rsplit(":", 1)[1].strip().rstrip("/"))
        # Keep draining stdout (the rest of the banner; whatever the baseline prints).
        threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True).start()
        return self

    def stderr(self):
        self.log.seek(0)
        return self.log.read()[-4000:].decode("utf-8", "replace")

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM (the server stops its kernels), then SIGKILL; then sweep its kernels."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.state_dir:
            kill_processes_of(self.state_dir)
        self.log.close()


class Gunicorn(Server):
    """A gunicorn master: its port is in its error log ("Listening at: ..."), not on stdout."""

    LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")

    def wait_url(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.port is None:
            self.log.seek(0)
            found = self.LISTENING.search(self.log.read())
            if found:
                self.port = int(found.group(1))
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("%s did not start:\n%s" % (self.name, self.stderr()))
            else:
                time.sleep(0.05)
        threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True).start()
        while True:  # the master listens before its workers have booted
            try:
                call(self.port, "GET", "/healthz", timeout=5)
                return self
            except (OSError, BenchError, http.client.HTTPException):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("%s does not answer:\n%s" % (self.name, self.stderr()))
                time.sleep(0.05)


def _drain(stream):
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


class Fleet:
    """Every server a run starts, so that one ``stop_all()`` stops them all."""

    def __init__(self):
        self.servers = []
        self.pids = []

    def start(self, name, cmd, state_dir=None, kind=Server, env=None):
        server = kind(name, cmd, state_dir, env)
        self.servers.append(server)
        server.launch()
        self.pids.append(server.proc.pid)
        return server

    def wsgikernel(self, name, state_dir, *extra):
        os.mkdir(state_dir, 0o700)
        return self.start(name, [PYTHON, SERVE, "--port", "0", "--state-dir", state_dir,
                                 "--no-auth", "--quiet", "--max-envs", "300",
                                 "--kill-grace", "1"] + list(extra), state_dir)

    def baseline(self, name, *extra):
        return self.start(name, [PYTHON, BASELINE, "--port", "0"] + list(extra))

    def flask(self, python):
        return self.start("flask", [python, FLASK_APP, "--port", "0", "--quiet"])

    def gunicorn(self, name, state_dir, config, workers=2, pool_size=None):
        """``gunicorn -w N -c <config> wsgikernel.wsgi:application`` on a free loopback port.

        Set up as tests/test_deploy_gunicorn.py does: WSGIKERNEL_* variables only
        (auth off and the pool at its default, as for the serve.py under test);
        the state dir is passed with ``--env`` so that it is on the command line
        of the master and its workers (kill_processes_of() finds them).
        """
        os.mkdir(state_dir, 0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSGIKERNEL_")}
        env.update(WSGIKERNEL_NO_AUTH="1", WSGIKERNEL_KILL_GRACE="1", WSGIKERNEL_MAX_ENVS="300",
                   PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p))
        if pool_size is not None:
            env["WSGIKERNEL_POOL_SIZE"] = str(pool_size)
        cmd = [PYTHON, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", str(workers),
               "-c", config, "--env", "WSGIKERNEL_STATE_DIR=" + state_dir]
        if gunicorn_has_control_socket():
            cmd.append("--no-control-socket")  # gunicorn >= 25.1: one per instance
        return self.start(name, cmd + ["wsgikernel.wsgi:application"], state_dir, Gunicorn, env)

    def stop_all(self):
        for server in self.servers:
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print("bench: could not stop %s: %r" % (server.name, exc), file=sys.stderr)


def processes_mentioning(marker):
    """Pids of processes whose command line contains ``marker`` (kernels carry their dir)."""
    found = []
    needle = marker.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                if needle in handle.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def kill_processes_of(state_dir):
    """SIGKILL whatever is left of the kernels of ``state_dir`` (their groups too)."""
    for _ in range(5):
        pids = processes_mentioning(state_dir)
        if not pids:
            return
        for pid in pids:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.1)


def gunicorn_version():
    """``"gunicorn 27.0.1"`` if this interpreter can import gunicorn, else None."""
    try:
        import gunicorn
    except ImportError:
        return None
    return "gunicorn %s" % gunicorn.__version__


def gunicorn_has_control_socket():
    import gunicorn
    return tuple(gunicorn.version_info[:2]) >= (25, 1)


def flask_version(python):
    """``"Flask 3.1.3, Werkzeug 3.1.8"`` if ``python`` can import Flask, else None."""
    code = ("import importlib.metadata as m, flask; "
            "print('Flask %s, Werkzeug %s' % (m.version('flask'), m.version('werkzeug')))")
    try:
        proc = subprocess.run([python, "-c", code], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


# -- HTTP clients -----------------------------------------------------------------


def _encode(body):
    if body is None:
        return None, {}
    return json.dumps(body).encode("utf-8"), {"Content-Type": "application/json"}


def call(port, method, path, body=None, expect=(200,), timeout=REQUEST_TIMEOUT):
    """One request on a NEW connection; (status, body bytes).  BenchError if unexpected."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data, headers = _encode(body)
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    if expect and response.status not in expect:
        raise BenchError("%s %s on port %d: %d %s" % (method, path, port, response.status,
                                                      payload[:300]))
    return response.status, payload


def timed(port, method, path, body=None, expect=(200,), timeout=REQUEST_TIMEOUT):
    start = time.perf_counter()
    call(port, method, path, body, expect, timeout)
    return (time.perf_counter() - start) * 1000.0


def execute_path(env_id):
    return "/envs/%s/execute" % env_id


class Client:
    """The same request again and again; each call returns its ms.  ``keep``: ONE connection.

    Kept alive, a connection the server closed (an HTTP/1.0 answer, ``Connection:
    close``, a close between requests) is opened again by the next call:
    ``connects`` counts the connections opened since ``reset()``, ``connect_s``
    holds their connect() times, ``retries`` counts requests sent again because the
    server closed a reused connection under them (that call's time includes both).
    """

    def __init__(self, port, method, path, body=None, expect=(200,), keep=True):
        self.method, self.path, self.expect, self.keep = method, path, expect, keep
        self.data, self.headers = _encode(body)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        self.reset()

    def reset(self):
        self.connects = self.retries = 0
        self.connect_s = []

    def __call__(self):
        start = time.perf_counter()
        try:
            for attempt in (0, 1):
                fresh = self.conn.sock is None
                if fresh:
                    began = time.perf_counter()
                    self.conn.connect()
                    self.connect_s.append(time.perf_counter() - began)
                    self.connects += 1
                try:
                    self.conn.request(self.method, self.path, body=self.data,
                                      headers=self.headers)
                    response = self.conn.getresponse()
                    payload = response.read()
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    self.conn.close()
                    if fresh or attempt:
                        raise
                    self.retries += 1
        except BaseException:
            self.conn.close()
            raise
        if not self.keep:
            self.conn.close()
        if response.status not in self.expect:
            raise BenchError("%s %s: %d %s" % (self.method, self.path, response.status,
                                               payload[:300]))
        return (time.perf_counter() - start) * 1000.0

    def close(self):
        self.conn.close()


# -- statistics, figures, the table --------------------------------------------------


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # nearest rank
    return ordered[min(len(ordered), int(rank)) - 1]


def p50(values):
    return percentile(values, 50)


class Deadline:
    def __init__(self, seconds, what):
        self.end = time.monotonic() + seconds
        self.what = what

    def check(self):
        if time.monotonic() > self.end:
            raise BenchError("%s ran past its deadline" % self.what)


def figure(value, baseline=None, unit="ms", target=None, met=None, label="", ratio=None,
           note=None):
    """One row; counts (unit "count") get no ratio."""
    if ratio is None and unit != "count" and value is not None and baseline:
        ratio = value / baseline
    return {"label": label, "value": value, "baseline": baseline, "ratio": ratio,
            "unit": unit, "target": target, "met": met, "note": note}


def met_if(condition, *values):
    return None if any(v is None for v in values) else bool(condition)


STARTED = time.monotonic()


def log(args, text):
    if not args.json:
        print("... %5.1f s  %s" % (time.monotonic() - STARTED, text), file=sys.stderr,
              flush=True)


def fmt(value, unit):
    if value is None:
        return "n/a"
    if unit == "x":
        return "%.0fx" % value
    if unit in ("req/s", "count"):
        return "%.0f" % value
    if unit == "MB":
        return "%.1f" % value
    if value >= 100:
        return "%.0f" % value
    if value >= 10:
        return "%.1f" % value
    return "%.2f" % value


def table(result, title="wsgikernel bench"):
    rows = [("figure", "unit", "wsgikernel", "baseline", "ratio", "target", "met?")]
    section = None
    for fig in result["figures"].values():
        if fig.get("section") != section:
            section = fig.get("section")
            rows.append(("[%s]" % (section or "scripts/serve.py"),) + ("",) * 6)
        unit = fig["unit"]
        rows.append((fig["label"], unit, fmt(fig["value"], unit), fmt(fig["baseline"], unit),
                     "n/a" if fig["ratio"] is None else "%.2fx" % fig["ratio"],
                     fig["target"] or "-",
                     {True: "yes", False: "NO", None: "-" if not fig["target"] else "n/a"}
                     [fig["met"]]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [str(c).ljust(w) if i in (0, 1, 5) else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    machine = result["machine"]
    head = "%s, %s, Python %s, %d CPUs, load average %.2f before, %.2f after%s" % (
        title, result["date"], machine["python"], machine["cpus"], machine["load_before"],
        machine["load_after"], " (--quick)" if result["quick"] else "")
    out = [head, ""] + lines
    if result["notes"]:
        out += [""] + ["note: " + note for note in result["notes"]]
    return "\n".join(out)


def machine(load_before):
    return {"python": platform.python_version(), "executable": PYTHON,
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# -- runs --------------------------------------------------------------------------


def interleaved(targets, n, warmup):
    """Latencies (ms) of each target's request, the targets taking turns.

    ``targets``: name -> a callable returning ms (a :class:`Client`) or a
    ``(port, method, path, body)`` tuple (a new connection per request).  Taking
    turns (and rotating who goes first) spreads machine noise evenly over them.
    """
    deadline = Deadline(PHASE_DEADLINE, "latency run")
    names = list(targets)
    calls = {name: t if callable(t) else Client(*t, keep=False) for name, t in targets.items()}
    for name in names:
        for _ in range(warmup):
            calls[name]()
        getattr(calls[name], "reset", lambda: None)()
    samples = {name: [] for name in names}
    for i in range(n):
        deadline.check()
        k = i % len(names)
        for name in names[k:] + names[:k]:
            samples[name].append(calls[name]())
    return samples


def output_round_trips(targets, n, warmup, chars, seconds=PHASE_DEADLINE):
    """Latencies (ms) of a printing cell per target, taking turns; every answer is checked.

    ``targets``: name -> (port, env id, body).  The record must carry all
    ``chars`` characters of stdout, not truncated.  Returns (samples, response bytes).
    """
    deadline = Deadline(seconds, "output run")
    sizes = {}

    def once(name):
        port, env_id, body = targets[name]
        start = time.perf_counter()
        _, payload = call(port, "POST", execute_path(env_id), body)
        ms = (time.perf_counter() - start) * 1000.0
        record = json.loads(payload)
        if len(record.get("stdout") or "") != chars or record.get("truncated"):
            raise BenchError("%s: the output came back cut: %d of %d chars, truncated=%r"
                             % (name, len(record.get("stdout") or ""), chars,
                                record.get("truncated")))
        sizes[name] = len(payload)
        return ms

    names = list(targets)
    for name in names:
        for _ in range(warmup):
            deadline.check()
            once(name)
    samples = {name: [] for name in names}
    for i in range(n):
        deadline.check()
        k = i % len(names)
        for name in names[k:] + names[:k]:
            samples[name].append(once(name))
    return samples, sizes


def concurrent(port, env_ids, clients, total, keepalive, code=TRIVIAL,
               seconds=PHASE_DEADLINE):
    """``clients`` threads sharing ``total`` executes of ``code``; failures are counted.

    A new connection per request, or one :class:`Client` connection per thread
    kept alive.  Returns requests/s, p50/p99 (ms, connect included), ``failed``
    (requests that raised or were not 200), ``slow_connects`` (connects over
    SLOW_CONNECT s: SYNs the listen queue dropped), ``connects``, ``retries``
    and the first errors.
    """
    lock = threading.Lock()
    state = {"issued": 0}
    latencies, failures = [], []
    end = time.monotonic() + seconds
    give_up = max(20, total // 4)
    users = [Client(port, "POST", execute_path(env_ids[i % len(env_ids)]), {"code": code},
                    keep=keepalive) for i in range(clients)]

    def take():
        with lock:
            if state["issued"] >= total or time.monotonic() > end or len(failures) >= give_up:
                return False
            state["issued"] += 1
            return True

    def work(user):
        try:
            while take():
                try:
                    latencies.append(user())
                except Exception as exc:  # noqa: BLE001 - counted
                    failures.append(repr(exc))
        finally:
            user.close()

    workers = [threading.Thread(target=work, args=(u,), daemon=True) for u in users]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(1.0, end - time.monotonic()) + REQUEST_TIMEOUT)
    elapsed = time.perf_counter() - start
    if any(worker.is_alive() for worker in workers):
        raise BenchError("a client of the %d-client run did not finish" % clients)
    connect_s = [s for user in users for s in user.connect_s]
    return {"rps": len(latencies) / elapsed, "p50_ms": p50(latencies),
            "p99_ms": percentile(latencies, 99), "done": len(latencies),
            "failed": len(failures), "errors": failures[:3], "connects": len(connect_s),
            "retries": sum(user.retries for user in users),
            "slow_connects": sum(1 for s in connect_s if s > SLOW_CONNECT),
            "over_1s": sum(1 for ms in latencies if ms > 1000.0)}


class LongPoll(threading.Thread):
    """One client holding ``GET path`` open until the server answers (or ``abort()``)."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.path = path
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=LONGPOLL_WAIT + 30)
        self.sent = threading.Event()
        self.status = self.record_status = self.error = None

    def run(self):
        try:
            self.conn.request("GET", self.path)
            self.sent.set()
            response = self.conn.getresponse()
            body = response.read()
            self.status = response.status
            self.record_status = json.loads(body).get("status")
        except Exception as exc:  # noqa: BLE001 - reported
            self.error = repr(exc)
        finally:
            self.sent.set()
            self.conn.close()

    def abort(self):
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def longpoll_probe(port, env_id, probe_env, n_polls, n_probe, warmup):
    """p50 material of a short request without and with ``n_polls`` open long-polls.

    ``env_id`` gets a cell that sleeps (submitted with ``wait=0``); ``n_polls``
    threads long-poll it (``?wait=LONGPOLL_WAIT``); meanwhile executes of x=1+1
    on ``probe_env`` (a new connection each) are timed.  Without: half before
    the long-polls, half after they ended.  The cell is interrupted (then
    cancelled) and every thread joined within a bound, its socket shut if need be.
    """
    deadline = Deadline(PHASE_DEADLINE, "long-poll run")
    probe = Client(port, "POST", execute_path(probe_env), {"code": TRIVIAL}, keep=False)
    _, body = call(port, "POST", execute_path(env_id), {"code": SLEEP_CELL, "wait": 0},
                   expect=(202,))
    n = json.loads(body)["execution_count"]
    for _ in range(warmup):
        probe()
    without, with_polls = [], []
    for _ in range(n_probe // 2):
        deadline.check()
        without.append(probe())
    path = "/envs/%s/executions/%d?wait=%d" % (env_id, n, LONGPOLL_WAIT)
    polls = [LongPoll(port, path) for _ in range(n_polls)]
    info = {"longpolls": n_polls}
    try:
        for poll in polls:
            poll.start()
        for poll in polls:
            poll.sent.wait(max(0.0, deadline.end - time.monotonic()))
        time.sleep(0.5)  # let the server take every one of them in
        info["open_before_probe"] = sum(1 for poll in polls if poll.is_alive())
        for _ in range(n_probe - n_probe // 2):
            deadline.check()
            try:
                with_polls.append(timed(port, "POST", execute_path(probe_env),
                                        {"code": TRIVIAL}, timeout=PROBE_TIMEOUT))
            except Exception as exc:  # noqa: BLE001 - a front end that starves: reported
                info["probe_failed"] = repr(exc)
                break
        info["open_after_probe"] = sum(1 for poll in polls if poll.is_alive())
    finally:
        info["ended_by"] = end_longpolls(port, env_id, n, polls)
    answers = ["%s %s" % (poll.status, poll.record_status) for poll in polls if poll.status]
    info["answers"] = {answer: answers.count(answer) for answer in sorted(set(answers))}
    info["errors"] = [poll.error for poll in polls if poll.error][:3]
    info["still_alive"] = sum(1 for poll in polls if poll.is_alive())
    time.sleep(0.5)  # the answered long-polls' threads end, the kernel settles
    for _ in range(n_probe // 2):
        deadline.check()
        without.append(probe())
    return without, with_polls, info


def end_longpolls(port, env_id, n, polls, bound=15.0):
    """Interrupt the sleeping cell (else cancel it), join the threads; how it ended."""
    how = "interrupt"
    for method, path in (("POST", "/envs/%s/interrupt" % env_id),
                         ("POST", "/envs/%s/executions/%d/cancel" % (env_id, n))):
        try:
            call(port, method, path, expect=(200, 202, 409), timeout=PROBE_TIMEOUT)
        except Exception:  # noqa: BLE001 - try the next way
            how = "cancel"
            continue
        break
    end = time.monotonic() + bound
    for poll in polls:
        poll.join(max(0.0, end - time.monotonic()))
    if any(poll.is_alive() for poll in polls):
        how += " + sockets shut"
        for poll in polls:
            poll.abort()
        for poll in polls:
            poll.join(5.0)
    return how


# -- the front end figures (issue 14) ------------------------------------------------


def latency_targets(wk_env, ports, flask_port):
    """The interleaved targets: new connection to each server; keep-alive to three."""
    path = execute_path(wk_env)
    body = {"code": TRIVIAL}
    ports = dict(ports, **({"flask": flask_port} if flask_port else {}))
    targets = {name: Client(port, "POST", path, body, keep=False)
               for name, port in ports.items()}
    for name in ("wsgikernel", "floor", "flask"):
        if name in ports:
            targets[name + " keep-alive"] = Client(ports[name], "POST", path, body)
    return targets


def flask_reference(lat):
    """(Flask new-connection p50, p99, label suffix): measured, or DESIGN 7's p50."""
    if lat.get("flask"):
        return p50(lat["flask"]), percentile(lat["flask"], 99), "Flask"
    return FLASK_REFERENCE_MS, None, "Flask ref."


def latency_figures(lat, targets, notes):
    """Figures from an :func:`interleaved` run over :func:`latency_targets`."""
    n = len(lat["wsgikernel"])
    w50, w99 = p50(lat["wsgikernel"]), percentile(lat["wsgikernel"], 99)
    f50, f99 = p50(lat["floor"]), percentile(lat["floor"], 99)
    k50, k99 = (p50(lat["wsgikernel keep-alive"]),
                percentile(lat["wsgikernel keep-alive"], 99))
    fl50, fl99, who = flask_reference(lat)
    figures = {}
    if "baseline" in lat:
        b50, b99 = p50(lat["baseline"]), percentile(lat["baseline"], 99)
        figures["execute_p50_ms"] = figure(
            w50, b50, label="execute x=1+1 p50, new connection", target="<= 1.25x baseline",
            met=met_if(w50 <= 1.25 * b50, w50, b50))
        figures["execute_p99_ms"] = figure(
            w99, b99, label="execute x=1+1 p99, new connection", target="<= 1.5x baseline",
            met=met_if(w99 <= 1.5 * b99, w99, b99))
    figures["execute_vs_flask_p50_ms"] = figure(
        w50, fl50, label="execute x=1+1 p50, new connection, vs %s" % who,
        target="<= 0.8x Flask", met=met_if(w50 <= 0.8 * fl50, w50, fl50))
    figures["execute_vs_flask_p99_ms"] = figure(
        w99, fl99, label="execute x=1+1 p99, new connection, vs %s" % who,
        target="<= 1.0x Flask", met=met_if(fl99 is not None and w99 <= fl99, w99, fl99))
    if "baseline" in lat:
        figures["floor_p50_ms"] = figure(f50, b50, label="HTTP floor p50 (trivial app) vs baseline")
        figures["floor_p99_ms"] = figure(f99, b99, label="HTTP floor p99 (trivial app) vs baseline")
    figures["floor_vs_flask_p50_ms"] = figure(
        f50, fl50, label="HTTP floor p50 (trivial app), new conn., vs %s" % who,
        target="<= 0.35x Flask", met=met_if(f50 <= 0.35 * fl50, f50, fl50))
    figures["keepalive_execute_p50_ms"] = figure(
        k50, fl50, label="execute p50, one keep-alive conn., vs %s new conn." % who,
        target="<= 0.5x Flask", met=met_if(k50 <= 0.5 * fl50, k50, fl50))
    figures["keepalive_execute_p99_ms"] = figure(
        k99, fl99, label="execute p99, one keep-alive conn., vs %s new conn." % who)
    figures["keepalive_floor_p50_ms"] = figure(
        p50(lat["floor keep-alive"]), fl50,
        label="HTTP floor p50, one keep-alive conn., vs %s new conn." % who)
    wk_connects = targets["wsgikernel keep-alive"].connects
    flask_ka = targets.get("flask keep-alive")
    figures["keepalive_reconnects"] = figure(
        wk_connects, flask_ka.connects if flask_ka else None, unit="count",
        label="keep-alive: connections opened for %d requests" % n)
    if wk_connects:
        notes.append("wsgikernel closed the keep-alive connection: %d connections for %d "
                     "requests (%d re-sent after a close); the keep-alive figures include "
                     "reconnecting" % (wk_connects, n, targets["wsgikernel keep-alive"].retries))
    return figures


def concurrency_runs(wk_port, flask_port, env_ids, total, log_to=None):
    """(clients, mode) -> {"wsgikernel": result, "flask": result or None}."""
    runs = {}
    for clients in CLIENTS:
        for mode in ("new", "keepalive"):
            if log_to:
                log_to("%d clients, %s" % (clients, "new connection" if mode == "new"
                                           else "keep-alive"))
            runs[clients, mode] = {
                name: concurrent(port, env_ids, clients, total, mode == "keepalive")
                if port else None
                for name, port in (("wsgikernel", wk_port), ("flask", flask_port))}
    return runs


def concurrency_figures(runs, n_envs):
    figures = {}
    for (clients, mode), pair in runs.items():
        wk, fl = pair["wsgikernel"], pair["flask"]
        get = (lambda key: fl[key]) if fl else (lambda key: None)
        how = "%d clients / %d envs, %s" % (clients, n_envs,
                                             "new conn." if mode == "new" else "keep-alive")
        key = "concurrent_%d_%s_" % (clients, mode)
        ratio = wk["rps"] / fl["rps"] if fl and fl["rps"] else None
        figures[key + "rps"] = figure(
            wk["rps"], get("rps"), unit="req/s", label="throughput x=1+1, %s, vs Flask" % how,
            target=">= 1.5x Flask, 0 failed",
            met=met_if(ratio is not None and ratio >= 1.5 and wk["failed"] == 0, ratio))
        figures[key + "p99_ms"] = figure(wk["p99_ms"], get("p99_ms"), label="  p99, " + how)
        figures[key + "failed"] = figure(
            wk["failed"], get("failed"), unit="count", label="  failed requests, " + how,
            target="0", met=wk["failed"] == 0)
        figures[key + "slow_connects"] = figure(
            wk["slow_connects"], get("slow_connects"), unit="count",
            label="  connects > 1 s (SYN dropped), " + how, target="0",
            met=wk["slow_connects"] == 0)
    return figures


def longpoll_figures(without, with_polls, info, notes):
    n = info["longpolls"]
    w50, b50 = p50(with_polls), p50(without)
    starved = info.get("probe_failed")
    if starved:
        notes.append("a short request failed while %d long-polls were open: %s" % (n, starved))
    if info.get("open_after_probe", 0) < n:
        notes.append("only %s of %d long-polls were still open after the probe"
                     % (info.get("open_after_probe"), n))
    if info["still_alive"]:
        notes.append("%d long-poll threads did not end" % info["still_alive"])
    return {
        "longpoll_short_p50_ms": figure(
            w50, b50, label="execute x=1+1 p50 with %d open long-polls vs none" % n,
            target="<= 1.2x without",
            met=False if starved else met_if(w50 is not None and w50 <= 1.2 * b50, w50)),
        "longpoll_short_p99_ms": figure(
            percentile(with_polls, 99), percentile(without, 99),
            label="execute x=1+1 p99 with %d open long-polls vs none" % n),
    }


def front_end_figures(args, ports, flask_port, counts, notes, info):
    """Issue 14's figures; ``ports``: wsgikernel, floor (and baseline: its rows too).

    The servers have the envs ``e0`` (latency, probe), ``t0``-``t3``
    (concurrency) and, on wsgikernel, ``lp`` (the long-polled cell).
    """
    log(args, "execute round trip x%d" % counts["execute"])
    targets = latency_targets("e0", ports, flask_port)
    try:
        lat = interleaved(targets, counts["execute"], counts["warmup"])
    finally:
        for target in targets.values():
            getattr(target, "close", lambda: None)()
    figures = latency_figures(lat, targets, notes)
    tenvs = ("t0", "t1", "t2", "t3")
    runs = concurrency_runs(ports["wsgikernel"], flask_port, tenvs, counts["concurrent"],
                            lambda text: log(args, "concurrency: " + text))
    info["concurrent"] = {"%d %s" % key: value for key, value in runs.items()}
    figures.update(concurrency_figures(runs, len(tenvs)))
    log(args, "%d long-polls" % counts["longpolls"])
    without, with_polls, info["longpoll"] = longpoll_probe(
        ports["wsgikernel"], "lp", "e0", counts["longpolls"], counts["longpoll_probe"],
        counts["warmup"])
    figures.update(longpoll_figures(without, with_polls, info["longpoll"], notes))
    return figures


def create_envs(port, env_ids):
    for env_id in env_ids:
        call(port, "PUT", "/envs/" + env_id, expect=(201,))


def flask_note(python, version):
    if version:
        return ("Flask baseline: scripts/flask_tutorial.py (%s) on threaded wsgiref, listen "
                "backlog 5, run by %s" % (version, python))
    return no_flask_note(python)


def no_flask_note(python):
    return ("Flask is not importable by %s: the Flask baselines are DESIGN.md section 7's "
            "%.2f ms (new-connection p50) or n/a; pip install Flask==3.1.3 for the real "
            "comparison" % (python, FLASK_REFERENCE_MS))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--quick", action="store_true", help="small counts")
    parser.add_argument("--flask-python", default=PYTHON,
                        help="interpreter that runs the Flask app (default: this one)")
    args = parser.parse_args(argv)
    counts = {k: v[1] if args.quick else v[0] for k, v in COUNTS.items()}
    load_before = os.getloadavg()[0]
    state_root = tempfile.mkdtemp(prefix="wkbench-")
    os.chmod(state_root, 0o700)
    fleet = Fleet()
    notes, info = [], {"state_root": state_root, "pids": fleet.pids,
                       "flask": flask_version(args.flask_python)}
    try:
        wk = fleet.wsgikernel("wsgikernel", os.path.join(state_root, "wk"), "--pool-size", "0")
        floor = fleet.baseline("floor", "--floor")
        flask = fleet.flask(args.flask_python) if info["flask"] else None
        for server in fleet.servers:
            server.wait_url()
        create_envs(wk.port, ("e0", "t0", "t1", "t2", "t3", "lp"))
        if flask:
            create_envs(flask.port, ("e0", "t0", "t1", "t2", "t3"))
        notes.append(flask_note(args.flask_python, info["flask"]))
        figures = front_end_figures(args, {"wsgikernel": wk.port, "floor": floor.port},
                                    flask.port if flask else None, counts, notes, info)
    except BenchError as exc:
        print("bench failed: %s" % exc, file=sys.stderr)
        return 1
    finally:
        fleet.stop_all()
        kill_processes_of(state_root)
        shutil.rmtree(state_root, ignore_errors=True)
    result = {"date": now(), "machine": machine(load_before), "quick": bool(args.quick),
              "counts": counts, "figures": figures, "notes": notes, "info": info}
    print(json.dumps(result, indent=1) if args.json
          else table(result, "wsgikernel HTTP front end bench"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
