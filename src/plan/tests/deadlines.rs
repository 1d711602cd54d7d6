//! Every wait in `decide` has a deadline: one row just before it and one just after, per
//! wait. Before read-only is lifted the deadline fails the plan (the old version is restored);
//! after it, `Degraded` with instructions, never a rollback. The waits that had a deadline
//! already (Jobs, rollouts, gates, counting errors) have their rows beside their phase.

use super::table::{Case, no_spec, run, run_with};
use super::*;

/// Default `timeouts.rollout` (10m), `timeouts.backup`/`clone` (2h), the fixture's
/// `migration.timeout` (10m), in seconds.
const ROLLOUT: i64 = 600;
const COPY: i64 = 7200;
const MIGRATION: i64 = 600;

fn verify(s: &mut UpgradePlanSpec) {
    s.read_only.verify = Some(ReadOnlyVerify {
        http: Some(HttpWriteProbe {
            method: HttpMethod::Post,
            path: "/api/contents".into(),
            port: 8080,
            body: None,
        }),
    });
}

fn server_side(s: &mut UpgradePlanSpec) {
    s.backup.clone_method = CloneMethod::ServerSide;
}

fn backup_done_uncounted(w: &mut Observed) {
    w.backup_job = job("up7-backup", JobState::Succeeded, "");
}

fn clone_done_uncounted(w: &mut Observed) {
    w.clone_job = job("up7-clone", JobState::Succeeded, "");
}

fn green_unobserved(w: &mut Observed) {
    let mut g = green_view(2);
    g.generation = 2;
    w.green = Some(g);
}

fn green_env_unread(w: &mut Observed) {
    let mut g = green_view(2);
    g.env.push(EnvFact {
        name: "FROM_SECRET".into(),
        held_in: None,
        value: EnvValue::NotRead,
    });
    w.green = Some(g);
}

/// The old version restarting: traffic back to it is what the rollback waits for.
fn restore_blue(w: &mut Observed) -> &mut DeploymentView {
    let mut g = green_view(2);
    g.read_only_env = true;
    w.green = Some(g);
    traffic_on_green(w);
    w.blue.as_mut().unwrap()
}

fn blue_not_ready(w: &mut Observed) {
    let b = restore_blue(w);
    b.ready_replicas = 0;
    b.updated_replicas = 0;
}

fn blue_rolling_out_read_write(w: &mut Observed) {
    let b = w.blue.as_mut().unwrap();
    b.read_only_env = false;
    b.ready_replicas = 1;
}

fn lifted(st: &mut UpgradePlanStatus) {
    st.read_only_lifted_at = Some(t(-5));
    st.active_color = Some(Color::Green);
}

/// The rollback does not move traffic back (or fails) on its own.
fn stays_rolling_back(
    name: &'static str,
    world: fn(&mut Observed),
    now: i64,
    msg: &'static str,
) -> Case {
    Case {
        name,
        phase: Phase::RollingBack,
        spec: no_spec,
        world,
        now,
        want_phase: Phase::RollingBack,
        want_action: None,
        want_message: msg,
    }
}

