//! A container's environment, resolved the way the kubelet does at container start: `envFrom`
//! first, then `env` in order (later names override earlier ones), `$(VAR)` in values expanded
//! against what is defined so far. Pure: the Secrets and ConfigMaps are fetched beforehand
//! (see `sources`), so this is unit-testable and the error text can name what is missing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource};

use super::expand::expand;

/// Data of the Secrets and ConfigMaps a pod refers to, by name. An absent name means the
/// object does not exist.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
}

/// The pod fields that `fieldRef` can point at.
#[derive(Debug, Default, Clone)]
pub struct FieldContext {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_name: String,
    pub service_account: String,
    pub pod_ip: String,
    pub host_ip: String,
}

/// An ordered environment where a later definition replaces an earlier one in place.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Env(Vec<(String, String)>);

impl Env {
    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }

    pub fn map_values(&mut self, f: impl Fn(&str) -> String) {
        for (_, v) in &mut self.0 {
            *v = f(v);
        }
    }

    /// `$(VAR)` expansion against this environment.
    pub fn expand(&self, s: &str) -> String {
        expand(s, |n| self.get(n).map(str::to_owned))
    }
}

/// Resolves `container`'s environment. Errors name the missing object or key, like the
/// kubelet's `CreateContainerConfigError` message.
pub fn resolve(container: &Container, ctx: &FieldContext, src: &Sources) -> Result<Env, String> {
    let mut env = Env::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, optional, data) = if let Some(r) = &from.config_map_ref {
            (
                "configmap",
                &r.name,
                r.optional,
                src.config_maps.get(&r.name),
            )
        } else if let Some(r) = &from.secret_ref {
            ("secret", &r.name, r.optional, src.secrets.get(&r.name))
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    // The kubelet skips keys that are not valid variable names.
                    if is_env_name(k) {
                        env.set(&format!("{prefix}{k}"), v.clone());
                    }
                }
            }
            None if optional == Some(true) => {}
            None => return Err(format!("{kind} \"{name}\" not found")),
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = value_of(var, ctx, src, &env)? {
            env.set(&var.name, value);
        }
    }
    Ok(env)
}

/// One `env` entry's value; `None` when an optional reference is missing (variable unset).
fn value_of(
    var: &EnvVar,
    ctx: &FieldContext,
    src: &Sources,
    env: &Env,
) -> Result<Option<String>, String> {
    let Some(from) = &var.value_from else {
        return Ok(Some(env.expand(var.value.as_deref().unwrap_or(""))));
    };
    let EnvVarSource {
        config_map_key_ref,
        field_ref,
        resource_field_ref,
        secret_key_ref,
        ..
    } = from;
    if let Some(r) = secret_key_ref {
        return key_ref("secret", &src.secrets, &r.name, &r.key, r.optional);
    }
    if let Some(r) = config_map_key_ref {
        return key_ref("configmap", &src.config_maps, &r.name, &r.key, r.optional);
    }
    if let Some(f) = field_ref {
        return field(&f.field_path, ctx).map(Some);
    }
    if let Some(r) = resource_field_ref {
        // No cgroups here: report "unlimited"-ish values rather than failing the container.
        return Ok(Some(if r.resource.starts_with("limits.") {
            "0".into()
        } else {
            "1".into()
        }));
    }
    Ok(Some(String::new()))
}

fn key_ref(
    kind: &str,
    objects: &BTreeMap<String, BTreeMap<String, String>>,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, String> {
    let optional = optional == Some(true);
    match objects.get(name) {
        None if optional => Ok(None),
        None => Err(format!("{kind} \"{name}\" not found")),
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(format!("couldn't find key {key} in {kind} \"{name}\"")),
        },
    }
}

/// The downward API fields the kubelet supports for env.
fn field(path: &str, ctx: &FieldContext) -> Result<String, String> {
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|s| s.strip_prefix("['"))
            .and_then(|s| s.strip_suffix("']"))
    };
    Ok(match path {
        "metadata.name" => ctx.name.clone(),
        "metadata.namespace" => ctx.namespace.clone(),
        "metadata.uid" => ctx.uid.clone(),
        "spec.nodeName" => ctx.node_name.clone(),
        "spec.serviceAccountName" => ctx.service_account.clone(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        _ => {
            if let Some(k) = subscript("metadata.labels") {
                ctx.labels.get(k).cloned().unwrap_or_default()
            } else if let Some(k) = subscript("metadata.annotations") {
                ctx.annotations.get(k).cloned().unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldRef {path}"));
            }
        }
    })
}

/// Kubernetes' rule for env names taken from envFrom (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "-._".contains(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(spec: serde_json::Value) -> Container {
        serde_json::from_value(spec).unwrap()
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.secrets.insert(
            "db".into(),
            BTreeMap::from([
                ("uri".into(), "mongodb://u:p@127.0.0.1:1/".into()),
                ("password".into(), "p".into()),
            ]),
        );
        s.config_maps.insert(
            "cfg".into(),
            BTreeMap::from([
                ("MODE".into(), "fast".into()),
                ("bad key".into(), "skipped".into()),
                ("DB".into(), "Squidex".into()),
            ]),
        );
        s
    }

    fn ctx() -> FieldContext {
        FieldContext {
            name: "web-1".into(),
            namespace: "ns".into(),
            pod_ip: "127.0.16.2".into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            ..Default::default()
        }
    }

    #[test]
    fn resolves_all_sources_in_kubelet_order() {
        let c = container(json!({
            "name": "app",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "URI", "valueFrom": {"secretKeyRef": {"name": "db", "key": "uri"}}},
                {"name": "DB", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "DB"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "FULL", "value": "$(URI)$(DB)?x"},
                {"name": "CFG_MODE", "value": "slow"},
            ]
        }));
        let env = resolve(&c, &ctx(), &sources()).unwrap();
        let got: Vec<_> = env.iter().cloned().collect();
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            got,
            vec![
                s("CFG_DB", "Squidex"),
                s("CFG_MODE", "slow"),
                s("URI", "mongodb://u:p@127.0.0.1:1/"),
                s("DB", "Squidex"),
                s("POD", "web-1"),
                s("NS", "ns"),
                s("IP", "127.0.16.2"),
                s("APP", "web"),
                s("FULL", "mongodb://u:p@127.0.0.1:1/Squidex?x"),
            ]
        );
    }

    #[test]
    fn missing_required_references_fail_and_optional_ones_are_unset() {
        let c = container(json!({"name": "a", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}));
        assert_eq!(
            resolve(&c, &ctx(), &sources()).unwrap_err(),
            "secret \"nope\" not found"
        );
        let c = container(json!({"name": "a", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}]}));
        assert!(
            resolve(&c, &ctx(), &sources())
                .unwrap_err()
                .contains("key k")
        );
        let c = container(json!({"name": "a",
            "envFrom": [{"secretRef": {"name": "nope", "optional": true}}],
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k", "optional": true}}}]}));
        assert_eq!(resolve(&c, &ctx(), &sources()).unwrap(), Env::default());
    }

    #[test]
    fn later_entries_expand_earlier_ones_only() {
        let c = container(json!({"name": "a", "env": [
            {"name": "A", "value": "$(B)-x"},
            {"name": "B", "value": "b"},
            {"name": "C", "value": "$(B)-$$(B)"}]}));
        let env = resolve(&c, &ctx(), &Sources::default()).unwrap();
        assert_eq!(env.get("A"), Some("$(B)-x"));
        assert_eq!(env.get("C"), Some("b-$(B)"));
    }
}
