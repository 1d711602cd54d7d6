//! Validation of a plan's spec on its own, without the cluster. The CRD schema catches what
//! a schema can say; this catches the rest (and everything CEL would, since Kubernetes 1.20
//! drops CEL rules silently). Each message names the field and says what to write instead.

use std::collections::BTreeSet;

use crate::crd::{Mode, UpgradePlanSpec};

use super::{names, targets};

/// Every problem with `spec`, as `field: what is wrong`; empty when the plan is valid.
pub fn validate(spec: &UpgradePlanSpec, plan: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let mut check = |ok: bool, msg: String| {
        if !ok {
            errs.push(msg);
        }
    };

    check(
        is_dns_subdomain(&spec.app.deployment),
        format!(
            "spec.app.deployment: {:?} is not a valid Deployment name (lowercase letters, digits, '-' and '.', at most 253)",
            spec.app.deployment
        ),
    );
    check(
        is_dns_label(&spec.app.service),
        format!(
            "spec.app.service: {:?} is not a valid Service name (lowercase letters, digits and '-', at most 63)",
            spec.app.service
        ),
    );
    if let Some(c) = &spec.app.container {
        check(
            is_dns_label(c),
            format!("spec.app.container: {c:?} is not a valid container name"),
        );
    }

    check(
        is_image_reference(&spec.target.image),
        format!(
            "spec.target.image: {:?} is not an image reference (like registry.example.com/team/app:1.2.3)",
            spec.target.image
        ),
    );
    for (i, e) in spec.target.env.iter().enumerate() {
        check(
            is_env_name(&e.name),
            format!(
                "spec.target.env[{i}].name: {:?} is not a valid environment variable name",
                e.name
            ),
        );
    }
    if let Some(name) = &spec.target.deployment_name {
        check(
            is_dns_label(name),
            format!(
                "spec.target.deploymentName: {name:?} is not a valid Deployment name (at most 63, lowercase letters, digits and '-')"
            ),
        );
        check(
            name != &spec.app.deployment,
            format!(
                "spec.target.deploymentName: {name:?} is the running Deployment itself; the new version needs its own"
            ),
        );
    }

    check(
        is_env_name(&spec.read_only.env.name),
        format!(
            "spec.readOnly.env.name: {:?} is not a valid environment variable name",
            spec.read_only.env.name
        ),
    );
    if let Some(http) = spec.read_only.verify.as_ref().and_then(|v| v.http.as_ref()) {
        check(
            http.path.starts_with('/'),
            format!(
                "spec.readOnly.verify.http.path: {:?} must start with '/'",
                http.path
            ),
        );
        check(
            (1..=65535).contains(&http.port),
            format!(
                "spec.readOnly.verify.http.port: {} is not a port (1-65535)",
                http.port
            ),
        );
    }

    let secret = &spec.database.connection_secret;
    check(
        is_dns_subdomain(&secret.name),
        format!(
            "spec.database.connectionSecret.name: {:?} is not a valid Secret name",
            secret.name
        ),
    );
    check(
        is_secret_key(&secret.key),
        format!(
            "spec.database.connectionSecret.key: {:?} is not a valid Secret key",
            secret.key
        ),
    );

    let dbs = &spec.database.databases;
    check(
        !dbs.is_empty(),
        "spec.database.databases: list at least one database to back up and clone".to_string(),
    );
    let sources: BTreeSet<&str> = dbs.iter().map(|d| d.name.as_str()).collect();
    check(
        sources.len() == dbs.len(),
        "spec.database.databases: a database is listed twice".to_string(),
    );
    let mut clones = BTreeSet::new();
    for (i, db) in dbs.iter().enumerate() {
        let field = format!("spec.database.databases[{i}]");
        if let Err(why) = check_db_name(&db.name) {
            check(false, format!("{field}.name: {:?} {why}", db.name));
        }
        let clone = names::clone_database(db, plan);
        match (&db.clone_name, check_db_name(&clone)) {
            (Some(explicit), Err(why)) => {
                check(false, format!("{field}.cloneName: {explicit:?} {why}"))
            }
            (None, Err(why)) if check_db_name(&db.name).is_ok() => check(
                false,
                format!(
                    "{field}: the clone name {clone:?} derived from the database and the plan name {why}; set {field}.cloneName"
                ),
            ),
            _ => {}
        }
        // MongoDB refuses a database whose name differs from an existing one only in case.
        check(
            clone == db.name || !clone.eq_ignore_ascii_case(&db.name),
            format!(
                "{field}.cloneName: {clone:?} differs from the source database {:?} only in case, which MongoDB refuses",
                db.name
            ),
        );
        check(
            clone != db.name,
            format!(
                "{field}.cloneName: {clone:?} is the source database itself; the clone needs another name"
            ),
        );
        check(
            !sources.contains(clone.as_str()) || clone == db.name,
            format!("{field}.cloneName: {clone:?} is another source database of this plan"),
        );
        check(
            clones.insert(clone.clone()),
            format!("{field}.cloneName: {clone:?} is used by two databases"),
        );
        for (j, v) in db.env.iter().enumerate() {
            check(
                is_env_name(v),
                format!("{field}.env[{j}]: {v:?} is not a valid environment variable name"),
            );
        }
        for (j, v) in db.uri_env.iter().enumerate() {
            check(
                is_env_name(v),
                format!("{field}.uriEnv[{j}]: {v:?} is not a valid environment variable name"),
            );
        }
    }

    check(
        is_image_reference(&spec.backup.image),
        format!(
            "spec.backup.image: {:?} is not an image reference",
            spec.backup.image
        ),
    );
    check(
        is_dns_subdomain(&spec.backup.volume.claim_name),
        format!(
            "spec.backup.volume.claimName: {:?} is not a valid PersistentVolumeClaim name",
            spec.backup.volume.claim_name
        ),
    );

    let m = &spec.migration;
    check(
        m.mongo_document.is_some() || m.job.is_some() || m.http_get.is_some(),
        "spec.migration: configure at least one gate (mongoDocument, job or httpGet) so cutover can tell when the migration is done".to_string(),
    );
    check(
        !m.timeout.is_zero(),
        "spec.migration.timeout: must be more than 0s".to_string(),
    );
    if let Some(doc) = &m.mongo_document {
        if let Err(why) = check_db_name(&doc.database) {
            check(
                false,
                format!(
                    "spec.migration.mongoDocument.database: {:?} {why}",
                    doc.database
                ),
            );
        }
        check(
            sources.contains(doc.database.as_str()),
            format!(
                "spec.migration.mongoDocument.database: {:?} is not one of spec.database.databases ({})",
                doc.database,
                sources.iter().copied().collect::<Vec<_>>().join(", ")
            ),
        );
        if let Err(why) = check_collection_name(&doc.collection) {
            check(
                false,
                format!(
                    "spec.migration.mongoDocument.collection: {:?} {why}",
                    doc.collection
                ),
            );
        }
        for (field, value) in [
            ("versionField", &doc.version_field),
            ("lockField", &doc.lock_field),
        ] {
            check(
                !value.is_empty() && !value.starts_with('$') && !value.contains('\0'),
                format!("spec.migration.mongoDocument.{field}: {value:?} is not a field name"),
            );
        }
        check(
            !doc.stale_lock_after.is_zero(),
            "spec.migration.mongoDocument.staleLockAfter: must be more than 0s".to_string(),
        );
    }
    if let Some(job) = &m.job
        && let Some(cred) = &job.credentials_secret
    {
        check(
            is_dns_subdomain(&cred.name),
            format!(
                "spec.migration.job.credentialsSecret.name: {:?} is not a valid Secret name",
                cred.name
            ),
        );
        check(
            is_secret_key(&cred.key),
            format!(
                "spec.migration.job.credentialsSecret.key: {:?} is not a valid Secret key",
                cred.key
            ),
        );
        check(
            is_env_name(&cred.env),
            format!(
                "spec.migration.job.credentialsSecret.env: {:?} is not a valid environment variable name",
                cred.env
            ),
        );
    }
    if let Some(h) = &m.http_get {
        check(
            h.path.starts_with('/'),
            format!(
                "spec.migration.httpGet.path: {:?} must start with '/'",
                h.path
            ),
        );
        check(
            (1..=65535).contains(&h.port),
            format!(
                "spec.migration.httpGet.port: {} is not a port (1-65535)",
                h.port
            ),
        );
        check(
            (100..=599).contains(&h.expect_status),
            format!(
                "spec.migration.httpGet.expectStatus: {} is not an HTTP status",
                h.expect_status
            ),
        );
    }

    for (field, d) in [
        ("spec.timeouts.rollout", &spec.timeouts.rollout),
        ("spec.timeouts.backup", &spec.timeouts.backup),
        ("spec.timeouts.clone", &spec.timeouts.clone),
    ] {
        check(!d.is_zero(), format!("{field}: must be more than 0s"));
    }

    let c = &spec.cleanup;
    if let Some(after) = &c.delete_blue_after {
        check(
            after.as_std() >= c.scale_down_blue_after.as_std(),
            format!(
                "spec.cleanup.deleteBlueAfter: {after} is sooner than scaleDownBlueAfter ({}); the old version is scaled down before it is deleted",
                c.scale_down_blue_after
            ),
        );
    }
    if let Some(obsolete) = &c.obsolete_collections {
        check(
            !obsolete.patterns.is_empty(),
            "spec.cleanup.obsoleteCollections.patterns: list at least one pattern".into(),
        );
        for (i, p) in obsolete.patterns.iter().enumerate() {
            if let Err(why) = check_db_name(&p.database) {
                check(
                    false,
                    format!(
                        "spec.cleanup.obsoleteCollections.patterns[{i}].database: {:?} {why}",
                        p.database
                    ),
                );
            }
            check(
                spec.database.databases.iter().any(|d| d.name == p.database),
                format!(
                    "spec.cleanup.obsoleteCollections.patterns[{i}].database: {:?} is not one of spec.database.databases",
                    p.database
                ),
            );
            check(
                !p.pattern.is_empty()
                    && p.pattern.chars().any(|ch| ch != '*')
                    && p.pattern
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_.*-".contains(ch)),
                format!(
                    "spec.cleanup.obsoleteCollections.patterns[{i}].pattern: {:?} must name collections with letters, digits, '_', '.', '-' and '*' wildcards, and not be only '*'",
                    p.pattern
                ),
            );
        }
    }
    if errs.is_empty() {
        errs.extend(check_derived_names(spec, plan));
    }
    errs
}

