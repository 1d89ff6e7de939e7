"""A single-node Slurm cluster for the tests (scripts/slurm-dev-cluster.sh), and why not.

``dev_cluster()`` starts one (slurmctld + slurmd on this host, ports and munged of its
own) and stops it in ``finally``; ``cluster_problem()`` says why one cannot run here.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile

import pytest

from helpers import HANG_GUARD, ROOT

SCRIPT = os.path.join(ROOT, "scripts", "slurm-dev-cluster.sh")


def cluster_problem():
    missing = [p for p in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(p)]
    if missing:
        return "Slurm is not installed (%s missing; scripts/install-system-deps.sh)" % (
            ", ".join(missing))
    if os.geteuid() != 0:
        return "the dev cluster's slurmd runs as root"
    return None


@contextlib.contextmanager
def dev_cluster():
    """SLURM_CONF of a running cluster, also set in os.environ meanwhile; skips the test
    (with the script's words) if it does not start."""
    folder = tempfile.mkdtemp(prefix="wk-slurm-")
    try:
        done = subprocess.run(["sh", SCRIPT, "start", folder], capture_output=True, text=True,
                              timeout=HANG_GUARD * 2)
        if done.returncode != 0:
            pytest.skip("the dev cluster did not start: %s" % done.stderr.strip()[-300:])
        conf = os.path.join(folder, "slurm.conf")
        previous = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = conf
        try:
            yield conf
        finally:
            if previous is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = previous
    finally:
        subprocess.run(["sh", SCRIPT, "stop", folder], capture_output=True, timeout=HANG_GUARD)
        shutil.rmtree(folder, ignore_errors=True)


def release(job_id):
    """Let a job submitted with --hold start."""
    subprocess.run(["scontrol", "release", str(job_id)], check=True, capture_output=True,
                   timeout=HANG_GUARD)
