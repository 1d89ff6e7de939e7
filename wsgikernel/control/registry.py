"""The registry of environments: ``<state_dir>/envs/<id>/``, one directory each.

An environment *is* its directory; nothing about it lives in a worker's
memory that another worker would need.  Creating one is atomic across
processes: ``os.mkdir`` of its directory is the lock (``reserve``); deleting
one renames the directory aside first (``remove``), so the id is free for
every worker at once.  ``read`` gives env.json, parsed again only when the
file changed (a stat-keyed cache), and reads an env.json that cannot be used
as a dead env with its reason, never as an error.
"""

import os
import secrets
import shutil
import tempfile

from ..metrics.files import CountFile
from ..statedir import ensure_private_dir, runtime_dir
from ..store import ENV_FILE, History, UnusableRecord, load_record
from .envid import ENV_ID, ENV_ID_RULE_TEXT
from .errors import EnvironmentExists, EnvironmentNotFound, InvalidEnvId


class EnvRegistry:
    def __init__(self, config):
        self.config = config
        self.envs_dir = os.path.join(config.state_dir, "envs")
        self._runtime = None
        # env id -> (os.stat key of its env.json, the record parsed from it): an unchanged
        # file is not parsed again.  Writers replace env.json by rename (a new inode), so
        # a change always changes the key.  Entries go when an env is deleted or missing.
        self.records = {}
        # This process's counts for /metrics (metrics/files.py): its requests, what kernels
        # counted once their counts file goes (metrics/kernels.py), what only it saw.
        self.counts = CountFile(os.path.join(config.state_dir, "metrics"))

    # -- paths ---------------------------------------------------------------

    def env_dir(self, env_id):
        if not ENV_ID.match(env_id or ""):
            raise InvalidEnvId(env_id, ENV_ID_RULE_TEXT)
        return os.path.join(self.envs_dir, env_id)

    def runtime(self):
        """The private directory of the kernels' sockets (made on first use)."""
        if self._runtime is None:
            self._runtime = runtime_dir()
        return self._runtime

    def history(self, env_id):
        return History(self.env_dir(env_id), self.config.history_limit)

    # -- which envs there are ------------------------------------------------------

    def ids(self):
        try:
            names = os.listdir(self.envs_dir)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if not name.startswith("."))

    def count(self):
        return len(self.ids())

    def forget_missing(self, ids):
        """Drop the cached records of envs not in ``ids`` (deleted by another worker)."""
        for gone in set(self.records).difference(ids):
            self.records.pop(gone, None)

    def reserve(self, env_id):
        """Make the env's directory (the cross-process creation lock); its path, or
        EnvironmentExists."""
        env_dir = self.env_dir(env_id)
        ensure_private_dir(self.envs_dir)
        try:
            os.mkdir(env_dir, 0o700)
        except FileExistsError:
            raise EnvironmentExists(env_id) from None
        return env_dir

    def writable(self):
        """"ok" if a file can be made in the state dir now, else why not."""
        state_dir = self.config.state_dir
        try:
            fd, path = tempfile.mkstemp(dir=state_dir, prefix=".ready-")
            try:
                os.write(fd, b"ready\n")  # data, not only an inode: a full disk fails here
            finally:
                os.close(fd)
                os.unlink(path)
            return "ok"
        except OSError as exc:
            return "%s is not writable: %s" % (state_dir, exc.strerror or exc)

    def remove(self, env_id):
        """Rename the env's directory aside (the id is free at once, for every worker),
        then delete it; EnvironmentNotFound if it is gone already."""
        env_dir = self.env_dir(env_id)
        trash = os.path.join(self.envs_dir, ".deleted-%s-%s" % (env_id, secrets.token_hex(4)))
        try:
            os.rename(env_dir, trash)
        except FileNotFoundError:
            raise EnvironmentNotFound(env_id) from None
        finally:
            self.records.pop(env_id, None)
        shutil.rmtree(trash, ignore_errors=True)

    # -- env.json ------------------------------------------------------------------

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
            raise EnvironmentNotFound(env_id)
        return {"id": env_id, "state": "starting"}  # created, env.json not yet written


def unusable_record(env_id, problem):
    """What an env whose env.json cannot be used reads as: dead, with the reason."""
    return {"id": env_id, "state": "dead", "reason": problem.reason, "detail": problem.detail,
            "exit": None, "pid": None, "supervisor_pid": None}
