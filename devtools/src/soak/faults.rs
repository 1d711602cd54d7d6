//! Faults on a seeded schedule while the plans run: the operator's leader SIGKILLed (and
//! restarted), kube-apiserver, the MongoDB-wire server and podsim restarted (`hack/dev-env
//! restart`, which stops the recorded pid and starts it again on the same port), etcd
//! compacted to its current revision (through its v3 HTTP gateway: every watch older than
//! that must re-list), a Job's pod deleted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use super::operator::Operators;
use super::scenario::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillLeader,
    RestartMongo,
    RestartPodsim,
    DeleteJobPod,
    RestartApiserver,
    CompactEtcd,
}

impl Fault {
    pub fn label(&self) -> &'static str {
        match self {
            Fault::KillLeader => "operator leader SIGKILLed",
            Fault::RestartMongo => "secantusd restarted",
            Fault::RestartPodsim => "podsim restarted",
            Fault::DeleteJobPod => "Job pod deleted",
            Fault::RestartApiserver => "kube-apiserver restarted",
            Fault::CompactEtcd => "etcd compacted",
        }
    }
}

/// A fault and when it is due, seconds after the first plan was applied.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub at_s: u64,
    pub fault: Fault,
}

/// What happened when a fault was injected.
#[derive(Debug, Clone)]
pub struct Injected {
    pub at_s: f64,
    pub fault: Fault,
    /// Unix milliseconds, to tell which plans were running.
    pub at_ms: i64,
    pub detail: String,
}

/// The kinds a schedule may hold, the leader's kill first.
pub const ALL: [Fault; 6] = [
    Fault::KillLeader,
    Fault::RestartMongo,
    Fault::DeleteJobPod,
    Fault::RestartPodsim,
    Fault::RestartApiserver,
    Fault::CompactEtcd,
];

/// `n` faults of the `kinds` given: dealt from a deck (the leader's kill first when it is
/// one of them, the rest shuffled), each in a seeded wave, 1 to 8 s after the wave's plans
/// were applied (a plan on the environment's small data takes some 10 to 20 s, so every
/// fault falls while plans run).
pub fn schedule(
    rng: &mut Rng,
    n: usize,
    waves: usize,
    wave_gap_s: u64,
    kinds: &[Fault],
) -> Vec<Planned> {
    // The leader's failover is always in the schedule when allowed; the other kinds follow
    // in a seeded order.
    let mut rest: Vec<Fault> = ALL[1..]
        .iter()
        .copied()
        .filter(|f| kinds.contains(f))
        .collect();
    rng.shuffle(&mut rest);
    let mut deck: Vec<Fault> = kinds
        .iter()
        .copied()
        .filter(|f| *f == Fault::KillLeader)
        .take(1)
        .collect();
    deck.extend(rest);
    if deck.is_empty() {
        return vec![];
    }
    let mut v: Vec<Planned> = (0..n)
        .map(|i| Planned {
            at_s: wave_gap_s * rng.range(0, waves.max(1) as u64 - 1) + rng.range(1, 8),
            fault: deck[i % deck.len()],
        })
        .collect();
    v.sort_by_key(|p| p.at_s);
    v
}

/// Injects one fault now.
pub async fn inject(
    fault: Fault,
    client: &kube::Client,
    ops: &tokio::sync::Mutex<Operators>,
    repo: &Path,
    namespaces: &[String],
) -> anyhow::Result<String> {
    match fault {
        Fault::KillLeader => {
            // Locked only here: replicas that exit during other faults are restarted meanwhile.
            let who = ops
                .lock()
                .await
                .kill_leader(client, Duration::from_secs(2))
                .await?;
            Ok(format!("{who} killed, restarted 2 s later"))
        }
        Fault::RestartMongo => dev_env_restart(repo, "secantusd").await,
        Fault::RestartPodsim => dev_env_restart(repo, "podsim").await,
        Fault::DeleteJobPod => delete_job_pod(client, namespaces).await,
        Fault::RestartApiserver => dev_env_restart(repo, "kube-apiserver").await,
        Fault::CompactEtcd => compact_etcd().await,
    }
}

/// Parses a fault's name as `--fault-kinds` spells it.
pub fn parse(name: &str) -> anyhow::Result<Fault> {
    Ok(match name {
        "kill-leader" => Fault::KillLeader,
        "restart-mongo" => Fault::RestartMongo,
        "delete-job-pod" => Fault::DeleteJobPod,
        "restart-podsim" => Fault::RestartPodsim,
        "restart-apiserver" => Fault::RestartApiserver,
        "compact-etcd" => Fault::CompactEtcd,
        _ => anyhow::bail!(
            "unknown fault {name:?}: kill-leader, restart-mongo, delete-job-pod, restart-podsim, restart-apiserver, compact-etcd"
        ),
    })
}

