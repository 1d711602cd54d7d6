//! GitOps convergence (issue 14): after a plan, what to change in Git so that applying Git
//! afterwards changes nothing in the running app.
//!
//! The model: each upgrade runs the new version under a new Deployment name (`squidex` →
//! `squidex-v2` → `squidex-v3`, bounded). After `Succeeded`, Git must declare the new
//! Deployment as it runs (its name, selector, pod labels, image, the database variables
//! cutover rewired) and the Service with the selector cutover set; the old Deployment
//! disappears from Git and Argo CD or Flux prune it. After `RolledBack`, `Failed` or a
//! rehearsal, traffic is on the version Git already declares: nothing to change.
//!
//! Pure: [`change`] takes the plan and the live objects, [`render_patch`] prints the change,
//! [`rewrite`] applies it to the user's manifest files. The command is in [`cli`].

pub mod cli;
mod rewrite;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, Service};
use kube::ResourceExt;
use serde_norway::Value;

use crate::crd::{Mode, Phase, UpgradePlan};
use crate::plan::names::{BASE_DATABASES_ANNOTATION, BASE_DEPLOYMENT_ANNOTATION, TRACK_LABEL};

pub use rewrite::{RewriteError, Rewritten, rewrite, rewrite_manifests};

/// What Git needs after a plan ended.
#[derive(Clone, Debug, PartialEq)]
pub enum GitChange {
    /// Traffic is on the version Git already declares.
    Nothing {
        plan: String,
        phase: Phase,
        /// Why, in one sentence, with what to do if Git was changed anyway.
        why: String,
    },
    /// Git must declare the new version as it runs.
    Converge(Box<Convergence>),
}

/// The edits that make Git declare the new version exactly as it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Convergence {
    pub plan: String,
    pub namespace: Option<String>,
    /// The Deployment Git declares now (the old version).
    pub old_deployment: String,
    /// The Deployment Git must declare instead (the new version).
    pub new_deployment: String,
    /// The application container.
    pub container: String,
    pub image: String,
    /// The new Deployment's `spec.selector.matchLabels` (immutable: Git must match it exactly).
    pub selector: BTreeMap<String, String>,
    /// Its pod template labels, exactly.
    pub template_labels: BTreeMap<String, String>,
    /// The annotations later plans derive their names from, so names stay bounded even if
    /// Git ever re-creates the Deployment.
    pub annotations: BTreeMap<String, String>,
    /// The app container's variables to set or remove, by name.
    pub env: Vec<EnvChange>,
    /// The names of the app container's variables in the order the new version runs them.
    /// Git must list them in this order: kubectl's client-side apply (Argo CD's default) sends
    /// `$setElementOrder`, which reorders the live list to the file's, a new pod template, a
    /// rollout (checked on the 1.20 test server; its server-side apply keeps the live order).
    pub env_order: Vec<String>,
    /// Secrets cutover created that the new version's variables reference.
    pub cutover_secrets: Vec<String>,
    pub service: String,
    /// The Service's whole selector as cutover set it.
    pub service_selector: BTreeMap<String, String>,
}

/// One variable of the app container: its entry as the new version runs it, or `None` when
/// the new version runs without it (Git must not declare it).
#[derive(Clone, Debug, PartialEq)]
pub struct EnvChange {
    pub name: String,
    pub entry: Option<EnvVar>,
}

/// Why there is no Git change to compute (yet).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GitError {
    #[error(
        "UpgradePlan {plan} is {phase}: the Git change is known once it ends (Succeeded, RolledBack or Failed); watch it with `kubectl get upgradeplan {plan} -w` and run this again"
    )]
    NotFinished { plan: String, phase: Phase },
    #[error(
        "UpgradePlan {plan} Succeeded but its Deployment {deployment} is gone, so there is nothing to declare in Git; restore it (see `cutover status {plan}`) or keep Git as it is"
    )]
    NewDeploymentMissing { plan: String, deployment: String },
    #[error(
        "UpgradePlan {plan} ended {phase}, but Service {service} is missing: cutover cannot tell which version gets the traffic; restore the Service from Git first"
    )]
    ServiceMissing {
        plan: String,
        phase: Phase,
        service: String,
    },
    #[error(
        "Service {service} selects {selected}, not {expected} of UpgradePlan {plan} ({phase}): {why}"
    )]
    TrafficElsewhere {
        plan: String,
        phase: Phase,
        service: String,
        selected: String,
        expected: String,
        why: String,
    },
    #[error("Deployment {deployment} has no container {container} (it has: {have})")]
    NoContainer {
        deployment: String,
        container: String,
        have: String,
    },
}

