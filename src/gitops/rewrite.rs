//! Applying a [`GitChange`] to the user's manifest files: multi-document YAML in which the
//! old version's Deployment and/or the app's Service are rewritten; every other document is
//! kept byte for byte, and every other field of the rewritten ones is kept.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_norway::{Mapping, Value};

use super::{Convergence, GitChange};

/// Why a manifest file could not be rewritten.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RewriteError {
    #[error("document {index} is not YAML: {message}")]
    Parse { index: usize, message: String },
    #[error("document {index} ({what}): {field} is not a mapping or list as Kubernetes expects")]
    Shape {
        index: usize,
        what: String,
        field: String,
    },
    #[error(
        "Deployment {deployment} in the manifests has no container {container}: add it, or tell the plan which container is the app (spec.app.container)"
    )]
    NoContainer {
        deployment: String,
        container: String,
    },
    #[error(
        "the manifests hold neither Deployment {old} (or {new}) nor Service {service}: pass the file(s) that declare them"
    )]
    NothingToRewrite {
        old: String,
        new: String,
        service: String,
    },
}

/// Manifests after the rewrite, and which of the two objects they held.
#[derive(Clone, Debug, PartialEq)]
pub struct Rewritten {
    pub text: String,
    /// The old (or already renamed) Deployment was found and rewritten.
    pub deployment: bool,
    /// The Service was found and rewritten.
    pub service: bool,
}

/// `manifests` rewritten so that applying them changes nothing in the running app; as is when
/// there is nothing to change. Fails when the change has edits and the manifests hold neither
/// the Deployment nor the Service.
pub fn rewrite(manifests: &str, change: &GitChange) -> Result<String, RewriteError> {
    let r = rewrite_manifests(manifests, change)?;
    if let GitChange::Converge(c) = change
        && !r.deployment
        && !r.service
    {
        return Err(RewriteError::NothingToRewrite {
            old: c.old_deployment.clone(),
            new: c.new_deployment.clone(),
            service: c.service.clone(),
        });
    }
    Ok(r.text)
}

/// Like [`rewrite`], reporting what was found instead of failing when nothing was (one file
/// of several may hold neither object).
pub fn rewrite_manifests(manifests: &str, change: &GitChange) -> Result<Rewritten, RewriteError> {
    let mut out = Rewritten {
        text: String::with_capacity(manifests.len()),
        deployment: false,
        service: false,
    };
    let GitChange::Converge(c) = change else {
        out.text = manifests.to_string();
        return Ok(out);
    };
    let mut chunk = String::new();
    let mut index = 0;
    for line in manifests.split_inclusive('\n') {
        if is_separator(line) {
            let doc = rewrite_document(&chunk, index, c, &mut out)?;
            out.text.push_str(&doc);
            out.text.push_str(line);
            chunk.clear();
            index += 1;
        } else {
            chunk.push_str(line);
        }
    }
    let last = rewrite_document(&chunk, index, c, &mut out)?;
    out.text.push_str(&last);
    Ok(out)
}

/// A YAML document separator (`---`, maybe followed by a comment or content).
fn is_separator(line: &str) -> bool {
    let l = line.trim_end();
    l == "---" || l.starts_with("--- ") || l.starts_with("---\t")
}

fn rewrite_document(
    text: &str,
    index: usize,
    c: &Convergence,
    found: &mut Rewritten,
) -> Result<String, RewriteError> {
    let parsed: Value = serde_norway::from_str(text).map_err(|e| RewriteError::Parse {
        index,
        message: e.to_string(),
    })?;
    let s = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let kind = s(&parsed, "kind").unwrap_or_default();
    let api = s(&parsed, "apiVersion").unwrap_or_default();
    let meta = parsed.get("metadata").cloned().unwrap_or(Value::Null);
    let name = s(&meta, "name").unwrap_or_default();
    let ns_ok = match (s(&meta, "namespace"), &c.namespace) {
        (Some(a), Some(b)) => &a == b,
        _ => true,
    };
    let mut doc = parsed;
    let edited = if kind == "Deployment"
        && api.starts_with("apps/")
        && ns_ok
        && (name == c.old_deployment || name == c.new_deployment)
    {
        edit_deployment(&mut doc, index, c)?;
        found.deployment = true;
        true
    } else if kind == "Service" && api == "v1" && ns_ok && name == c.service {
        let what = format!("Service {name}");
        let spec = child(&mut doc, "spec", index, &what)?;
        *child(spec, "selector", index, &what)? = to_yaml(&c.service_selector);
        found.service = true;
        true
    } else {
        false
    };
    if !edited {
        return Ok(text.to_string());
    }
    // The comment lines heading the document are kept; comments inside it are not.
    let head: String = text
        .split_inclusive('\n')
        .take_while(|l| {
            let t = l.trim_start();
            t.is_empty() || t.starts_with('#')
        })
        .collect();
    Ok(format!(
        "{head}{}",
        serde_norway::to_string(&doc).expect("a parsed YAML value serializes")
    ))
}

