//! Where the app's users reach it: the ready pods a Service's selector matches, as
//! kube-proxy would route to them. There is no kube-proxy here and Endpoints stay empty
//! (the API refuses podsim's loopback pod IPs), so the Service's current selector is read
//! and its pods listed; [`follow`] does that every second, so a switch of the selector is
//! followed within a second.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A Service in a namespace, and the container port to send to (None: the Service's first
/// port's numeric `targetPort`, else its `port`, else 8080).
#[derive(Debug, Clone)]
pub struct Target {
    pub namespace: String,
    pub service: String,
    pub port: Option<u16>,
}

/// One ready pod behind the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub pod: String,
    pub addr: SocketAddr,
}

pub const REFRESH: Duration = Duration::from_secs(1);

/// The ready, not terminating pods the Service selects now. A Service without a selector
/// selects nothing.
pub async fn resolve(client: &kube::Client, target: &Target) -> anyhow::Result<Vec<Endpoint>> {
    let svc = Api::<Service>::namespaced(client.clone(), &target.namespace)
        .get(&target.service)
        .await
        .with_context(|| format!("Service {}/{}", target.namespace, target.service))?;
    let spec = svc.spec.unwrap_or_default();
    let Some(selector) = spec.selector.filter(|s| !s.is_empty()) else {
        return Ok(vec![]);
    };
    let port = target.port.unwrap_or_else(|| {
        spec.ports
            .as_ref()
            .and_then(|ps| ps.first())
            .and_then(|p| match &p.target_port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                    u16::try_from(*n).ok()
                }
                Some(_) => None,
                None => u16::try_from(p.port).ok(),
            })
            .unwrap_or(8080)
    });
    let labels = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = Api::<Pod>::namespaced(client.clone(), &target.namespace)
        .list(&ListParams::default().labels(&labels))
        .await
        .with_context(|| format!("pods {labels} in {}", target.namespace))?;
    let mut out: Vec<Endpoint> = pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(is_ready)
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            Some(Endpoint {
                pod: p.name_any(),
                addr: SocketAddr::new(ip, port),
            })
        })
        .collect();
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    Ok(out)
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Re-resolves every [`REFRESH`] until `stop`, publishing each new list. A failed lookup
/// keeps the last list (the API server may be restarting) and is logged once per streak.
pub async fn follow(
    client: kube::Client,
    target: Target,
    tx: watch::Sender<Vec<Endpoint>>,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        match resolve(&client, &target).await {
            Ok(eps) => {
                failing = false;
                tx.send_if_modified(|cur| {
                    let changed = *cur != eps;
                    if changed {
                        tracing::info!(
                            pods = ?eps.iter().map(|e| e.pod.as_str()).collect::<Vec<_>>(),
                            "the Service's endpoints changed"
                        );
                        *cur = eps;
                    }
                    changed
                });
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %format!("{e:#}"), "resolving the Service's pods failed; keeping the last list");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}
