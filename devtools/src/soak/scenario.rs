//! What each app's plan does, drawn from the seed: the clone method, the kind of plan and
//! the outcome it is meant to reach, and the UpgradePlan object itself.

use cutover::crd::CloneMethod;
use cutover::fixtures::{SquidexPlan, Timeouts};
use serde_json::json;

use crate::bench::plan::TARGET_VERSION;

/// A clone method as the spec spells it.
pub fn method_name(m: CloneMethod) -> &'static str {
    match m {
        CloneMethod::Restore => "restore",
        CloneMethod::ServerSide => "serverSide",
        CloneMethod::Online => "online",
        CloneMethod::Auto => "auto",
    }
}

/// A small seeded generator (splitmix64): the same seed draws the same run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.draw() % (hi - lo + 1)
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.draw() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Every clone method, the default mix.
pub const ALL_METHODS: [CloneMethod; 3] = [
    CloneMethod::Restore,
    CloneMethod::ServerSide,
    CloneMethod::Online,
];

/// The kind of plan an app gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Automatic promotion: Succeeded, traffic on the new version.
    Auto,
    /// Manual promotion, approved `delay_s` seconds after it waits: Succeeded.
    Manual { delay_s: u64 },
    /// A rehearsal: Rehearsed, the old version untouched.
    Rehearsal,
    /// Manual promotion, rolled back while it waits (before the lift): RolledBack, no loss.
    RollbackEarly,
    /// Rolled back `after_s` seconds after read-only was lifted, with acceptDataLoss:
    /// RolledBack, the writes the new version acknowledged since the lift are lost.
    RollbackLate { after_s: u64 },
    /// Rolled back `after_s` seconds after the lift *without* acceptDataLoss: refused
    /// (`DataDiverged`: nothing moves, the plan holds where it is), then steered back with
    /// `traffic: green`: Succeeded, traffic and every write on the new version.
    RollbackRefused { after_s: u64 },
    /// The new version's migration fails: Failed, the old version serves.
    FailingMigration,
}

impl Kind {
    pub fn label(&self) -> String {
        match self {
            Kind::Auto => "auto".into(),
            Kind::Manual { delay_s } => format!("manual+{delay_s}s"),
            Kind::Rehearsal => "rehearsal".into(),
            Kind::RollbackEarly => "rollback-early".into(),
            Kind::RollbackLate { after_s } => format!("rollback-late+{after_s}s"),
            Kind::RollbackRefused { after_s } => format!("rollback-refused+{after_s}s"),
            Kind::FailingMigration => "failing-migration".into(),
        }
    }

    /// The terminal phase intended.
    pub fn intended_phase(&self) -> &'static str {
        match self {
            Kind::Auto | Kind::Manual { .. } | Kind::RollbackRefused { .. } => "Succeeded",
            Kind::Rehearsal => "Rehearsed",
            Kind::RollbackEarly | Kind::RollbackLate { .. } => "RolledBack",
            Kind::FailingMigration => "Failed",
        }
    }
}

/// One app of the run and its plan.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub index: usize,
    pub namespace: String,
    pub db: String,
    pub content_db: String,
    pub replicas: u32,
    pub method: CloneMethod,
    pub kind: Kind,
    pub wave: usize,
    pub plan: String,
}

