//! The preview Service of a rehearsal and the patch that moves the app's Service.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use serde_json::json;

use super::owned_meta;
use crate::crd::UpgradePlan;
use crate::plan::Targets;
use crate::plan::names::TRACK_LABEL;

/// A Service selecting only the new version, for looking at it before the switch.
pub fn preview_service(plan: &UpgradePlan, targets: &Targets, app_service: &Service) -> Service {
    let ports: Vec<ServicePort> = app_service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| ServicePort {
            node_port: None,
            protocol: Some(p.protocol.unwrap_or_else(|| "TCP".into())),
            ..p
        })
        .collect();
    Service {
        metadata: owned_meta(plan, targets.preview_service.clone(), "preview"),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(
                TRACK_LABEL.to_string(),
                targets.green.clone(),
            )])),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    }
}

/// The merge patch that points the Service at one version. A merge patch (not an apply)
/// because a Service selector is an atomic map: applying it would take the user's keys over.
pub fn service_track_patch(track: &str) -> serde_json::Value {
    json!({"spec": {"selector": {TRACK_LABEL: track}}})
}