/// The Kubernetes names the plan derives from its own name and the app's (the new Deployment,
/// its Secret, the preview Service, the Jobs), checked once the names they come from are
/// valid, so that a name the API server would refuse stops the plan here and not after the app
/// was made read-only.
fn check_derived_names(spec: &UpgradePlanSpec, plan: &str) -> Vec<String> {
    let mut errs = Vec::new();
    // Every object cutover creates carries the plan's name as a label value.
    if !is_label_value(plan) {
        errs.push(format!(
            "metadata.name: {plan:?} is {} characters; cutover labels everything it creates with the plan's name and label values are at most {}: use a shorter plan name",
            plan.len(),
            names::MAX_K8S_NAME
        ));
        return errs;
    }
    let t = targets::targets(spec, plan, None);
    let from = if spec.target.deployment_name.is_some() {
        "spec.target.deploymentName"
    } else {
        "spec.app.deployment and the plan name"
    };
    // The Deployment's name is also the value of its track label.
    if !(is_dns_subdomain(&t.green) && is_label_value(&t.green)) {
        errs.push(format!(
            "the new version's Deployment name {:?} (from {from}) is not a valid Deployment name and label value (at most 63, lowercase letters, digits, '-' and '.'): set spec.target.deploymentName",
            t.green
        ));
    }
    let mut objects = vec![
        ("the new version's Secret", &t.green_env_secret, "Secret"),
        ("the backup Job", &t.backup_job, "Job"),
        ("the clone Job", &t.clone_job, "Job"),
        ("the migration Job", &t.migration_job, "Job"),
        ("the backup retention Job", &t.prune_job, "Job"),
        ("the migration Secret", &t.migration_env_secret, "Secret"),
    ];
    if spec.mode == Mode::Rehearsal {
        objects.push((
            "the rehearsal's preview Service",
            &t.preview_service,
            "Service",
        ));
    }
    for (what, name, kind) in objects {
        let ok = match kind {
            // A Job's name is also the value of its pods' job-name label.
            "Job" => is_dns_subdomain(name) && is_label_value(name),
            "Service" => is_dns_1035_label(name),
            _ => is_dns_subdomain(name),
        };
        if !ok {
            let rule = match kind {
                "Service" => {
                    "at most 63, lowercase letters, digits and '-', starting with a letter"
                }
                "Job" => "at most 63, lowercase letters, digits, '-' and '.'",
                _ => "lowercase letters, digits, '-' and '.'",
            };
            errs.push(format!(
                "{what}'s name {name:?} (from {from}) is not a valid {kind} name ({rule}): choose another spec.target.deploymentName or plan name"
            ));
        }
    }
    errs
}

