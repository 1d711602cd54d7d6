//! The rules behind the names cutover derives from a plan: the new Deployment, the clones,
//! the Jobs, the archive. Deterministic, so a restarted operator finds what it created instead
//! of creating it twice. Code that needs a name takes it from `plan::targets`, which applies
//! these rules once per plan; the public rule functions remain for callers not moved yet.

use crate::crd::{DatabaseMapping, UpgradePlanSpec};

/// Pod-template label that tells the old and the new version's pods apart; the Service
/// selector gains it so that switching traffic is a one-label change.
pub const TRACK_LABEL: &str = "cutover.dev/track";
/// Label on every object cutover creates, naming the plan.
pub const PLAN_LABEL: &str = "cutover.dev/plan";
/// Label on every object cutover creates, saying what it is for.
pub const ROLE_LABEL: &str = "cutover.dev/role";

/// Kubernetes object names and label values are at most 63 characters.
pub const MAX_K8S_NAME: usize = 63;
/// MongoDB database names are at most 63 bytes.
pub const MAX_DB_NAME: usize = 63;

/// Characters MongoDB refuses in a database name besides whitespace and control characters
/// (`=` too: the Job scripts pass `name=value` pairs).
pub const DB_NAME_FORBIDDEN: &[char] = &[
    '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '=',
];

/// True when MongoDB accepts `c` in a database name (and cutover's Job scripts can pass it on):
/// no whitespace or control character, none of `/\. "$*<>:|?=`.
pub fn is_db_name_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !DB_NAME_FORBIDDEN.contains(&c)
}

/// Mount point of the backup volume in every Job.
pub const BACKUP_MOUNT: &str = "/backup";

/// Shortens `s` to `max` bytes, keeping it unique by replacing the tail with a hash of the whole.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let hash = format!("{:08x}", fnv1a(s.as_bytes()) as u32);
    let mut keep = max - hash.len() - 1;
    while !s.is_char_boundary(keep) {
        keep -= 1;
    }
    // A cut right after '.' or '-' would leave `x.-hash` or `x--hash`, not a DNS name.
    format!("{}-{}", s[..keep].trim_end_matches(['-', '.']), hash)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Annotation on a Deployment cutover created: the name of the app's Deployment its name was
/// derived from, so the next plan derives from the same base (`squidex-v3`, not
/// `squidex-v2-v3`) and names do not grow with every upgrade.
pub const BASE_DEPLOYMENT_ANNOTATION: &str = "cutover.dev/base-deployment";
/// Annotation on a Deployment cutover created: JSON object from each database it runs on (a
/// clone) to the database name that clone's name was derived from.
pub const BASE_DATABASES_ANNOTATION: &str = "cutover.dev/base-databases";

pub fn green_deployment(spec: &UpgradePlanSpec, plan: &str) -> String {
    green_deployment_from(spec, plan, &spec.app.deployment)
}

/// The new version's Deployment: `deploymentName`, else `<base>-<plan>` where `base` is the
/// app's Deployment name before any upgrade (see `BASE_DEPLOYMENT_ANNOTATION`).
pub fn green_deployment_from(spec: &UpgradePlanSpec, plan: &str, base: &str) -> String {
    spec.target
        .deployment_name
        .clone()
        .unwrap_or_else(|| shorten(&format!("{base}-{plan}"), MAX_K8S_NAME))
}

/// The clone of `db`: its `cloneName`, else `<name>-<plan>` with every character of the plan's
/// name that a database name may not have written `_` (a plan name may have `.`, which MongoDB
/// refuses: plan `v7.1` clones `Squidex` into `Squidex-v7_1`), shortened to 63 bytes. Plan names
/// never have `_`, so two plans never map to the same suffix; names without such characters
/// are unchanged.
pub fn clone_database(db: &DatabaseMapping, plan: &str) -> String {
    clone_database_from(db, plan, &db.name)
}

