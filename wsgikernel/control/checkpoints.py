"""Checkpoints of an env, asked of its kernel: take, list, drop, restore, undo; forks.

The kernel does the work (kernel/checkpointing.py: a parked forked copy of the
user-code process per checkpoint); this layer finds the live kernel, bounds each
exchange, and turns what the kernel refuses into domain errors (link.refusal):
``CheckpointConflict`` (busy, name taken, threads running, nothing to undo),
``CheckpointNotFound``.  Checkpoints live in the kernel's memory only: a stopped or
dead env has none, and its requests are ``EnvironmentNotRunning``.

A fork is a new env whose namespace is a copy of the source's as its last cell
left it: this layer makes the env's directory (a copy of the source's work dir,
env.json naming ``forked_from``), the source's kernel forks its user-code process
into it (kernel/checkpoint.py ``fork_env``), and the new env's own supervisor reports
ready in env.json.  Refused (``CheckpointConflict``) where the copy would not be a
plain local env: a bwrap sandbox, a Slurm job, file or descriptor limits (the new
supervisor would run under them).
"""

import os
import secrets
import shutil
import time

from ..provisioning.launcher import kernel_command
from ..provisioning.local import LocalProvisioner
from ..store import WORK_DIR, read_record, utcnow, write_record
from ..wire import address as addresses
from ..wire.connection import KernelGone
from ..wire.envelope import PROTOCOL_VERSION
from .errors import CheckpointConflict, KernelUnavailable, QuotaExceeded
from .link import LAUNCH_TIMEOUT, STATUS_TIMEOUT, wait_until

TAKE_TIMEOUT = 30.0  # seconds a fork of the user-code process may take (GiBs of page tables)
RETRY_FIRST, RETRY_MAX = 0.0005, 0.05  # seconds between connects to a fork's new supervisor


