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

#[test]
fn table() {
    run(cases());
}
