"""The lifecycle of an env's kernel: create, launch, restart, stop, delete.

A new env claims a pre-started kernel from the pool when its limits are the
server's, else a kernel is launched for it.  A start that fails is recorded
in env.json (``dead``, reason ``start_failed``, ``detail``) before anyone
hears of it, so the env shows why.  Stopping escalates as jupyter_client
does: a shutdown request to the supervisor (which SIGTERMs the user-code
process group, then SIGKILLs it after ``kill_grace``), then SIGTERM and
SIGKILL to whatever is left.
"""

import glob
import logging
import os
import secrets
import shutil
import threading

from ..config import rlimits
from ..metrics import kernels as kernel_counts
from ..provisioning import LaunchError, LocalProvisioner, SandboxProvisioner, for_record
from ..provisioning import forkserver, sandbox
from ..provisioning.slurm import Refused, SlurmProvisioner
from ..requestid import event
from ..statedir import file_lock
from ..store import ENV_FILE, LEDGER_DIR, LOG_FILE, WORK_DIR, read_record, utcnow, write_record
from ..wire.connection import KernelGone
from ..wire.envelope import PROTOCOL_VERSION
from .errors import (ControlError, EnvironmentExists, InvalidLimit, InvalidResources,
                     InvalidSandbox, KernelUnavailable, QuotaExceeded, SandboxUnavailable)
from .envobject import env_object
from .link import ALIVE_STATES, LAUNCH_TIMEOUT, LOST_MARK, STATUS_TIMEOUT

log = logging.getLogger("wsgikernel")
RESTART_LOCK = ".restart.lock"  # in the env dir: one revival of a stopped env at a time