/// `clone_database` from the database name `base` the source's own name was derived from
/// (see `BASE_DATABASES_ANNOTATION`): the clone of `Sq-v2` by plan `v3` is `Sq-v3`.
///
/// Unambiguous: a `-` of the base is written `--`, so the first single `-` separates base and
/// plan (a plan name starts with a letter or digit). Without it, base `app` with plan `x-v2`
/// and base `app-x` with plan `v2` would both clone into `app-x-v2`; now they are `app-x-v2`
/// and `app--x-v2`. Bases without `-` (most database names) are unchanged.
pub fn clone_database_from(db: &DatabaseMapping, plan: &str, base: &str) -> String {
    db.clone_name.clone().unwrap_or_else(|| {
        let suffix: String = plan
            .chars()
            .map(|c| if is_db_name_char(c) { c } else { '_' })
            .collect();
        shorten(
            &format!("{}-{suffix}", base.replace('-', "--")),
            MAX_DB_NAME,
        )
    })
}

/// The scratch database the backup of `source` is restored into to verify it (`online`,
/// after the switch): `<source>-verify-<plan>`, dropped once compared.
pub fn scratch_database(source: &str, plan: &str) -> String {
    let suffix: String = plan
        .chars()
        .map(|c| if is_db_name_char(c) { c } else { '_' })
        .collect();
    shorten(
        &format!("{}-verify-{suffix}", source.replace('-', "--")),
        MAX_DB_NAME,
    )
}

/// The Job restoring the backup into the scratch databases.
pub fn verify_job(plan: &str) -> String {
    shorten(&format!("{plan}-verify"), MAX_K8S_NAME)
}

pub fn backup_job(plan: &str) -> String {
    shorten(&format!("{plan}-backup"), MAX_K8S_NAME)
}

pub fn clone_job(plan: &str) -> String {
    shorten(&format!("{plan}-clone"), MAX_K8S_NAME)
}

pub fn migration_job(plan: &str) -> String {
    shorten(&format!("{plan}-migrate"), MAX_K8S_NAME)
}

/// The plan-owned Secret holding the migration user's connection string.
pub fn migration_env_secret(plan: &str) -> String {
    shorten(&format!("{plan}-migrate-env"), MAX_K8S_NAME)
}

/// The backup retention Job.
pub fn prune_job(plan: &str) -> String {
    shorten(&format!("{plan}-prune"), MAX_K8S_NAME)
}

/// The preview Service of the new version's Deployment `green`. A Service name has no `.`
/// (DNS-1035 label), a Deployment name may: `.` is written `-`.
pub(super) fn preview_service_of(green: &str) -> String {
    shorten(
        &format!("{}-preview", green.replace('.', "-")),
        MAX_K8S_NAME,
    )
}

/// The Secret holding the rewritten connection strings of the Deployment `green`.
pub(super) fn env_secret(green: &str) -> String {
    shorten(&format!("{green}-env"), MAX_K8S_NAME)
}

/// Directory of a plan's backup on the volume: one `<database>.archive.gz` per database and a
/// `SHA256SUMS`. Grouped per application so retention can keep the last N of each.
pub fn backup_dir(spec: &UpgradePlanSpec, plan: &str) -> String {
    backup_dir_from(&spec.app.deployment, plan)
}

/// `backup_dir` under the app's base Deployment name: every upgrade of one app in one directory.
pub fn backup_dir_from(base_deployment: &str, plan: &str) -> String {
    format!("{BACKUP_MOUNT}/{base_deployment}/{plan}")
}

