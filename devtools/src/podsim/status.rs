//! The kubelet's view of one pod (container states, restart counts, readiness) and the pure
//! translation into a `PodStatus`, with the phase rules of the pod's restartPolicy. Kept free
//! of I/O so the phase/condition logic is unit-tested.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};

/// Reason on the PodScheduled condition: marks a pod as handled by podsim, so a restarted
/// podsim recognises pods it was running.
pub const MARKER_REASON: &str = "PodsimAssigned";

/// Pod phase as the restartPolicy decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn of(pod: &Pod) -> Self {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("Never") => Self::Never,
            Some("OnFailure") => Self::OnFailure,
            _ => Self::Always,
        }
    }

    /// Whether a container that exited with `exit_code` is started again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        message: Option<String>,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    },
}

impl State {
    fn to_k8s(&self) -> ContainerState {
        match self {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            State::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            },
            State::Terminated {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    reason: Some(reason.clone()),
                    message: message.clone(),
                    started_at: started_at.map(Time),
                    finished_at: Some(Time(*finished_at)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct ContainerSim {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last_state: Option<State>,
    pub restart_count: i32,
    pub ready: bool,
}

impl ContainerSim {
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_state: None,
            restart_count: 0,
            ready: false,
        }
    }

    /// The container (re)starts now. A restart moves the previous termination to lastState
    /// and counts it, as the kubelet does.
    pub fn start(&mut self, now: Timestamp) {
        if matches!(self.state, State::Terminated { .. }) {
            self.last_state = Some(self.state.clone());
            self.restart_count += 1;
        }
        self.state = State::Running { started_at: now };
        self.ready = false;
    }

    pub fn terminate(
        &mut self,
        exit_code: i32,
        reason: &str,
        message: Option<String>,
        now: Timestamp,
    ) {
        let started_at = match self.state {
            State::Running { started_at } => Some(started_at),
            _ => None,
        };
        self.state = State::Terminated {
            exit_code,
            reason: reason.into(),
            message,
            started_at,
            finished_at: now,
        };
        self.ready = false;
    }

    fn started(&self) -> bool {
        !matches!(self.state, State::Waiting { .. }) || self.last_state.is_some()
    }

    fn exit_code(&self) -> Option<i32> {
        match self.state {
            State::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        }
    }
}

/// Everything podsim knows about a pod it runs.
#[derive(Debug, Clone)]
pub struct PodSim {
    pub pod_ip: String,
    pub start_time: Timestamp,
    pub restart_policy: RestartPolicy,
    pub containers: Vec<ContainerSim>,
    /// A pod-level failure (reason, message), e.g. a Job pod whose process podsim lost.
    pub failure: Option<(String, String)>,
    /// Condition type → (status, lastTransitionTime), so times only move on a change.
    transitions: BTreeMap<&'static str, (bool, Timestamp)>,
}

impl PodSim {
    pub fn new(pod: &Pod, pod_ip: &str, now: Timestamp) -> Self {
        let containers = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| ContainerSim::new(&c.name, c.image.as_deref().unwrap_or_default()))
            .collect();
        Self {
            pod_ip: pod_ip.into(),
            start_time: now,
            restart_policy: RestartPolicy::of(pod),
            containers,
            failure: None,
            transitions: BTreeMap::new(),
        }
    }

    /// Rebuilds the view from a status podsim wrote before it restarted: keeps the pod IP,
    /// start time and restart counts; processes are gone, so containers count as terminated.
    pub fn from_status(pod: &Pod, now: Timestamp) -> Option<Self> {
        let status = pod.status.as_ref()?;
        let mut sim = Self::new(pod, status.pod_ip.as_deref()?, now);
        if let Some(t) = &status.start_time {
            sim.start_time = t.0;
        }
        for cs in status.container_statuses.iter().flatten() {
            if let Some(c) = sim.containers.iter_mut().find(|c| c.name == cs.name) {
                c.restart_count = cs.restart_count;
                let was_started = cs.state.as_ref().is_some_and(|s| s.waiting.is_none())
                    || cs.last_state.is_some();
                if was_started {
                    c.terminate(137, "PodsimRestarted", None, now);
                }
            }
        }
        Some(sim)
    }

    pub fn container(&mut self, name: &str) -> Option<&mut ContainerSim> {
        self.containers.iter_mut().find(|c| c.name == name)
    }

    pub fn phase(&self) -> &'static str {
        if self.failure.is_some() {
            return "Failed";
        }
        if !self.containers.iter().any(ContainerSim::started) {
            return "Pending";
        }
        let codes: Option<Vec<i32>> = self
            .containers
            .iter()
            .map(ContainerSim::exit_code)
            .collect();
        match codes {
            // Some container runs or will be restarted.
            None => "Running",
            Some(codes) => {
                let all_ok = codes.iter().all(|&c| c == 0);
                match self.restart_policy {
                    RestartPolicy::Always => "Running",
                    RestartPolicy::OnFailure if all_ok => "Succeeded",
                    RestartPolicy::OnFailure => "Running",
                    RestartPolicy::Never if all_ok => "Succeeded",
                    RestartPolicy::Never => "Failed",
                }
            }
        }
    }