class Lifecycle:
    def __init__(self, config, registry, link, describer, pool):
        self.config = config
        self.registry = registry
        self.link = link
        self.describe = describer.describe
        self.pool = pool

    # -- creating ------------------------------------------------------------------

    def create(self, env_id=None, limits=None, exist_ok=False, sandbox=None,
               sandbox_network=None, resources=None, auto_checkpoints=None):
        """(env, created): make the directory (the cross-process lock), start the kernel.
        ``sandbox`` ("none", "bwrap") and ``sandbox_network`` tighten the server's;
        ``resources`` are a Slurm job's (launcher slurm); ``auto_checkpoints`` (None:
        the server's) is the env's own."""
        if env_id is None:
            env_id = secrets.token_hex(6)
        try:
            env_dir = self.registry.reserve(env_id)
        except EnvironmentExists:
            if exist_ok:
                return self.ensure_running(env_id), False
            raise
        try:
            if self.config.max_envs is not None and self.registry.count() > self.config.max_envs:
                raise QuotaExceeded("max_envs", self.config.max_envs)
            settings = self.kernel_settings()
            if auto_checkpoints is not None:
                settings["auto_checkpoints"] = auto_checkpoints
            record = {"id": env_id, "session": 1, "created": utcnow(), "state": "starting",
                      "limits": self.env_limits(limits), "settings": settings,
                      "cwd": os.path.join(env_dir, WORK_DIR), "execution_count": 0}
            record.update(self.env_sandbox(sandbox, sandbox_network))
            record.update(self.env_launcher(resources))
            claimed = (record["limits"] == self.config.limits()
                       and record.get("sandbox") == self.env_sandbox(None, None).get("sandbox")
                       and self.pool.claim(env_id, env_dir, record))
            if claimed:  # its bind answered with its status: no second question
                return env_object(*claimed), True
            try:
                self.launch(env_dir, record)
            except KernelUnavailable:
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
        with file_lock(os.path.join(self.registry.env_dir(env_id), RESTART_LOCK)):
            if self.describe(env_id)["state"] != "stopped":
                return self.describe(env_id)
            env = self.restart(env_id)
        return dict(env, restarted=True)

    def env_limits(self, requested):
        """The server's limits, tightened by those ``requested`` (InvalidLimit if looser)."""
        limits = self.config.limits()
        for key, value in (requested or {}).items():
            if value is None:
                continue
            ceiling = limits.get(key)
            if ceiling is not None and value > ceiling:
                raise InvalidLimit(key, "the server allows at most %s" % ceiling)
            limits[key] = value
        return limits

    def env_sandbox(self, requested=None, network=None):
        """env.json's provisioner fields for a create: the server's sandbox tightened by
        ``requested`` and ``network`` ({} for none).  InvalidSandbox if they would loosen
        it; SandboxUnavailable if bwrap cannot run here."""
        server = self.config.sandbox
        kind = requested or ("bwrap" if network is not None else server)
        if kind == "none":
            if server != "none":
                raise InvalidSandbox("sandbox", "this server runs every environment in a %s "
                                     "sandbox" % server)
            if network is not None:
                raise InvalidSandbox("sandbox_network", "it applies to sandboxed environments "
                                     "only (sandbox: bwrap), and sandbox is none here")
            return {}
        allowed = self.config.sandbox_network
        if network is None:
            network = allowed == "on"
        elif network and allowed == "off":
            raise InvalidSandbox("sandbox_network", "this server gives sandboxes no network "
                                 "(sandbox_network=off)")
        spec = sandbox.spec(self.config, network)
        why = sandbox.problem(spec)
        if why:
            raise SandboxUnavailable(why)
        return {"provisioner": SandboxProvisioner.name, "sandbox": spec}

    def env_launcher(self, resources=None):
        """env.json's fields for where the kernel runs: {} on this host, the Slurm
        provisioner and the job's ``resources`` with launcher slurm."""
        if self.config.launcher != "slurm":
            if resources:
                raise InvalidResources("resources apply to kernels run as Slurm jobs "
                                       "(launcher slurm); this server runs them on its host")
            return {}
        return {"provisioner": SlurmProvisioner.name, "resources": resources or {}}

    def kernel_settings(self):
        config = self.config
        return {"kill_grace": config.kill_grace, "output_cap": config.output_cap,
                "max_queue": config.max_queue, "idle_timeout": config.idle_timeout,
                "history_limit": config.history_limit, "default_timeout": config.default_timeout,
                "preload": list(config.preload), "auto_checkpoints": config.auto_checkpoints,
                "max_checkpoints": config.max_checkpoints, "magics": config.magics,
                "max_server_checkpoints": config.max_server_checkpoints,
                "checkpoint_ledger": os.path.join(config.state_dir, LEDGER_DIR),
                "inline_figures": config.inline_figures,
                "input_timeout": config.input_timeout, "log_format": config.log_format,
                "metrics": config.metrics}

    # -- starting ------------------------------------------------------------------

    def launch(self, env_dir, record):
        """Write env.json for a new kernel process and start it.

        A start that fails (the kernel says why, exits before it is ready, or does not
        report ready within LAUNCH_TIMEOUT and is killed) is recorded before anyone
        hears of it -- ``dead``, reason ``start_failed``, ``detail`` -- and raised as
        KernelUnavailable.
        """
        record.update(state="starting", protocol=PROTOCOL_VERSION, exit=None, reason=None,
                      detail=None, kernel_id=secrets.token_hex(8),
                      rlimits=rlimits(record.get("limits")))
        provisioner = for_record(record, self.config)
        provisioner.prepare(env_dir)
        self.retire_counts(env_dir)  # the last kernel's, if any
        write_record(env_dir, record)
        try:
            provisioner.launch(env_dir, LAUNCH_TIMEOUT)
        except Refused as exc:  # the request's resources, not a kernel that failed
            self.record_start_failure(env_dir, record, "sbatch refused the job: %s" % exc,
                                      provisioner)
            raise InvalidResources(str(exc)) from None
        except (LaunchError, OSError) as exc:
            self.record_start_failure(env_dir, record, str(exc), provisioner)
            raise KernelUnavailable(record["id"], str(exc)) from None
        if record.get("id"):
            event("kernel_started", env=record["id"], session=record.get("session"),
                  kernel_id=record["kernel_id"], provisioner=provisioner.name)

    def retire_counts(self, env_dir):
        """Keep what the env's ended kernel counted, before its counts file goes (never a
        reason for a launch or a delete to fail)."""
        for mark in glob.glob(os.path.join(glob.escape(env_dir), LOST_MARK % "*")):
            try:
                os.unlink(mark)
            except OSError:
                pass
        if self.config.metrics:
            try:
                kernel_counts.retire(env_dir, self.registry.counts)
            except OSError:
                log.exception("could not keep the counts of %s's last kernel", env_dir)

    def record_start_failure(self, env_dir, record, why, provisioner):
        """env.json (and kernel.log) of a kernel that did not come up, unless the kernel
        recorded its failure itself (then its own detail, exit and log stand)."""
        current = read_record(env_dir) or {}
        if (current.get("kernel_id") == record["kernel_id"] and current.get("state") == "dead"
                and current.get("reason") == "start_failed"):
            return
        provisioner.cleanup()  # killed, or its interpreter died: nothing of it cleans up
        try:
            with open(os.path.join(env_dir, LOG_FILE), "a") as log:
                log.write("%s start failed: %s\n" % (utcnow(), why))
            record.update(state="dead", reason="start_failed", detail=why, pid=None,
                          supervisor_pid=None,
                          exit=current.get("exit") or {"code": None, "signal": None})
            write_record(env_dir, record)
        except OSError:
            return  # the env was deleted meanwhile
        self.link.count_death(record, "start_failed", why)

    def restart(self, env_id):
        """A fresh namespace, same id, session + 1.

        A live supervisor forks a new user-code process; if there is none, or the new
        process does not come up, a whole new kernel is started.  An env.json that was
        unusable is rebuilt from what is known (rebuilt_record).  A start that fails
        leaves the env ``dead``, reason ``start_failed``: the answer shows it, with
        ``detail`` and the ``log`` that says why.
        """
        record = self.registry.read(env_id)
        recorded = "settings" in record  # else a stand-in: env.json is unusable or missing
        session = int(record.get("session") or 0) + 1
        if record.get("state") in ALIVE_STATES and for_record(record).running():
            try:
                reply = self.link.call(record, "restart",
                                       timeout=self.config.kill_grace + LAUNCH_TIMEOUT)
                if reply.get("state") not in ("dead", "stopped"):
                    return self.describe(env_id)
            except (KernelGone, ControlError):
                pass
        elif not recorded:  # a kernel may still run behind the record that cannot be read
            self.stop_unrecorded_kernels(env_id)
        self.shutdown_kernel(record)  # whatever is left of an old kernel goes first
        record = self.registry.read(env_id)
        if "settings" not in record:
            record = self.rebuilt_record(env_id)
            session = record["session"] + 1
        elif not recorded:  # that kernel, stopped, saved its own record again
            session = int(record.get("session") or 0) + 1
        # One more session per restart asked for, even when the supervisor's own attempt
        # (which counted one) failed and this is the second.
        record.update(session=max(int(record.get("session") or 0), session), exit=None,
                      reason=None)
        self.link.end_parked(env_id, "the environment was restarted before its kernel "
                             "started")
        try:
            self.launch(self.registry.env_dir(env_id), record)
        except (KernelUnavailable, InvalidResources):
            pass  # recorded: the env is dead (start_failed) and shows why
        return self.describe(env_id)

    def stop_unrecorded_kernels(self, env_id):
        """Stop the supervisors working in the env's directory that its record does not
        name (it cannot be read).  SIGTERM makes one stop its user-code process and
        save its own record, which is the env's again."""
        grace = self.config.kill_grace + STATUS_TIMEOUT
        for stray in LocalProvisioner.strays(self.registry.env_dir(env_id)):
            stray.stop(grace)

    def rebuilt_record(self, env_id):
        """A record for an env whose env.json is unusable or missing (moved aside to
        env.json.bad): its id and work dir, the server's limits, settings and sandbox, and
        the session, execution count and creation time its history shows."""
        env_dir = self.registry.env_dir(env_id)
        path = os.path.join(env_dir, ENV_FILE)
        if os.path.lexists(path):
            bad = path + ".bad"
            if os.path.isdir(bad) and not os.path.islink(bad):
                shutil.rmtree(bad, ignore_errors=True)
            os.replace(path, bad)  # kept for whoever wants to know what happened
        records = self.registry.history(env_id).read()
        sessions = [r["session"] for r in records if isinstance(r.get("session"), int)]
        counts = [r["execution_count"] for r in records
                  if isinstance(r.get("execution_count"), int)]
        return {"id": env_id, "session": max(sessions, default=0),
                "created": (records[0].get("queued_at") if records else None) or utcnow(),
                "limits": self.env_limits(None), "settings": self.kernel_settings(),
                "cwd": os.path.join(env_dir, WORK_DIR), "execution_count": max(counts, default=0),
                **self.env_sandbox(), **self.env_launcher()}

    # -- stopping ------------------------------------------------------------------

    def delete(self, env_id):
        """Stop the kernel (no descendant survives) and remove the env's directory."""
        record = self.registry.read(env_id)
        self.shutdown_kernel(record, state=None, reason="deleted")
        self.retire_counts(self.registry.env_dir(env_id))
        self.registry.remove(env_id)

    def shutdown_kernel(self, record, state="stopped", reason="shutdown"):
        """request -> wait -> SIGTERM -> wait -> SIGKILL, as jupyter_client does."""
        provisioner = for_record(record, self.config)
        grace = self.config.kill_grace
        if provisioner.waiting():  # a queued batch job: nothing runs that could be asked
            provisioner.kill()
        if provisioner.running():
            if record.get("id"):
                event("kernel_stopped", env=record["id"], reason=reason,
                      session=record.get("session"))
            try:  # answered once the kernel's tree is gone: up to kill_grace
                self.link.call(record, "shutdown", {"state": state, "reason": reason},
                               timeout=grace + STATUS_TIMEOUT)
            except (KernelGone, ControlError):
                pass
            if not provisioner.wait(grace + STATUS_TIMEOUT):
                provisioner.stop(grace)
        provisioner.kill()  # a user-code group left by a killed supervisor
        provisioner.cleanup()
        self.link.forget(record)

    def stop_all(self):
        """Stop every kernel of the state dir in parallel; envs stay, as ``stopped``."""
        threads = [threading.Thread(target=self.pool.stop_all)]
        threads[0].start()
        for env_id in self.registry.ids():
            record = read_record(self.registry.env_dir(env_id))
            # A dead env's supervisor lives on (it serves history and restarts): stop it too.
            if record and (record.get("state") in ALIVE_STATES
                           or for_record(record).running()):
                thread = threading.Thread(target=self.shutdown_kernel,
                                          args=(record, "stopped", "server_shutdown"))
                thread.start()
                threads.append(thread)
        for thread in threads:
            thread.join()
        forkserver.stop(self.config.state_dir)  # after the pool: a refill may have used it
