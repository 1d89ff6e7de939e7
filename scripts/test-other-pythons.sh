#!/usr/bin/env bash
# Run the core suite (unit, WebTest and real-kernel tests) on each other CPython
# 3.9-3.13 that pyenv has. Absent versions are skipped; each gets a throwaway venv
# with only pytest, pytest-xdist, WebTest, requests (the HTTP/1.1 client tests) and
# prometheus_client (its parser reads /metrics):
# the checkout is used in place.
set -euo pipefail
cd "$(dirname "$0")/.."
CORE="tests/test_dispatch.py tests/test_params.py tests/test_errors.py tests/test_auth.py
      tests/test_packaging.py tests/test_server.py tests/test_execute_unit.py
      tests/test_introspect.py tests/test_environments.py tests/test_execution_semantics.py
      tests/test_kernel_failures.py tests/test_compat.py tests/test_introspect_http.py
      tests/test_hardening_input.py tests/test_hardening_newcomer.py tests/test_http11.py
      tests/test_semantics_ipython.py tests/test_introspect_ipython.py
      tests/test_threads_output.py tests/test_stop_on_error.py tests/test_interrupts.py
      tests/test_wire.py tests/test_process_tree.py tests/test_start_failures.py
      tests/test_supervisor_loss.py tests/test_execution_queue.py tests/test_layering.py
      tests/test_transport.py tests/test_forkserver.py tests/test_listing.py
      tests/test_pool.py tests/test_inbox.py tests/test_registry.py tests/test_provisioning.py
      tests/test_bwrap.py tests/test_sandbox.py tests/test_slurm.py
      tests/test_magics.py tests/test_figures.py tests/test_display_ipython.py
      tests/test_stdin.py tests/test_asking.py tests/test_mcp_unit.py
      tests/test_metrics_unit.py tests/test_operations.py"
command -v pyenv >/dev/null || { echo "pyenv not found: skipping other Pythons"; exit 0; }
current=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
for minor in 3.9 3.10 3.11 3.12 3.13; do
  [ "$minor" = "$current" ] && continue
  version=$(pyenv versions --bare | grep -E "^${minor//./\\.}(\.[0-9]+)?$" | tail -n 1 || true)
  if [ -z "$version" ]; then echo "Python $minor: not installed, skipped"; continue; fi
  prefix=$(pyenv prefix "$version")
  work=$(mktemp -d)
  "$prefix/bin/python" -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q --disable-pip-version-check pytest pytest-xdist WebTest requests \
    'prometheus_client~=0.26.0'
  echo "== Python $version: core suite"
  PYTHONPATH="$PWD" "$work/venv/bin/python" -m pytest -n 2 -q -p no:cacheprovider $CORE
  rm -rf "$work"
done
