#!/usr/bin/env bash
# The upstream OpenID provider of the single sign-on tests: panva's
# oidc-provider from npm (version pinned by package-lock.json), installed
# once into ~/.cache/portcullis and reused. Prints the directory holding
# op.mjs and its node_modules on the last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/tools/oidc-provider"
command -v node >/dev/null || { echo "node is needed for the upstream OpenID provider" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is needed for the upstream OpenID provider" >&2; exit 1; }
key=$(cat "$src/package.json" "$src/package-lock.json" "$src/op.mjs" | sha256sum | cut -c1-16)
dest="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/oidc-provider-$key"
if [[ ! -f "$dest/.installed" ]]; then
  rm -rf "$dest.tmp"
  mkdir -p "$dest.tmp"
  cp "$src/package.json" "$src/package-lock.json" "$src/op.mjs" "$dest.tmp/"
  (cd "$dest.tmp" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
  touch "$dest.tmp/.installed"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
fi
echo "$dest"
