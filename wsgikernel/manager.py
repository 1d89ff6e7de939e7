"""EnvironmentManager: the state directory and the lifecycle of every kernel in it.

It keeps nothing in memory that another worker process would need: an
environment is its directory (``store.py``) and its kernel is found through
env.json, so any number of workers (and a server restarted after a crash)
serve the same environments.  Creating one is atomic across processes:
``os.mkdir`` of its directory is the lock.  Every call to a kernel goes through
``protocol.KernelConnection`` with a timeout; a kernel that does not answer
makes its env report what env.json last said, never a hung request.

Stopping escalates as jupyter_client does: a shutdown request to the
supervisor (which SIGTERMs the user-code process group, then SIGKILLs it after
``kill_grace``), then SIGTERM and SIGKILL to whatever is left.
"""

import os
import secrets
import shutil
import signal
import threading
import time

from . import errors
from .launcher import LaunchError, launch_kernel, wait_ready
from .params import ENV_ID
from .pool import KernelPool
from .processes import kill_group, pid_alive, supervisor_alive
from .protocol import PROTOCOL_VERSION, ConnectionPool, KernelGone
from .statedir import ensure_private_dir, file_lock, runtime_dir
from .store import (ENV_FILE, LOG_FILE, WORK_DIR, History, UnusableRecord, load_record,
                    log_tail, read_record, update_record, utcnow, write_record)

STATUS_TIMEOUT = 3.0    # seconds a status question may take before we answer from env.json
INTERRUPT_TIMEOUT = STATUS_TIMEOUT + 2.0  # the kernel answers an interrupt within 2 s
LAUNCH_TIMEOUT = 30.0   # seconds a new kernel may take to report ready
WAIT_CHUNK = 25.0       # an unbounded wait is a series of bounded ones
REPLY_MARGIN = 10.0       # beyond the wait asked of the kernel, before we call it gone
INTROSPECT_TIMEOUT = 10.0  # the kernel bounds its own work well below this
ALIVE_STATES = ("starting", "idle")
# Reasons of a dead env whose ``detail`` (and, for start_failed, ``log``) the env shows.
EXPLAINED = ("start_failed", "corrupt_record", "unreadable_record")
RESTART_LOCK = ".restart.lock"  # in the env dir: one revival of a stopped env at a time


