# cutover's image: one static binary on an empty base, running as a non-root user.
#
#   docker build -t registry.example.com/platform/cutover:0.1.0 .
#
# hack/build-static builds the same binary with the same target and flags (CI proves it links
# statically there, since no container engine runs in CI); keep the two in step.

# ---- build: a musl target gives a fully static binary (ring's C/asm needs musl-gcc) ----
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin cutover --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/cutover /cutover \
 # The same proof as hack/build-static: no interpreter, no shared libraries.
 && ! readelf -lW /cutover | grep -q 'program interpreter' \
 && ! readelf -dW /cutover | grep -q NEEDED \
 && /cutover version

# ---- run: scratch, nothing but the binary ----
# No CA bundle is needed: the Kubernetes client trusts the in-cluster CA from the mounted
# ServiceAccount, and TLS to MongoDB uses the webpki roots compiled into the binary. No shell,
# no package manager, no files to write (the Deployment sets readOnlyRootFilesystem).
FROM scratch
COPY --from=build /cutover /cutover
# 65532: the conventional "nonroot" uid/gid of distroless images; the chart runs as the same.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/cutover"]
CMD ["run"]