class Checkpoints:
    def __init__(self, config, registry, link, describer):
        self.config = config
        self.registry = registry
        self.link = link
        self.describe = describer.describe

    def call(self, env_id, kind, body, timeout=STATUS_TIMEOUT):
        record = self.link.live_record(env_id)
        try:
            return self.link.call(record, kind, body, timeout)
        except KernelGone:
            raise self.link.gone(env_id, record) from None

    def take(self, env_id, name, force):
        """A checkpoint of the namespace as the last cell left it; its description."""
        return self.call(env_id, "checkpoint", {"name": name, "force": force},
                         TAKE_TIMEOUT)["checkpoint"]

    def listing(self, env_id):
        """{checkpoints: [...], memory: their summed PSS in bytes}."""
        return self.call(env_id, "checkpoints", {})

    def drop(self, env_id, name):
        self.call(env_id, "drop_checkpoint", {"name": name})

    def restore(self, env_id, name=None, undo=False):
        """The namespace of checkpoint ``name`` (``undo``: the newest automatic one) again,
        session + 1; the env afterwards, with ``restored``."""
        reply = self.call(env_id, "restore", {"name": name, "undo": undo},
                          self.config.kill_grace + LAUNCH_TIMEOUT + TAKE_TIMEOUT)
        if not reply.get("restored"):
            raise KernelUnavailable(env_id, "the checkpoint could not be resumed, and a "
                                    "fresh kernel was started instead (kernel.log says why)")
        env = self.describe(env_id, memory=False, status=reply)  # the answer is a status
        return dict(env, restored=reply["restored"])

    # -- forks -------------------------------------------------------------------------

    def fork(self, source_id, env_id=None, force=False, wait=0.0):
        """A new env (``env_id``, generated if None) holding a copy of the namespace of
        ``source_id`` as its last cell left it; (its env object, done).

        Behind a running cell the fork waits in the source's queue as a cell would: up to
        ``wait`` s here, then ``done`` is False and the new env reads ``starting`` until
        the fork happens (or ``dead``, saying why, if it never does)."""
        source = self.link.live_record(source_id)
        why = unforkable(source)
        if why:
            raise CheckpointConflict(source_id, why)
        # env.json's count may be behind (a cell's end is saved after its answer): the
        # source's supervisor writes the count the fork is taken at into the new env.json
        # before it forks, so it is not asked here (a round trip on every fork's way).
        count = source.get("execution_count") or 0
        env_id = env_id or secrets.token_hex(6)
        env_dir = self.registry.reserve(env_id)
        try:
            if self.config.max_envs is not None and self.registry.count() > self.config.max_envs:
                raise QuotaExceeded("max_envs", self.config.max_envs)
            record = self.forked_record(env_id, env_dir, source, count)
            provisioner = LocalProvisioner(record, self.config)
            provisioner.prepare(env_dir)
            write_record(env_dir, record)
            forkserver = provisioner.forkserver()
            # Its start-up overlaps the source's fork (which only a queued fork leaves it).
            standby = provisioner.standby(env_dir) if forkserver else None
            try:
                status = self.forked(source_id, env_id, env_dir, record, {
                    "env_dir": env_dir, "work_dir": record["cwd"], "force": force,
                    "forkserver": forkserver, "standby": standby and standby.address,
                    "command": kernel_command(env_dir)[:-1], "wait": wait}, standby)
            except BaseException:
                if standby is not None:
                    standby.dismiss()
                provisioner.cleanup()
                raise
        except BaseException:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise
        if status is None:
            return self.describe(env_id), False  # it happens at the source's next boundary
        return self.describe(env_id, memory=False, status=status), True

    def forked(self, source_id, env_id, env_dir, record, request, standby):
        """Ask the source for the fork ``request``; the new env's status once ready, or
        None if it waits in the source's queue.  Its standby is let go unless it took the
        new process (a queued fork's, or a copy that could not reach it, goes elsewhere)."""
        reply = self.call(source_id, "fork", request, request["wait"] + TAKE_TIMEOUT)
        queued = reply.get("record")
        if queued is not None and standby is not None:
            standby.dismiss()
        if queued is not None and queued["status"] in ("queued", "running"):
            return None
        if queued is not None and queued["status"] != "ok":
            raise CheckpointConflict(source_id, (queued.get("error") or {}).get(
                "evalue") or "the fork did not happen (%s)" % queued["status"])
        status = self.ready_status(env_dir, record)
        if status is None:
            LocalProvisioner(dict(record, supervisor_pid=reply.get("pid")), self.config).kill()
            raise KernelUnavailable(env_id, "the forked kernel did not start (see the "
                                    "kernel.log of %s)" % env_dir)
        if standby is not None and status.get("supervisor_pid") != standby.pid():
            standby.dismiss()
        return status

    def ready_status(self, env_dir, record):
        """The new env's status once its kernel is ready; None if it never is (dead, or not
        within LAUNCH_TIMEOUT).  Asked (``ready``) as soon as its supervisor's socket is
        there, and answered by the supervisor when its kernel says ready: no poll of
        env.json between the two.  (A TCP supervisor's port is in env.json only.)"""
        kind, where = addresses.parse(record["address"])
        path = where if kind == "unix" else None

        def reachable():
            return (path is not None and os.path.exists(path)
                    or (read_record(env_dir) or {}).get("state") != "starting")

        deadline = time.monotonic() + LAUNCH_TIMEOUT
        pause = RETRY_FIRST
        while wait_until(reachable, deadline - time.monotonic(), interval=0.002, first=0.0002):
            current = read_record(env_dir) or {}
            if current.get("state") == "dead":
                return None
            try:
                status = self.link.call(current, "status", {"ready": True},
                                        max(deadline - time.monotonic(), STATUS_TIMEOUT))
            except KernelGone:  # bound but not listening yet, or gone: env.json will say
                time.sleep(pause)
                pause = min(pause * 2, RETRY_MAX)
                continue
            return status if status.get("state") in ("idle", "busy") else None
        return None

    def forked_record(self, env_id, env_dir, source, count):
        """env.json of a fork: the source's limits and settings, a copy of its work dir,
        and where it came from."""
        work = os.path.join(env_dir, WORK_DIR)
        if source.get("cwd") and os.path.isdir(source["cwd"]):
            try:
                shutil.copytree(source["cwd"], work, symlinks=True)
            except (OSError, shutil.Error) as exc:  # a FIFO, a socket, an unreadable file
                raise CheckpointConflict(source.get("id"), "its work dir cannot be copied: "
                                         "%s" % copy_failure(exc)) from None
        else:
            os.makedirs(work, exist_ok=True)
        return {"id": env_id, "session": 1, "created": utcnow(), "state": "starting",
                "limits": dict(source.get("limits") or {}),
                "settings": dict(source.get("settings") or {}), "cwd": work,
                "execution_count": count, "rlimits": source.get("rlimits") or [],
                "forked_from": {"env": source.get("id"), "execution_count": count},
                "protocol": PROTOCOL_VERSION, "kernel_id": secrets.token_hex(8),
                "exit": None, "reason": None, "detail": None}


def copy_failure(exc):
    """The first file copytree could not copy, and why, in one line."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        source, _, why = exc.args[0][0]
        return "%s: %s" % (source, why)
    return str(exc)


def unforkable(record):
    """Why the env of ``record`` cannot be forked into a plain local env, or None."""
    if record.get("sandbox"):
        return ("a sandboxed environment cannot be forked: its processes live in the "
                "sandbox's namespaces (its checkpoints are refused too)")
    if record.get("provisioner") not in (None, LocalProvisioner.name):
        return ("an environment that runs as a %s job cannot be forked: its kernel is on "
                "another node (its checkpoints, restore and undo work there)"
                % str(record.get("provisioner")).capitalize())
    limits = record.get("limits") or {}
    kept = [key for key in ("file_size_limit", "open_files_limit") if limits.get(key)]
    if kept:
        return ("an environment with %s cannot be forked: the new environment's "
                "supervisor would run under that limit" % " and ".join(kept))
    return None
