#!/usr/bin/env bash
# The SMTP sink of the invitation tests (tests/support/smtp_sink.rs):
# aiosmtpd from PyPI, versions pinned by tools/smtp-sink/requirements.txt,
# run as `python -m aiosmtpd -c aiosmtpd.handlers.Mailbox MAILDIR` so that a
# test reads each delivered message from disk. Installed once into a Python
# venv under ~/.cache/portcullis and reused. Prints the venv's bin directory
# (holding `python`) on the last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/tools/smtp-sink/requirements.txt"
command -v python3 >/dev/null || { echo "python3 is needed for the SMTP sink" >&2; exit 1; }
key=$( (python3 --version; cat "$requirements") | sha256sum | cut -c1-16)
dest="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/smtp-sink-$key"
# A venv cannot be moved (its scripts name their interpreter by absolute
# path), so it is built in place and marked complete last.
if [[ ! -f "$dest/.installed" ]]; then
  rm -rf "$dest"
  python3 -m venv "$dest" >&2
  "$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements" >&2
  "$dest/bin/python" -m aiosmtpd --version >/dev/null
  touch "$dest/.installed"
fi
echo "$dest/bin"