fn before_lift() -> Vec<Case> {
    use Phase::*;
    let lift_blue = Some(Action::SetReadOnly {
        color: Color::Blue,
        enabled: false,
    });
    vec![
        // EnteringReadOnly: the write probe's answer.
        Case {
            name: "verify probe unanswered, before the deadline",
            phase: EnteringReadOnly,
            spec: verify,
            world: |w| w.read_only_probe = None,
            now: ROLLOUT - 1,
            want_phase: EnteringReadOnly,
            want_action: None,
            want_message: "Verifying",
        },
        Case {
            name: "verify probe unanswered, past the deadline",
            phase: EnteringReadOnly,
            spec: verify,
            world: |w| w.read_only_probe = None,
            now: ROLLOUT + 1,
            want_phase: RollingBack,
            want_action: lift_blue.clone(),
            want_message: "got no answer within 10m",
        },
        // BackingUp: the sources' counts after the Job.
        Case {
            name: "source counts not observed, before the deadline",
            phase: BackingUp,
            spec: no_spec,
            world: backup_done_uncounted,
            now: COPY - 1,
            want_phase: BackingUp,
            want_action: None,
            want_message: "Counting documents in the sources",
        },
        Case {
            name: "source counts not observed, past the deadline",
            phase: BackingUp,
            spec: no_spec,
            world: backup_done_uncounted,
            now: COPY + 1,
            want_phase: RollingBack,
            want_action: lift_blue.clone(),
            want_message: "gave up after 2h",
        },
        // Cloning: the server-side copy's state, and the clones' counts.
        Case {
            name: "server-side copy not looked at, before the deadline",
            phase: Cloning,
            spec: server_side,
            world: |w| w.server_copy = None,
            now: COPY - 1,
            want_phase: Cloning,
            want_action: None,
            want_message: "Looking at the server-side copy",
        },
        Case {
            name: "server-side copy not looked at, past the deadline",
            phase: Cloning,
            spec: server_side,
            world: |w| w.server_copy = None,
            now: COPY + 1,
            want_phase: RollingBack,
            want_action: lift_blue.clone(),
            want_message: "gave up after 2h",
        },
        Case {
            name: "clone counts not observed, before the deadline",
            phase: Cloning,
            spec: no_spec,
            world: clone_done_uncounted,
            now: COPY - 1,
            want_phase: Cloning,
            want_action: None,
            want_message: "Counting documents in the clones",
        },
        Case {
            name: "clone counts not observed, past the deadline",
            phase: Cloning,
            spec: no_spec,
            world: clone_done_uncounted,
            now: COPY + 1,
            want_phase: RollingBack,
            want_action: lift_blue.clone(),
            want_message: "gave up after 2h",
        },
        // DeployingGreen: the Deployment controller observing the new Deployment.
        Case {
            name: "green not observed, before the deadline",
            phase: DeployingGreen,
            spec: no_spec,
            world: green_unobserved,
            now: ROLLOUT - 1,
            want_phase: DeployingGreen,
            want_action: None,
            want_message: "to be observed",
        },
        Case {
            name: "green not observed, past the deadline",
            phase: DeployingGreen,
            spec: no_spec,
            world: green_unobserved,
            now: ROLLOUT + 1,
            want_phase: RollingBack,
            want_action: lift_blue.clone(),
            want_message: "was not observed by its controller within 10m",
        },
        // The new version's variables (its Secrets and ConfigMaps) read for the env guard.
        Case {
            name: "green variables unread while deploying, before the deadline",
            phase: DeployingGreen,
            spec: no_spec,
            world: green_env_unread,
            now: ROLLOUT - 1,
            want_phase: DeployingGreen,
            want_action: None,
            want_message: "Reading the variables",
        },
        Case {
            name: "green variables unread while deploying, past the deadline",
            phase: DeployingGreen,
            spec: no_spec,
            world: green_env_unread,
            now: ROLLOUT + 1,
            want_phase: RollingBack,
            want_action: lift_blue.clone(),
            want_message: "gave up after 10m",
        },
        Case {
            name: "green variables unread while migrating, before the deadline",
            phase: Migrating,
            spec: no_spec,
            world: green_env_unread,
            now: MIGRATION - 1,
            want_phase: Migrating,
            want_action: None,
            want_message: "Reading the variables",
        },
        Case {
            name: "green variables unread while migrating, past the deadline",
            phase: Migrating,
            spec: no_spec,
            world: green_env_unread,
            now: MIGRATION + 1,
            want_phase: RollingBack,
            want_action: lift_blue.clone(),
            want_message: "gave up after 10m",
        },
        // LiftingReadOnly before the lift: the DataDiverged baseline count is only a
        // measurement, the lift goes ahead without it.
        Case {
            name: "clones not counted before the lift, before the deadline",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: |w| w.clone_counts = None,
            now: ROLLOUT - 1,
            want_phase: LiftingReadOnly,
            want_action: None,
            want_message: "Counting the clones",
        },
        Case {
            name: "clones not counted before the lift, past the deadline",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: |w| w.clone_counts = None,
            now: ROLLOUT + 1,
            want_phase: LiftingReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Green,
                enabled: false,
            }),
            want_message: "Lifting read-only",
        },
        Case {
            name: "green gone after the switch, before the lift: restores the old version",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: |w| w.green = None,
            now: 1,
            want_phase: RollingBack,
            want_action: Some(Action::PinService { color: Color::Blue }),
            want_message: "before read-only was lifted",
        },
        // RollingBack: the old version's ready pod, then its read-write rollout.
        stays_rolling_back(
            "rollback waits for a ready old pod, before the deadline",
            blue_not_ready,
            ROLLOUT - 1,
            "Waiting for a ready pod of squidex",
        ),
        stays_rolling_back(
            "rollback waits for a ready old pod, past the deadline: Degraded, keeps trying",
            blue_not_ready,
            ROLLOUT + 1,
            "for more than 10m (spec.timeouts.rollout). Check its pods: kubectl describe pods -l cutover.dev/track=squidex",
        ),
        stays_rolling_back(
            "rollback waits for the old version read-write, before the deadline",
            blue_rolling_out_read_write,
            ROLLOUT - 1,
            "Waiting for squidex to roll out read-write",
        ),
        stays_rolling_back(
            "rollback waits for the old version read-write, past the deadline: Degraded, keeps trying",
            blue_rolling_out_read_write,
            ROLLOUT + 1,
            "cutover keeps trying",
        ),
    ]
}

