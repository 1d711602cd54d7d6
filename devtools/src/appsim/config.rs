//! appsim's configuration, read from env with Squidex's names (`STORE__MONGODB__…`,
//! `MODE__ISREADONLY`) plus `APPSIM_*` knobs for tests. Pure: takes a lookup function.

use std::time::Duration;

use crate::image::ImageRef;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// MongoDB connection string.
    pub uri: String,
    /// Main database (holds `Migration`, `Events`).
    pub database: String,
    /// Content database (holds `States_Contents_All{N}`).
    pub content_database: String,
    pub read_only: bool,
    pub listen: String,
    pub image: Option<String>,
    /// The schema version this app's code migrates to.
    pub target_version: u32,
    pub crash_after_step: Option<u32>,
    pub fail_migration: bool,
    pub step_delay: Duration,
    pub restart_count: u32,
    /// `namespace/name` of the pod running this process, for logs.
    pub pod: Option<String>,
}

impl Config {
    /// Database precedence: `STORE__MONGODB__DATABASE`, else the database named in the URI's
    /// path (so rewriting a connection string's path re-targets the app, as with real apps
    /// that take one URI), else `Squidex`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let uri = non_empty("STORE__MONGODB__CONFIGURATION")
            .ok_or("STORE__MONGODB__CONFIGURATION (the MongoDB URI) is not set")?;
        let database = non_empty("STORE__MONGODB__DATABASE")
            .or_else(|| uri_database(&uri))
            .unwrap_or_else(|| "Squidex".into());
        let content_database =
            non_empty("STORE__MONGODB__CONTENTDATABASE").unwrap_or_else(|| "SquidexContent".into());
        let image = non_empty("APPSIM_IMAGE");
        let target_version = match non_empty("APPSIM_SCHEMA_VERSION") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("APPSIM_SCHEMA_VERSION={v:?} is not a number"))?,
            None => image
                .as_deref()
                .and_then(|i| ImageRef::parse(i).major())
                .ok_or_else(|| {
                    format!(
                        "cannot derive the schema version from APPSIM_IMAGE={image:?}; \
                         use a numeric tag (appsim:3) or set APPSIM_SCHEMA_VERSION"
                    )
                })?,
        };
        let number = |k: &str| -> Result<Option<u64>, String> {
            non_empty(k)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| format!("{k}={v:?} is not a number"))
                })
                .transpose()
        };
        Ok(Self {
            uri,
            database,
            content_database,
            read_only: non_empty("MODE__ISREADONLY").is_some_and(|v| truthy(&v)),
            listen: non_empty("APPSIM_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into()),
            image,
            target_version,
            crash_after_step: number("APPSIM_CRASH_AFTER_STEP")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            fail_migration: non_empty("APPSIM_FAIL_MIGRATION").is_some_and(|v| truthy(&v)),
            step_delay: Duration::from_millis(number("APPSIM_STEP_DELAY_MS")?.unwrap_or(0)),
            restart_count: number("APPSIM_RESTART_COUNT")?
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            pod: non_empty("APPSIM_POD"),
        })
    }

    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Crash only in a container's first run, so the restarted container behaves (and then
    /// finds the lock left behind).
    pub fn crash_now(&self, steps_done: u32) -> bool {
        self.restart_count == 0 && self.crash_after_step == Some(steps_done)
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    )
}

/// The database named in a MongoDB URI's path (`mongodb://h:p/DB?opts` → `DB`).
pub fn uri_database(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let rest = rest.split(['?', '#']).next()?;
    // The host list may contain `@` (credentials) but not `/`.
    let (_, path) = rest.split_once('/')?;
    let db = percent_decode(path);
    (!db.is_empty()).then_some(db)
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_and_image_version() {
        let c = cfg(&[
            (
                "STORE__MONGODB__CONFIGURATION",
                "mongodb://127.0.0.1:1/?directConnection=true",
            ),
            ("APPSIM_IMAGE", "cutover.dev/appsim:3.1.0"),
        ])
        .unwrap();
        assert_eq!(c.database, "Squidex");
        assert_eq!(c.content_database, "SquidexContent");
        assert_eq!(c.target_version, 3);
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(!c.read_only);
        assert!(!c.crash_now(1));
    }

    #[test]
    fn overrides() {
        let c = cfg(&[
            (
                "STORE__MONGODB__CONFIGURATION",
                "mongodb://u:p@h:1/Squidex-plan?authSource=admin",
            ),
            ("STORE__MONGODB__CONTENTDATABASE", "Content-plan"),
            ("APPSIM_IMAGE", "appsim:latest"),
            ("APPSIM_SCHEMA_VERSION", "7"),
            ("MODE__ISREADONLY", "True"),
            ("APPSIM_CRASH_AFTER_STEP", "2"),
            ("APPSIM_STEP_DELAY_MS", "250"),
        ])
        .unwrap();
        assert_eq!(c.database, "Squidex-plan");
        assert_eq!(c.content_database, "Content-plan");
        assert_eq!(c.target_version, 7);
        assert!(c.read_only);
        assert_eq!(c.step_delay, Duration::from_millis(250));
        assert!(c.crash_now(2));
        let c = Config {
            restart_count: 1,
            ..c
        };
        assert!(
            !c.crash_now(2),
            "a restarted container does not crash again"
        );
    }

    #[test]
    fn explicit_database_beats_uri_path() {
        let c = cfg(&[
            ("STORE__MONGODB__CONFIGURATION", "mongodb://h:1/FromUri"),
            ("STORE__MONGODB__DATABASE", "Explicit"),
            ("APPSIM_IMAGE", "appsim:2"),
        ])
        .unwrap();
        assert_eq!(c.database, "Explicit");
    }

    #[test]
    fn errors_are_explicit() {
        assert!(
            cfg(&[("APPSIM_IMAGE", "appsim:2")])
                .unwrap_err()
                .contains("CONFIGURATION")
        );
        let e = cfg(&[
            ("STORE__MONGODB__CONFIGURATION", "mongodb://h:1/"),
            ("APPSIM_IMAGE", "appsim:latest"),
        ])
        .unwrap_err();
        assert!(e.contains("APPSIM_SCHEMA_VERSION"), "{e}");
    }

    #[test]
    fn uri_paths() {
        assert_eq!(uri_database("mongodb://h:1/db?x=1").as_deref(), Some("db"));
        assert_eq!(
            uri_database("mongodb://u:p%40@h1:1,h2:2/my%2Ddb").as_deref(),
            Some("my-db")
        );
        assert_eq!(uri_database("mongodb://h:1/?x=1"), None);
        assert_eq!(uri_database("mongodb://h:1"), None);
        assert_eq!(
            uri_database("mongodb+srv://c.example/app"),
            Some("app".into())
        );
    }
}