class EnvironmentManager:
    def __init__(self, config):
        self.config = config
        self.envs_dir = os.path.join(config.state_dir, "envs")
        self.connections = ConnectionPool()
        self._runtime = None
        # env id -> (os.stat key of its env.json, the record parsed from it): an unchanged
        # file is not parsed again.  Writers replace env.json by rename (a new inode), so
        # a change always changes the key.  Entries go when an env is deleted or missing.
        self.records = {}
        self.pool = KernelPool(self)

    # -- paths ---------------------------------------------------------------

    def env_dir(self, env_id):
        if not ENV_ID.match(env_id or ""):
            raise errors.InvalidParam("id", "an environment id is 1-64 characters of "
                                      "A-Z a-z 0-9 _ . - and does not start with '.'")
        return os.path.join(self.envs_dir, env_id)

    def runtime(self):
        if self._runtime is None:
            self._runtime = runtime_dir()
        return self._runtime

    def ids(self):
        try:
            names = os.listdir(self.envs_dir)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if not name.startswith("."))

    def count(self):
        return len(self.ids())

    def read(self, env_id):
        """env.json of ``env_id`` (a copy: callers may change it); EnvironmentNotFound if
        there is no such env.  An env.json that cannot be used reads as a dead env with
        its reason (``corrupt_record``, ``unreadable_record``) and ``detail``."""
        env_dir = self.env_dir(env_id)
        path = os.path.join(env_dir, ENV_FILE)
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            stat = None
        except OSError as exc:  # the env dir itself cannot be searched
            return unusable_record(env_id, UnusableRecord(
                "unreadable_record", "%s cannot be read: %s" % (ENV_FILE, exc.strerror)))
        if stat is not None:
            # Stat before reading: content read is at least as new as the key it is kept
            # under, so a change between the two only costs one more parse.
            key = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
            cached = self.records.get(env_id)
            if cached is not None and cached[0] == key:
                return dict(cached[1])
            try:
                record = load_record(env_dir, stat)
            except UnusableRecord as exc:
                self.records.pop(env_id, None)
                return unusable_record(env_id, exc)
            if record is not None:
                self.records[env_id] = (key, record)
                return dict(record)
        self.records.pop(env_id, None)
        if not os.path.isdir(env_dir):
            raise errors.EnvironmentNotFound(env_id)
        return {"id": env_id, "state": "starting"}  # created, env.json not yet written

    # -- talking to a kernel ---------------------------------------------------

    def call(self, record, message, timeout=STATUS_TIMEOUT):
        """One request/reply exchange with the env's supervisor (KernelGone if it fails)."""
        address = record.get("socket")
        if not address:
            raise KernelGone("no socket recorded")
        conn = self.connections.acquire(address, timeout)
        try:
            reply = conn.request(message, timeout)
        except BaseException:
            conn.close()
            raise
        self.connections.release(conn)
        return reply

    def stream(self, record, message, timeout):
        """Yield the messages of one streaming exchange, ending with the ``record`` event.

        A ``None`` is yielded whenever ``timeout`` seconds pass in silence (the
        caller sends a heartbeat then).  The connection is closed afterwards.
        """
        from .protocol import KernelConnection
        conn = KernelConnection(record["socket"], timeout)
        try:
            conn.send(message, timeout)
            while True:
                try:
                    event = conn.receive(timeout)
                except KernelGone as exc:
                    if "timed out" in str(exc):
                        yield None
                        continue
                    raise
                yield event
                if event.get("event") == "record" or event.get("ok") is False:
                    return
        finally:
            conn.close()

    def live_record(self, env_id):
        """env.json of a running env (waiting out a start in progress); 409 if dead or stopped."""
        record = self.read(env_id)
        if record.get("state") == "starting":
            wait_until(lambda: self.read(env_id).get("state") != "starting", LAUNCH_TIMEOUT)
            record = self.read(env_id)
        state = record.get("state")
        if state not in ALIVE_STATES:
            raise errors.EnvironmentNotRunning(env_id, state)
        return record

    def check_reply(self, env_id, reply):
        if reply.get("ok"):
            return reply
        error = reply.get("error")
        if error == "not_running":
            raise errors.EnvironmentNotRunning(env_id, reply.get("state"))
        if error == "queue_full":
            raise errors.QuotaExceeded("max_queue", reply.get("limit") or 0, retry_after=1)
        if error == "unknown_execution":
            raise errors.ExecutionNotFound(env_id, reply.get("n"))
        raise RuntimeError("kernel of %r answered %r" % (env_id, reply))

    def gone(self, env_id, record):
        """Translate a kernel that stopped answering: dead if its supervisor is gone."""
        current = read_record(self.env_dir(env_id)) or record
        if current.get("state") == "starting" or current.get("socket") != record.get("socket"):
            return errors.KernelUnavailable(env_id, "it is (re)starting; retry shortly")
        if not supervisor_alive(record.get("supervisor_pid")):
            self.mark_dead(env_id, record)
            return errors.EnvironmentNotRunning(env_id, "dead")
        return errors.KernelUnavailable(env_id, "it did not answer in time")

    def mark_dead(self, env_id, record):
        """env.json says alive but the supervisor is gone (killed, machine rebooted)."""
        record = read_record(self.env_dir(env_id)) or record  # it may have recorded its end
        if record.get("state") in ALIVE_STATES and os.path.isdir(self.env_dir(env_id)):
            kill_group(record.get("pid"), signal.SIGKILL)
            # History before env.json: a reader that sees "dead" finds the lost records.
            history = self.history(env_id)
            why = ("the kernel's supervisor (pid %s) is gone (killed, or the machine "
                   "restarted); POST /envs/%s/restart" % (record.get("supervisor_pid"), env_id))
            for unfinished in history.unfinished():
                history.append(lost_record(unfinished, why))
            record.update(state="dead", reason="kernel_lost", pid=None,
                          exit=record.get("exit") or {"code": None, "signal": None})
            update_record(self.env_dir(env_id), state="dead", reason="kernel_lost", pid=None,
                          exit=record["exit"])
        return record

    # -- environments ----------------------------------------------------------

    def describe(self, env_id, touch=True):
        """The env object of DESIGN 4.1."""
        record = self.read(env_id)
        status = {}
        if record.get("state") == "idle":
            if record.get("protocol") != PROTOCOL_VERSION:
                record = dict(record, state="dead", reason="protocol_mismatch")
            else:
                try:
                    status = self.call(record, {"op": "status", "touch": touch})
                except KernelGone:
                    if not supervisor_alive(record.get("supervisor_pid")):
                        record = self.mark_dead(env_id, record)
                if status.get("state") in ("dead", "stopped"):
                    # It died after we read env.json: the supervisor saved it first.
                    record = self.read(env_id)
        env = env_object(record, status)
        if env.get("reason") == "start_failed":
            env["log"] = log_tail(self.env_dir(env_id))  # why, as the kernel told it
        return env

    def list(self):
        envs = []
        ids = self.ids()
        for env_id in ids:
            try:
                envs.append(self.describe(env_id, touch=False))
            except errors.EnvironmentNotFound:
                continue  # deleted while we listed
        for gone in set(self.records).difference(ids):  # deleted by another worker
            self.records.pop(gone, None)
        return envs

    def create(self, env_id=None, limits=None, exist_ok=False):
        """(env, created): make the directory (the cross-process lock), start the kernel."""
        if env_id is None:
            env_id = secrets.token_hex(6)
        env_dir = self.env_dir(env_id)
        ensure_private_dir(self.envs_dir)
        try:
            os.mkdir(env_dir, 0o700)
        except FileExistsError:
            if exist_ok:
                return self.ensure_running(env_id), False
            raise errors.EnvironmentExists(env_id) from None
        try:
            if self.config.max_envs is not None and self.count() > self.config.max_envs:
                raise errors.QuotaExceeded("max_envs", self.config.max_envs, retry_after=5)
            record = {"id": env_id, "session": 1, "created": utcnow(), "state": "starting",
                      "limits": self.env_limits(limits), "settings": self.kernel_settings(),
                      "cwd": os.path.join(env_dir, WORK_DIR), "execution_count": 0}
            pooled = (record["limits"] == self.config.limits()
                      and self.pool.claim(env_id, env_dir, record))
            if not pooled:
                try:
                    self.launch(env_dir, record)
                except errors.KernelUnavailable:
                    pass  # recorded: the env is dead (start_failed) and shows why
                self.pool.refill_soon()
        except BaseException:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise
        return self.describe(env_id), True

    def ensure_running(self, env_id):
        """The env, with a fresh kernel (session + 1, ``restarted: true``) if it was stopped.

        ``stopped`` is what a server restart or the idle timeout leaves behind:
        nothing went wrong, so "make sure it exists" means "give me a kernel".
        A ``dead`` env is left as it is: its exit status is what the user must see
        before choosing to restart.  The lock makes concurrent callers (several
        workers answering PUTs after a server restart) start one kernel, not two.
        """
        env = self.describe(env_id)
        if env["state"] != "stopped":
            return env
        with file_lock(os.path.join(self.env_dir(env_id), RESTART_LOCK)):
            if self.describe(env_id)["state"] != "stopped":
                return self.describe(env_id)
            env = self.restart(env_id)
        return dict(env, restarted=True)

    def env_limits(self, requested):
        limits = self.config.limits()
        for key, value in (requested or {}).items():
            if value is None:
                continue
            ceiling = limits.get(key)
            if ceiling is not None and value > ceiling:
                raise errors.InvalidParam(key, "the server allows at most %s" % ceiling)
            limits[key] = value
        return limits

    def kernel_settings(self):
        config = self.config
        return {"kill_grace": config.kill_grace, "output_cap": config.output_cap,
                "max_queue": config.max_queue, "idle_timeout": config.idle_timeout,
                "history_limit": config.history_limit, "default_timeout": config.default_timeout,
                "preload": list(config.preload)}

    def launch(self, env_dir, record):
        """Write env.json for a new kernel process and start it.

        A start that fails (the kernel says why, exits before it is ready, or does not
        report ready within LAUNCH_TIMEOUT and is killed) is recorded before anyone
        hears of it -- ``dead``, reason ``start_failed``, ``detail`` -- and raised as
        KernelUnavailable.
        """
        record.update(state="starting", protocol=PROTOCOL_VERSION, supervisor_pid=None, pid=None,
                      socket=os.path.join(self.runtime(), secrets.token_hex(6) + ".sock"),
                      exit=None, reason=None, detail=None)
        write_record(env_dir, record)
        memory_limited = (record.get("limits") or {}).get("memory_limit") is not None
        try:
            wait_ready(launch_kernel(env_dir, memory_limited), LAUNCH_TIMEOUT)
        except (LaunchError, OSError) as exc:
            self.record_start_failure(env_dir, record, str(exc))
            raise errors.KernelUnavailable(record["id"], str(exc)) from None

    def record_start_failure(self, env_dir, record, why):
        """env.json (and kernel.log) of a kernel that did not come up, unless the kernel
        recorded its failure itself (then its own detail, exit and log stand)."""
        current = read_record(env_dir) or {}
        if (current.get("socket") == record["socket"] and current.get("state") == "dead"
                and current.get("reason") == "start_failed"):
            return
        try:  # killed, or its interpreter died: nothing of it will clean up
            os.unlink(record["socket"])
        except OSError:
            pass
        try:
            with open(os.path.join(env_dir, LOG_FILE), "a") as log:
                log.write("%s start failed: %s\n" % (utcnow(), why))
            record.update(state="dead", reason="start_failed", detail=why, pid=None,
                          supervisor_pid=None,
                          exit=current.get("exit") or {"code": None, "signal": None})
            write_record(env_dir, record)
        except OSError:
            pass  # the env was deleted meanwhile

    def restart(self, env_id):
        """A fresh namespace, same id, session + 1.

        A live supervisor forks a new user-code process; if there is none, or the new
        process does not come up, a whole new kernel is started.  An env.json that was
        unusable is rebuilt from what is known (rebuilt_record).  A start that fails
        leaves the env ``dead``, reason ``start_failed``: the answer shows it, with
        ``detail`` and the ``log`` that says why.
        """
        record = self.read(env_id)
        recorded = "settings" in record  # else a stand-in: env.json is unusable or missing
        session = int(record.get("session") or 0) + 1
        if record.get("state") in ALIVE_STATES and supervisor_alive(record.get("supervisor_pid")):
            try:
                reply = self.call(record, {"op": "restart"},
                                  timeout=self.config.kill_grace + LAUNCH_TIMEOUT)
                if reply.get("ok") and reply.get("state") not in ("dead", "stopped"):
                    return self.describe(env_id)
            except KernelGone:
                pass
        elif not recorded:  # a kernel may still run behind the record that cannot be read
            self.stop_unrecorded_kernels(env_id)
        self.shutdown_kernel(record)  # whatever is left of an old kernel goes first
        record = self.read(env_id)
        if "settings" not in record:
            record = self.rebuilt_record(env_id)
            session = record["session"] + 1
        elif not recorded:  # that kernel, stopped, saved its own record again
            session = int(record.get("session") or 0) + 1
        # One more session per restart asked for, even when the supervisor's own attempt
        # (which counted one) failed and this is the second.
        record.update(session=max(int(record.get("session") or 0), session), exit=None,
                      reason=None)
        try:
            self.launch(self.env_dir(env_id), record)
        except errors.KernelUnavailable:
            pass  # recorded: the env is dead (start_failed) and shows why
        return self.describe(env_id)

    def stop_unrecorded_kernels(self, env_id):
        """Stop the supervisors working in the env's directory that its record does not
        name (it cannot be read).  SIGTERM makes one stop its user-code process and
        save its own record, which is the env's again."""
        grace = self.config.kill_grace + STATUS_TIMEOUT
        for pid in supervisors_in(self.env_dir(env_id)):
            kill_group(pid, signal.SIGTERM)
            if not wait_until(lambda: not pid_alive(pid), grace):
                kill_group(pid, signal.SIGKILL)

    def rebuilt_record(self, env_id):
        """A record for an env whose env.json is unusable or missing (moved aside to
        env.json.bad): its id and work dir, the server's limits and settings, and the
        session, execution count and creation time its history shows."""
        env_dir = self.env_dir(env_id)
        path = os.path.join(env_dir, ENV_FILE)
        if os.path.lexists(path):
            bad = path + ".bad"
            if os.path.isdir(bad) and not os.path.islink(bad):
                shutil.rmtree(bad, ignore_errors=True)
            os.replace(path, bad)  # kept for whoever wants to know what happened
        records = self.history(env_id).read()
        sessions = [r["session"] for r in records if isinstance(r.get("session"), int)]
        counts = [r["execution_count"] for r in records
                  if isinstance(r.get("execution_count"), int)]
        return {"id": env_id, "session": max(sessions, default=0),
                "created": (records[0].get("queued_at") if records else None) or utcnow(),
                "limits": self.env_limits(None), "settings": self.kernel_settings(),
                "cwd": os.path.join(env_dir, WORK_DIR), "execution_count": max(counts, default=0)}

    def interrupt(self, env_id):
        record = self.live_record(env_id)
        try:
            self.check_reply(env_id, self.call(record, {"op": "interrupt"},
                                               timeout=INTERRUPT_TIMEOUT))
        except KernelGone:
            raise self.gone(env_id, record) from None
        return self.describe(env_id)

    def late_output(self, env_id):
        """Output that came after its execution's record was final; [] with no kernel."""
        record = self.read(env_id)
        if not record.get("socket") or not supervisor_alive(record.get("supervisor_pid")):
            return []
        try:
            reply = self.call(record, {"op": "late_output"})
        except KernelGone:
            raise self.gone(env_id, record) from None
        if reply.get("error") == "unknown_op":  # a kernel started by an older version
            return []
        return self.check_reply(env_id, reply).get("late_output", [])

    def delete(self, env_id):
        """Stop the kernel (no descendant survives) and remove the env's directory."""
        record = self.read(env_id)
        self.shutdown_kernel(record, state=None, reason="deleted")
        env_dir = self.env_dir(env_id)
        trash = os.path.join(self.envs_dir, ".deleted-%s-%s" % (env_id, secrets.token_hex(4)))
        try:
            os.rename(env_dir, trash)  # the id is free at once, for every worker
        except FileNotFoundError:
            raise errors.EnvironmentNotFound(env_id) from None
        finally:
            self.records.pop(env_id, None)
        shutil.rmtree(trash, ignore_errors=True)

    def shutdown_kernel(self, record, state="stopped", reason="shutdown"):
        """request -> wait -> SIGTERM -> wait -> SIGKILL, as jupyter_client does."""
        supervisor, child = record.get("supervisor_pid"), record.get("pid")
        grace = self.config.kill_grace
        if supervisor_alive(supervisor):
            try:  # answered once the kernel's tree is gone: up to kill_grace
                self.call(record, {"op": "shutdown", "state": state, "reason": reason},
                          timeout=grace + STATUS_TIMEOUT)
            except KernelGone:
                pass
            if not wait_until(lambda: not pid_alive(supervisor), grace + STATUS_TIMEOUT):
                kill_group(supervisor, signal.SIGTERM)
                if not wait_until(lambda: not pid_alive(supervisor), grace):
                    kill_group(supervisor, signal.SIGKILL)
        kill_group(child, signal.SIGKILL)  # a user-code group left by a killed supervisor
        if record.get("socket"):
            self.connections.discard_address(record["socket"])

    def stop_all(self):
        """Stop every kernel of the state dir in parallel; envs stay, as ``stopped``."""
        threads = [threading.Thread(target=self.pool.stop_all)]
        threads[0].start()
        for env_id in self.ids():
            record = read_record(self.env_dir(env_id))
            # A dead env's supervisor lives on (it serves history and restarts): stop it too.
            if record and (record.get("state") in ALIVE_STATES
                           or supervisor_alive(record.get("supervisor_pid"))):
                thread = threading.Thread(target=self.shutdown_kernel,
                                          args=(record, "stopped", "server_shutdown"))
                thread.start()
                threads.append(thread)
        for thread in threads:
            thread.join()

    # -- executions --------------------------------------------------------------

    def execute(self, env_id, request, wait):
        """Submit a cell; the record when done within ``wait`` s (None: however long)."""
        record = self.live_record(env_id)
        chunk = WAIT_CHUNK if wait is None else wait
        request_id = secrets.token_hex(8)
        message = dict(request, op="execute", wait=chunk, request=request_id)
        try:
            reply = self.check_reply(env_id, self.call(record, message, chunk + REPLY_MARGIN))
            result = reply["record"]
            while wait is None and result["status"] in ("queued", "running"):
                reply = self.check_reply(env_id, self.call(
                    record, {"op": "wait", "key": reply.get("key"),
                             "n": result["execution_count"], "wait": WAIT_CHUNK},
                    WAIT_CHUNK + REPLY_MARGIN))
                result = reply["record"]
        except KernelGone:
            return self.lost(env_id, record, lambda: self.lost_request(env_id, request_id,
                                                                        request))
        return result

    def lost(self, env_id, record, find):
        """A kernel stopped answering mid-execution: the execution's record if its
        supervisor is gone (``find()``: from history, where mark_dead left it), else
        the error that says why it is unavailable."""
        error = self.gone(env_id, record)
        found = find() if isinstance(error, errors.EnvironmentNotRunning) else None
        if found is None:
            raise error from None
        return found

    def lost_request(self, env_id, request_id, request):
        if request.get("silent") or not request.get("store_history", True):
            # never in history: the record it would have had
            return lost_record({"env": env_id, "session": None, "execution_count": None,
                                "code": request.get("code", ""), "status": "running",
                                "stdout": "", "stderr": "", "outputs": [], "result": None,
                                "user_expressions": {}, "truncated": False,
                                "queued_at": None, "started": None, "duration": None},
                               "the kernel's supervisor is gone")
        return self.history(env_id).find_request(request_id)

    def _follow(self, env_id, record, events, find):
        """``events``; a kernel lost mid-stream ends it with its record from history."""
        try:
            yield from events
        except KernelGone:
            yield dict(self.lost(env_id, record, find), event="record")
        finally:
            events.close()

    def introspect(self, env_id, message):
        """complete / inspect / is_complete / variables, answered beside a running cell."""
        record = self.live_record(env_id)
        try:
            reply = self.check_reply(env_id, self.call(record, message, INTROSPECT_TIMEOUT))
        except KernelGone:
            raise self.gone(env_id, record) from None
        reply.pop("ok", None)
        return reply

    def history(self, env_id):
        return History(self.env_dir(env_id), self.config.history_limit)

    def alive_record(self, env_id):
        """env.json if its kernel is reachable, else None (history is all there is)."""
        record = self.read(env_id)
        if record.get("state") in ALIVE_STATES and supervisor_alive(record.get("supervisor_pid")):
            return record
        return None

    def execution(self, env_id, n, wait):
        """The record of execution ``n``: live (long-polled up to ``wait`` s) or from history."""
        record = self.alive_record(env_id)
        if record is not None:
            try:
                reply = self.call(record, {"op": "wait", "n": n, "wait": wait},
                                  wait + REPLY_MARGIN)
                if reply.get("ok"):
                    return reply["record"]
            except KernelGone:
                pass
        found = self.history(env_id).find(n)
        if found is None:
            raise errors.ExecutionNotFound(env_id, n)
        return found

    def executions(self, env_id, since, limit):
        """(records with execution_count >= since, oldest first, at most ``limit``; next)."""
        records = {r["execution_count"]: r for r in self.history(env_id).read()
                   if (r.get("execution_count") or 0) >= since}
        record = self.alive_record(env_id)
        if record is not None:
            try:
                for live in self.call(record, {"op": "live", "touch": False}).get("executions", ()):
                    known = records.get(live["execution_count"])
                    # history's own line of a live execution is its queued record: stale
                    if live["execution_count"] >= since and (
                            known is None or known.get("status") in ("queued", "running")):
                        records[live["execution_count"]] = live
            except KernelGone:
                pass
        ordered = [records[n] for n in sorted(records)]
        page, rest = ordered[:limit], ordered[limit:]
        return page, (rest[0]["execution_count"] if rest else None)

    def cancel(self, env_id, n):
        """Drop execution ``n`` if queued, interrupt it if running; its record."""
        record = self.alive_record(env_id)
        if record is None:
            return self.execution(env_id, n, 0)
        try:
            reply = self.call(record, {"op": "cancel", "n": n})
        except KernelGone:
            raise self.gone(env_id, record) from None
        if reply.get("error") == "unknown_execution":
            return self.execution(env_id, n, 0)  # finished long ago: nothing to cancel
        return self.check_reply(env_id, reply)["record"]

    def open_stream(self, env_id, message, heartbeat):
        """Start a streaming exchange; errors are raised here, before any byte is sent.

        Returns the iterator of events (the ``accepted`` event first); a None from
        it means ``heartbeat`` seconds passed in silence.
        """
        record = self.live_record(env_id) if message["op"] == "execute" else \
            self.alive_record(env_id)
        if record is None:  # attaching to an env whose kernel is gone: replay history
            return replay(self.execution(env_id, message["n"], 0))
        if message["op"] == "execute":
            request_id = secrets.token_hex(8)
            message = dict(message, request=request_id)
            find = lambda: self.lost_request(env_id, request_id, message)  # noqa: E731
        else:
            find = lambda: self.history(env_id).find(message["n"])  # noqa: E731
        events = self._follow(env_id, record, self.stream(record, message, heartbeat), find)
        try:
            first = next(events)
        except KernelGone:
            raise self.gone(env_id, record) from None
        if first is None or first.get("ok") is False:
            events.close()
            if first and first.get("error") == "unknown_execution":
                return replay(self.execution(env_id, message["n"], 0))
            self.check_reply(env_id, first or {"ok": False, "error": "no answer"})
        return _prepend(first, events)


