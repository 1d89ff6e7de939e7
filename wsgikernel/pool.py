"""Pre-started kernels, so creating an environment does not pay interpreter start-up.

A pooled kernel is an ordinary kernel whose directory lives in
``<state_dir>/pool/<name>/`` with ``id: null`` in its env.json.  Claiming one
is atomic across worker processes: the creator already holds the env's
directory (``os.mkdir`` is the lock, see control/registry.py) and
``os.rename``s the pooled directory onto it, which replaces the empty lock
directory in one step; of two workers renaming the same pooled directory, one
gets ENOENT and tries the next.  The kernel is then told its id and new
directory (``bind``).

Only kernels started with the current settings (same limits, preload, output
cap, sandbox... and interpreter) are claimed; an environment asking for other limits
gets a fresh kernel.  Refilling happens on a background thread, started lazily
in each worker process (never at import or in ``make_app``, so pre-forking
servers stay fork-safe), and is serialised across processes by ``flock`` on
``pool/.lock`` so several workers do not overfill the pool.
"""

import hashlib
import json
import os
import secrets
import shutil
import sys
import threading

from . import __version__
from .control.errors import ControlError, SandboxUnavailable
from .provisioning import for_record
from .statedir import file_lock
from .store import WORK_DIR, read_record, utcnow, write_record
from .wire.auth import KEY_FILE
from .wire.connection import KernelGone
from .wire.envelope import PROTOCOL_VERSION

# What an env's own settings may change in a pooled kernel when it is bound (the rest of
# a pooled kernel's settings are the server's, as its signature says).
BOUND_SETTINGS = ("idle_timeout", "auto_checkpoints")


