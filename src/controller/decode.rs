//! Plans the operator cannot decode: answered on the object, never a stalled watch.
//!
//! The CRD schema refuses most bad input at apply time, but what it admits is not always what
//! the operator can read (a CRD older or looser than the operator, a value out of the type's
//! range). Decoding the watch stream into `UpgradePlan` would then fail the whole list, and
//! with it the watch of every plan in scope. So plans are watched as `DynamicObject` and
//! decoded one by one here: a decodable plan goes on to the cache and the controller
//! unchanged; an undecodable one goes to `report`, which answers on the plan itself
//! (`Failed` in `Pending`, reason `InvalidSpec`, naming the field) unless that answer is
//! already there, so its own status write does not loop.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tracing::{info, warn};

use crate::crd::{Failure, Phase, Timestamp, UpgradePlan, UpgradePlanStatus};
use crate::k8s::apply::MANAGER;
use crate::plan::{Reason, conditions};

/// The UpgradePlan resource, addressed without its Rust type.
pub fn resource() -> ApiResource {
    ApiResource::erase::<UpgradePlan>(&())
}

/// Why a plan could not be decoded: the field (a JSON path such as
/// `spec.cleanup.scaleDownBlueAfter`) and serde's error, without its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub field: String,
    pub error: String,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.error)
        } else {
            write!(f, "{}: {}", self.field, self.error)
        }
    }
}

/// Decodes one watched object; on failure names the field serde stopped at.
pub fn decode(obj: &DynamicObject) -> Result<UpgradePlan, Undecodable> {
    let value = serde_json::to_value(obj).map_err(|e| Undecodable {
        field: String::new(),
        error: e.to_string(),
    })?;
    decode_value(value)
}

fn decode_value(value: Value) -> Result<UpgradePlan, Undecodable> {
    let Err(first) = serde_json::from_value::<UpgradePlan>(value.clone()) else {
        return Ok(serde_json::from_value(value).expect("decoded just before"));
    };
    // Decoding the pretty text again gives serde's line, which names the field.
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    let (field, error) = match serde_json::from_str::<UpgradePlan>(&text) {
        Err(e) if e.line() > 0 => {
            let mut lines = Vec::new();
            paths(&value, "", &mut lines);
            let error = without_position(&e.to_string());
            (field_at(&lines, e.line(), &error), error)
        }
        _ => (String::new(), without_position(&first.to_string())),
    };
    Err(Undecodable { field, error })
}

fn without_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// One line of `serde_json::to_string_pretty`: the path of the value it holds or closes,
/// and on a closing line the path of the last value inside.
struct Line {
    path: String,
    last_inside: Option<String>,
}

/// The lines of `serde_json::to_string_pretty(v)`, in order.
fn paths(v: &Value, path: &str, out: &mut Vec<Line>) {
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    let line = |last_inside| Line {
        path: path.to_string(),
        last_inside,
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push(line(None));
            let mut last = None;
            for (k, c) in m {
                let p = child(k);
                paths(c, &p, out);
                last = Some(p);
            }
            out.push(line(last));
        }
        Value::Array(a) if !a.is_empty() => {
            out.push(line(None));
            for (i, c) in a.iter().enumerate() {
                paths(c, &format!("{path}[{i}]"), out);
            }
            out.push(line(Some(format!("{path}[{}]", a.len() - 1))));
        }
        _ => out.push(line(None)),
    }
}

/// The field serde stopped at. An error in the last value of an object is reported where the
/// parser looked for the next one, on the closing line; only a missing field or a wrong
/// length is about the object itself.
fn field_at(lines: &[Line], line: usize, error: &str) -> String {
    let Some(l) = line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return String::new();
    };
    let about_container = error.starts_with("missing field") || error.starts_with("invalid length");
    match &l.last_inside {
        Some(last) if !about_container => last.clone(),
        _ => l.path.clone(),
    }
}

