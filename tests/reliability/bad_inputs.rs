//! The bad inputs, one row each: how the Squidex plan is broken, and how it must be refused.

use serde_json::{Value, json};

pub const INVALID: &str = "InvalidSpec";
pub const PREFLIGHT: &str = "PreflightFailed";

pub enum Expect {
    /// The API server refuses the object; its message contains every part.
    Schema(&'static [&'static str]),
    /// The plan ends Failed at Pending with this reason and a message containing every part
    /// (after `Names::fill`).
    Refused(&'static str, &'static [&'static str]),
}
use Expect::{Refused, Schema};

/// Names a row may need that only exist once the test runs.
pub struct Names {
    pub db: String,
    pub content_db: String,
    /// A clone database that already holds data.
    pub occupied: String,
    /// Another namespace, holding a Secret `elsewhere`.
    pub elsewhere: String,
}

impl Names {
    /// The expected message with `{db}`, `{content_db}` and `{occupied}` filled in.
    pub fn fill(&self, part: &str) -> String {
        part.replace("{db}", &self.db)
            .replace("{content_db}", &self.content_db)
            .replace("{occupied}", &self.occupied)
    }
}

/// One bad input: the Squidex plan named `name`, broken by `breaks`.
pub struct BadInput {
    pub name: &'static str,
    pub what: &'static str,
    pub breaks: fn(&mut Value, &Names),
    pub expect: Expect,
}

/// The first database, and the migration gate that names it, renamed.
fn set_db0(p: &mut Value, name: &str) {
    p["spec"]["database"]["databases"][0]["name"] = json!(name);
    p["spec"]["migration"]["mongoDocument"]["database"] = json!(name);
}

// The CRD schema refuses the database names MongoDB refuses (validate() says the same for API
// servers that skip the schema).
pub const BAD_INPUTS: &[BadInput] = &[
    BadInput {
        name: "no-deploy",
        what: "missing Deployment",
        breaks: |p, _| p["spec"]["app"]["deployment"] = json!("nosuch"),
        expect: Refused(
            PREFLIGHT,
            &["Deployment \"nosuch\" not found in the plan's namespace"],
        ),
    },
    BadInput {
        name: "container",
        what: "no such container",
        breaks: |p, _| p["spec"]["app"]["container"] = json!("nosuch"),
        expect: Refused(
            PREFLIGHT,
            &["Deployment squidex has no container \"nosuch\" (it has: squidex)"],
        ),
    },
    BadInput {
        name: "svc-missing",
        what: "missing Service",
        breaks: |p, _| p["spec"]["app"]["service"] = json!("nosuchsvc"),
        expect: Refused(
            PREFLIGHT,
            &["Service \"nosuchsvc\" not found in the plan's namespace"],
        ),
    },
    BadInput {
        name: "svc-nothing",
        what: "Service selecting nothing",
        breaks: |p, _| p["spec"]["app"]["service"] = json!("nothing"),
        expect: Refused(
            PREFLIGHT,
            &[
                "Service \"nothing\" selects {\"app\": \"nothing\"}, which does not match the pods of Deployment \"squidex\"",
            ],
        ),
    },
    BadInput {
        name: "svc-other",
        what: "Service selecting other pods",
        breaks: |p, _| p["spec"]["app"]["service"] = json!("other"),
        expect: Refused(
            PREFLIGHT,
            &[
                "Service \"other\" selects {\"app\": \"other\"}, which does not match the pods of Deployment \"squidex\"",
            ],
        ),
    },
    BadInput {
        name: "svc-headless",
        what: "Service without a selector",
        breaks: |p, _| p["spec"]["app"]["service"] = json!("headless"),
        expect: Refused(PREFLIGHT, &["Service \"headless\" has no selector"]),
    },
    BadInput {
        name: "secret-missing",
        what: "Secret missing",
        breaks: |p, _| p["spec"]["database"]["connectionSecret"]["name"] = json!("nosuch"),
        expect: Refused(
            PREFLIGHT,
            &[
                "Secret \"nosuch\" (spec.database.connectionSecret) not found in the plan's namespace",
            ],
        ),
    },
    BadInput {
        name: "secret-key",
        what: "Secret key missing",
        breaks: |p, _| p["spec"]["database"]["connectionSecret"]["key"] = json!("nokey"),
        expect: Refused(
            PREFLIGHT,
            &["Secret \"mongo\" has no key \"nokey\" (its keys: uri)"],
        ),
    },
    BadInput {
        name: "secret-elsewhere",
        what: "a Secret that exists only in another namespace",
        breaks: |p, _| {
            p["spec"]["database"]["connectionSecret"] = json!({"name": "elsewhere", "key": "uri"})
        },
        expect: Refused(
            PREFLIGHT,
            &[
                "Secret \"elsewhere\" (spec.database.connectionSecret) not found in the plan's namespace",
            ],
        ),
    },
    BadInput {
        name: "secret-ns",
        what: "a namespace for the Secret (there is no such field; server-side apply refuses it)",
        breaks: |p, n| {
            p["spec"]["database"]["connectionSecret"] =
                json!({"name": "elsewhere", "key": "uri", "namespace": n.elsewhere})
        },
        expect: Schema(&[
            ".spec.database.connectionSecret.namespace: field not declared in schema",
        ]),
    },
    BadInput {
        name: "unknown-field",
        what: "an unknown field (server-side apply)",
        breaks: |p, _| p["spec"]["bogus"] = json!({"rm": "-rf"}),
        expect: Schema(&[".spec.bogus: field not declared in schema"]),
    },
    BadInput {
        name: "not-mongo",
        what: "a connection string that is not MongoDB's",
        breaks: |p, _| p["spec"]["database"]["connectionSecret"]["name"] = json!("notauri"),
        expect: Refused(
            PREFLIGHT,
            &[
                "Secret \"notauri\" key \"uri\" is not a usable MongoDB connection string: it must start with mongodb://",
            ],
        ),
    },
    BadInput {
        name: "unreachable",
        what: "unreachable database (closed loopback port)",
        breaks: |p, _| p["spec"]["database"]["connectionSecret"]["name"] = json!("closed"),
        expect: Refused(
            PREFLIGHT,
            &["Cannot reach MongoDB with the connection Secret \"closed\""],
        ),
    },
    BadInput {
        name: "db-slash",
        what: "database name with '/'",
        breaks: |p, _| set_db0(p, "Sq/evil"),
        expect: Schema(&["spec.database.databases.name", "Sq/evil", "should match"]),
    },
    BadInput {
        name: "db-dot",
        what: "database name with '.'",
        breaks: |p, _| set_db0(p, "Sq.evil"),
        expect: Schema(&["spec.database.databases.name", "Sq.evil", "should match"]),
    },
    BadInput {
        name: "db-dollar",
        what: "database name with '$'",
        breaks: |p, _| set_db0(p, "Sq$evil"),
        expect: Schema(&["spec.database.databases.name", "Sq$evil", "should match"]),
    },
    // Whitespace, control characters and '=' (issue 13: the Job scripts word-split lists of
    // names and pass `name=value` pairs, so one such name could become two restore pairs).
    BadInput {
        name: "db-tab",
        what: "database name with a TAB",
        breaks: |p, _| set_db0(p, "Sq\tevil"),
        expect: Schema(&["spec.database.databases.name", "should match"]),
    },
    BadInput {
        name: "db-newline",
        what: "database name with a newline",
        breaks: |p, _| set_db0(p, "Sq\nevil"),
        expect: Schema(&["spec.database.databases.name", "should match"]),
    },
    BadInput {
        name: "db-equals",
        what: "database name with '='",
        breaks: |p, _| set_db0(p, "Sq=evil"),
        expect: Schema(&["spec.database.databases.name", "Sq=evil", "should match"]),
    },
    BadInput {
        name: "db-nbsp",
        what: "database name with a no-break space",
        breaks: |p, _| set_db0(p, "Sq\u{a0}evil"),
        expect: Schema(&["spec.database.databases.name", "should match"]),
    },
    BadInput {
        name: "clone-tab",
        what: "clone name with a TAB",
        breaks: |p, _| p["spec"]["database"]["databases"][0]["cloneName"] = json!("Sq\tclone"),
        expect: Schema(&["spec.database.databases.cloneName", "should match"]),
    },
    BadInput {
        name: "clone-equals",
        what: "clone name with '='",
        breaks: |p, _| p["spec"]["database"]["databases"][1]["cloneName"] = json!("a=b"),
        expect: Schema(&["spec.database.databases.cloneName", "a=b", "should match"]),
    },
    BadInput {
        name: "gate-db-newline",
        what: "a migration gate database with a newline",
        breaks: |p, _| p["spec"]["migration"]["mongoDocument"]["database"] = json!("Sq\nx"),
        expect: Schema(&["spec.migration.mongoDocument.database", "should match"]),
    },
    BadInput {
        name: "obsolete-db-equals",
        what: "an obsolete-collection database with '='",
        breaks: |p, _| {
            p["spec"]["cleanup"]["obsoleteCollections"] =
                json!({"patterns": [{"database": "a=b", "pattern": "Old*"}]})
        },
        expect: Schema(&[
            "spec.cleanup.obsoleteCollections.patterns.database",
            "should match",
        ]),
    },
    // Names derived from the plan's: validated before any side effect.
    BadInput {
        name: "plan-name-longer-than-a-label-value-can-be-so-cutover-refuses-it-x",
        what: "a plan name over 63 characters (a label value on all it creates)",
        breaks: |_, _| {},
        expect: Refused(
            INVALID,
            &[
                "metadata.name: \"plan-name-longer-than-a-label-value-can-be-so-cutover-refuses-it-x\" is 66 characters",
            ],
        ),
    },
    BadInput {
        name: "preview-digit",
        what: "a rehearsal whose preview Service name would start with a digit",
        breaks: |p, _| {
            p["spec"]["mode"] = json!("rehearsal");
            p["spec"]["target"]["deploymentName"] = json!("7squidex");
        },
        expect: Refused(
            INVALID,
            &[
                "the rehearsal's preview Service's name \"7squidex-preview\" (from spec.target.deploymentName) is not a valid Service name",
            ],
        ),
    },
    BadInput {
        name: "db-admin",
        what: "a system database",
        breaks: |p, _| set_db0(p, "admin"),
        expect: Refused(
            INVALID,
            &["spec.database.databases[0].name: \"admin\" is a MongoDB system database"],
        ),
    },
    BadInput {
        name: "db-twice",
        what: "a database listed twice",
        breaks: |p, n| p["spec"]["database"]["databases"][1]["name"] = json!(n.db),
        expect: Refused(
            INVALID,
            &["spec.database.databases: a database is listed twice"],
        ),
    },
    BadInput {
        name: "db-missing",
        what: "a source database that does not exist",
        breaks: |p, _| p["spec"]["database"]["databases"][1]["name"] = json!("Nope_rel"),
        expect: Refused(
            PREFLIGHT,
            &["Source database \"Nope_rel\" does not exist on the server"],
        ),
    },
    BadInput {
        name: "clone-is-source",
        what: "clone name equal to the source",
        breaks: |p, n| p["spec"]["database"]["databases"][0]["cloneName"] = json!(n.db),
        expect: Refused(
            INVALID,
            &["spec.database.databases[0].cloneName: \"{db}\" is the source database itself"],
        ),
    },
    BadInput {
        name: "clone-is-other",
        what: "clone name equal to another source",
        breaks: |p, n| p["spec"]["database"]["databases"][0]["cloneName"] = json!(n.content_db),
        expect: Refused(
            INVALID,
            &[
                "spec.database.databases[0].cloneName: \"{content_db}\" is another source database of this plan",
            ],
        ),
    },
    BadInput {
        name: "clone-exists",
        what: "clone database already existing with data",
        breaks: |_, _| {},
        expect: Refused(
            PREFLIGHT,
            &["Clone database \"{occupied}\" already exists with 1 collections (2 documents)"],
        ),
    },
    BadInput {
        name: "image-empty",
        what: "empty image",
        breaks: |p, _| p["spec"]["target"]["image"] = json!(""),
        expect: Schema(&["spec.target.image", "should be at least 1 chars long"]),
    },
    BadInput {
        name: "image-invalid",
        what: "invalid image",
        breaks: |p, _| p["spec"]["target"]["image"] = json!("Not An Image!"),
        expect: Refused(
            INVALID,
            &["spec.target.image: \"Not An Image!\" is not an image reference"],
        ),
    },
    BadInput {
        name: "image-shell",
        what: "shell injection in the image",
        breaks: |p, _| p["spec"]["target"]["image"] = json!("appsim:2;rm${IFS}-rf${IFS}/"),
        expect: Refused(
            INVALID,
            &["spec.target.image: \"appsim:2;rm${IFS}-rf${IFS}/\" is not an image reference"],
        ),
    },
    BadInput {
        name: "image-huge",
        what: "a 2 KB image",
        breaks: |p, _| p["spec"]["target"]["image"] = json!(format!("r/{}:1", "a".repeat(2048))),
        expect: Schema(&["spec.target.image", "should be at most 1024 chars long"]),
    },
    BadInput {
        name: "db-huge",
        what: "a 10 KB database name",
        breaks: |p, _| set_db0(p, &"x".repeat(10 * 1024)),
        expect: Schema(&[
            "spec.database.databases.name",
            "should be at most 63 chars long",
        ]),
    },
    BadInput {
        name: "db-many",
        what: "65 databases",
        breaks: |p, _| {
            p["spec"]["database"]["databases"] = json!(
                (0..65)
                    .map(|i| json!({"name": format!("D{i}")}))
                    .collect::<Vec<_>>()
            )
        },
        expect: Schema(&["spec.database.databases", "should have at most 64 items"]),
    },
    BadInput {
        name: "gate-db",
        what: "a migration gate on a database not in the list",
        breaks: |p, _| p["spec"]["migration"]["mongoDocument"]["database"] = json!("Elsewhere"),
        expect: Refused(
            INVALID,
            &[
                "spec.migration.mongoDocument.database: \"Elsewhere\" is not one of spec.database.databases ({content_db}, {db})",
            ],
        ),
    },
    BadInput {
        name: "no-gates",
        what: "no migration gate",
        breaks: |p, _| p["spec"]["migration"] = json!({"timeout": "3m"}),
        expect: Refused(INVALID, &["spec.migration: configure at least one gate"]),
    },
    BadInput {
        name: "timeout-zero",
        what: "migration timeout 0s",
        breaks: |p, _| p["spec"]["migration"]["timeout"] = json!("0s"),
        expect: Refused(INVALID, &["spec.migration.timeout: must be more than 0s"]),
    },
    BadInput {
        name: "stale-zero",
        what: "staleLockAfter 0s and a rollout timeout of 0s",
        breaks: |p, _| {
            p["spec"]["migration"]["mongoDocument"]["staleLockAfter"] = json!("0s");
            p["spec"]["timeouts"]["rollout"] = json!("0ms");
        },
        expect: Refused(
            INVALID,
            &[
                "spec.migration.mongoDocument.staleLockAfter: must be more than 0s",
                "spec.timeouts.rollout: must be more than 0s",
            ],
        ),
    },
    BadInput {
        name: "timeout-words",
        what: "a duration that is not one",
        breaks: |p, _| p["spec"]["migration"]["timeout"] = json!("soon"),
        expect: Schema(&["spec.migration.timeout", "should match"]),
    },
    BadInput {
        name: "port-zero",
        what: "health gate port 0",
        breaks: |p, _| p["spec"]["migration"]["httpGet"] = json!({"path": "/health", "port": 0}),
        expect: Schema(&[
            "spec.migration.httpGet.port",
            "should be greater than or equal to 1",
        ]),
    },
    BadInput {
        name: "verify-port",
        what: "read-only probe port 70000",
        breaks: |p, _| p["spec"]["readOnly"]["verify"]["http"]["port"] = json!(70000),
        expect: Schema(&[
            "spec.readOnly.verify.http.port",
            "should be less than or equal to 65535",
        ]),
    },
    BadInput {
        name: "path-relative",
        what: "a health path without '/'",
        breaks: |p, _| p["spec"]["migration"]["httpGet"] = json!({"path": "health", "port": 8080}),
        expect: Schema(&["spec.migration.httpGet.path", "should match '^/'"]),
    },
    BadInput {
        name: "version-negative",
        what: "a negative target version",
        breaks: |p, _| p["spec"]["migration"]["mongoDocument"]["targetVersion"] = json!(-1),
        expect: Schema(&[
            "spec.migration.mongoDocument.targetVersion",
            "should be greater than or equal to 0",
        ]),
    },
    BadInput {
        name: "ro-env",
        what: "an invalid read-only variable name",
        breaks: |p, _| p["spec"]["readOnly"]["env"]["name"] = json!("1BAD=x"),
        expect: Schema(&["spec.readOnly.env.name", "should match"]),
    },
    BadInput {
        name: "green-is-blue",
        what: "the new Deployment named like the old one",
        breaks: |p, _| p["spec"]["target"]["deploymentName"] = json!("squidex"),
        expect: Refused(
            INVALID,
            &["spec.target.deploymentName: \"squidex\" is the running Deployment itself"],
        ),
    },
    BadInput {
        name: "green-taken",
        what: "the new Deployment named like an unrelated one",
        breaks: |p, _| p["spec"]["target"]["deploymentName"] = json!("other"),
        expect: Refused(
            PREFLIGHT,
            &["Deployment \"other\" already exists and does not belong to this plan"],
        ),
    },
];
