//! Docker's `filters` query parameter: a JSON object of key → values, in either the current
//! (`{"k":["v"]}`) or the legacy (`{"k":{"v":true}}`) shape.

use std::collections::BTreeMap;

use super::EngineError;

/// Parsed filters.
#[derive(Debug, Clone, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the raw parameter; refuses keys outside `allowed`.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, EngineError> {
        let raw = match raw.map(str::trim) {
            None | Some("") => return Ok(Self::default()),
            Some(r) => r,
        };
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| EngineError::InvalidArgument(format!("invalid filter: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| EngineError::InvalidArgument("invalid filter: expected a JSON object".into()))?;
        let mut out = BTreeMap::new();
        for (k, v) in obj {
            if !allowed.contains(&k.as_str()) {
                return Err(EngineError::InvalidArgument(format!("invalid filter '{k}'")));
            }
            let values: Vec<String> = match v {
                serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
                serde_json::Value::Object(o) => {
                    o.iter().filter(|(_, b)| b.as_bool().unwrap_or(false)).map(|(s, _)| s.clone()).collect()
                }
                serde_json::Value::String(s) => vec![s.clone()],
                _ => return Err(EngineError::InvalidArgument(format!("invalid filter value for '{k}'"))),
            };
            out.insert(k.clone(), values);
        }
        Ok(Self(out))
    }

    /// The values given for `key` (empty if none).
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean filter (`dangling=true`): `None` if absent, an error if not a boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, EngineError> {
        match self.get(key).first().map(String::as_str) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(v) => Err(EngineError::InvalidArgument(format!("invalid filter '{key}={v}'"))),
        }
    }

    /// Whether filter `key` is absent or one of its values passes `ok`.
    pub fn any(&self, key: &str, ok: impl Fn(&str) -> bool) -> bool {
        let v = self.get(key);
        v.is_empty() || v.iter().any(|x| ok(x))
    }

    /// Whether a JSON `Labels` object satisfies every `label=` filter of `key`.
    pub fn json_labels_match(&self, key: &str, labels: &serde_json::Value) -> bool {
        let labels: std::collections::HashMap<String, String> = labels
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
            .unwrap_or_default();
        self.labels_match(key, Some(&labels))
    }

    /// Whether `labels` satisfies every `label=` filter (`key` or `key=value`).
    pub fn labels_match(&self, key: &str, labels: Option<&std::collections::HashMap<String, String>>) -> bool {
        self.get(key).iter().all(|f| {
            let (k, v) = match f.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (f.as_str(), None),
            };
            match (labels.and_then(|l| l.get(k)), v) {
                (Some(_), None) => true,
                (Some(actual), Some(want)) => actual == want,
                (None, _) => false,
            }
        })
    }
}

/// Prune's `until`: whether an RFC 3339 creation time lies before `until` (Unix seconds); an
/// unreadable time counts as old, no `until` as always.
pub fn created_before(created: &str, until: Option<f64>) -> bool {
    until.is_none_or(|u| {
        chrono::DateTime::parse_from_rfc3339(created).map(|t| (t.timestamp() as f64) < u).unwrap_or(true)
    })
}

/// Shell-style glob match where `*` does not cross `/` (Go's `path.Match`, as Docker uses).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') => (0..=t.len()).take_while(|&i| i == 0 || t[i - 1] != b'/').any(|i| go(&p[1..], &t[i..])),
            Some(b'?') => !t.is_empty() && t[0] != b'/' && go(&p[1..], &t[1..]),
            Some(&c) => t.first() == Some(&c) && go(&p[1..], &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_shapes_and_refuses_unknown_keys() {
        let f = Filters::parse(Some(r#"{"dangling":["true"],"label":{"a=b":true}}"#), &["dangling", "label"])
            .expect("valid");
        assert_eq!(f.bool("dangling").expect("bool"), Some(true));
        assert_eq!(f.get("label"), ["a=b".to_string()]);
        assert!(Filters::parse(Some(r#"{"nope":["x"]}"#), &["dangling"]).is_err());
        assert!(Filters::parse(Some("{not json"), &["dangling"]).is_err());
    }

    #[test]
    fn glob_does_not_cross_slashes() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("skiff-test/*", "skiff-test/debian"));
        assert!(!glob_match("*", "skiff-test/debian"));
        assert!(glob_match("*/*:bookworm", "skiff-test/debian:bookworm"));
    }
}
