//! `kubectl cutover` (issue 14, item 4): the real binary run through a `kubectl-cutover`
//! symlink — directly, and as kubectl runs it from `PATH` — against plans the real operator
//! drives. Each command does what a user otherwise patches by hand.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PLAN_TIMEOUT: Duration = Duration::from_secs(180);
const TRACK: &str = "cutover.dev/track";

/// A temp dir holding `kubectl-cutover`, a symlink to the binary under test.
fn plugin_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("kubectl-plugin"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cutover"), dir.join("kubectl-cutover")).unwrap();
    dir
}

/// `PATH` with the plugin's dir first, so kubectl finds `kubectl-cutover`.
fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `program args` (with `stdin` written to it, else no stdin).
async fn run(program: &Path, args: &[&str], path: &str, stdin: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("PATH", path)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{program:?}: {e}"));
    if let Some(text) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(text.as_bytes()).await.unwrap();
        drop(w);
    }
    tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program:?} {args:?} did not end"))
        .unwrap()
}

struct Plugin {
    dir: PathBuf,
}

impl Plugin {
    fn new() -> Plugin {
        Plugin { dir: plugin_dir() }
    }

    fn bin(&self) -> PathBuf {
        self.dir.join("kubectl-cutover")
    }

    /// `kubectl-cutover args` through the symlink.
    async fn call(&self, args: &[&str]) -> Output {
        run(&self.bin(), args, &path_with(&self.dir), None).await
    }

