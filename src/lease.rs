//! One acting operator per scope, by a `coordination.k8s.io/v1` Lease. The decision is a pure
//! function of the lease and the clock; the loop around it only reads and writes the Lease
//! with optimistic concurrency (resourceVersion), so two candidates can never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tracing::{info, warn};

use crate::crd::Timestamp;
use crate::k8s::error::api_unreachable;

/// What to do about the lease, given what it says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// No lease yet: create it, held by us.
    Create,
    /// Held by us: renew it.
    Renew,
    /// Held by nobody, or its holder stopped renewing: take it over.
    TakeOver { from: Option<String> },
    /// Someone else holds it until `until`.
    Wait { holder: String, until: Timestamp },
}

pub fn step(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseStep {
    let Some(spec) = lease else {
        return LeaseStep::Create;
    };
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    match holder {
        Some(h) if h == me => LeaseStep::Renew,
        None => LeaseStep::TakeOver { from: None },
        Some(h) => {
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| Timestamp(t.0))
                .unwrap_or(Timestamp::from_millis(0));
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
            let until = renewed.plus(duration);
            if now >= until {
                LeaseStep::TakeOver { from: Some(h) }
            } else {
                LeaseStep::Wait { holder: h, until }
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    /// Standby replicas are expected (`--leader-election`); otherwise a held lease means a
    /// second, unexpected instance, which is reported loudly.
    pub election: bool,
}

fn now() -> Timestamp {
    Timestamp(jiff::Timestamp::now())
}

fn held_by_me(cfg: &Config, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs().max(1) as i32),
        acquire_time: acquired.or(Some(MicroTime(now().0))),
        renew_time: Some(MicroTime(now().0)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

/// Waits until this instance holds the lease.
pub async fn acquire(api: &Api<Lease>, cfg: &Config) -> Result<(), kube::Error> {
    let mut announced = false;
    let mut unreachable = Unreachable::default();
    loop {
        let current = match api.get_opt(&cfg.name).await {
            Ok(c) => c,
            Err(e) if api_unreachable(&e) => {
                unreachable.wait(&e).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        unreachable = Unreachable::default();
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let result = match step(spec, &cfg.identity, now()) {
            LeaseStep::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(cfg.name.clone()),
                        namespace: Some(cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(held_by_me(cfg, 0, None)),
                };
                api.create(&PostParams::default(), &lease).await.map(|_| ())
            }
            LeaseStep::Renew | LeaseStep::TakeOver { .. } => {
                let mut lease = current.clone().expect("a lease to renew or take over");
                let transitions = spec.and_then(|s| s.lease_transitions).unwrap_or(0);
                let mine =
                    spec.and_then(|s| s.holder_identity.as_deref()) == Some(cfg.identity.as_str());
                let acquired = if mine {
                    spec.and_then(|s| s.acquire_time.clone())
                } else {
                    None
                };
                lease.spec = Some(held_by_me(
                    cfg,
                    if mine { transitions } else { transitions + 1 },
                    acquired,
                ));
                // resourceVersion is kept: the replace fails with 409 if anyone wrote meanwhile.
                api.replace(&cfg.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            LeaseStep::Wait { holder, until } => {
                if !announced {
                    if cfg.election {
                        info!(%holder, "standing by: lease {}/{} is held until {until}", cfg.namespace, cfg.name);
                    } else {
                        warn!(%holder,
                            "another cutover instance holds lease {}/{} (until {until}); this one will not act while it does. \
                             Run several replicas only with --leader-election",
                            cfg.namespace, cfg.name);
                    }
                    announced = true;
                }
                let wait = until
                    .since(now())
                    .min(cfg.duration / 2)
                    .max(Duration::from_millis(200));
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        match result {
            Ok(()) => {
                info!(
                    "acquired lease {}/{} as {}",
                    cfg.namespace, cfg.name, cfg.identity
                );
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) if api_unreachable(&e) => unreachable.wait(&e).await,
            Err(e) => return Err(e),
        }
    }
}

/// A standby (or a starting leader) that cannot reach the API server keeps waiting: it acts on
/// nothing, and exiting would leave no operator once the API server is back (the soak saw both
/// replicas exit at every API server restart). Back-off 1 s doubling to 15 s, one line per try.
#[derive(Default)]
struct Unreachable {
    backoff: Option<Duration>,
}

impl Unreachable {
    async fn wait(&mut self, e: &kube::Error) {
        let pause = self.backoff.unwrap_or(Duration::from_secs(1));
        warn!(
            "taking the lease: the API server is unreachable ({e}); trying again in {}s",
            pause.as_secs()
        );
        tokio::time::sleep(pause).await;
        self.backoff = Some((pause * 2).min(Duration::from_secs(15)));
    }
}

/// Renews the lease until it cannot; returns when leadership is lost (the caller must stop
/// acting at once) or cannot be confirmed within the lease duration.
pub async fn hold(api: Api<Lease>, cfg: Config) {
    let period = cfg.duration / 3;
    let mut last_renewed = now();
    loop {
        tokio::time::sleep(period).await;
        match api.get_opt(&cfg.name).await {
            Ok(Some(mut lease)) => {
                let spec = lease.spec.clone();
                if spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                    != Some(cfg.identity.as_str())
                {
                    warn!("lease {}/{} was taken over", cfg.namespace, cfg.name);
                    return;
                }
                let transitions = spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
                let acquired = spec.and_then(|s| s.acquire_time);
                lease.spec = Some(held_by_me(&cfg, transitions, acquired));
                match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                    Ok(_) => last_renewed = now(),
                    Err(e) => warn!("renewing lease: {e}"),
                }
            }
            Ok(None) => warn!("lease {}/{} disappeared", cfg.namespace, cfg.name),
            Err(e) => warn!("reading lease: {e}"),
        }
        if now().since(last_renewed) >= cfg.duration {
            warn!(
                "could not renew lease {}/{} within {:?}",
                cfg.namespace, cfg.name, cfg.duration
            );
            return;
        }
    }
}

/// Lets a standby take over at once on a clean shutdown.
pub async fn release(api: &Api<Lease>, cfg: &Config) {
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_ms: i64, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: Some(MicroTime(Timestamp::from_millis(renewed_ms).0)),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn lease_steps() {
        let t = Timestamp::from_millis;
        assert_eq!(step(None, "a", t(0)), LeaseStep::Create);
        assert_eq!(
            step(Some(&lease(Some("a"), 0, 15)), "a", t(1000)),
            LeaseStep::Renew
        );
        assert_eq!(
            step(Some(&lease(Some("b"), 0, 15)), "a", t(14_999)),
            LeaseStep::Wait {
                holder: "b".into(),
                until: t(15_000)
            }
        );
        assert_eq!(
            step(Some(&lease(Some("b"), 0, 15)), "a", t(15_000)),
            LeaseStep::TakeOver {
                from: Some("b".into())
            }
        );
        assert_eq!(
            step(Some(&lease(None, 0, 15)), "a", t(1)),
            LeaseStep::TakeOver { from: None }
        );
        assert_eq!(
            step(Some(&lease(Some(""), 0, 15)), "a", t(1)),
            LeaseStep::TakeOver { from: None }
        );
    }
}