class KernelPool:
    def __init__(self, manager):
        self.manager = manager
        self.config = manager.config
        self.dir = os.path.join(self.config.state_dir, "pool")
        # A pooled Slurm job would hold a node's resources for nobody: no pool there.
        self.size = 0 if self.config.launcher == "slurm" else (self.config.pool_size or 0)
        self._filling = threading.Lock()
        self.closed = False  # set by stop_all: no refill may start a kernel after it
        self.filled = False  # a refill of this process has finished (readiness)
        self.failure = None  # why this process's last refill failed (readiness)

    def signature(self):
        """What a pooled kernel must have been started with to be claimable."""
        settings = dict(self.manager.kernel_settings(), idle_timeout=None)
        blob = json.dumps([settings, self.config.limits(), sys.executable, __version__,
                           PROTOCOL_VERSION, self.config.kernel_transport,
                           self.manager.lifecycle.env_sandbox()], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def names(self):
        try:
            return sorted(n for n in os.listdir(self.dir) if not n.startswith("."))
        except FileNotFoundError:
            return []

    # -- claiming -------------------------------------------------------------

    def claim(self, env_id, env_dir, record):
        """Move a ready pooled kernel into ``env_dir`` (ours, empty) and bind it; (its
        env.json, its status) if done, else None.

        The env's env.json is written here, before the kernel is told (``bind``), so
        every worker finds the env's record at once; the kernel saves its own after
        answering (it holds the same, plus what changes while it runs)."""
        if self.size <= 0:
            return False
        signature = self.signature()
        for name in self.names():
            source = os.path.join(self.dir, name)
            pooled = read_record(source)
            if (not pooled or pooled.get("state") != "idle"
                    or pooled.get("signature") != signature):
                continue
            try:
                os.rename(source, env_dir)  # atomic; replaces our empty lock directory
            except OSError:
                continue  # another worker claimed it first
            if pooled.get("key_file"):  # it moved with the directory
                pooled = dict(pooled, key_file=os.path.join(env_dir, KEY_FILE))
            asked = record.get("settings") or {}
            own = {key: asked.get(key, getattr(self.config, key)) for key in BOUND_SETTINGS}
            settings = dict(pooled.get("settings") or {}, **own)
            bound = dict(pooled, id=env_id, created=record["created"], pool=False,
                         cwd=os.path.join(env_dir, WORK_DIR), settings=settings,
                         last_activity=None)
            try:
                write_record(env_dir, bound)
                status = self.manager.call(bound, "bind", {
                    "id": env_id, "env_dir": env_dir, "created": record["created"],
                    "settings": own})
                self.refill_soon()
                return bound, status
            except (KernelGone, ControlError, OSError):
                pass
            # A pooled kernel that died in the pool: clear it out, start cold instead.
            self.manager.shutdown_kernel(pooled, state=None, reason="deleted")
            shutil.rmtree(env_dir, ignore_errors=True)
            os.mkdir(env_dir, 0o700)
        self.refill_soon()
        return None

    def readiness(self):
        """"ok" once this process's first refill is done (or some pooled kernel is ready,
        whoever started it), else why not yet; "ok" with no pool."""
        if self.size <= 0 or self.filled:
            return "ok"
        if self.failure:
            return "could not start pooled kernels: %s" % self.failure
        ready = sum(1 for name in self.names()
                    if (read_record(os.path.join(self.dir, name)) or {}).get("state") == "idle")
        return "ok" if ready else "starting (0 of %d pooled kernels ready)" % self.size

    # -- refilling --------------------------------------------------------------

    def refill_soon(self):
        """Top the pool up on a background thread (one per process at a time)."""
        if self.size <= 0 or self.closed or not self._filling.acquire(blocking=False):
            return
        thread = threading.Thread(target=self._fill_and_release, name="wsgikernel-pool",
                                  daemon=True)
        thread.start()

    def _fill_and_release(self):
        import logging
        try:
            self.fill()
            self.filled, self.failure = True, None
        except SandboxUnavailable as exc:  # a known cause: one line, not a traceback each time
            self.failure = str(exc)
            logging.getLogger("wsgikernel").warning("could not refill the kernel pool: %s", exc)
        except Exception as exc:
            self.failure = "%s: %s" % (type(exc).__name__, exc)
            logging.getLogger("wsgikernel").exception("could not refill the kernel pool")
        finally:
            self._filling.release()

    def fill(self):
        """Start pooled kernels until ``size`` are ready (under a cross-process lock),
        the missing ones side by side, counting again after each round: creates that
        claimed kernels meanwhile (their refill_soon found this one running) are made
        up for too.  At most 4 rounds, so kernels that die as they start cannot keep
        it busy."""
        with self.locked():
            for _ in range(4):
                missing = 0 if self.closed else self.size - self.prune()
                if missing <= 0:
                    return
                self.start_many(missing)

    def start_many(self, count):
        """Start ``count`` pooled kernels at once: forked by the forkserver, each is
        ready in milliseconds, and waiting for each in turn would leave a burst of
        creates to cold starts."""
        if count == 1:
            return self.start_one()
        failures = []

        def start():
            try:
                self.start_one()
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=start, name="wsgikernel-pool-start", daemon=True)
                   for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]

    def locked(self):
        """The cross-process pool lock (flock on pool/.lock), as a context manager."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        return file_lock(os.path.join(self.dir, ".lock"))

    def prune(self):
        """Remove pooled kernels that died or no longer match; the number left."""
        signature, alive = self.signature(), 0
        for name in self.names():
            path = os.path.join(self.dir, name)
            record = read_record(path)
            if (record and record.get("signature") == signature
                    and record.get("state") == "idle"
                    and for_record(record).running()):
                alive += 1
            elif record is None or record.get("state") != "starting":
                if record:
                    self.manager.shutdown_kernel(record, state=None, reason="deleted")
                shutil.rmtree(path, ignore_errors=True)
        return alive

    def start_one(self):
        name = secrets.token_hex(6)
        path = os.path.join(self.dir, name)
        os.mkdir(path, 0o700)
        record = {"id": None, "pool": True, "session": 1, "created": utcnow(),
                  "limits": self.config.limits(), "signature": self.signature(),
                  "settings": dict(self.manager.kernel_settings(), idle_timeout=None),
                  "cwd": os.path.join(path, WORK_DIR), "execution_count": 0}
        record.update(self.manager.lifecycle.env_sandbox())
        try:
            self.manager.launch(path, record)
        except Exception:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def stop_all(self):
        """Stop every pooled kernel, after any refill in flight (in any process) is done."""
        self.closed = True
        if self._filling.acquire(timeout=120):  # our own refill thread finishes first
            self._filling.release()
        if not os.path.isdir(self.dir):
            return
        with self.locked():
            self._stop_pooled()

    def _stop_pooled(self):
        for name in self.names():
            path = os.path.join(self.dir, name)
            record = read_record(path)
            if record:
                self.manager.shutdown_kernel(record, state=None, reason="deleted")
            shutil.rmtree(path, ignore_errors=True)