/// The environment's etcd client port, from `$CUTOVER_ENV_DIR/ports.env` (hack/dev-env).
fn etcd_port() -> anyhow::Result<u16> {
    let dir = std::env::var("CUTOVER_ENV_DIR").context("CUTOVER_ENV_DIR is not set")?;
    let ports = std::fs::read_to_string(Path::new(&dir).join("ports.env"))
        .with_context(|| format!("reading {dir}/ports.env"))?;
    ports
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_PORT="))
        .context("no ETCD_PORT in ports.env")?
        .trim()
        .parse()
        .context("ETCD_PORT")
}

/// POSTs to etcd's v3 HTTP gateway; the JSON answer.
async fn etcd_post(
    port: u16,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let reply = crate::load::http::request(
        addr,
        "POST",
        path,
        Some(&body.to_string()),
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| anyhow::anyhow!("etcd {path}: {}", e.message))?;
    anyhow::ensure!(
        reply.status == 200,
        "etcd {path}: HTTP {}: {}",
        reply.status,
        reply.body
    );
    serde_json::from_str(&reply.body).with_context(|| format!("etcd {path}: {}", reply.body))
}

/// Compacts etcd to its current revision, physically: the history every watch of the API
/// server could resume from is gone (they must re-list: "410 Gone").
async fn compact_etcd() -> anyhow::Result<String> {
    let port = etcd_port()?;
    // Any key: the answer's header carries the store's revision.
    let range = etcd_post(port, "/v3/kv/range", &serde_json::json!({"key": "Lw=="})).await?;
    let rev = &range["header"]["revision"];
    let rev: i64 = match rev {
        serde_json::Value::String(s) => s.parse()?,
        v => v.as_i64().context("no revision in etcd's answer")?,
    };
    etcd_post(
        port,
        "/v3/kv/compaction",
        &serde_json::json!({"revision": rev.to_string(), "physical": true}),
    )
    .await?;
    Ok(format!("etcd compacted to revision {rev}"))
}

async fn dev_env_restart(repo: &Path, component: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(repo.join("hack/dev-env"))
        .args(["restart", component])
        .current_dir(repo)
        .output()
        .await
        .context("running hack/dev-env restart")?;
    anyhow::ensure!(
        out.status.success(),
        "hack/dev-env restart {component}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(format!("hack/dev-env restart {component}"))
}

/// Deletes the pod of a running Job in one of the soak's namespaces, waiting up to 30 s for
/// one to exist.
async fn delete_job_pod(client: &kube::Client, namespaces: &[String]) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        for ns in namespaces {
            let pods = Api::<Pod>::namespaced(client.clone(), ns);
            let list = pods.list(&ListParams::default().labels("job-name")).await?;
            let running = list.items.into_iter().find(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            });
            if let Some(p) = running {
                let name = p.metadata.name.unwrap_or_default();
                pods.delete(&name, &DeleteParams::default()).await?;
                return Ok(format!("pod {ns}/{name} deleted"));
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Ok("no Job pod ran within 30 s: nothing deleted".into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_deals_only_the_kinds_given_leader_first() {
        let s = schedule(&mut Rng::new(3), 12, 2, 20, &ALL);
        assert_eq!(s.len(), 12);
        for k in ALL {
            assert_eq!(s.iter().filter(|p| p.fault == k).count(), 2, "{k:?}");
        }
        let few = [Fault::RestartApiserver, Fault::CompactEtcd];
        let s = schedule(&mut Rng::new(3), 5, 2, 20, &few);
        assert!(s.iter().all(|p| few.contains(&p.fault)));
        assert!(schedule(&mut Rng::new(3), 5, 2, 20, &[]).is_empty());
        // Reproduced by the seed.
        let a = schedule(&mut Rng::new(9), 30, 2, 20, &ALL);
        let b = schedule(&mut Rng::new(9), 30, 2, 20, &ALL);
        assert_eq!(
            a.iter().map(|p| (p.at_s, p.fault)).collect::<Vec<_>>(),
            b.iter().map(|p| (p.at_s, p.fault)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_fault_name_parses() {
        for n in [
            "kill-leader",
            "restart-mongo",
            "delete-job-pod",
            "restart-podsim",
            "restart-apiserver",
            "compact-etcd",
        ] {
            parse(n).unwrap();
        }
        assert!(parse("reboot").is_err());
    }
}
