//! Request decoding shared by handlers: query parameters (repeated keys kept, Docker's boolean
//! spellings) and JSON bodies that fail as Docker-style 400s, tolerant of unknown fields.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Query parameters in order, with repeated keys.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(q) =
            RawQuery::from_request_parts(parts, state).await.map_err(|e| ApiError::bad_request(e.to_string()))?;
        let pairs = q.map(|q| url_pairs(&q)).unwrap_or_default();
        Ok(Self(pairs))
    }
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    urlencoding::decode(&s).map(|c| c.into_owned()).unwrap_or(s)
}

impl Params {
    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// An integer parameter: absent or empty is `None`; anything else that is not a number is a
    /// 400, as dockerd answers (`t=AAA`).
    pub fn int<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: strconv.Atoi: parsing {v:?}: invalid syntax"))
            }),
        }
    }

    /// Docker's boolean: absent, empty, `0`, `false`, `no`, `none` are false.
    pub fn bool(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no" | "none"),
        }
    }
}

/// Parses a JSON body; an empty body becomes `T::default()`.
pub fn json_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Like [`json_body`], with the top-level keys matched to `fields` case-insensitively, as Go's
/// decoder in dockerd matches them (docker-py sends an exec's `detachKeys` so).
pub fn json_body_folded<T: DeserializeOwned + Default>(body: &Bytes, fields: &[&str]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if let Some(map) = value.as_object_mut() {
        crate::engine::go_json::fold_keys(map, fields);
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keys_case_insensitively_as_go_does() -> Result<(), ApiError> {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "PascalCase")]
        struct B {
            detach_keys: Option<String>,
            tty: Option<bool>,
        }
        let b: B =
            json_body_folded(&Bytes::from_static(br#"{"detachKeys":"ctrl-p","TTY":true}"#), &["DetachKeys", "Tty"])?;
        assert_eq!((b.detach_keys.as_deref(), b.tty), (Some("ctrl-p"), Some(true)));
        // The exact spelling wins over a folded one.
        let b: B = json_body_folded(&Bytes::from_static(br#"{"detachkeys":"a","DetachKeys":"b"}"#), &["DetachKeys"])?;
        assert_eq!(b.detach_keys.as_deref(), Some("b"));
        // The names come from the type itself.
        assert_eq!(crate::engine::go_json::field_names::<B>(), &["DetachKeys", "Tty"]);
        assert!(
            crate::engine::go_json::field_names::<bollard_stubs::models::HostConfig>().contains(&"CpuRealtimePeriod")
        );
        Ok(())
    }

    #[test]
    fn keeps_repeated_keys_and_decodes() {
        let p = Params(url_pairs("names=busybox%3Alatest&names=a+b&force=1&x"));
        assert_eq!(p.all("names"), vec!["busybox:latest".to_string(), "a b".to_string()]);
        assert!(p.bool("force"));
        assert!(!p.bool("x"));
        assert!(!p.bool("missing"));
    }
}