fn edit_deployment(doc: &mut Value, index: usize, c: &Convergence) -> Result<(), RewriteError> {
    let what = format!("Deployment {}", c.old_deployment);
    let meta = child(doc, "metadata", index, &what)?;
    *child(meta, "name", index, &what)? = c.new_deployment.clone().into();
    if !c.annotations.is_empty() {
        let annotations = child(meta, "annotations", index, &what)?;
        for (k, v) in &c.annotations {
            *child(annotations, k, index, &what)? = v.clone().into();
        }
    }
    let spec = child(doc, "spec", index, &what)?;
    // The whole selector: it is immutable, and the new Deployment's has the track label.
    *child(spec, "selector", index, &what)? = map_of([("matchLabels", to_yaml(&c.selector))]);
    let template = child(spec, "template", index, &what)?;
    let labels = child(
        child(template, "metadata", index, &what)?,
        "labels",
        index,
        &what,
    )?;
    set_exactly(labels, &c.template_labels, index, &what)?;
    let pod = child(template, "spec", index, &what)?;
    let containers = child(pod, "containers", index, &what)?;
    let Value::Sequence(list) = containers else {
        return Err(shape(index, &what, "spec.template.spec.containers"));
    };
    let container = list
        .iter_mut()
        .find(|x| x.get("name").and_then(|n| n.as_str()) == Some(c.container.as_str()))
        .ok_or_else(|| RewriteError::NoContainer {
            deployment: c.old_deployment.clone(),
            container: c.container.clone(),
        })?;
    *child(container, "image", index, &what)? = c.image.clone().into();
    let needs_env = c.env.iter().any(|e| e.entry.is_some());
    let has_env = container.get("env").is_some_and(|e| !e.is_null());
    if !needs_env && !has_env {
        return Ok(());
    }
    let env = child(container, "env", index, &what)?;
    if env.is_null() {
        *env = Value::Sequence(Vec::new());
    }
    let Value::Sequence(env) = env else {
        return Err(shape(index, &what, "env"));
    };
    for ch in &c.env {
        let at = env
            .iter()
            .position(|e| e.get("name").and_then(|n| n.as_str()) == Some(ch.name.as_str()));
        match (at, &ch.entry) {
            (Some(i), Some(e)) => env[i] = to_yaml(e),
            (None, Some(e)) => env.push(to_yaml(e)),
            (Some(i), None) => {
                env.remove(i);
            }
            (None, None) => {}
        }
    }
    // In the order the new version runs them (see `Convergence::env_order`; a stable sort:
    // variables the new version lacks keep their place among themselves).
    env.sort_by_key(|e| {
        super::position(
            &c.env_order,
            e.get("name").and_then(|n| n.as_str()).unwrap_or_default(),
        )
    });
    Ok(())
}

/// Makes the mapping `v` hold exactly `want`: keys it has keep their place, missing ones are
/// appended, others removed.
fn set_exactly(
    v: &mut Value,
    want: &BTreeMap<String, String>,
    index: usize,
    what: &str,
) -> Result<(), RewriteError> {
    if v.is_null() {
        *v = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(m) = v else {
        return Err(shape(index, what, "labels"));
    };
    m.retain(|k, _| k.as_str().is_some_and(|k| want.contains_key(k)));
    for (k, val) in want {
        m.insert(Value::from(k.clone()), Value::from(val.clone()));
    }
    Ok(())
}

/// The value under `key` of the mapping `v` (a null `v` becomes a mapping; a missing key is
/// inserted as null).
fn child<'a>(
    v: &'a mut Value,
    key: &str,
    index: usize,
    what: &str,
) -> Result<&'a mut Value, RewriteError> {
    if v.is_null() {
        *v = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(m) = v else {
        return Err(shape(index, what, key));
    };
    if !m.contains_key(key) {
        m.insert(Value::from(key), Value::Null);
    }
    Ok(m.get_mut(key).expect("just inserted"))
}

fn shape(index: usize, what: &str, field: &str) -> RewriteError {
    RewriteError::Shape {
        index,
        what: what.to_string(),
        field: field.to_string(),
    }
}

fn map_of<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// Any serializable Kubernetes value as YAML.
pub(super) fn to_yaml<T: Serialize>(v: &T) -> Value {
    serde_norway::to_value(v).expect("Kubernetes values serialize as YAML")
}
