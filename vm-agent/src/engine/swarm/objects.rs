//! Secrets and configs: named blobs services mount as files (`/run/secrets/NAME` for a secret,
//! `/NAME` or the given path for a config). The same code serves both; a secret's data is never
//! shown again after its creation.

use base64::Engine as _;
use serde_json::{json, Value};

use super::state::{meta_json, Cluster, ObjectState};
use super::Swarm;
use crate::engine::filters::Filters;
use crate::engine::EngineError;

/// Which kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/secrets`.
    Secret,
    /// `/configs`.
    Config,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    /// The largest payload swarmkit takes.
    fn max_size(self) -> usize {
        match self {
            Kind::Secret => 500 * 1024,
            Kind::Config => 1000 * 1024,
        }
    }

    /// The field of a `ContainerSpec` that references this kind, and the id field in a reference.
    pub fn reference_fields(self) -> (&'static str, &'static str) {
        match self {
            Kind::Secret => ("Secrets", "SecretID"),
            Kind::Config => ("Configs", "ConfigID"),
        }
    }

    fn map(self, c: &Cluster) -> &std::collections::BTreeMap<String, ObjectState> {
        match self {
            Kind::Secret => &c.secrets,
            Kind::Config => &c.configs,
        }
    }

    fn map_mut(self, c: &mut Cluster) -> &mut std::collections::BTreeMap<String, ObjectState> {
        match self {
            Kind::Secret => &mut c.secrets,
            Kind::Config => &mut c.configs,
        }
    }
}

/// swarmkit's rule for secret and config names.
fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

/// Finds an object by id, unique id prefix or name.
pub fn find<'a>(c: &'a Cluster, kind: Kind, key: &str) -> Result<&'a ObjectState, EngineError> {
    let map = kind.map(c);
    if let Some(o) = map.get(key) {
        return Ok(o);
    }
    if let Some(o) = map.values().find(|o| o.spec["Name"].as_str() == Some(key)) {
        return Ok(o);
    }
    let mut prefixed = map.values().filter(|o| !key.is_empty() && o.meta.id.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some(o), None) => Ok(o),
        _ => Err(EngineError::NotFound(format!("{} {key} not found", kind.word()))),
    }
}

/// An object's decoded data.
pub fn data(o: &ObjectState) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(o.spec["Data"].as_str().unwrap_or("")).unwrap_or_default()
}

/// The object's JSON (a secret's without its data).
pub fn to_json(kind: Kind, o: &ObjectState) -> Value {
    let mut out = meta_json(&o.meta);
    let mut spec = o.spec.clone();
    if kind == Kind::Secret {
        if let Some(m) = spec.as_object_mut() {
            m.remove("Data");
        }
    }
    out.insert("Spec".into(), spec);
    Value::Object(out)
}

/// Whether `o` passes the list filters (`id`, `label`, `name` prefix, `names` exact).
pub fn matches(o: &ObjectState, f: &Filters) -> bool {
    let name = o.spec["Name"].as_str().unwrap_or("");
    f.any("id", |v| o.meta.id.starts_with(v))
        && f.any("name", |v| name.starts_with(v))
        && f.any("names", |v| name == v)
        && f.json_labels_match("label", &o.spec["Labels"])
}

/// The services whose tasks reference object `id`.
fn users(c: &Cluster, kind: Kind, id: &str) -> Vec<String> {
    let (field, id_field) = kind.reference_fields();
    c.services
        .values()
        .filter(|s| {
            s.spec["TaskTemplate"]["ContainerSpec"][field]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r[id_field].as_str() == Some(id)))
        })
        .map(|s| s.spec["Name"].as_str().unwrap_or("").to_string())
        .collect()
}

