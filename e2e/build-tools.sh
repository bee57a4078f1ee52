#!/usr/bin/env bash
# Builds the packaging tests' tools from source, through the Go module proxy,
# into a cache outside the repository that survives between runs, and prints
# a directory holding them:
#
#   helm        helm.sh/helm/v4 (tools/helm/go.mod)
#   luahealth   Argo CD health checks run by gopher-lua (tools/luahealth/)
#   crds/       upstream CRDs the chart's optional objects need on the API
#               server for a server-side dry run: Gateway API's HTTPRoute and
#               prometheus-operator's ServiceMonitor, read from their Go modules
#
# Each is cached under its own key (its module graph, its source and this
# script), so changing one does not rebuild the others.
#
#   PORTCULLIS_CACHE   cache root (default: ~/.cache/portcullis)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
# Modules whose YAML the tests read (fetched and checksum-verified, never built).
gateway_api=sigs.k8s.io/gateway-api@v1.6.3
prometheus_operator=github.com/prometheus-operator/prometheus-operator@v0.85.0

version_of() { # module path, go.mod: the required version
  awk -v m="$1" '$1 == m || ($1 == "require" && $2 == m) { print ($1 == m ? $2 : $3); exit }' "$2"
}
key_of() { cat "$self" "$@" | sha256sum | cut -c1-12; }
helm_version=$(version_of helm.sh/helm/v4 "$here/tools/helm/go.mod")
cache="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/tools"
helm_dir="$cache/helm-${helm_version}-$(key_of "$here"/tools/helm/go.*)"
lua_dir="$cache/luahealth-$(key_of "$here"/tools/luahealth/go.* "$here"/tools/luahealth/*.go)"
crds_dir="$cache/crds-$(echo "$gateway_api $prometheus_operator" | key_of -)"
out="$cache/set-$(echo "$helm_dir $lua_dir $crds_dir" | sha256sum | cut -c1-12)"

built() { [[ -x "$out/helm" && -x "$out/luahealth" && -f "$out/crds/servicemonitors.yaml" ]]; }
if built; then
  echo "$out"
  exit 0
fi

# One build at a time: a second caller waits for the first, then reuses it.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if built; then
  echo "$out"
  exit 0
fi
export GOFLAGS="-mod=readonly -trimpath"
export CGO_ENABLED=0
build() { # dir, module dir, package, binary name, ldflags
  [[ -x "$1/$4" ]] && return 0
  echo "building $4 from $3 (Go module proxy)..." >&2
  local start=$SECONDS
  mkdir -p "$1"
  (cd "$here/tools/$2" && go build -ldflags="$5" -o "$1/$4.partial" "$3")
  mv "$1/$4.partial" "$1/$4"
  echo "built $4 in $((SECONDS - start))s" >&2
}
# Stamp the version as helm's release build does (`helm version`).
build "$helm_dir" helm helm.sh/helm/v4/cmd/helm helm \
  "-s -w -X helm.sh/helm/v4/internal/version.version=${helm_version} -X helm.sh/helm/v4/internal/version.metadata="
build "$lua_dir" luahealth . luahealth "-s -w"

module_dir() { # module@version: its directory in the module cache, downloaded if needed
  (cd "$cache" && GOFLAGS='' go mod download -json "$1") |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "no Dir")))'
}
if [[ ! -f "$crds_dir/servicemonitors.yaml" ]]; then
  echo "fetching upstream CRDs from $gateway_api and $prometheus_operator (Go module proxy)..." >&2
  mkdir -p "$crds_dir"
  cp "$(module_dir "$gateway_api")/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" "$crds_dir/httproutes.yaml"
  cp "$(module_dir "$prometheus_operator")/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
    "$crds_dir/servicemonitors.yaml.partial"
  mv "$crds_dir/servicemonitors.yaml.partial" "$crds_dir/servicemonitors.yaml"
fi

mkdir -p "$out"
ln -sfn "$helm_dir/helm" "$out/helm"
ln -sfn "$lua_dir/luahealth" "$out/luahealth"
ln -sfn "$crds_dir" "$out/crds"

# Older builds (other versions or sources) are dead weight in the cache.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -path "$out" ! -path "$helm_dir" ! -path "$lua_dir" \
  ! -path "$crds_dir" -exec rm -rf {} +
echo "$out"
