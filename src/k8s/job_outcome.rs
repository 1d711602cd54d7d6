//! How a failed backup or clone Job ended, as far as the operator can tell after the fact on
//! Kubernetes 1.20 (no `podFailurePolicy`, no `DisruptionTarget` condition): their scripts end
//! with `SCRIPT_FAILED_EXIT` when they themselves fail. A Job that failed without a pod showing
//! that code was disrupted: its pod was killed by a signal (137/143: the node agent restarted,
//! the pod deleted), evicted, or is gone altogether. A disruption is retried by the plan with
//! a new Job; a script failure fails the plan.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::build::SCRIPT_FAILED_EXIT;

/// What disrupted a failed Job's pods, or `None` when one of them ended by the script's own
/// failure. Never quotes the pod's output (only names, exit codes and Kubernetes reasons).
pub fn disruption(pods: &[Pod]) -> Option<String> {
    let mut seen = Vec::new();
    for p in pods {
        let status = p.status.clone().unwrap_or_default();
        let ends: Vec<(i32, Option<String>)> = status
            .container_statuses
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.state.and_then(|s| s.terminated))
            .map(|t| (t.exit_code, t.reason))
            .collect();
        if ends.iter().any(|(code, _)| *code == SCRIPT_FAILED_EXIT) {
            return None;
        }
        let what = match (status.reason, ends.first()) {
            (Some(r), _) => format!("pod {} {}", p.name_any(), r.to_lowercase()),
            (None, Some((code, _))) if *code > 128 => format!(
                "pod {} was killed by signal {} (exit {code})",
                p.name_any(),
                code - 128
            ),
            (None, Some((code, reason))) => format!(
                "pod {} ended with exit {code}{} without its script reporting a failure",
                p.name_any(),
                reason.as_ref().map_or(String::new(), |r| format!(" ({r})"))
            ),
            (None, None) if p.metadata.deletion_timestamp.is_some() => {
                format!("pod {} was deleted", p.name_any())
            }
            (None, None) => format!("pod {} ended without running to completion", p.name_any()),
        };
        seen.push(what);
    }
    Some(if seen.is_empty() {
        "its pod is gone (deleted or evicted)".into()
    } else {
        seen.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "status": status}))
            .unwrap()
    }

    fn ended(code: i32) -> serde_json::Value {
        serde_json::json!({"phase": "Failed", "containerStatuses": [{
            "name": "backup", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": "Error", "message": "dumping db"}}
        }]})
    }

    #[test]
    fn script_failures_and_disruptions() {
        let evicted = serde_json::json!({"phase": "Failed", "reason": "Evicted"});
        let rows: Vec<(&str, Vec<Pod>, Option<&str>)> = vec![
            (
                "the script failed",
                vec![pod("j-a", ended(SCRIPT_FAILED_EXIT))],
                None,
            ),
            (
                "a retried pod failed by its script",
                vec![
                    pod("j-a", ended(137)),
                    pod("j-b", ended(SCRIPT_FAILED_EXIT)),
                ],
                None,
            ),
            (
                "SIGKILLed",
                vec![pod("j-a", ended(137))],
                Some("pod j-a was killed by signal 9 (exit 137)"),
            ),
            (
                "SIGTERMed",
                vec![pod("j-a", ended(143))],
                Some("pod j-a was killed by signal 15 (exit 143)"),
            ),
            (
                "the container could not run its script",
                vec![pod("j-a", ended(127))],
                Some("pod j-a ended with exit 127 (Error) without its script reporting a failure"),
            ),
            (
                "evicted",
                vec![pod("j-a", evicted)],
                Some("pod j-a evicted"),
            ),
            (
                "deleted",
                vec![],
                Some("its pod is gone (deleted or evicted)"),
            ),
        ];
        for (what, pods, want) in rows {
            assert_eq!(disruption(&pods).as_deref(), want, "{what}");
        }
    }
}
