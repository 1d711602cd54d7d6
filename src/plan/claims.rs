//! The claim registry's vocabulary (issue 13 items 5 and 7): what a plan reserves on the
//! MongoDB server before its first side effect, so that two plans can never both work on one
//! database or Deployment, across namespaces. The registry itself (`cutover.claims`, one
//! document per claimed thing under a unique `_id`) is `crate::mongo::claims`; here are only
//! the names, which `decide` and `needs` use.

use super::targets::Targets;

/// The MongoDB database holding the registry. Never a user database: validation refuses it as
/// a source or clone name.
pub const DATABASE: &str = "cutover";
/// Its collection: one document per claimed database or Deployment.
pub const COLLECTION: &str = "claims";

/// What a claimed thing is to the plan holding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClaimRole {
    /// A source database: held until the plan ends, and after success while cleanup may still
    /// drop it.
    Source,
    /// A clone database: held until it is dropped or handed over (`Succeeded`).
    Clone,
    /// The app's (old version's) Deployment.
    Deployment,
    /// A scratch database the backup is verified in (`online`): held until it is dropped or
    /// the plan ends.
    Scratch,
}

impl ClaimRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimRole::Source => "source",
            ClaimRole::Clone => "clone",
            ClaimRole::Deployment => "deployment",
            ClaimRole::Scratch => "scratch",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "source" => Some(ClaimRole::Source),
            "clone" => Some(ClaimRole::Clone),
            "deployment" => Some(ClaimRole::Deployment),
            "scratch" => Some(ClaimRole::Scratch),
            _ => None,
        }
    }
}

/// The plan holding a claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    pub namespace: String,
    pub plan: String,
    /// The plan object's uid: a plan recreated under the same name is another plan.
    pub uid: String,
}

impl Holder {
    /// `namespace/plan`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.plan)
    }
}

/// One document of the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// `db:<name>` or `deployment:<namespace>/<name>`.
    pub id: String,
    pub role: ClaimRole,
    pub holder: Holder,
}

/// A claim a plan wants: what, and as what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub id: String,
    pub role: ClaimRole,
}

pub fn database_id(name: &str) -> String {
    format!("db:{name}")
}

pub fn deployment_id(namespace: &str, name: &str) -> String {
    format!("deployment:{namespace}/{name}")
}

/// What a plan claims: each source, each clone, each scratch database (`online`) and the
/// app's Deployment. Database names are
/// server-wide (two namespaces on one server share them); a Deployment's name is not.
pub fn wanted(targets: &Targets, namespace: &str) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = Vec::new();
    let mut push = |id: String, role| {
        if !out.iter().any(|w| w.id == id) {
            out.push(Wanted { id, role });
        }
    };
    for d in &targets.databases {
        push(database_id(&d.source), ClaimRole::Source);
    }
    for d in &targets.databases {
        push(database_id(&d.clone), ClaimRole::Clone);
    }
    for d in &targets.scratch {
        push(database_id(&d.clone), ClaimRole::Scratch);
    }
    push(
        deployment_id(namespace, &targets.blue),
        ClaimRole::Deployment,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::targets::DatabaseTarget;

    #[test]
    fn a_plan_claims_its_sources_clones_and_deployment() {
        let mut t = crate::plan::targets(&crate::fixtures::SquidexPlan::unit().spec(), "v2", None);
        t.databases = vec![
            DatabaseTarget {
                source: "app".into(),
                clone: "app-x-v2".into(),
            },
            DatabaseTarget {
                source: "app".into(),
                clone: "app-x-v2".into(),
            },
        ];
        let w = wanted(&t, "ns");
        let ids: Vec<(&str, ClaimRole)> = w.iter().map(|w| (w.id.as_str(), w.role)).collect();
        assert_eq!(
            ids,
            vec![
                ("db:app", ClaimRole::Source),
                ("db:app-x-v2", ClaimRole::Clone),
                ("deployment:ns/squidex", ClaimRole::Deployment),
            ]
        );
        for r in [ClaimRole::Source, ClaimRole::Clone, ClaimRole::Deployment] {
            assert_eq!(ClaimRole::parse(r.as_str()), Some(r));
        }
    }
}
