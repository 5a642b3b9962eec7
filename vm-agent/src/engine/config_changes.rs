//! Dockerfile instructions applied to an image config (`docker commit --change`, `docker import
//! --change`): CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR and
//! STOPSIGNAL, in exec (JSON array) or shell form, with dockerd's wording for what it refuses.

use serde_json::{json, Map, Value};

use super::EngineError;

/// The instructions a change may use (dockerd's list, plus STOPSIGNAL).
const ALLOWED: [&str; 10] =
    ["CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR", "STOPSIGNAL"];

/// Applies `changes` (one instruction each) to `config` (Docker's `Config` object of an image).
pub fn apply(config: &mut Value, changes: &[String]) -> Result<(), EngineError> {
    if !config.is_object() {
        *config = json!({});
    }
    let Some(cfg) = config.as_object_mut() else { return Ok(()) };
    for (n, line) in changes.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let instruction = word.to_ascii_uppercase();
        if !ALLOWED.contains(&instruction.as_str()) {
            let known = ["ADD", "ARG", "COPY", "FROM", "HEALTHCHECK", "MAINTAINER", "RUN", "SHELL"];
            return Err(EngineError::InvalidArgument(if known.contains(&instruction.as_str()) {
                format!("{instruction} is not a valid change command")
            } else {
                format!("dockerfile parse error line {}: unknown instruction: {instruction}", n + 1)
            }));
        }
        if rest.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "dockerfile parse error line {}: {instruction} requires at least one argument",
                n + 1
            )));
        }
        match instruction.as_str() {
            "CMD" => {
                cfg.insert("Cmd".into(), json!(command(rest)));
            }
            "ENTRYPOINT" => {
                cfg.insert("Entrypoint".into(), json!(command(rest)));
            }
            "ENV" => {
                for (k, v) in pairs(rest, "ENV")? {
                    set_env(cfg, &k, &v);
                }
            }
            "LABEL" => {
                let labels = object_at(cfg, "Labels");
                for (k, v) in pairs(rest, "LABEL")? {
                    labels.insert(k, json!(v));
                }
            }
            "EXPOSE" => {
                let ports = object_at(cfg, "ExposedPorts");
                for p in words(rest)? {
                    let p = if p.contains('/') { p.to_ascii_lowercase() } else { format!("{p}/tcp") };
                    let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    if num.parse::<u16>().is_err() || !["tcp", "udp", "sctp"].contains(&proto) {
                        return Err(EngineError::InvalidArgument(format!("invalid containerPort: {num}")));
                    }
                    ports.insert(p.clone(), json!({}));
                }
            }
            "VOLUME" => {
                let list = json_array(rest).unwrap_or_else(|| words(rest).unwrap_or_default());
                let volumes = object_at(cfg, "Volumes");
                for v in list {
                    volumes.insert(v, json!({}));
                }
            }
            "ONBUILD" => {
                let list = cfg.entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(rest));
                }
            }
            "USER" => {
                cfg.insert("User".into(), json!(rest));
            }
            "STOPSIGNAL" => {
                cfg.insert("StopSignal".into(), json!(rest));
            }
            "WORKDIR" => {
                let current = cfg.get("WorkingDir").and_then(Value::as_str).unwrap_or("/").to_string();
                let dir = if rest.starts_with('/') {
                    rest.to_string()
                } else {
                    format!("{}/{rest}", current.trim_end_matches('/'))
                };
                cfg.insert("WorkingDir".into(), json!(dir));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Exec form (`["a","b"]`) as is; shell form wrapped in `/bin/sh -c`.
fn command(rest: &str) -> Vec<String> {
    json_array(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

fn json_array(rest: &str) -> Option<Vec<String>> {
    rest.starts_with('[').then(|| serde_json::from_str::<Vec<String>>(rest).ok()).flatten()
}

/// The object at `cfg[key]`, made one if missing or of another type.
pub(crate) fn object_at<'a>(cfg: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = cfg.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Sets `key=value` in `cfg`'s `Env`, replacing an earlier value of `key`.
pub(crate) fn set_env(cfg: &mut Map<String, Value>, key: &str, value: &str) {
    let env = cfg.entry("Env").or_insert_with(|| json!([]));
    if !env.is_array() {
        *env = json!([]);
    }
    if let Some(list) = env.as_array_mut() {
        list.retain(|e| e.as_str().and_then(|s| s.split_once('=')).map(|(k, _)| k) != Some(key));
        list.push(json!(format!("{key}={value}")));
    }
}

/// `k=v k2="v 2"` pairs, or the legacy `KEY value with spaces` form.
fn pairs(rest: &str, instruction: &str) -> Result<Vec<(String, String)>, EngineError> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if v.trim().is_empty() && instruction == "ENV" {
            return Err(EngineError::InvalidArgument(format!("ENV names can not be blank: {rest}")));
        }
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words(rest)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(EngineError::InvalidArgument(format!(
                "{instruction} names can not be blank: syntax error - can't find = in \"{w}\". Must be of the form: name=value"
            ))),
        })
        .collect()
}

/// Splits on whitespace outside quotes; quotes are removed, a backslash escapes the next character.
fn words(s: &str) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(EngineError::InvalidArgument(format!("unmatched quote in: {s}")));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(changes: &[&str]) -> Result<Value, EngineError> {
        let mut cfg = json!({"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "WorkingDir": "/app"});
        apply(&mut cfg, &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        Ok(cfg)
    }

    #[test]
    fn each_instruction_lands_where_docker_puts_it() {
        let cfg = changed(&[
            "EXPOSE 8000 53/udp",
            "CMD [\"bash\"]",
            "entrypoint /start --now",
            "ENV A=2 B=\"two words\"",
            "ENV LEGACY value with spaces",
            "LABEL com.example=\"x y\" other=1",
            "USER foobar",
            "VOLUME [\"/data\"]",
            "WORKDIR sub",
            "STOPSIGNAL SIGINT",
            "ONBUILD RUN make",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg["ExposedPorts"], json!({"8000/tcp": {}, "53/udp": {}}));
        assert_eq!(cfg["Cmd"], json!(["bash"]));
        assert_eq!(cfg["Entrypoint"], json!(["/bin/sh", "-c", "/start --now"]));
        assert_eq!(cfg["Env"], json!(["PATH=/bin", "A=2", "B=two words", "LEGACY=value with spaces"]));
        assert_eq!(cfg["Labels"], json!({"com.example": "x y", "other": "1"}));
        assert_eq!(cfg["User"], json!("foobar"));
        assert_eq!(cfg["Volumes"], json!({"/data": {}}));
        assert_eq!(cfg["WorkingDir"], json!("/app/sub"));
        assert_eq!(cfg["StopSignal"], json!("SIGINT"));
        assert_eq!(cfg["OnBuild"], json!(["RUN make"]));
    }

    #[test]
    fn refusals_use_dockerds_words() {
        let msg = |c: &[&str]| changed(c).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(msg(&["RUN true"]), "RUN is not a valid change command");
        assert_eq!(msg(&["BOGUS x"]), "dockerfile parse error line 1: unknown instruction: BOGUS");
        assert!(msg(&["EXPOSE http"]).contains("invalid containerPort"));
        assert!(msg(&["LABEL a=\"open"]).contains("unmatched quote"));
    }
}
