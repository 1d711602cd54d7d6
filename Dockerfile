# cutover's image: one static binary on an empty base, running as a non-root user.
#
#   docker build -t registry.example.com/platform/cutover:0.1.0 .
#
# hack/build-static builds the same binary with the same target and flags (CI proves it links
# statically there, since no container engine runs in CI); keep the two in step.
# hack/build-image assembles the runtime stage below with buildah (no daemon needed) on that
# binary and runs it as uid 65532; tests/packaging/image.rs fails when this stage and the
# script's SPEC_* block differ, so change both together.

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
# Cache mounts need BuildKit (Docker's default builder since 23.0). After the build, the same
# proof as hack/build-static: no program interpreter, no shared libraries, and it runs.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin cutover --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/cutover /cutover \
 && ! readelf -lW /cutover | grep -q 'program interpreter' \
 && ! readelf -dW /cutover | grep -q NEEDED \
 && /cutover version

# ---- run: scratch, nothing but the binary (hack/build-image assembles the same) ----
# scratch rather than a distroless/static base, because nothing such a base adds is used: no CA
# bundle (the Kubernetes client trusts the CA of the mounted ServiceAccount, TLS to MongoDB the
# webpki roots compiled into the binary), no /etc/passwd (numeric USER), no tzdata (all times
# are UTC). No shell, no package manager, nothing written (the chart sets readOnlyRootFilesystem).
FROM scratch
COPY --from=build /cutover /cutover
# 65532: the conventional "nonroot" uid/gid of distroless images; the chart runs as the same.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/cutover"]
CMD ["run"]
