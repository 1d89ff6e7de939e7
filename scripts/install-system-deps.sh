#!/bin/sh
# Install the system programs the tests drive: Debian's chromium and
# chromium-driver (tests/test_browser.py), nginx (the reverse-proxy recipe of
# docs/deploy.md, tests/test_deploy_gunicorn.py), bubblewrap (the sandbox=bwrap
# environments of docs/security.md, tests/test_sandbox.py) and slurm-wlm + munge (the
# single-node cluster of scripts/slurm-dev-cluster.sh, tests/test_slurm.py).
#
# Idempotent and quiet: does nothing when they are already there.  Needs root (or sudo) and apt-get,
# i.e. a Debian or Ubuntu-like system; .ci/run calls it before the tests.
set -eu

have_all() {
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && command -v nginx >/dev/null 2>&1 \
        && command -v bwrap >/dev/null 2>&1 && command -v slurmctld >/dev/null 2>&1 \
        && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1
}

if have_all; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps.sh: apt-get not found; install chromium and chromedriver" \
         "(so that /usr/bin/chromium and /usr/bin/chromedriver exist), nginx, bubblewrap," \
         "slurm-wlm and munge" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-system-deps.sh: run as root (or install sudo)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Quiet on success; the whole apt log on failure.
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver nginx-light \
           bubblewrap slurm-wlm munge; } \
       >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-system-deps.sh: apt-get failed" >&2
    exit 1
fi

if ! have_all; then
    echo "install-system-deps.sh: chromium, chromedriver, nginx, bwrap or slurm still missing after" \
         "apt-get" >&2
    exit 1
fi