/// The Git change after `plan`, from the live new-version Deployment (`green`), the app's
/// Service, and the old Deployment (`blue`, when still there: variables that differ from it
/// are declared too).
pub fn change(
    plan: &UpgradePlan,
    green: Option<&Deployment>,
    service: Option<&Service>,
    blue: Option<&Deployment>,
) -> Result<GitChange, GitError> {
    let name = plan.name_any();
    let st = plan.status.clone().unwrap_or_default();
    let spec = crate::plan::frozen::effective(&plan.spec, Some(&st), &name).spec;
    let targets = crate::plan::targets(&spec, &name, Some(&st));
    let phase = st.phase;
    let track = service.and_then(|s| selector_of(s).get(TRACK_LABEL).cloned());
    let nothing = |why: String| {
        Ok(GitChange::Nothing {
            plan: name.clone(),
            phase,
            why,
        })
    };
    match phase {
        Phase::Rehearsed => {
            return nothing(
                "a rehearsal never changes the running app, so Git already declares it".into(),
            );
        }
        Phase::RolledBack | Phase::Failed => {
            let Some(_) = service else {
                return Err(GitError::ServiceMissing {
                    plan: name,
                    phase,
                    service: targets.service,
                });
            };
            if track.as_deref() == Some(targets.green.as_str()) {
                return Err(GitError::TrafficElsewhere {
                    plan: name,
                    phase,
                    service: targets.service,
                    selected: format!("{TRACK_LABEL}={}", targets.green),
                    expected: format!("the old version {}", targets.blue),
                    why: "the plan ended without the new version, yet the Service sends traffic to it; find out who pointed it there before changing Git".into(),
                });
            }
            return nothing(format!(
                "traffic is on the old version {} as before the plan, which Git already declares (if you committed this plan's git-patch after it Succeeded, revert that commit)",
                targets.blue
            ));
        }
        Phase::Succeeded if spec.mode == Mode::Upgrade => {}
        Phase::Succeeded => {
            return nothing("a rehearsal never changes the running app".into());
        }
        _ => return Err(GitError::NotFinished { plan: name, phase }),
    }

    let Some(green) = green else {
        return Err(GitError::NewDeploymentMissing {
            plan: name,
            deployment: targets.green,
        });
    };
    let Some(service) = service else {
        return Err(GitError::ServiceMissing {
            plan: name,
            phase,
            service: targets.service,
        });
    };
    if track.as_deref() != Some(targets.green.as_str()) {
        return Err(GitError::TrafficElsewhere {
            plan: name,
            phase,
            service: targets.service,
            selected: track.map_or_else(
                || format!("no {TRACK_LABEL}"),
                |t| format!("{TRACK_LABEL}={t}"),
            ),
            expected: format!("the new version {}", targets.green),
            why: "a later plan or a person moved it; run git-patch for the plan whose Deployment the Service selects".into(),
        });
    }

    let gspec = green.spec.clone().unwrap_or_default();
    let pod = gspec.template.spec.clone().unwrap_or_default();
    let container_name = match &spec.app.container {
        Some(c) => c.clone(),
        None => pod
            .containers
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_default(),
    };
    let find = |d: &Deployment| -> Option<Container> {
        d.spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == container_name)
            .cloned()
    };
    let app = find(green).ok_or_else(|| GitError::NoContainer {
        deployment: targets.green.clone(),
        container: container_name.clone(),
        have: pod
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let live_env = app.env.clone().unwrap_or_default();
    let old_env = blue.and_then(find).and_then(|c| c.env).unwrap_or_default();

    // The variables cutover manages, in spec order, then any other that differs from the
    // old version.
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: &str| {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    };
    for db in &spec.database.databases {
        db.env.iter().chain(&db.uri_env).for_each(|v| add(v));
    }
    spec.target.env.iter().for_each(|e| add(&e.name));
    add(&spec.read_only.env.name);
    for e in live_env.iter() {
        if old_env.iter().find(|o| o.name == e.name) != Some(e) && blue.is_some() {
            add(&e.name);
        }
    }
    for o in &old_env {
        if !live_env.iter().any(|e| e.name == o.name) {
            add(&o.name);
        }
    }
    let mut env: Vec<EnvChange> = names
        .into_iter()
        .map(|n| EnvChange {
            entry: live_env.iter().find(|e| e.name == n).cloned(),
            name: n,
        })
        .collect();
    let env_order: Vec<String> = live_env.iter().map(|e| e.name.clone()).collect();
    env.sort_by_key(|e| position(&env_order, &e.name));
    let mut cutover_secrets: Vec<String> = env
        .iter()
        .filter_map(|e| secret_ref(e.entry.as_ref()?))
        .filter(|s| *s == targets.green_env_secret)
        .collect();
    cutover_secrets.dedup();

    let annotations = green
        .annotations()
        .iter()
        .filter(|(k, _)| *k == BASE_DEPLOYMENT_ANNOTATION || *k == BASE_DATABASES_ANNOTATION)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(GitChange::Converge(Box::new(Convergence {
        plan: name,
        namespace: plan.namespace(),
        old_deployment: targets.blue,
        new_deployment: targets.green,
        container: container_name,
        image: app.image.clone().unwrap_or_default(),
        selector: gspec.selector.match_labels.clone().unwrap_or_default(),
        template_labels: gspec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        annotations,
        env,
        env_order,
        cutover_secrets,
        service: targets.service,
        service_selector: selector_of(service),
    })))
}

/// Where `name` is in `order` (names not in it sort last, in their own order).
fn position(order: &[String], name: &str) -> usize {
    order.iter().position(|n| n == name).unwrap_or(usize::MAX)
}

fn selector_of(s: &Service) -> BTreeMap<String, String> {
    s.spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default()
}

fn secret_ref(e: &EnvVar) -> Option<String> {
    Some(e.value_from.as_ref()?.secret_key_ref.as_ref()?.name.clone())
}

/// A MongoDB connection string with its password replaced by `***` (other values unchanged).
fn redact_password(value: &str) -> String {
    let Some((scheme, rest)) = ["mongodb://", "mongodb+srv://"]
        .iter()
        .find_map(|s| value.strip_prefix(s).map(|r| (*s, r)))
    else {
        return value.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}{user}:***@{hosts}{tail}"),
            None => value.to_string(),
        },
        None => value.to_string(),
    }
}

