//! The cleanup steps but the obsolete collections: when each is due, what guards it, what it
//! does. Each returns a `Verdict` for the schedule in `cleanup`.

use crate::crd::{CleanupState, Timestamp};
use crate::plan::conditions as cond;
use crate::plan::decide::{Machine, one_line};
use crate::plan::decision::Action;
use crate::plan::names;
use crate::plan::observed::{DatabaseView, JobState, Workloads};

use super::Verdict;

impl Machine<'_> {
    pub(super) fn scale_down_blue(&self, lifted: Timestamp) -> Verdict {
        let Some(blue) = &self.obs.blue else {
            return Verdict::new(
                CleanupState::Done,
                format!("Deployment {} is gone", self.spec.app.deployment),
            );
        };
        if blue.replicas == 0 {
            return Verdict::new(
                CleanupState::Done,
                format!("The old version {} is scaled to 0", blue.name),
            );
        }
        let due = self.due(lifted, &self.spec.cleanup.scale_down_blue_after);
        if self.now < due {
            return Verdict::scheduled(
                due,
                format!(
                    "The old version {} keeps running until {due} for a quick rollback",
                    blue.name
                ),
            );
        }
        Verdict::act(
            Action::Scale {
                color: crate::crd::Color::Blue,
                replicas: 0,
            },
            format!("Scaling the old version {} to 0", blue.name),
        )
    }

    pub(super) fn delete_blue(&self, lifted: Timestamp) -> Verdict {
        let Some(after) = &self.spec.cleanup.delete_blue_after else {
            return Verdict::new(CleanupState::Done, "not asked for".into());
        };
        let Some(blue) = &self.obs.blue else {
            return Verdict::new(
                CleanupState::Done,
                format!("Deployment {} is deleted", self.spec.app.deployment),
            );
        };
        let due = self.due(lifted, after);
        if self.now < due {
            return Verdict::scheduled(
                due,
                format!("Deployment {} will be deleted at {due}", blue.name),
            );
        }
        let Some(w) = &self.obs.workloads else {
            return Verdict::new(
                CleanupState::Running,
                "Looking at the namespace's Services".into(),
            );
        };
        let selecting: Vec<String> = w
            .services
            .iter()
            .filter(|s| names::selects(&s.selector, &blue.pod_labels))
            .map(|s| format!("Service {}", s.name))
            .collect();
        if !selecting.is_empty() {
            return Verdict::new(
                CleanupState::Refused,
                format!(
                    "Deployment {} is kept: {} selects its pods; point it elsewhere or delete it and the step runs",
                    blue.name,
                    selecting.join(", ")
                ),
            );
        }
        Verdict::act(
            Action::DeleteBlue,
            format!("Deleting the old version's Deployment {}", blue.name),
        )
    }

    pub(super) fn drop_sources(&self, lifted: Timestamp) -> Verdict {
        let Some(after) = &self.spec.cleanup.drop_source_databases_after else {
            return Verdict::new(CleanupState::Done, "not asked for".into());
        };
        let sources = self.targets.sources();
        let due = self.due(lifted, after);
        if self.now < due {
            return Verdict::scheduled(
                due,
                format!(
                    "Source databases {} will be dropped at {due}",
                    sources.join(", ")
                ),
            );
        }
        let backup_ok = self
            .st
            .backup
            .as_ref()
            .is_some_and(|b| b.checksum.is_some() && b.completed_at.is_some())
            && self.st.clone.as_ref().is_some_and(|c| c.verified)
            && cond::is_true(&self.st.conditions, cond::BACKUP_VERIFIED);
        if !backup_ok {
            return Verdict::new(
                CleanupState::Refused,
                format!(
                    "Source databases {} are kept: no verified backup of them is recorded (status.backup with a checksum, restored and counted)",
                    sources.join(", ")
                ),
            );
        }
        let Some(w) = &self.obs.workloads else {
            return Verdict::new(
                CleanupState::Running,
                "Looking at the namespace's Services".into(),
            );
        };
        let users = source_users(w, &sources);
        if !users.is_empty() {
            return Verdict::new(
                CleanupState::Refused,
                format!(
                    "Source databases are kept: {}; point the Service elsewhere or remove the Deployment and the step runs",
                    users.join("; ")
                ),
            );
        }
        match &self.obs.database {
            DatabaseView::Unknown => {
                Verdict::new(CleanupState::Running, "Listing databases".into())
            }
            DatabaseView::Unreachable(e) => Verdict::new(
                CleanupState::Running,
                format!("Cannot reach MongoDB to drop the sources, retrying: {e}"),
            ),
            DatabaseView::Reachable { databases } => {
                let left: Vec<String> = sources
                    .iter()
                    .filter(|d| databases.contains_key(*d))
                    .cloned()
                    .collect();
                if left.is_empty() {
                    let path = self
                        .st
                        .backup
                        .as_ref()
                        .map(|b| b.path.clone())
                        .unwrap_or_default();
                    Verdict::new(
                        CleanupState::Done,
                        format!(
                            "Source databases {} are dropped; their backup is {path}",
                            sources.join(", ")
                        ),
                    )
                } else if let Some(Err(e)) = &self.obs.claims {
                    Verdict::new(
                        CleanupState::Running,
                        format!(
                            "Cannot read the claim registry to drop the sources, retrying: {e}"
                        ),
                    )
                } else if left.iter().any(|d| !self.holds_database(d)) {
                    // Never dropped on a name alone (see `claims`).
                    let unclaimed: Vec<&str> = left
                        .iter()
                        .filter(|d| !self.holds_database(d))
                        .map(String::as_str)
                        .collect();
                    Verdict::new(
                        CleanupState::Refused,
                        format!(
                            "Source databases {} are kept: this plan holds no claim on them in cutover.claims (it started before claims, or they are another plan's); drop them by hand once nothing uses them",
                            unclaimed.join(", ")
                        ),
                    )
                } else {
                    Verdict::act(
                        Action::DropDatabases {
                            names: left.clone(),
                        },
                        format!(
                            "Dropping source databases {} (backup verified)",
                            left.join(", ")
                        ),
                    )
                }
            }
        }
    }

    pub(super) fn prune_backups(&self) -> Verdict {
        let keep = self.spec.backup.keep_last;
        match &self.obs.prune_job {
            None => Verdict::act(
                Action::CreatePruneJob,
                format!(
                    "Backup retention Job {} keeps the last {keep} backup(s) of {}",
                    self.targets.prune_job, self.spec.app.deployment
                ),
            ),
            Some(j) => match j.state {
                JobState::Active => Verdict::new(
                    CleanupState::Running,
                    format!("Backup retention Job {} is running", j.name),
                ),
                JobState::Succeeded => Verdict::new(
                    CleanupState::Done,
                    format!("Kept the last {keep} backup(s): {}", one_line(&j.message)),
                ),
                JobState::Failed => Verdict::new(
                    CleanupState::Refused,
                    format!(
                        "Backup retention Job {} failed: {}; delete the Job to try again",
                        j.name,
                        one_line(&j.message)
                    ),
                ),
            },
        }
    }
}

