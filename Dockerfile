# syntax=docker/dockerfile:1
# The one stsguard binary: webhook server, `check`, and the role init container (`role-init`).
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin stsguard && strip target/release/stsguard

# Minimal runtime: glibc + CA roots, no shell, non-root (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/stsguard /usr/local/bin/stsguard
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/stsguard"]
CMD ["serve", "--help"]
