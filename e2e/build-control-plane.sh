#!/usr/bin/env bash
# Builds the real kube-apiserver, kubectl and etcd for the end-to-end tests from source,
# through the Go module proxy, into a cache outside the repository that survives
# between runs. Prints the directory holding both binaries.
#
#   PORTCULLIS_CACHE   cache root (default: ~/.cache/portcullis)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version_of() { # module path, go.mod: the required version
  awk -v m="$1" '$1 == m || ($1 == "require" && $2 == m) { print ($1 == m ? $2 : $3); exit }' "$2"
}
k8s_version=$(version_of k8s.io/kubernetes "$here/controlplane/kube-apiserver/go.mod")
etcd_version=$(version_of go.etcd.io/etcd/server/v3 "$here/controlplane/etcd/go.mod")
# The cache key covers the exact module graph and this script's build flags.
key=$(cat "$0" "$here"/controlplane/*/go.mod "$here"/controlplane/*/go.sum | sha256sum | cut -c1-12)
cache="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/controlplane"
out="$cache/k8s-${k8s_version}-etcd-${etcd_version}-${key}"

built() { [[ -x "$out/kube-apiserver" && -x "$out/kubectl" && -x "$out/etcd" ]]; }
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
mkdir -p "$out"
export GOFLAGS="-mod=readonly -trimpath"
export CGO_ENABLED=0
# Stamp the Kubernetes version, as its release build does, so that clients
# (kubectl version, discovery) see v1.37.x rather than v0.0.0-master.
minor=$(echo "$k8s_version" | cut -d. -f2)
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version}
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}
  -X k8s.io/component-base/version.gitTreeState=clean"
build() { # module dir, package, binary name, ldflags
  echo "building $3 from $2 (Go module proxy)..." >&2
  (cd "$here/controlplane/$1" && go build -ldflags="$4" -o "$out/$3.partial" "$2")
  mv "$out/$3.partial" "$out/$3"
}
build etcd go.etcd.io/etcd/server/v3 etcd "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$k8s_ldflags"
build kube-apiserver k8s.io/kubernetes/cmd/kubectl kubectl "$k8s_ldflags"

# Older builds (other versions or flags) are dead weight in the cache.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -path "$out" -exec rm -rf {} +
echo "$out"