/// The apps of a run: the kinds dealt round-robin from a shuffled deck (so a few apps
/// already cover every kind), the clone methods likewise from a shuffled deck of
/// `methods` (a rehearsal never draws `online`: online rehearsals are refused), the rest
/// drawn from the seed.
pub fn draw(
    rng: &mut Rng,
    apps: usize,
    waves: usize,
    run: &str,
    methods: &[CloneMethod],
) -> Vec<Scenario> {
    let mut deck = vec![
        Kind::Auto,
        Kind::Manual { delay_s: 0 },
        Kind::Rehearsal,
        Kind::RollbackEarly,
        Kind::RollbackLate { after_s: 0 },
        Kind::RollbackRefused { after_s: 0 },
        Kind::FailingMigration,
    ];
    rng.shuffle(&mut deck);
    let mut method_deck = methods.to_vec();
    rng.shuffle(&mut method_deck);
    let offline: Vec<CloneMethod> = methods
        .iter()
        .copied()
        .filter(|m| *m != CloneMethod::Online)
        .collect();
    (0..apps)
        .map(|i| {
            let kind = match deck[i % deck.len()] {
                Kind::Manual { .. } => Kind::Manual {
                    delay_s: rng.range(2, 20),
                },
                Kind::RollbackLate { .. } => Kind::RollbackLate {
                    after_s: rng.range(3, 10),
                },
                Kind::RollbackRefused { .. } => Kind::RollbackRefused {
                    after_s: rng.range(2, 8),
                },
                k => k,
            };
            let mut method = method_deck[i % method_deck.len()];
            if kind == Kind::Rehearsal && method == CloneMethod::Online {
                method = offline.first().copied().unwrap_or(CloneMethod::Restore);
            }
            Scenario {
                index: i,
                namespace: format!("soak-{run}-{i}"),
                db: format!("soak_{run}_{i}"),
                content_db: format!("soak_{run}_{i}_content"),
                replicas: rng.range(1, 2) as u32,
                method,
                kind,
                wave: i % waves.max(1),
                plan: format!("up{i}"),
            }
        })
        .collect()
}

impl Scenario {
    /// The UpgradePlan object.
    pub fn plan_json(&self) -> serde_json::Value {
        let late = matches!(
            self.kind,
            Kind::RollbackLate { .. } | Kind::RollbackRefused { .. }
        );
        let mut p = SquidexPlan {
            clone_method: Some(self.method),
            stale_lock_after: "1m".into(),
            timeout: "5m".into(),
            // A late rollback needs the old version kept a while after the switch.
            scale_down_after: if late { "30m".into() } else { "1s".into() },
            timeouts: Some(Timeouts::new("5m", "5m", "5m")),
            ..SquidexPlan::appsim(&self.db, &self.content_db, TARGET_VERSION)
        }
        .object_json(&self.plan);
        match self.kind {
            Kind::Manual { .. } | Kind::RollbackEarly => {
                p["spec"]["promotion"] = json!({"mode": "manual"});
            }
            Kind::Rehearsal => p["spec"]["mode"] = json!("rehearsal"),
            Kind::FailingMigration => {
                p["spec"]["target"]["env"] =
                    json!([{"name": "APPSIM_FAIL_MIGRATION", "value": "1"}]);
                // The new version crash-loops; the migration's deadline ends the plan.
                p["spec"]["migration"]["timeout"] = json!("20s");
            }
            Kind::Auto | Kind::RollbackLate { .. } | Kind::RollbackRefused { .. } => {}
        }
        p
    }

    /// Every database the plan may create or use, for the teardown.
    pub fn databases(&self) -> Vec<String> {
        vec![
            self.db.clone(),
            self.content_db.clone(),
            cutover::fixtures::clone_of(&self.db, &self.plan),
            cutover::fixtures::clone_of(&self.content_db, &self.plan),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_reproduces_the_draw() {
        let a = draw(&mut Rng::new(1), 7, 2, "r", &ALL_METHODS);
        let b = draw(&mut Rng::new(1), 7, 2, "r", &ALL_METHODS);
        let kinds = |s: &[Scenario]| s.iter().map(|s| (s.kind, s.method)).collect::<Vec<_>>();
        assert_eq!(kinds(&a), kinds(&b));
        // Seven apps cover every kind once.
        let mut labels: Vec<_> = a.iter().map(|s| s.kind.intended_phase()).collect();
        labels.sort();
        assert_eq!(
            labels,
            [
                "Failed",
                "Rehearsed",
                "RolledBack",
                "RolledBack",
                "Succeeded",
                "Succeeded",
                "Succeeded"
            ]
        );
        // Every method is drawn; a rehearsal is never online.
        for m in ALL_METHODS {
            assert!(a.iter().any(|s| s.method == m), "{m:?} drawn");
        }
        for seed in 0..50 {
            for s in draw(&mut Rng::new(seed), 12, 2, "r", &ALL_METHODS) {
                assert!(!(s.kind == Kind::Rehearsal && s.method == CloneMethod::Online));
            }
        }
    }

    #[test]
    fn plans_parse_as_upgrade_plans() {
        for s in draw(&mut Rng::new(7), 7, 2, "r", &ALL_METHODS) {
            let p = s.plan_json();
            let _: cutover::crd::UpgradePlan = serde_json::from_value(p).expect("parses");
        }
    }
}
