#!/usr/bin/env bash
# The public SCIM conformance suite of tests/scim_conformance.rs: scim2-tester,
# run as `scim2 test` (the `test` command of scim2-cli, from PyPI), versions
# pinned by tools/scim2-tester/requirements.txt. Installed once into a Python
# venv under ~/.cache/portcullis and reused. Prints the venv's bin directory
# (holding `scim2`) on the last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/tools/scim2-tester/requirements.txt"
command -v python3 >/dev/null || { echo "python3 is needed for scim2-tester" >&2; exit 1; }
key=$( (python3 --version; cat "$requirements") | sha256sum | cut -c1-16)
dest="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/scim2-tester-$key"
# A venv cannot be moved (its scripts name their interpreter by absolute
# path), so it is built in place and marked complete last.
if [[ ! -f "$dest/.installed" ]]; then
  rm -rf "$dest"
  python3 -m venv "$dest" >&2
  "$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements" >&2
  "$dest/bin/scim2" test --help >/dev/null
  touch "$dest/.installed"
fi
echo "$dest/bin"
