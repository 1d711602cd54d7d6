//! Faults on a seeded schedule while the plans run: the operator's leader SIGKILLed (and
//! restarted), the MongoDB-wire server and podsim restarted (`hack/dev-env restart`, which
//! stops the recorded pid and starts it again on the same port), a Job's pod deleted.

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
}

impl Fault {
    pub fn label(&self) -> &'static str {
        match self {
            Fault::KillLeader => "operator leader SIGKILLed",
            Fault::RestartMongo => "secantusd restarted",
            Fault::RestartPodsim => "podsim restarted",
            Fault::DeleteJobPod => "Job pod deleted",
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

/// `n` faults: the kinds dealt from a deck (the leader's kill first, the rest shuffled),
/// each in a seeded wave, 1 to 8 s after the wave's plans were applied (a plan on the
/// environment's small data takes some 10 to 20 s, so every fault falls while plans run).
pub fn schedule(rng: &mut Rng, n: usize, waves: usize, wave_gap_s: u64) -> Vec<Planned> {
    // The leader's failover is always in the schedule; the other kinds follow in a seeded
    // order.
    let mut rest = vec![
        Fault::RestartMongo,
        Fault::DeleteJobPod,
        Fault::RestartPodsim,
    ];
    rng.shuffle(&mut rest);
    let mut deck = vec![Fault::KillLeader];
    deck.extend(rest);
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
    ops: &mut Operators,
    repo: &Path,
    namespaces: &[String],
) -> anyhow::Result<String> {
    match fault {
        Fault::KillLeader => {
            let who = ops.kill_leader(client, Duration::from_secs(2)).await?;
            Ok(format!("{who} killed, restarted 2 s later"))
        }
        Fault::RestartMongo => dev_env_restart(repo, "secantusd").await,
        Fault::RestartPodsim => dev_env_restart(repo, "podsim").await,
        Fault::DeleteJobPod => delete_job_pod(client, namespaces).await,
    }
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
