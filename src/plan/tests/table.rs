//! The table of phase × observed world: each phase group keeps its rows in its own file
//! (`cases()`), run by `run`; one test checks that every phase is covered by some row.

use super::*;

pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) phase: Phase,
    pub(super) spec: fn(&mut UpgradePlanSpec),
    pub(super) world: fn(&mut Observed),
    pub(super) now: i64,
    pub(super) want_phase: Phase,
    pub(super) want_action: Option<Action>,
    /// A fragment the status message must contain.
    pub(super) want_message: &'static str,
}

pub(super) fn no_spec(_: &mut UpgradePlanSpec) {}
pub(super) fn no_world(_: &mut Observed) {}

/// Decides each row and checks the phase, the action and what was said.
pub(super) fn run(cases: Vec<Case>) {
    run_with(cases, |_| {});
}

/// `run`, each row's status first changed by `status` (e.g. read-only already lifted).
pub(super) fn run_with(cases: Vec<Case>, status: fn(&mut UpgradePlanStatus)) {
    for c in cases {
        let mut s = spec();
        (c.spec)(&mut s);
        let mut w = world_in(c.phase);
        (c.world)(&mut w);
        let mut st = status_in(c.phase);
        status(&mut st);
        let d = decide(&s, Some(&st), &w, t(c.now));
        assert_eq!(
            d.status.phase, c.want_phase,
            "{}: phase (message: {})",
            c.name, d.status.message
        );
        assert_eq!(d.action, c.want_action, "{}: action", c.name);
        // Phases chain within one reconcile: what a transition said is in the records it
        // wrote, a failure's cause in status.failure, and the message says what is done next.
        let entered: Vec<&str> = d
            .status
            .phases
            .iter()
            .filter(|r| r.started_at == t(c.now) || r.finished_at == Some(t(c.now)))
            .map(|r| r.detail.as_str())
            .collect();
        let said = format!(
            "{} {} {}",
            d.status.message,
            d.status.failure.as_ref().map_or("", |f| f.message.as_str()),
            entered.join(" ")
        );
        assert!(
            said.contains(c.want_message),
            "{}: message {:?} lacks {:?}",
            c.name,
            said,
            c.want_message
        );
    }
}

#[test]
fn every_phase_is_in_the_table() {
    let mut covered = std::collections::HashSet::new();
    let tables = [
        pending::cases(),
        read_only::cases(),
        data::cases(),
        green::cases(),
        switch::cases(),
        unwind::cases(),
        online::cases(),
        method::cases(),
    ];
    for c in tables.into_iter().flatten() {
        covered.insert(c.phase);
        covered.insert(c.want_phase);
    }
    for p in Phase::ALL {
        assert!(covered.contains(&p), "no table row covers {p}");
    }
}

#[test]
fn decide_is_deterministic() {
    let w = world();
    assert_eq!(
        decide(&spec(), None, &w, t(0)),
        decide(&spec(), None, &w, t(0))
    );
}