/// After the lift: never a rollback on its own, Degraded with instructions instead.
fn after_lift() -> Vec<Case> {
    use Phase::*;
    fn rolling_out(w: &mut Observed) {
        let g = w.green.as_mut().unwrap();
        g.read_only_env = false;
        g.ready_replicas = 0;
        g.updated_replicas = 1;
    }
    vec![
        Case {
            name: "green rolling out read-write, before the deadline",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: rolling_out,
            now: ROLLOUT - 1,
            want_phase: LiftingReadOnly,
            want_action: None,
            want_message: "Waiting for Deployment squidex-up7 to roll out read-write: 1/2 updated, 0/2 ready",
        },
        Case {
            name: "green rolling out read-write, past the deadline: Degraded, not rolled back",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: rolling_out,
            now: ROLLOUT + 1,
            want_phase: LiftingReadOnly,
            want_action: None,
            want_message: "cutover does not roll back on its own and keeps waiting. Check its pods: kubectl describe pods -l cutover.dev/track=squidex-up7",
        },
        Case {
            name: "green gone after the lift: Degraded, not rolled back",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: |w| w.green = None,
            now: 1,
            want_phase: LiftingReadOnly,
            want_action: None,
            want_message: "Restore squidex-up7",
        },
    ]
}

#[test]
fn before_the_lift_the_deadline_restores_the_old_version() {
    run(before_lift());
}

#[test]
fn after_the_lift_the_deadline_degrades_and_keeps_trying() {
    run_with(after_lift(), lifted);
}

#[test]
fn a_slow_rollout_after_the_lift_is_degraded_with_instructions_and_one_warning() {
    let mut st = status_in(Phase::LiftingReadOnly);
    lifted(&mut st);
    let mut w = world_in(Phase::LiftingReadOnly);
    let g = w.green.as_mut().unwrap();
    g.read_only_env = false;
    g.ready_replicas = 0;

    let d = decide(&spec(), Some(&st), &w, t(ROLLOUT + 1));
    let c = cond::get(&d.status.conditions, cond::DEGRADED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "RolloutSlow")
    );
    for fragment in [
        "has not rolled out read-write within 10m",
        "kubectl describe pods",
        "spec.rollback.acceptDataLoss: true",
    ] {
        assert!(c.message.contains(fragment), "{fragment}: {}", c.message);
    }
    let warnings: Vec<_> = d
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", d.events);
    assert_eq!(warnings[0].reason, Reason::RolloutSlow);
    assert_eq!(d.status.phase, Phase::LiftingReadOnly);
    assert!(d.status.failure.is_none());

    // Once: the next look keeps the condition and says nothing new.
    let d2 = decide(&spec(), Some(&d.status), &w, t(ROLLOUT + 40));
    assert!(d2.events.is_empty(), "{:?}", d2.events);
    assert_eq!(d2.action, None);

    // Rolled out at last: Healthy, and the plan goes on.
    let g = w.green.as_mut().unwrap();
    g.ready_replicas = 2;
    g.updated_replicas = 2;
    let d3 = decide(&spec(), Some(&d2.status), &w, t(ROLLOUT + 80));
    assert_eq!(
        cond::get(&d3.status.conditions, cond::DEGRADED)
            .unwrap()
            .status,
        "False"
    );
    assert_eq!(d3.status.phase, Phase::CleaningUp);
}

#[test]
fn a_stuck_rollback_is_degraded_with_one_warning() {
    let st = status_in(Phase::RollingBack);
    let mut w = world_in(Phase::RollingBack);
    blue_not_ready(&mut w);
    let d = decide(&spec(), Some(&st), &w, t(ROLLOUT + 1));
    let c = cond::get(&d.status.conditions, cond::DEGRADED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "RollbackStuck")
    );
    assert!(
        c.message
            .contains("kubectl describe pods -l cutover.dev/track=squidex")
    );
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].reason, Reason::RollbackStuck);
    let d2 = decide(&spec(), Some(&d.status), &w, t(ROLLOUT + 40));
    assert!(d2.events.is_empty());
}