/// The change as a commented YAML patch to make in Git (no secret value is ever printed:
/// variables held in Secrets appear as `secretKeyRef`, passwords in plain connection strings
/// as `***`).
pub fn render_patch(change: &GitChange) -> String {
    let mut out = String::new();
    let c = match change {
        GitChange::Nothing { plan, phase, why } => {
            let _ = writeln!(
                out,
                "# UpgradePlan {plan} ended {phase}: nothing to change in Git.\n# {why}."
            );
            return out;
        }
        GitChange::Converge(c) => c,
    };
    let ns = c.namespace.as_deref().unwrap_or("<namespace>");
    let _ = writeln!(
        out,
        "# UpgradePlan {ns}/{plan} Succeeded: the change to make in Git so that applying it\n\
         # changes nothing in the running app (no rollout, no traffic change).\n\
         # `cutover git-patch {plan} -n {ns} -f FILE...` makes these edits in your manifest files.\n\
         #\n\
         # 1. Rename Deployment {old} to {new}: keep every other field of your manifest; the\n\
         #    old Deployment {old} leaves Git and Argo CD / Flux prune it.\n\
         #    - spec.selector.matchLabels exactly as below (a selector is immutable);\n\
         #    - the pod template labels exactly as below;\n\
         #    - container {container}: the image, and the variables below by name (keep your others);\n\
         #    - the cutover.dev/base-* annotations: later plans derive bounded names from them.",
        plan = c.plan,
        old = c.old_deployment,
        new = c.new_deployment,
        container = c.container,
    );
    let removed: Vec<&str> = c
        .env
        .iter()
        .filter(|e| e.entry.is_none())
        .map(|e| e.name.as_str())
        .collect();
    if !removed.is_empty() {
        let _ = writeln!(
            out,
            "#    - remove these variables (the new version runs without them): {}",
            removed.join(", ")
        );
    }
    for s in &c.cutover_secrets {
        let _ = writeln!(
            out,
            "#    Secret {s} was created by cutover (the rewritten connection strings; handed over,\n\
             #    not deleted with the plan). Its values are not printed: keep it in the cluster, or\n\
             #    declare it from your secret manager under the same name and keys."
        );
    }
    let _ = writeln!(
        out,
        "# 2. Service {svc}: its whole selector as below (apply replaces a selector as a whole).",
        svc = c.service
    );

    let env: Vec<Value> = c
        .env
        .iter()
        .filter_map(|e| {
            let mut v = rewrite::to_yaml(e.entry.as_ref()?);
            if let Some(plain) = v.get("value").and_then(|x| x.as_str()) {
                v["value"] = Value::from(redact_password(plain));
            }
            Some(v)
        })
        .collect();
    let deployment = map([
        ("apiVersion", "apps/v1".into()),
        ("kind", "Deployment".into()),
        (
            "metadata",
            map([
                ("name", c.new_deployment.clone().into()),
                ("annotations", rewrite::to_yaml(&c.annotations)),
            ]),
        ),
        (
            "spec",
            map([
                (
                    "selector",
                    map([("matchLabels", rewrite::to_yaml(&c.selector))]),
                ),
                (
                    "template",
                    map([
                        (
                            "metadata",
                            map([("labels", rewrite::to_yaml(&c.template_labels))]),
                        ),
                        (
                            "spec",
                            map([(
                                "containers",
                                Value::Sequence(vec![map([
                                    ("name", c.container.clone().into()),
                                    ("image", c.image.clone().into()),
                                    ("env", Value::Sequence(env)),
                                ])]),
                            )]),
                        ),
                    ]),
                ),
            ]),
        ),
    ]);
    let service = map([
        ("apiVersion", "v1".into()),
        ("kind", "Service".into()),
        ("metadata", map([("name", c.service.clone().into())])),
        (
            "spec",
            map([("selector", rewrite::to_yaml(&c.service_selector))]),
        ),
    ]);
    for doc in [deployment, service] {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&doc).expect("YAML values serialize"));
    }
    out
}

/// A YAML mapping with its keys in the order given.
fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}
