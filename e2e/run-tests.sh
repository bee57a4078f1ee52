#!/usr/bin/env bash
# Every test Portcullis has, as CI runs them: formatting, lints, the real
# control plane for the end-to-end tests (built once, then cached), and
# `cargo test`. This is the README's test command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "real control plane (kube-apiserver + etcd from source, cached)"
start=$(date +%s)
PORTCULLIS_CONTROL_PLANE_BIN=$(bash e2e/build-control-plane.sh | tail -n 1)
export PORTCULLIS_CONTROL_PLANE_BIN
echo "control plane binaries in $PORTCULLIS_CONTROL_PLANE_BIN ($(($(date +%s) - start))s)" >&2

step "cargo test"
cargo test --locked --all-targets