/// The plan watch as typed events: undecodable plans are sent to `bad` and left out, so one
/// of them never fails the list or the watch of the others. (A plan that turns undecodable
/// keeps its last decodable copy in the cache, so other plans still see it in conflicts.)
pub fn decoded(
    events: impl Stream<Item = watcher::Result<watcher::Event<DynamicObject>>>,
    bad: UnboundedSender<DynamicObject>,
) -> impl Stream<Item = watcher::Result<watcher::Event<UpgradePlan>>> {
    use watcher::Event as E;
    events.filter_map(move |ev| {
        let pass = |obj: DynamicObject, wrap: fn(UpgradePlan) -> E<UpgradePlan>| match decode(&obj)
        {
            Ok(plan) => Some(Ok(wrap(plan))),
            Err(_) => {
                let _ = bad.send(obj);
                None
            }
        };
        let out = match ev {
            Ok(E::Apply(obj)) => pass(obj, E::Apply),
            Ok(E::InitApply(obj)) => pass(obj, E::InitApply),
            Ok(E::Delete(obj)) => decode(&obj).ok().map(|p| Ok(E::Delete(p))),
            Ok(E::Init) => Some(Ok(E::Init)),
            Ok(E::InitDone) => Some(Ok(E::InitDone)),
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
}

/// What to do about an undecodable plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Record `Failed` in `Pending` (status) and say why (Warning event `InvalidSpec`).
    Fail {
        status: Box<UpgradePlanStatus>,
        note: String,
    },
    /// The plan is past `Pending`: its status is its record of what was done and is left
    /// alone; a Warning event says why it is held.
    Warn { note: String },
    /// The answer is already on the plan.
    Nothing,
}

/// The decision for an undecodable plan, from its generation and raw status (pure).
pub fn report(
    generation: Option<i64>,
    status: Option<&Value>,
    problem: &Undecodable,
    now: Timestamp,
) -> Report {
    let current: UpgradePlanStatus = status
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    let pending = current.phase == Phase::Pending
        || (current.phase == Phase::Failed
            && current
                .failure
                .as_ref()
                .is_some_and(|f| f.phase == Phase::Pending));
    if !pending {
        return Report::Warn {
            note: format!(
                "The operator cannot read this plan, so it is held in {} until fixed (revert the change): {problem}",
                current.phase
            ),
        };
    }
    let message = format!(
        "The plan cannot be read by the operator (nothing was changed); fix it and it is checked again: {problem}"
    );
    let reason = Reason::InvalidSpec.as_str();
    let already = current.phase == Phase::Failed
        && current.observed_generation == generation
        && current.message == message
        && current.failure.as_ref().is_some_and(|f| f.reason == reason)
        && current
            .conditions
            .iter()
            .any(|c| c.type_ == conditions::READY && c.status == "False" && c.reason == reason);
    if already {
        return Report::Nothing;
    }
    let mut st = current;
    st.phase = Phase::Failed;
    st.message = message.clone();
    st.observed_generation = generation;
    st.failure = Some(Failure {
        phase: Phase::Pending,
        reason: reason.into(),
        message: message.clone(),
    });
    conditions::set(
        &mut st.conditions,
        conditions::READY,
        false,
        reason,
        &message,
        generation,
        now,
    );
    Report::Fail {
        status: Box::new(st),
        note: message,
    }
}

/// Answers each undecodable plan sent by `decoded` (see `report`). Events of a plan held past
/// `Pending` are published once per generation.
pub async fn reporter(
    client: Client,
    recorder: Recorder,
    mut bad: UnboundedReceiver<DynamicObject>,
) {
    let ar = resource();
    let mut warned: HashSet<(String, Option<i64>)> = HashSet::new();
    while let Some(obj) = bad.recv().await {
        let Err(problem) = decode(&obj) else { continue };
        let now = Timestamp(jiff::Timestamp::now());
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let generation = obj.metadata.generation;
        let decision = report(generation, obj.data.get("status"), &problem, now);
        let note = match decision {
            Report::Nothing => continue,
            Report::Warn { note } => {
                if !warned.insert((obj.uid().unwrap_or_default(), generation)) {
                    continue;
                }
                note
            }
            Report::Fail { status, note } => {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
                let body = json!({
                    "apiVersion": ar.api_version,
                    "kind": ar.kind,
                    "status": status,
                });
                if let Err(e) = api
                    .patch_status(
                        &name,
                        &PatchParams::apply(MANAGER).force(),
                        &Patch::Apply(body),
                    )
                    .await
                {
                    warn!(namespace = %ns, plan = %name, "recording an undecodable plan: {e}");
                    continue;
                }
                note
            }
        };
        info!(namespace = %ns, plan = %name, "{note}");
        let event = Event {
            type_: EventType::Warning,
            reason: Reason::InvalidSpec.as_str().into(),
            note: Some(truncate(&note, 1000)),
            action: "Decode".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &obj.object_ref(&ar)).await {
            warn!("publishing event InvalidSpec: {e}");
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max - 1;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::SquidexPlan;

    fn object(mutate: impl FnOnce(&mut Value)) -> DynamicObject {
        let mut v = SquidexPlan::appsim("app", "content", 2).object_json("up");
        v["metadata"]["namespace"] = json!("ns");
        v["metadata"]["generation"] = json!(3);
        mutate(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn bad_duration(v: &mut Value) {
        v["spec"]["cleanup"] = json!({"scaleDownBlueAfter": "99999999h"});
    }

    fn now() -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000)
    }

    #[test]
    fn a_valid_plan_decodes_unchanged() {
        let obj = object(|_| {});
        let plan = decode(&obj).unwrap();
        assert_eq!(plan.name_any(), "up");
        assert_eq!(plan.metadata.generation, Some(3));
    }

    #[test]
    fn an_undecodable_plan_names_the_field_and_the_error() {
        type Row = (fn(&mut Value), &'static str, &'static str);
        let cases: [Row; 5] = [
            (
                |v| {
                    v["spec"].as_object_mut().unwrap().remove("target");
                },
                "spec",
                "missing field `target`",
            ),
            (
                bad_duration,
                "spec.cleanup.scaleDownBlueAfter",
                "\"99999999h\" is not a duration",
            ),
            (
                |v| v["spec"]["backup"]["keepLast"] = json!(-1),
                "spec.backup.keepLast",
                "invalid value: integer `-1`",
            ),
            (
                |v| v["spec"]["mode"] = json!("sideways"),
                "spec.mode",
                "unknown variant `sideways`",
            ),
            (
                |v| v["status"] = json!({"phase": "Pending", "blueReplicas": 3_000_000_000_i64}),
                "status.blueReplicas",
                "invalid value: integer `3000000000`",
            ),
        ];
        for (mutate, field, error) in cases {
            let problem = decode(&object(mutate)).unwrap_err();
            assert_eq!(problem.field, field, "{problem}");
            assert!(problem.error.starts_with(error), "{problem}");
            assert!(!problem.error.contains(" at line "), "{problem}");
        }
    }

    #[test]
    fn a_new_undecodable_plan_fails_in_pending_with_invalid_spec() {
        let obj = object(bad_duration);
        let problem = decode(&obj).unwrap_err();
        let Report::Fail { status, note } = report(Some(3), None, &problem, now()) else {
            panic!("expected a status write");
        };
        assert_eq!(status.phase, Phase::Failed);
        assert_eq!(status.observed_generation, Some(3));
        let failure = status.failure.as_ref().unwrap();
        assert_eq!(
            (failure.phase, failure.reason.as_str()),
            (Phase::Pending, "InvalidSpec")
        );
        assert!(note.contains("spec.cleanup.scaleDownBlueAfter: \"99999999h\" is not a duration"));
        let ready = &status.conditions[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "False", "InvalidSpec")
        );
    }

    #[test]
    fn the_answer_already_recorded_is_not_written_again() {
        let problem = decode(&object(bad_duration)).unwrap_err();
        let Report::Fail { status, .. } = report(Some(3), None, &problem, now()) else {
            panic!("expected a status write");
        };
        // The status write comes back as a watch event: nothing more to do (no loop).
        let written = serde_json::to_value(&status).unwrap();
        assert_eq!(
            report(Some(3), Some(&written), &problem, now()),
            Report::Nothing
        );
        // A new generation that is still undecodable is answered again.
        assert!(matches!(
            report(Some(4), Some(&written), &problem, now()),
            Report::Fail { .. }
        ));
    }

    #[test]
    fn a_plan_failed_in_pending_for_another_reason_is_answered_and_keeps_its_trail() {
        let problem = decode(&object(bad_duration)).unwrap_err();
        let before = json!({
            "phase": "Failed", "message": "preflight", "observedGeneration": 2,
            "failure": {"phase": "Pending", "reason": "PreflightFailed", "message": "preflight"},
            "phases": [{"name": "Pending", "startedAt": "2026-01-01T00:00:00Z"}]
        });
        let Report::Fail { status, .. } = report(Some(3), Some(&before), &problem, now()) else {
            panic!("expected a status write");
        };
        assert_eq!(status.failure.unwrap().reason, "InvalidSpec");
        assert_eq!(status.phases.len(), 1);
    }

    #[test]
    fn a_plan_past_pending_is_only_warned_about() {
        let problem = decode(&object(bad_duration)).unwrap_err();
        for phase in ["Cloning", "Succeeded", "RollingBack"] {
            let st = json!({"phase": phase, "message": "m"});
            let Report::Warn { note } = report(Some(3), Some(&st), &problem, now()) else {
                panic!("{phase}: expected a warning only");
            };
            assert!(
                note.contains(phase) && note.contains("scaleDownBlueAfter"),
                "{note}"
            );
        }
    }

    #[tokio::test]
    async fn the_stream_passes_decodable_plans_and_sends_the_rest_aside() {
        use watcher::Event as E;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let input = futures::stream::iter(vec![
            Ok(E::Init),
            Ok(E::InitApply(object(bad_duration))),
            Ok(E::InitApply(object(|v| {
                v["metadata"]["name"] = json!("good")
            }))),
            Ok(E::InitDone),
            Ok(E::Apply(object(bad_duration))),
            Ok(E::Delete(object(bad_duration))),
        ]);
        let out: Vec<_> = decoded(input, tx).collect().await;
        let kinds: Vec<String> = out
            .iter()
            .map(|e| match e.as_ref().unwrap() {
                E::Init => "Init".into(),
                E::InitApply(p) => format!("InitApply {}", p.name_any()),
                E::InitDone => "InitDone".into(),
                E::Apply(p) => format!("Apply {}", p.name_any()),
                E::Delete(p) => format!("Delete {}", p.name_any()),
            })
            .collect();
        assert_eq!(kinds, ["Init", "InitApply good", "InitDone"]);
        let mut aside = 0;
        while rx.try_recv().is_ok() {
            aside += 1;
        }
        assert_eq!(aside, 2);
    }
}
