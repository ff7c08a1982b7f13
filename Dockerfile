# syntax=docker/dockerfile:1
# One image for every part of the suite: `telehealth serve <part>` (k8s/), `telehealth health
# <part>` (the probes), the admin commands (`migrate`, `audit verify`), and the web client's files.
#
#   docker build -t registry.example.org/telehealth/telehealth:0.1.0 .

# --- build ------------------------------------------------------------------------------------
# The toolchain the project is built and tested with (Rust 1.95), on Debian 12 like the runtime,
# so the binary's glibc matches.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# No protoc (protox compiles the contract), no OpenSSL (rustls + ring), SQLite bundled: the
# image's gcc is all the C the build needs. The caches make rebuilds incremental with BuildKit.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin telehealth \
    && install -D -m 0755 target/release/telehealth /out/telehealth

# --- web client -------------------------------------------------------------------------------
# Built from web/ (its lock file), type-checked, within its budget; served by the gateway from
# /usr/share/telehealth/web (`gateway.web_root`, set in k8s/base/telehealth.toml).
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# --- runtime ----------------------------------------------------------------------------------
# distroless: glibc, libgcc, CA certificates (/etc/ssl/certs/ca-certificates.crt, used for an
# https JWKS URL) and tzdata; no shell, no package manager. `nonroot` runs as uid/gid 65532.
# The time zone database is bundled in the binary (jiff), the probes are the binary itself.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/telehealth /usr/local/bin/telehealth
COPY --from=web /web/dist /usr/share/telehealth/web
USER 65532:65532
# The gateway's and the services' default ports (each part's listen address is configured).
EXPOSE 8443 7101 7102 7103 7104
ENTRYPOINT ["/usr/local/bin/telehealth"]
CMD ["--help"]