    async fn call_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run(&self.bin(), args, &path_with(&self.dir), Some(stdin)).await
    }

    /// `kubectl cutover args`: kubectl finds the plugin on `PATH`.
    async fn kubectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["cutover"];
        all.extend_from_slice(args);
        run(Path::new("kubectl"), &all, &path_with(&self.dir), None).await
    }

    /// Succeeds, returning stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.call(args).await;
        assert_ok(args, &out)
    }

    /// Fails, returning stderr.
    async fn refused(&self, args: &[&str]) -> String {
        let out = self.call(args).await;
        assert!(!out.status.success(), "{args:?} succeeded: {}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_ok(args: &[&str], out: &Output) -> String {
    assert!(out.status.success(), "{args:?}: {}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_has(haystack: &str, parts: &[&str]) {
    for p in parts {
        assert!(haystack.contains(p), "{p:?} not in:\n{haystack}");
    }
}

/// Which field managers wrote the plan.
async fn managers(env: &Env, ns: &str, plan: &str) -> Vec<String> {
    let p = env.plans(ns).get(plan).await.unwrap();
    p.metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect()
}

/// Invoked as `kubectl-cutover` (and as `kubectl cutover`), the binary names itself so and
/// offers every command; invoked as `cutover`, it does not change.
#[tokio::test]
async fn the_binary_answers_as_a_kubectl_plugin() {
    let plugin = Plugin::new();
    let help = plugin.ok(&["--help"]).await;
    assert_has(
        &help,
        &[
            "Usage: kubectl cutover <COMMAND>",
            "status",
            "promote",
            "rollback",
            "release-lock",
            "suspend",
            "resume",
            "crd",
            "version",
        ],
    );
    let sub = plugin.ok(&["rollback", "--help"]).await;
    assert_has(
        &sub,
        &[
            "Usage: kubectl cutover rollback [OPTIONS] <PLAN>",
            "--accept-data-loss",
        ],
    );
    let via_kubectl = plugin.kubectl(&["--help"]).await;
    assert_has(
        &assert_ok(&["kubectl", "cutover", "--help"], &via_kubectl),
        &["Usage: kubectl cutover <COMMAND>"],
    );
    let version = plugin.kubectl(&["version"]).await;
    assert_eq!(
        assert_ok(&["kubectl", "cutover", "version"], &version),
        format!("cutover {}\n", env!("CARGO_PKG_VERSION"))
    );
    let bad = plugin.call(&["promte", "x"]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("kubectl cutover"));
    let plain = run(
        Path::new(env!("CARGO_BIN_EXE_cutover")),
        &["--help"],
        &path_with(&plugin.dir),
        None,
    )
    .await;
    assert!(assert_ok(&["cutover", "--help"], &plain).contains("Usage: cutover <COMMAND>"));
}

/// A manual-promotion plan steered only with the plugin: `status --watch` follows it from the
/// start and exits at the end, having printed several phases; `suspend` holds it (seen in
/// status) and `resume` lets it go on; `promote` is refused before AwaitingPromotion and
/// approves it there (as `kubectl cutover promote`); after the lift, `rollback` is refused by
/// the operator with DataDiverged (the plugin shows the writes counted) and
/// `rollback --accept-data-loss` rolls back.
#[tokio::test]
async fn a_plan_steered_with_the_plugin_from_start_to_rollback() {
    let Some(env) = env().await else { return };
    let plugin = Plugin::new();
    let (app, op) = env.app_with_operator("plg-steer").await;
    let ns = app.ns.as_str();

    let mut plan = squidex_plan("steer", &app, 2);
    plan["spec"]["promotion"] = json!({"mode": "manual"});
    plan["spec"]["cleanup"] = json!({"scaleDownBlueAfter": "10m"});
    env.apply(ns, plan).await;
    let watch = tokio::process::Command::new(plugin.bin())
        .args(["status", "--watch", "steer", "-n", ns])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Suspend: the plan stops at the next phase boundary, and says so.
    let out = plugin.ok(&["suspend", "steer", "-n", ns]).await;
    assert_has(
        &out,
        &[
            "spec.suspend: false -> true",
            "pauses at the next phase boundary",
        ],
    );
    let held = env
        .wait_plan(
            &op,
            ns,
            "steer",
            "Progressing=False (Suspended)",
            PLAN_TIMEOUT,
            |p| condition(p, "Progressing").is_some_and(|c| c.reason == "Suspended"),
        )
        .await;
    let held_in = status(&held).phase;
    assert!(held_in.is_before_switch(), "{held_in}");
    assert_has(&status(&held).message, &["Suspended before"]);
    // Not at the promotion yet: promote is refused, nothing written.
    let refused = plugin.refused(&["promote", "steer", "-n", ns]).await;
    assert_has(&refused, &[&format!("is {held_in}, not AwaitingPromotion")]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = env.plans(ns).get("steer").await.unwrap();
    assert_eq!(status(&still).phase, held_in, "suspended: no phase change");
    assert!(!still.spec.promotion.approved);

    let out = plugin.ok(&["resume", "steer", "-n", ns]).await;
    assert_has(&out, &["spec.suspend: true -> false"]);
    env.wait_phase(&op, ns, "steer", Phase::AwaitingPromotion, PLAN_TIMEOUT)
        .await;

    // Promote, as kubectl runs the plugin.
    let out = plugin.kubectl(&["promote", "steer", "-n", ns]).await;
    let out = assert_ok(&["kubectl", "cutover", "promote"], &out);
    assert_has(
        &out,
        &[
            "spec.promotion.approved: false -> true",
            "Traffic moves to squidex-steer",
        ],
    );
    assert!(
        managers(&env, ns, "steer")
            .await
            .contains(&"kubectl-cutover".to_string()),
        "the patch is under the field manager kubectl-cutover"
    );
    env.wait_phase(&op, ns, "steer", Phase::Succeeded, PLAN_TIMEOUT)
        .await;

    // The watch ended by itself at Succeeded, having followed the plan through its phases.
    let watched = tokio::time::timeout(Duration::from_secs(30), watch.wait_with_output())
        .await
        .expect("status --watch exits when the plan is terminal")
        .unwrap();
    let shown = assert_ok(&["status", "--watch"], &watched);
    let phases: Vec<&str> = shown
        .lines()
        .filter_map(|l| l.strip_prefix("Phase:   "))
        .collect();
    let mut distinct = phases.clone();
    distinct.dedup();
    assert!(distinct.len() >= 3, "several phases shown: {distinct:?}");
    assert_eq!(phases.last(), Some(&"Succeeded"), "{shown}");
    assert!(
        phases.contains(&"AwaitingPromotion"),
        "the wait for promotion was shown: {distinct:?}"
    );

    // After the lift: users write on the new version; rollback without the flag is refused.
    let codes = env
        .post_contents(ns, &format!("{TRACK}=squidex-steer"), "on-green", 2)
        .await;
    assert_eq!(codes, vec![201; 2]);
    let out = plugin.ok(&["rollback", "steer", "-n", ns]).await;
    assert_has(
        &out,
        &[
            "spec.traffic: green -> blue",
            "cutover will refuse: condition DataDiverged",
            "cutover refused (DataDiverged): Rollback refused",
            "(2 documents added since read-only was lifted)",
        ],
    );
    let refused = env.plans(ns).get("steer").await.unwrap();
    assert_eq!(status(&refused).phase, Phase::Succeeded);
    assert_eq!(
        condition(&refused, "DataDiverged").map(|c| c.status.as_str()),
        Some("True")
    );

    let out = plugin
        .ok(&["rollback", "steer", "-n", ns, "--accept-data-loss"])
        .await;
    assert_has(
        &out,
        &[
            "spec.rollback.acceptDataLoss: false -> true",
            "NOT carried back",
        ],
    );
    env.wait_phase(&op, ns, "steer", Phase::RolledBack, PLAN_TIMEOUT)
        .await;
    assert_eq!(env.track(ns, "squidex").await.as_deref(), Some("squidex"));
    // Nothing left to do: a second rollback and a suspend are refused.
    assert_has(
        &plugin.refused(&["rollback", "steer", "-n", ns]).await,
        &["is RolledBack already"],
    );
    assert_has(
        &plugin.refused(&["suspend", "steer", "-n", ns]).await,
        &["no phase left to pause"],
    );

    env.finish(&op, ns, &all_dbs(&app, &["steer"])).await;
}

/// Before the lift, `rollback` says it is safe and the plan ends RolledBack; `promote` on an
/// automatic plan, `release-lock` without a stale lock and any command on a missing plan are
/// refused with a clear message, changing nothing; Ctrl-C ends `status --watch` cleanly.
#[tokio::test]
async fn rollback_before_the_lift_and_refusals() {
    let Some(env) = env().await else { return };
    let plugin = Plugin::new();
    let (app, op) = env.app_with_operator("plg-early").await;
    let ns = app.ns.as_str();

    assert_has(
        &plugin.refused(&["promote", "early", "-n", ns]).await,
        &[&format!("UpgradePlan {ns}/early not found")],
    );
    let mut plan = squidex_plan("early", &app, 2);
    slow_migration(&mut plan, 60000);
    env.apply_until(&op, ns, plan, Phase::Migrating, PLAN_TIMEOUT)
        .await;

    assert_has(
        &plugin.refused(&["promote", "early", "-n", ns]).await,
        &["promotes automatically"],
    );
    assert_has(
        &plugin
            .refused(&["release-lock", "early", "-n", ns, "--yes"])
            .await,
        &["reports no stale migration lock", "Nothing released"],
    );
    let untouched = env.plans(ns).get("early").await.unwrap();
    assert!(!untouched.spec.promotion.approved);

    // Ctrl-C stops `status --watch` cleanly; the plan goes on.
    let mut watch = tokio::process::Command::new(plugin.bin())
        .args(["status", "--watch", "early", "-n", ns])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut first = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        first.push_str(&l);
        first.push('\n');
        if l.starts_with("PHASE ") {
            break;
        }
    }
    assert_has(&first, &["Phase:   Migrating"]);
    let pid = watch.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.wait())
        .await
        .expect("Ctrl-C ends the watch")
        .unwrap();
    assert!(ended.success(), "a clean exit on Ctrl-C: {ended:?}");
    let mut rest = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push_str(&l);
        rest.push('\n');
    }
    assert_has(&rest, &["Stopped watching; the plan goes on."]);
    assert_eq!(
        status(&env.plans(ns).get("early").await.unwrap()).phase,
        Phase::Migrating
    );

    let out = plugin.ok(&["rollback", "early", "-n", ns]).await;
    assert_has(
        &out,
        &[
            "spec.traffic: green -> blue",
            "This is safe: read-only was not lifted",
            "nothing is lost",
        ],
    );
    let done = env
        .wait_phase(&op, ns, "early", Phase::RolledBack, PLAN_TIMEOUT)
        .await;
    assert!(status(&done).read_only_lifted_at.is_none());
    assert_eq!(env.track(ns, "squidex").await.as_deref(), Some("squidex"));

    env.finish(&op, ns, &all_dbs(&app, &["early"])).await;
}

