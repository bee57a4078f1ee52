#!/usr/bin/env bash
# The venv the Python client's tests run in (tests/python_client.rs): PyJWT,
# Flask, FastAPI, uvicorn, pytest and setuptools from PyPI, versions pinned by
# tools/python-client/requirements.txt. Installed once into a venv under
# ~/.cache/portcullis and reused; the package itself is built from
# clients/python/portcullis by each test run. Prints the venv's bin directory
# on the last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/tools/python-client/requirements.txt"
command -v python3 >/dev/null || { echo "python3 is needed for the Python client's tests" >&2; exit 1; }
key=$( (python3 --version; cat "$requirements") | sha256sum | cut -c1-16)
dest="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/python-client-$key"
# A venv cannot be moved (its scripts name their interpreter by absolute
# path), so it is built in place and marked complete last.
if [[ ! -f "$dest/.installed" ]]; then
  rm -rf "$dest"
  python3 -m venv "$dest" >&2
  "$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements" >&2
  "$dest/bin/python" -m pytest --version >/dev/null
  touch "$dest/.installed"
fi
echo "$dest/bin"
