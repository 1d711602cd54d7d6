//! Packaging, proven against the real control plane: the Helm chart (linted and installed with
//! Helm's own library, helm-sdkpy, through tests/packaging/helm.py), the kustomize base (equal
//! to the chart's default render, server-side dry run), the example plans (valid for cutover
//! and for the API server, nothing pruned), the installed RBAC running a whole plan, the
//! Argo CD health check (run in Lua 5.1 like Argo CD's gopher-lua), and the monitoring the
//! chart ships (alerting rules and Grafana dashboard: only metrics the operator exposes), the
//! krew manifest of `kubectl cutover`, and the runtime image (the Dockerfile's last stage
//! equal to hack/build-image's buildah assembly).
//!
//! One test binary, one module per concern.

#[path = "../common/mod.rs"]
mod common;

mod argocd;
mod chart;
mod files;
mod image;
mod krew;
mod kustomize;
mod monitored;
mod monitoring;
mod support;
