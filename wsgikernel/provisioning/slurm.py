"""The Slurm provisioner: a kernel is a batch job, on whichever node the scheduler picks.

``launch`` submits ``sbatch`` running the kernel in the foreground
(``python -m wsgikernel.kernel --foreground ENV_DIR``: the job's own process is
the supervisor, so Slurm tracks, signals and accounts it).  The kernel listens
on every interface of its node with the HMAC-authenticated TCP transport
(wire/auth.py; the key is ``kernel.key`` in the env dir) and publishes its
address in env.json: the state dir must be on a file system the nodes share,
as a cluster's home directories are.  env.json records ``slurm: {job_id}``.

The job is the kernel's liveness: ``squeue`` says whether it is pending,
running or gone (``poll``), ``scancel`` signals and kills it.  A job still
pending after the launch timeout is not an error: the env stays ``starting``
and ``job()`` gives Slurm's own words (``PENDING``, ``Resources``) for the env
object.  A submission sbatch refuses (resources the cluster cannot give, an
unknown partition) raises ``Refused`` with sbatch's message.

Risks: every ``poll`` is a ``squeue`` (a few ms against slurmctld); the
commands run with ``SLURM_CONF`` from the server's environment.
"""

import os
import shlex
import signal
import sys
import time

from ..store import LOG_FILE, read_record, write_record
from ..wire.auth import create_key, remove_key
from .base import KernelProvisioner, LaunchError
from .launcher import BOOT, PACKAGE_ROOT, kernel_environment

COMMAND_TIMEOUT = 30.0  # seconds sbatch may take (slurmctld busy)
QUERY_TIMEOUT = 5.0     # seconds squeue or scancel may take: they run inside requests
READY_POLL = 0.05       # seconds between looks at env.json while the job starts
PENDING_WAIT = 5.0      # seconds a create waits for a pending job before answering "queued"
# Slurm's ended states; any other (PENDING, RUNNING, SUSPENDED, REQUEUE_HOLD, states a
# newer Slurm adds...) is a job that may still run.
ENDED = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
         "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT")
UNKNOWN = "UNKNOWN"  # squeue could not say (slurmctld down): counted as still there
# sbatch's words for a request it will never accept; anything else (slurmctld down, a
# timeout) is the cluster's condition, not the request's.
REFUSALS = ("Batch job submission failed", "invalid", "Invalid", "not available",
            "Requested", "exceeds", "not permitted")
RESOURCE_OPTIONS = {  # the env's ``resources`` -> sbatch's options
    "cpus": "--cpus-per-task=%s", "mem": "--mem=%s", "gpus": "--gres=gpu:%s",
    "time": "--time=%s", "partition": "--partition=%s",
}


class Refused(LaunchError):
    """sbatch refused the job (``str()`` is its reason): the request's fault, not ours."""


def slurm(*argv, timeout=QUERY_TIMEOUT, env=None):
    """(exit status, stdout, stderr) of a Slurm command; status None if it cannot run."""
    import subprocess
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, "", str(exc)
    return (done.returncode, done.stdout.decode("utf-8", "replace").strip(),
            done.stderr.decode("utf-8", "replace").strip())


def sbatch_options(resources, site_args=()):
    return [RESOURCE_OPTIONS[key] % value for key, value in sorted((resources or {}).items())
            if key in RESOURCE_OPTIONS and value is not None] + list(site_args)