/// True when every key/value of a non-empty `selector` is among `labels`.
pub fn selects(
    selector: &std::collections::BTreeMap<String, String>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(shorten("squidex-up7", 63), "squidex-up7");
    }

    #[test]
    fn long_names_are_shortened_uniquely() {
        let a = shorten(&"a".repeat(100), 63);
        let b = shorten(&format!("{}b", "a".repeat(99)), 63);
        assert_eq!(a.len(), 63);
        assert_eq!(b.len(), 63);
        assert_ne!(a, b);
        assert_eq!(a, shorten(&"a".repeat(100), 63), "deterministic");
    }

    #[test]
    fn shortening_respects_utf8() {
        let s = "é".repeat(40);
        let short = shorten(&s, 63);
        assert!(short.len() <= 63);
    }

    #[test]
    fn shortening_never_leaves_a_dot_or_dash_before_the_hash() {
        for cut in ['.', '-'] {
            let s = format!("{}{cut}{}", "a".repeat(53), "b".repeat(40));
            let short = shorten(&s, 63);
            assert!(!short.contains(".-") && !short.contains("--"), "{short}");
            assert!(short.len() <= 63);
        }
    }

    fn db(name: &str) -> DatabaseMapping {
        DatabaseMapping {
            name: name.into(),
            clone_name: None,
            env: vec![],
            uri_env: vec![],
        }
    }

    #[test]
    fn clone_names_map_what_mongodb_refuses() {
        // Unchanged where already valid.
        assert_eq!(clone_database(&db("Squidex"), "up7"), "Squidex-up7");
        // A plan name may have '.', a database name may not.
        assert_eq!(clone_database(&db("Squidex"), "v7.1"), "Squidex-v7_1");
        assert_eq!(clone_database(&db("Squidex"), "a.b.c"), "Squidex-a_b_c");
        let long = clone_database(&db(&"S".repeat(60)), "v7.1.2");
        assert!(
            long.len() <= MAX_DB_NAME && long.chars().all(is_db_name_char),
            "{long}"
        );
        let mut explicit = db("Squidex");
        explicit.clone_name = Some("Kept".into());
        assert_eq!(clone_database(&explicit, "v7.1"), "Kept");
    }

    #[test]
    fn derived_clone_names_are_unambiguous() {
        assert_ne!(
            clone_database(&db("app"), "x-v2"),
            clone_database(&db("app-x"), "v2")
        );
        assert_eq!(clone_database(&db("app"), "x-v2"), "app-x-v2");
        assert_eq!(clone_database(&db("app-x"), "v2"), "app--x-v2");
        assert_eq!(clone_database(&db("app-"), "v2"), "app---v2");
        // Every pair of a few bases and plans maps to its own name.
        let bases = ["a", "a-", "a-b", "a--b", "a-b-c", "a_b"];
        let plans = ["b", "b-c", "c", "-c", "b.c", "b-c-d", "c-d"];
        let mut seen = std::collections::BTreeMap::new();
        for b in bases {
            for p in plans.iter().filter(|p| !p.starts_with('-')) {
                let name = clone_database(&db(b), p);
                if let Some(other) = seen.insert(name.clone(), (b, *p)) {
                    panic!("{name} from both {other:?} and {:?}", (b, p));
                }
            }
        }
    }

    #[test]
    fn database_name_characters() {
        for ok in ['a', 'Z', '0', '_', '-', 'é', '字'] {
            assert!(is_db_name_char(ok), "{ok:?}");
        }
        for bad in [
            '\t', '\n', '\r', '\0', '\u{7f}', '\u{85}', '\u{a0}', '\u{2028}', '\u{3000}', ' ', '=',
            '.', '/', '\\', '"', '$', '*', '<', '>', ':', '|', '?',
        ] {
            assert!(!is_db_name_char(bad), "{bad:?}");
        }
    }

    #[test]
    fn preview_service_names_have_no_dot() {
        assert_eq!(preview_service_of("squidex-up7"), "squidex-up7-preview");
        assert_eq!(preview_service_of("squidex-v7.1"), "squidex-v7-1-preview");
    }

    #[test]
    fn selector_matching() {
        let l = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selects(
            &l(&[("app", "x")]),
            &l(&[("app", "x"), ("t", "y")])
        ));
        assert!(!selects(
            &l(&[("app", "x"), ("t", "z")]),
            &l(&[("app", "x"), ("t", "y")])
        ));
        assert!(
            !selects(&l(&[]), &l(&[("app", "x")])),
            "empty selector selects nothing"
        );
    }
}