/// "Service S selects Deployment D, whose environment names database X", one per finding.
fn source_users(w: &Workloads, sources: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for d in &w.deployments {
        let named: Vec<&String> = sources
            .iter()
            .filter(|db| d.env.iter().any(|(_, v)| names_database(v, db)))
            .collect();
        if named.is_empty() {
            continue;
        }
        for s in w
            .services
            .iter()
            .filter(|s| names::selects(&s.selector, &d.pod_labels))
        {
            out.push(format!(
                "Service {} selects Deployment {}, whose environment names database {}",
                s.name,
                d.name,
                named
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// An environment value names a database when it is the name itself or a MongoDB connection
/// string whose path is that database.
fn names_database(value: &str, db: &str) -> bool {
    value == db || crate::uri::database(value) == Some(db)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::plan::observed::{ServiceSelector, WorkloadView};

    #[test]
    fn database_names_in_environment_values() {
        assert!(names_database("Squidex", "Squidex"));
        assert!(names_database(
            "mongodb://u:p@h:27017/Squidex?authSource=admin",
            "Squidex"
        ));
        assert!(names_database("mongodb+srv://h/Squidex", "Squidex"));
        assert!(!names_database(
            "mongodb://h:27017/?directConnection=true",
            "Squidex"
        ));
        assert!(!names_database(
            "mongodb://h:27017/SquidexContent",
            "Squidex"
        ));
        assert!(!names_database("Squidex-up2", "Squidex"));
    }

    #[test]
    fn a_service_selecting_a_deployment_on_the_sources_blocks_the_drop() {
        let labels = |v: &str| BTreeMap::from([("app".to_string(), v.to_string())]);
        let w = Workloads {
            services: vec![ServiceSelector {
                name: "squidex-headless".into(),
                selector: labels("squidex"),
            }],
            deployments: vec![
                WorkloadView {
                    name: "squidex".into(),
                    pod_labels: labels("squidex"),
                    env: vec![("STORE__MONGODB__DATABASE".into(), "Squidex".into())],
                },
                WorkloadView {
                    name: "other".into(),
                    pod_labels: labels("other"),
                    env: vec![("DB".into(), "Squidex".into())],
                },
            ],
        };
        let users = source_users(&w, &["Squidex".into()]);
        assert_eq!(users.len(), 1, "{users:?}");
        assert!(users[0].contains("Service squidex-headless selects Deployment squidex"));
        assert!(source_users(&w, &["Other".into()]).is_empty());
    }
}