/// The migration crashes with its lock held; once the plan reports MigrationLockStale,
/// `release-lock` shows where and since when, does nothing when the answer is not yes, and with
/// `--yes` releases it in the clone: the plan goes on and succeeds.
#[tokio::test]
async fn release_lock_shows_asks_and_releases_a_stale_lock() {
    let Some(env) = env().await else { return };
    let plugin = Plugin::new();
    let (app, op) = env.app_with_operator("plg-lock").await;
    let ns = app.ns.as_str();

    let mut plan = squidex_plan("lock", &app, 3);
    plan["spec"]["target"]["env"] = json!([{"name": "APPSIM_CRASH_AFTER_STEP", "value": "1"}]);
    plan["spec"]["migration"]["mongoDocument"]["staleLockAfter"] = json!("5s");
    env.apply(ns, plan).await;
    env.wait_condition(&op, ns, "lock", "MigrationLockStale", PLAN_TIMEOUT)
        .await;
    let clone_db = app.clone_of(&app.db, "lock");

    let no = plugin
        .call_with_stdin(&["release-lock", "lock", "-n", ns], "n\n")
        .await;
    assert!(!no.status.success(), "{}", text(&no));
    let shown = String::from_utf8_lossy(&no.stdout);
    assert_has(
        &shown,
        &[
            &format!("database:   {clone_db} (the clone"),
            "collection: Migration",
            "lock field: IsLocked",
            "version:    2",
            "held since:",
            "Release the lock in",
            "[y/N]",
        ],
    );
    assert!(
        !shown.contains(&env.mongo_uri),
        "no connection string shown"
    );
    assert_has(&String::from_utf8_lossy(&no.stderr), &["not released"]);
    let d = env.migration_doc(&clone_db).await.unwrap();
    assert!(d.get_bool("IsLocked").unwrap(), "still locked after no");

    let out = plugin
        .ok(&["release-lock", "lock", "-n", ns, "--yes"])
        .await;
    assert_has(
        &out,
        &[&format!(
            "Released: {clone_db}.Migration IsLocked: true -> false"
        )],
    );
    assert!(!out.contains(&env.mongo_uri), "no connection string shown");
    let done = env
        .wait_phase(&op, ns, "lock", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    assert_eq!(
        condition(&done, "MigrationLockStale").map(|c| c.reason.as_str()),
        Some("LockMoved")
    );
    let d = env.migration_doc(&clone_db).await.unwrap();
    assert_eq!(
        (version_of(&d), d.get_bool("IsLocked").unwrap()),
        (3, false)
    );
    // The source was never touched.
    let s = env.migration_doc(&app.db).await.unwrap();
    assert_eq!(version_of(&s), 1);

    env.finish(&op, ns, &all_dbs(&app, &["lock"])).await;
}