class SlurmProvisioner(KernelProvisioner):
    name = "slurm"
    wait_first, wait_longest = 0.05, 0.5  # each poll is an squeue: not every 10 ms

    @property
    def job_id(self):
        return (self.record.get("slurm") or {}).get("job_id")

    @property
    def job_name(self):
        """Ours only: a job id Slurm reuses (a new cluster, MaxJobId wrapping) is someone
        else's job, which must never be signalled or shown."""
        return "wsgikernel-%s" % (self.record.get("id") or "pool")

    def prepare(self, env_dir):
        fields = {"address": "tcp:0.0.0.0:0", "key_file": create_key(env_dir),
                  "supervisor_pid": None, "pid": None, "slurm": {"job_id": None}}
        fields.update(self.info())
        self.record.update(fields)
        return fields

    def launch(self, env_dir, timeout):
        """Submit the job, then wait up to ``timeout`` for the kernel to say it serves (in
        env.json); a job still pending then is left to start later."""
        command = " ".join(shlex.quote(word) for word in (
            sys.executable, "-c", BOOT, PACKAGE_ROOT, "--foreground", env_dir))
        argv = ["sbatch", "--parsable", "--job-name=" + self.job_name,
                "--chdir=%s" % env_dir, "--output=%s" % os.path.join(env_dir, LOG_FILE),
                "--open-mode=append", "--export=ALL", "--no-requeue"]
        argv += sbatch_options(self.record.get("resources"), self.site_args())
        argv += ["--wrap", "exec " + command]
        status, out, err = slurm(*argv, timeout=COMMAND_TIMEOUT,
                                 env=kernel_environment(huge_pages=self.huge_pages()))
        reason = err.replace("sbatch: error: ", "").strip()
        if status is None:
            raise LaunchError("sbatch cannot be run: %s" % err)
        if status != 0:
            if any(word in reason for word in REFUSALS):
                raise Refused(reason)
            raise LaunchError("sbatch failed: %s" % (reason or "exit status %d" % status))
        self.record["slurm"] = {"job_id": out.split(";")[0]}
        write_record(env_dir, self.record)
        try:
            self.wait_ready(env_dir, timeout)
        except LaunchError:
            self.kill()  # a job whose kernel will not serve holds its resources for nobody
            raise

    def site_args(self):
        return list(getattr(self.config, "slurm_args", None) or ())

    def wait_ready(self, env_dir, timeout):
        deadline = time.monotonic() + timeout
        kernel_id = self.record.get("kernel_id")
        while True:
            current = read_record(env_dir) or {}
            if current.get("kernel_id") == kernel_id and current.get("state") in (
                    "idle", "busy"):
                self.record.update(current)
                return
            if current.get("kernel_id") == kernel_id and current.get("state") == "dead":
                raise LaunchError(current.get("detail") or "the kernel did not start: see "
                                  "kernel.log")
            job = self.job()
            if job is None or job["state"] in ENDED:
                raise LaunchError("job %s ended (%s) before the kernel was ready: see "
                                  "kernel.log; the state dir must be visible from the node"
                                  % (self.job_id, (job or {}).get("state") or "gone"))
            waited = timeout - (deadline - time.monotonic())
            if job["state"] == "PENDING" and waited >= min(PENDING_WAIT, timeout):
                return  # it starts when Slurm says so; the env stays starting meanwhile
            if time.monotonic() >= deadline:
                raise LaunchError("the kernel did not report ready within %g s of its job "
                                  "starting, and its job was cancelled" % timeout)
            time.sleep(READY_POLL)

    def job(self):
        """{job_id, state, reason, node} of our job as squeue shows it; None once it left
        the queue (ended longer ago than MinJobAge) or the id is another job's; state
        UNKNOWN when squeue cannot tell."""
        if not self.job_id:
            return None
        status, out, err = slurm("squeue", "--noheader", "--states=all", "--jobs",
                                 str(self.job_id), "--format=%T|%r|%N|%j")
        if status == 0 and not out or status == 1 and "Invalid job id" in err:
            return None
        if status != 0:  # slurmctld unreachable: not "gone" (a delete must still scancel)
            return {"job_id": self.job_id, "state": UNKNOWN, "reason": err[-200:] or None,
                    "node": None}
        state, reason, node, name = (out.splitlines()[0].split("|") + ["", "", ""])[:4]
        if name != self.job_name:
            return None
        return {"job_id": self.job_id, "state": state, "reason": reason, "node": node or None}

    @classmethod
    def details_of(cls, pairs):
        """details() of many envs from one squeue (a listing of 200 envs is one query)."""
        provisioners = [cls(record) for record, _ in pairs]
        ids = sorted({p.job_id for p in provisioners if p.job_id})
        found = {}
        if ids:
            status, out, _ = slurm("squeue", "--noheader", "--states=all", "--jobs",
                                   ",".join(ids), "--format=%i|%T|%r|%N|%j")
            for line in out.splitlines() if status == 0 else ():
                job_id, state, reason, node, name = (line.split("|") + [""] * 4)[:5]
                found[(job_id, name)] = {"job_id": job_id, "state": state, "reason": reason,
                                         "node": node or None}
        return [{"slurm": found.get((p.job_id, p.job_name)) or {
                    "job_id": p.job_id, "state": None, "reason": None, "node": None},
                 "resources": p.record.get("resources") or {}} for p in provisioners]

    def details(self, env):
        """``slurm: {job_id, node, state, reason}`` in Slurm's words, and ``reason:
        queued`` while the job waits for its resources."""
        if env.get("state") in ("dead", "stopped") and not self.job_id:
            job = None
        else:
            job = self.job()
        job = job or {"job_id": self.job_id, "node": None, "state": None, "reason": None}
        extra = {"slurm": job, "resources": self.record.get("resources") or {}}
        if env.get("state") == "starting" and job["state"] == "PENDING":
            extra["reason"] = "queued"
        return extra

    def waiting(self):
        job = self.job() if self.job_id else None
        if job and job["state"] == "PENDING":
            return "its Slurm job %s is queued (PENDING: %s); retry once it runs" % (
                self.job_id, job["reason"])
        return None

    def abandoned(self):
        if not self.job_id:
            return None
        job = self.job()
        if job is None:
            return "Slurm job %s is gone (it ended before its kernel started)" % self.job_id
        if job["state"] in ENDED:
            return "Slurm job %s ended (%s) before its kernel started" % (self.job_id,
                                                                           job["state"])
        return None

    def poll(self):
        if not self.job_id:
            return -1
        job = self.job()
        return None if job is not None and job["state"] not in ENDED else -1

    def send_signal(self, signum):
        if self.job_id:
            slurm("scancel", "--batch", "--name=" + self.job_name,
                  "--signal=%s" % signal.Signals(signum).name[3:], str(self.job_id))

    def kill(self):
        if self.job_id:
            slurm("scancel", "--name=" + self.job_name, str(self.job_id))

    def cleanup(self):
        remove_key(self.record.get("key_file"))