    /// The full status to merge-patch (lists are replaced whole, so this is authoritative).
    pub fn status(&mut self, now: Timestamp) -> PodStatus {
        let phase = self.phase();
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let unready: Vec<&str> = self
            .containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        let ready = unready.is_empty() && !terminal;
        let (reason, message) = if terminal {
            (Some("PodCompleted".to_owned()), None)
        } else if ready {
            (None, None)
        } else {
            (
                Some("ContainersNotReady".to_owned()),
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
            )
        };
        let mut conditions = vec![
            self.condition("PodScheduled", true, now, Some(MARKER_REASON.into()), None),
            self.condition("Initialized", true, now, None, None),
            self.condition(
                "ContainersReady",
                ready,
                now,
                reason.clone(),
                message.clone(),
            ),
            self.condition("Ready", ready, now, reason, message),
        ];
        conditions[0].message = Some("podsim plays the kubelet for this pod".into());
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: Some("127.0.0.1".into()),
            pod_ip: Some(self.pod_ip.clone()),
            pod_ips: Some(vec![PodIP {
                ip: self.pod_ip.clone(),
            }]),
            start_time: Some(Time(self.start_time)),
            reason: self.failure.as_ref().map(|f| f.0.clone()),
            message: self.failure.as_ref().map(|f| f.1.clone()),
            container_statuses: Some(
                self.containers
                    .iter()
                    .map(|c| ContainerStatus {
                        name: c.name.clone(),
                        image: c.image.clone(),
                        image_id: format!("podsim://{}", c.image),
                        container_id: Some(format!("podsim://{}", c.name)),
                        ready: c.ready && !terminal,
                        restart_count: c.restart_count,
                        started: Some(matches!(c.state, State::Running { .. })),
                        state: Some(c.state.to_k8s()),
                        last_state: c.last_state.as_ref().map(State::to_k8s),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn condition(
        &mut self,
        type_: &'static str,
        status: bool,
        now: Timestamp,
        reason: Option<String>,
        message: Option<String>,
    ) -> PodCondition {
        let entry = self.transitions.entry(type_).or_insert((status, now));
        if entry.0 != status {
            *entry = (status, now);
        }
        PodCondition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(entry.1)),
            reason,
            message,
            ..Default::default()
        }
    }
}

/// True when podsim wrote this pod's status (its PodScheduled condition carries the marker).
pub fn is_marked(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some(MARKER_REASON))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(policy: &str, containers: &[&str]) -> Pod {
        let cs: Vec<_> = containers
            .iter()
            .map(|n| json!({"name": n, "image": "busybox"}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"restartPolicy": policy, "containers": cs}
        }))
        .unwrap()
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn job_pod_lifecycle_never() {
        let mut sim = PodSim::new(&pod("Never", &["c"]), "127.0.16.2", t(0));
        assert_eq!(sim.phase(), "Pending");
        sim.container("c").unwrap().start(t(1));
        assert_eq!(sim.phase(), "Running");
        sim.container("c")
            .unwrap()
            .terminate(1, "Error", Some("boom".into()), t(2));
        assert_eq!(sim.phase(), "Failed");
        let st = sim.status(t(3));
        let term = st.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(term.exit_code, 1);
        assert_eq!(term.message.as_deref(), Some("boom"));
        assert_eq!(term.started_at, Some(Time(t(1))));
        let ready = st
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
    }

    #[test]
    fn phases_follow_restart_policy() {
        for (policy, code, phase) in [
            ("Never", 0, "Succeeded"),
            ("OnFailure", 0, "Succeeded"),
            ("OnFailure", 2, "Running"),
            ("Always", 0, "Running"),
        ] {
            let mut sim = PodSim::new(&pod(policy, &["a", "b"]), "127.0.16.2", t(0));
            for c in &mut sim.containers {
                c.start(t(1));
            }
            sim.container("a")
                .unwrap()
                .terminate(0, "Completed", None, t(2));
            assert_eq!(sim.phase(), "Running", "{policy}: b still runs");
            sim.container("b")
                .unwrap()
                .terminate(code, "Error", None, t(2));
            assert_eq!(sim.phase(), phase, "{policy} exit {code}");
        }
    }

    #[test]
    fn restart_counts_and_ready_transitions() {
        let mut sim = PodSim::new(&pod("Always", &["app"]), "127.0.16.2", t(0));
        let c = sim.container("app").unwrap();
        c.start(t(1));
        c.ready = true;
        let st = sim.status(t(2));
        let ready = |st: &PodStatus| {
            st.conditions
                .clone()
                .unwrap()
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
        };
        assert_eq!(ready(&st).status, "True");
        assert_eq!(ready(&st).last_transition_time, Some(Time(t(2))));
        assert!(is_marked(&Pod {
            status: Some(st),
            ..Default::default()
        }));
        let c = sim.container("app").unwrap();
        c.terminate(137, "Error", None, t(5));
        c.start(t(6));
        assert_eq!(c.restart_count, 1);
        assert!(matches!(
            c.last_state,
            Some(State::Terminated { exit_code: 137, .. })
        ));
        let st = sim.status(t(7));
        assert_eq!(ready(&st).status, "False");
        assert_eq!(ready(&st).last_transition_time, Some(Time(t(7))));
        assert_eq!(
            sim.status(t(9)).conditions.unwrap()[3].last_transition_time,
            Some(Time(t(7)))
        );
    }

    #[test]
    fn rebuilds_from_a_previous_status() {
        let mut sim = PodSim::new(&pod("Always", &["app"]), "127.0.16.9", t(0));
        sim.container("app").unwrap().start(t(1));
        let mut p = pod("Always", &["app"]);
        p.status = Some(sim.status(t(2)));
        let mut again = PodSim::from_status(&p, t(10)).unwrap();
        assert_eq!(again.pod_ip, "127.0.16.9");
        assert_eq!(again.start_time, t(0));
        let c = again.container("app").unwrap();
        c.start(t(11));
        assert_eq!(c.restart_count, 1);
    }
}