impl Swarm {
    /// `POST /secrets/create`, `POST /configs/create`: returns the id.
    pub fn create_object(&self, kind: Kind, spec: Value) -> Result<String, EngineError> {
        let name = spec["Name"].as_str().unwrap_or("").to_string();
        if !valid_name(&name) {
            return Err(EngineError::InvalidArgument(format!(
                "rpc error: code = InvalidArgument desc = invalid name {name:?}: only letters, digits, '-', '_' and '.' (a letter or digit at each end), at most 64"
            )));
        }
        let raw = spec["Data"].as_str().unwrap_or("");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| EngineError::InvalidArgument(format!("{} data is not base64: {e}", kind.word())))?;
        if bytes.is_empty() && spec["Driver"].is_null() {
            return Err(EngineError::InvalidArgument(format!("{} data must not be empty", kind.word())));
        }
        if bytes.len() > kind.max_size() {
            return Err(EngineError::InvalidArgument(format!(
                "{} data is {} bytes, more than the {} allowed",
                kind.word(),
                bytes.len(),
                kind.max_size()
            )));
        }
        let mut spec = spec;
        if !spec["Labels"].is_object() {
            spec["Labels"] = json!({});
        }
        // `{"name": …}` as docker-py sends it is `{"Name": …}` to Go's decoder.
        for field in ["Templating", "Driver"] {
            if let Some(m) = spec.get_mut(field).and_then(Value::as_object_mut) {
                for (lower, proper) in [("name", "Name"), ("options", "Options")] {
                    if let Some(v) = m.remove(lower) {
                        m.entry(proper).or_insert(v);
                    }
                }
            }
        }
        self.change(|c| {
            if kind.map(c).values().any(|o| o.spec["Name"].as_str() == Some(name.as_str())) {
                return Err(EngineError::Conflict(format!(
                    "rpc error: code = AlreadyExists desc = {} {name} already exists",
                    kind.word()
                )));
            }
            let meta = c.new_meta();
            let id = meta.id.clone();
            kind.map_mut(c).insert(id.clone(), ObjectState { meta, spec });
            Ok(id)
        })
    }

    /// `POST /secrets/{id}/update?version=`: only the labels may change.
    pub fn update_object(&self, kind: Kind, key: &str, version: u64, spec: Value) -> Result<(), EngineError> {
        self.change(|c| {
            let mut o = find(c, kind, key)?.clone();
            if version != o.meta.version {
                return Err(EngineError::InvalidArgument(
                    "rpc error: code = Unknown desc = update out of sequence".into(),
                ));
            }
            let same = |field: &str| spec.get(field).is_none_or(|v| v.is_null() || *v == o.spec[field]);
            if spec["Name"] != o.spec["Name"] || !same("Data") || !same("Templating") || !same("Driver") {
                return Err(EngineError::InvalidArgument(
                    "rpc error: code = InvalidArgument desc = only updates to Labels are allowed".into(),
                ));
            }
            o.spec["Labels"] = if spec["Labels"].is_object() { spec["Labels"].clone() } else { json!({}) };
            c.touch(&mut o.meta);
            kind.map_mut(c).insert(o.meta.id.clone(), o);
            Ok(())
        })
    }

    /// `DELETE /secrets/{id}`: refused while a service references it.
    pub fn remove_object(&self, kind: Kind, key: &str) -> Result<(), EngineError> {
        self.change(|c| {
            let o = find(c, kind, key)?.clone();
            let users = users(c, kind, &o.meta.id);
            if !users.is_empty() {
                return Err(EngineError::InvalidArgument(format!(
                    "rpc error: code = InvalidArgument desc = {} '{}' is in use by the following service: {}",
                    kind.word(),
                    o.spec["Name"].as_str().unwrap_or(""),
                    users.join(", ")
                )));
            }
            kind.map_mut(c).remove(&o.meta.id);
            c.bump();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_swarmkits_rule() {
        assert!(valid_name("favorite_character") && valid_name("a.b-c") && valid_name("x"));
        assert!(!valid_name("") && !valid_name("-a") && !valid_name("a/b") && !valid_name(&"a".repeat(65)));
    }
}
