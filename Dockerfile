# syntax=docker/dockerfile:1
# The `portcullis` image: one binary for the operator and the services it runs
# (the chart and the operator's Deployments pass the subcommand as args).
#
#   docker build -t registry.example.com/portcullis:0.1.0 .
#
# Not built by the test command: the CI machines have no container engine.
# tests/packaging.rs checks what it can without one (stages, --locked, the
# non-root user matching the chart's runAsUser).

# Debian 12, like the runtime stage: the same glibc and OpenSSL 3 (which
# webauthn-rs links) at build and at run time.
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
 && cp target/release/portcullis /portcullis

# glibc, libgcc, OpenSSL and CA certificates, no shell or package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /portcullis /usr/local/bin/portcullis
# distroless's nonroot user; the chart's podSecurityContext runs as the same.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/portcullis"]
