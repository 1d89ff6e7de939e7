#!/usr/bin/env bash
# Run the core (unit + WebTest) suite on each other CPython 3.9-3.13 that pyenv has.
# Absent versions are skipped; each gets its own throwaway venv.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pyenv >/dev/null || { echo "pyenv not found: skipping other Pythons"; exit 0; }
current=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
for minor in 3.9 3.10 3.11 3.12 3.13; do
  [ "$minor" = "$current" ] && continue
  prefix=$(pyenv prefix "$(pyenv versions --bare | grep -E "^${minor//./\\.}(\.[0-9]+)?$" | tail -n 1)" 2>/dev/null) || { echo "Python $minor: not installed, skipped"; continue; }
  venv=$(mktemp -d)/venv
  "$prefix/bin/python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q -e '.[test]'
  echo "== Python $minor: core suite"
  "$venv/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider tests
  rm -rf "$(dirname "$venv")"
done
