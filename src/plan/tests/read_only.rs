//! `EnteringReadOnly`: the old version restarts read-only, the Service is pinned to it, and
//! the write probe proves writes are refused.

use super::table::{Case, no_spec, no_world, run};
use super::*;

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        // EnteringReadOnly
        Case {
            name: "read-only: sets env on blue",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| {
                let b = w.blue.as_mut().unwrap();
                b.read_only_env = false;
                b.tracked = false;
            },
            now: 1,
            want_phase: EnteringReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: true,
            }),
            want_message: "read-only",
        },
        Case {
            name: "read-only: waits for rollout",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| w.blue.as_mut().unwrap().ready_replicas = 1,
            now: 5,
            want_phase: EnteringReadOnly,
            want_action: None,
            want_message: "1/2 ready",
        },
        Case {
            name: "read-only: rollout timeout compensates",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| w.blue.as_mut().unwrap().ready_replicas = 1,
            now: 601,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "did not roll out read-only within 10m",
        },
        Case {
            name: "read-only: pins the service to blue",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| {
                w.service
                    .as_mut()
                    .unwrap()
                    .selector
                    .remove(names::TRACK_LABEL);
            },
            now: 5,
            want_phase: EnteringReadOnly,
            want_action: Some(Action::PinService { color: Color::Blue }),
            want_message: "Pinning",
        },
        Case {
            name: "read-only: verify probe pending",
            phase: EnteringReadOnly,
            spec: |s| {
                s.read_only.verify = Some(ReadOnlyVerify {
                    http: Some(HttpWriteProbe {
                        method: HttpMethod::Post,
                        path: "/api/contents".into(),
                        port: 8080,
                        body: None,
                    }),
                })
            },
            world: no_world,
            now: 5,
            want_phase: EnteringReadOnly,
            want_action: None,
            want_message: "Verifying",
        },
        Case {
            name: "read-only: verify probe says writes accepted",
            phase: EnteringReadOnly,
            spec: |s| {
                s.read_only.verify = Some(ReadOnlyVerify {
                    http: Some(HttpWriteProbe {
                        method: HttpMethod::Post,
                        path: "/api/contents".into(),
                        port: 8080,
                        body: None,
                    }),
                })
            },
            world: |w| {
                w.read_only_probe = Some(ProbeView {
                    ok: false,
                    detail: "pod a answered 201".into(),
                    pods: vec![
                        (
                            "a".into(),
                            PodAnswer::Unwanted("a answered 201 to POST /api/contents".into()),
                        ),
                        (
                            "b".into(),
                            PodAnswer::Unreachable(
                                "connect 127.0.0.9:8080: Connection refused".into(),
                            ),
                        ),
                    ],
                })
            },
            now: 5,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "still accepts writes",
        },
        Case {
            name: "read-only: an unreachable pod is probed again, not taken for an accepted write",
            phase: EnteringReadOnly,
            spec: with_verify,
            world: unreachable_b,
            now: 5,
            want_phase: EnteringReadOnly,
            want_action: None,
            want_message: "unreachable: b (connect 127.0.0.9:8080: Connection refused)); probing again",
        },
        Case {
            name: "read-only: no ready pod to probe, probed again",
            phase: EnteringReadOnly,
            spec: with_verify,
            world: |w| {
                w.read_only_probe = Some(ProbeView {
                    ok: false,
                    detail: "no ready pod to probe".into(),
                    pods: vec![],
                })
            },
            now: 5,
            want_phase: EnteringReadOnly,
            want_action: None,
            want_message: "(no ready pod to probe); probing again",
        },
        Case {
            name: "read-only: unreachable past timeouts.rollout fails naming the pods",
            phase: EnteringReadOnly,
            spec: with_verify,
            world: unreachable_b,
            now: 601,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "got no answer within 10m (spec.timeouts.rollout); last seen: unreachable: b (connect",
        },
        Case {
            name: "read-only: every pod refused, on",
            phase: EnteringReadOnly,
            spec: with_verify,
            world: |w| {
                w.read_only_probe = Some(ProbeView {
                    ok: true,
                    detail: "2 pod(s) answered as expected".into(),
                    pods: vec![
                        ("a".into(), PodAnswer::Wanted),
                        ("b".into(), PodAnswer::Wanted),
                    ],
                })
            },
            now: 5,
            want_phase: BackingUp,
            want_action: Some(Action::CreateBackupJob),
            want_message: "backing up",
        },
        Case {
            name: "read-only: done, backing up",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: no_world,
            now: 5,
            want_phase: BackingUp,
            want_action: Some(Action::CreateBackupJob),
            want_message: "backing up",
        },
        Case {
            name: "read-only: blue vanished",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| w.blue = None,
            now: 5,
            want_phase: Failed,
            want_action: None,
            want_message: "disappeared",
        },
    ]
}

fn with_verify(s: &mut UpgradePlanSpec) {
    s.read_only.verify = Some(ReadOnlyVerify {
        http: Some(HttpWriteProbe {
            method: HttpMethod::Post,
            path: "/api/contents".into(),
            port: 8080,
            body: None,
        }),
    })
}

/// Pod a refused the write; pod b could not be asked (its node restarting).
fn unreachable_b(w: &mut Observed) {
    w.read_only_probe = Some(ProbeView {
        ok: false,
        detail: "b: connect 127.0.0.9:8080: Connection refused".into(),
        pods: vec![
            ("a".into(), PodAnswer::Wanted),
            (
                "b".into(),
                PodAnswer::Unreachable("connect 127.0.0.9:8080: Connection refused".into()),
            ),
        ],
    })
}

#[test]
fn table() {
    run(cases());
}