/// A Kubernetes label value: at most 63, alphanumerics, '-', '_' and '.', starting and ending
/// alphanumeric.
fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// A Service name: a DNS-1035 label (a DNS-1123 label starting with a letter).
fn is_dns_1035_label(s: &str) -> bool {
    is_dns_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// Why MongoDB (or cutover's Job scripts) would refuse the database name `name`, if they would.
pub(super) fn check_db_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > names::MAX_DB_NAME {
        return Err(format!(
            "is {} bytes; MongoDB database names are at most {}",
            name.len(),
            names::MAX_DB_NAME
        ));
    }
    if let Some(c) = name.chars().find(|c| !names::is_db_name_char(*c)) {
        return Err(format!(
            "contains {c:?}; database names cannot contain whitespace, control characters or any of / \\ . \" $ * < > : | ? ="
        ));
    }
    if ["admin", "local", "config"].contains(&name) {
        return Err("is a MongoDB system database; it cannot be upgraded by cloning".into());
    }
    if name == super::claims::DATABASE {
        return Err("is cutover's own database (its claim registry); choose another name".into());
    }
    Ok(())
}

fn check_collection_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.contains('$') || name.contains('\0') {
        return Err("contains '$' or NUL, which MongoDB collection names cannot".into());
    }
    if name.starts_with("system.") {
        return Err("is a system collection".into());
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Kubernetes accepts any printable name except '='; cutover stays with what shells and apps
/// can actually read back.
fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// `[host[:port]/]path[:tag][@digest]`, with the grammar of the distribution reference.
fn is_image_reference(s: &str) -> bool {
    if s.is_empty() || s.len() > 1024 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return false;
        };
        if algo.is_empty() || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag
        && (t.is_empty()
            || t.len() > 128
            || t.starts_with(['.', '-'])
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
    {
        return false;
    }
    let mut parts = name.split('/').peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        let is_host = first
            && parts.peek().is_some()
            && (part.contains('.') || part.contains(':') || part == "localhost");
        first = false;
        let ok = if is_host {
            let host = part.split(':').next().unwrap_or("");
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                && part
                    .split_once(':')
                    .is_none_or(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        } else {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