def lost_record(line, why):
    """The final record of an execution whose supervisor was lost before it ended."""
    error = {"ename": "KernelLost", "evalue": why, "traceback": ["KernelLost: " + why]}
    record = {key: value for key, value in line.items() if key != "request"}
    record.update(status="aborted", reason="kernel_lost", error=error, finished=utcnow(),
                  outputs=list(record.get("outputs") or ()) + [
                      {"output_type": "error", "ename": error["ename"],
                       "evalue": why, "traceback": error["traceback"]}])
    return record


def _prepend(first, events):
    """``first`` then ``events``, as a generator whose close() closes ``events``."""
    try:
        yield first
        yield from events
    finally:
        events.close()


def replay(record):
    """The events a stream would have carried for an execution that has finished."""
    yield {"event": "accepted", "execution_count": record["execution_count"],
           "status": record["status"]}
    for output in record.get("outputs") or ():
        yield dict(output, event="output")
    yield dict(record, event="record")


def wait_until(condition, timeout, interval=0.01):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def env_object(record, status):
    """Merge env.json with a live status reply into the API's env object."""
    state = status.get("state") or record.get("state") or "starting"
    env = {
        "id": record.get("id"), "state": state,
        "session": status.get("session", record.get("session", 1)),
        "execution_count": status.get("execution_count", record.get("execution_count", 0)),
        "queued": status.get("queued", 0),
        "created": record.get("created"),
        "last_activity": status.get("last_activity") or record.get("last_activity")
        or record.get("created"),
        "pid": status.get("pid", record.get("pid")),
        "limits": record.get("limits") or {},
        "cwd": record.get("cwd"),
    }
    if state in ("dead", "stopped"):
        env["exit"] = record.get("exit") or {"code": None, "signal": None}
        env["reason"] = record.get("reason")
        env["pid"] = None
        if env["reason"] in EXPLAINED and record.get("detail"):
            env["detail"] = record["detail"]
    return env


def unusable_record(env_id, problem):
    """What an env whose env.json cannot be used reads as: dead, with the reason."""
    return {"id": env_id, "state": "dead", "reason": problem.reason, "detail": problem.detail,
            "exit": None, "pid": None, "supervisor_pid": None}


def supervisors_in(env_dir):
    """pids of our supervisors whose working directory is ``env_dir`` (the launcher's cwd;
    a claimed pool kernel's follows its directory's rename).  Linux /proc; [] elsewhere."""
    target = os.path.realpath(env_dir)
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    found = []
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if os.readlink("/proc/%s/cwd" % name) != target:
                continue
        except OSError:
            continue
        if supervisor_alive(int(name)):
            found.append(int(name))
    return found
