#!/usr/bin/env bash
# The SAML 2.0 identity provider of the single sign-on tests (tests/saml.rs):
# crewjam/saml's samlidp (github.com/crewjam/saml, version pinned by
# tools/saml-idp/go.mod) with a small main of ours (tools/saml-idp/main.go),
# built through the Go module proxy into a cache outside the repository and
# reused. Prints the path of the binary on the last line.
#
#   PORTCULLIS_CACHE   cache root (default: ~/.cache/portcullis)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/tools/saml-idp"
command -v go >/dev/null || { echo "Go is needed to build the test SAML IdP" >&2; exit 1; }
key=$(cat "$here/build-saml-idp.sh" "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
dest="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/saml-idp-$key"
if [[ ! -x "$dest/saml-idp" ]]; then
  mkdir -p "$dest"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$dest/saml-idp.tmp" .) >&2
  mv "$dest/saml-idp.tmp" "$dest/saml-idp"
fi
echo "$dest/saml-idp"
