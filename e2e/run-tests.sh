#!/usr/bin/env bash
# Every test Portcullis has, as CI runs them: formatting, lints, the real
# control plane for the end-to-end tests, the packaging tools, the SCIM
# conformance suite and the SMTP sink (each built once, then cached), `cargo test` of every
# workspace member (the product, the SCIM core, one small run of each
# benchmark), and the SCIM parsers' fuzz targets for a bounded time. This is
# the README's test command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# A cold build of every target (clippy's, the tests', the fuzz targets') writes
# about 10 GB; say so up front rather than let rustc stop half-way with "No
# space left on device".
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
free_gb=$(df -Pk "$target_dir" | awk 'NR == 2 { print int($4 / 1048576) }')
if ((free_gb < 15)); then
  echo "warning: ${free_gb} GB free under $target_dir; a cold build needs about 10 GB" >&2
fi

step "cargo fmt --check"
cargo fmt --all --check
# fuzz/ is a workspace of its own (kept out of the main one for libfuzzer).
cargo fmt --all --check --manifest-path fuzz/Cargo.toml

# --workspace for clippy and the tests alike: one build of every member with
# one set of features. Separate `-p` runs would build the dependencies that
# the product and the benchmarks share twice (the engines turn on features
# of serde and others that the product alone does not).
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "real control plane (kube-apiserver + etcd from source, cached)"
start=$(date +%s)
PORTCULLIS_CONTROL_PLANE_BIN=$(bash e2e/build-control-plane.sh | tail -n 1)
export PORTCULLIS_CONTROL_PLANE_BIN
echo "control plane binaries in $PORTCULLIS_CONTROL_PLANE_BIN ($(($(date +%s) - start))s)" >&2

step "packaging tools (helm, the Argo CD health-check runner, upstream CRDs; from source, cached)"
start=$(date +%s)
PORTCULLIS_TOOLS_BIN=$(bash e2e/build-tools.sh | tail -n 1)
export PORTCULLIS_TOOLS_BIN
echo "packaging tools in $PORTCULLIS_TOOLS_BIN ($(($(date +%s) - start))s)" >&2

step "upstream OpenID provider for the single sign-on tests (oidc-provider from npm, cached)"
PORTCULLIS_OIDC_PROVIDER_DIR=$(bash e2e/build-oidc-provider.sh | tail -n 1)
export PORTCULLIS_OIDC_PROVIDER_DIR

step "SAML IdP for the single sign-on tests (crewjam/saml's samlidp from the Go module proxy, cached)"
PORTCULLIS_SAML_IDP_BIN=$(bash e2e/build-saml-idp.sh | tail -n 1)
export PORTCULLIS_SAML_IDP_BIN
echo "SAML IdP in $PORTCULLIS_SAML_IDP_BIN" >&2

step "SCIM conformance suite (scim2-tester from PyPI, in a venv, cached)"
PORTCULLIS_SCIM2_TESTER_BIN=$(bash e2e/build-scim2-tester.sh | tail -n 1)
export PORTCULLIS_SCIM2_TESTER_BIN
echo "scim2-tester in $PORTCULLIS_SCIM2_TESTER_BIN" >&2

step "SMTP sink for the invitation tests (aiosmtpd from PyPI, in a venv, cached)"
PORTCULLIS_SMTP_SINK_BIN=$(bash e2e/build-smtp-sink.sh | tail -n 1)
export PORTCULLIS_SMTP_SINK_BIN
echo "SMTP sink in $PORTCULLIS_SMTP_SINK_BIN" >&2

step "Python client's test venv (PyJWT, Flask, FastAPI, pytest from PyPI, cached)"
PORTCULLIS_PYTHON_CLIENT_BIN=$(bash e2e/build-python-client.sh | tail -n 1)
export PORTCULLIS_PYTHON_CLIENT_BIN
echo "Python client venv in $PORTCULLIS_PYTHON_CLIENT_BIN" >&2

step "cargo test --workspace --all-targets"
cargo test --locked --workspace --all-targets

# Each fuzz target runs PORTCULLIS_FUZZ_SECONDS (default 60); one input taking
# over 10 s is a hang and fails like a panic. Stable Rust without a sanitizer
# (the parsers are safe Rust; coverage guidance needs no nightly). New inputs
# are kept in fuzz/corpus/ (ignored by git), started from fuzz/seeds/.
fuzz_seconds=${PORTCULLIS_FUZZ_SECONDS:-60}
fuzz_log=$(mktemp)
trap 'rm -f "$fuzz_log"' EXIT
for target in scim_filter scim_patch_path; do
  step "cargo fuzz run $target (${fuzz_seconds}s)"
  start=$(date +%s)
  mkdir -p "fuzz/corpus/$target"
  if ! (cd fuzz && cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$fuzz_seconds" -timeout=10 -print_final_stats=1) >"$fuzz_log" 2>&1; then
    tail -n 80 "$fuzz_log" >&2
    echo "$target: the fuzzer found a crash, panic or hang (input saved under fuzz/artifacts/$target)" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$fuzz_log" >&2 || true
  echo "$target: no crash, panic or hang in ${fuzz_seconds}s ($(($(date +%s) - start))s with the build)" >&2
done
