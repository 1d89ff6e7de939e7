#!/usr/bin/env bash
# Vendor the console's front-end libraries into wsgikernel/static/, as built files with
# their licenses: the server needs no network and no Node at run time, and this script
# (npm at development time only) regenerates them byte for byte.
#
#   bash scripts/build-console.sh          # fetch, check, copy
#   bash scripts/build-console.sh --check  # fail if the vendored files differ
#
# marked renders markdown cells; DOMPurify sanitises what it renders (no script, no
# event handler, no javascript: URL reaches the page). Each package is the registry's
# tarball at a pinned version, checked against its pinned SHA-256 before use.
#
# CodeMirror 6 (each cell's editor) ships as ES modules only: scripts/console/ pins it
# (package.json, and package-lock.json whose integrity hashes npm ci checks) and esbuild,
# also pinned there, bundles the parts codemirror-entry.mjs names into one file with the
# licenses of every package inside it.
set -euo pipefail
cd "$(dirname "$0")/.."
STATIC=wsgikernel/static
# name version sha256-of-tarball  file-in-package  vendored-name  license-file
PACKAGES="
marked 18.2.1 d66c5213fc203466186060105b01f51896764ba64b3797d2620d02e28e34b8ca lib/marked.umd.js marked.umd.js LICENSE
dompurify 3.5.0 faa5f2bfe2814384b83d6edb4ed66812fbfdb2a654b4d59edd4b12304058ec20 dist/purify.min.js purify.min.js LICENSE
"
check=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
while read -r name version sha file vendored license; do
  [ -n "$name" ] || continue
  (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
  tarball="$work/$name-$version.tgz"
  got=$(sha256sum "$tarball" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "build-console: $name@$version is not the pinned tarball (sha256 $got)" >&2
    exit 1
  fi
  mkdir -p "$work/$name"
  tar xzf "$tarball" -C "$work/$name"
  for pair in "$file:$vendored" "$license:${vendored%.js}.LICENSE.txt"; do
    src="$work/$name/package/${pair%%:*}"
    dest="$STATIC/${pair##*:}"
    if [ "$check" = "--check" ]; then
      cmp -s "$src" "$dest" || { echo "build-console: $dest differs from $name@$version" >&2; status=1; }
    else
      cp "$src" "$dest"
      echo "$dest <- $name@$version/${pair%%:*}"
    fi
  done
done <<< "$PACKAGES"

deliver() {  # deliver SRC DEST: copy, or compare under --check
  if [ "$check" = "--check" ]; then
    cmp -s "$1" "$2" || { echo "build-console: $2 differs from its build" >&2; status=1; }
  else
    cp "$1" "$2"
    echo "$2 <- $3"
  fi
}
mkdir "$work/console"
cp scripts/console/package.json scripts/console/package-lock.json \
   scripts/console/codemirror-entry.mjs scripts/console/licenses.mjs "$work/console/"
(
  cd "$work/console"
  npm ci --silent --no-audit --no-fund >/dev/null
  ./node_modules/.bin/esbuild codemirror-entry.mjs --bundle --format=iife --global-name=CM \
    --minify --legal-comments=none --target=es2018 --log-level=warning \
    --metafile=meta.json --outfile=codemirror.min.js
  node licenses.mjs meta.json codemirror.min.js > codemirror.min.LICENSE.txt
)
deliver "$work/console/codemirror.min.js" "$STATIC/codemirror.min.js" "scripts/console (esbuild)"
deliver "$work/console/codemirror.min.LICENSE.txt" "$STATIC/codemirror.min.LICENSE.txt" \
  "the bundled packages' licenses"
exit $status
