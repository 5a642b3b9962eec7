//! Platforms (`os/arch[/variant]`) as the API and Dockerfiles spell them, compared with what an
//! image's config says. Architecture names are normalised (`aarch64` = `arm64`); a variant only
//! counts when both sides name one.

use crate::runtime::binfmt::{host_arch, normalize_arch};
use crate::store::model::ImageConfigFile;

use super::EngineError;

/// A parsed platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// OCI's name (`amd64`, `arm64`); `None`: any.
    pub arch: Option<String>,
    /// `v8`, `v7`…
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os[/arch[/variant]]`.
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        let mut parts = s.split('/');
        let os = parts.next().unwrap_or_default().to_ascii_lowercase();
        if os.is_empty() || parts.clone().count() > 2 {
            return Err(EngineError::InvalidArgument(format!(
                "\"{s}\": unknown operating system or architecture: invalid argument"
            )));
        }
        let arch = parts.next().filter(|a| !a.is_empty()).map(|a| normalize_arch(&a.to_ascii_lowercase()).to_string());
        let variant = parts.next().filter(|v| !v.is_empty()).map(str::to_string);
        Ok(Self { os, arch, variant })
    }

    /// Parses a `platform` query value of the newer endpoints (save, load, push, image inspect):
    /// the docker CLI sends an OCI platform as JSON there; `os[/arch[/variant]]` is accepted too.
    pub fn parse_query(s: &str) -> Result<Self, EngineError> {
        if !s.trim_start().starts_with('{') {
            return Self::parse(s);
        }
        let p: crate::store::model::Platform =
            serde_json::from_str(s).map_err(|e| EngineError::InvalidArgument(format!("invalid platform {s}: {e}")))?;
        let os = if p.os.is_empty() { "linux" } else { p.os.as_str() };
        let mut text = os.to_string();
        if !p.architecture.is_empty() {
            text = format!("{text}/{}", p.architecture);
            if let Some(v) = p.variant.filter(|v| !v.is_empty()) {
                text = format!("{text}/{v}");
            }
        }
        Self::parse(&text)
    }

    /// The engine's own platform.
    pub fn host() -> Self {
        Self { os: "linux".into(), arch: Some(host_arch().into()), variant: None }
    }

    /// This platform with the engine's architecture where it names none.
    pub fn or_host_arch(mut self) -> Self {
        if self.arch.is_none() {
            self.arch = Some(host_arch().into());
        }
        self
    }

    /// The architecture asked for, or the engine's.
    pub fn arch_or_host(&self) -> &str {
        self.arch.as_deref().unwrap_or(host_arch())
    }

    /// Whether an image with `config` is of this platform.
    pub fn matches(&self, config: &ImageConfigFile) -> bool {
        self.matches_parts(&config.os, &config.architecture, config.variant.as_deref())
    }

    /// Whether `os`/`arch`/`variant` (an image's, an index entry's) is this platform.
    pub fn matches_parts(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        let os = if os.is_empty() { "linux" } else { os };
        self.os.eq_ignore_ascii_case(os)
            && self.arch.as_deref().is_none_or(|a| a == normalize_arch(arch))
            && self.variant.as_deref().is_none_or(|v| variant.is_none_or(|have| have.is_empty() || have == v))
    }

    /// `os/arch[/variant]`.
    pub fn text(&self) -> String {
        let mut s = format!("{}/{}", self.os, self.arch_or_host());
        if let Some(v) = &self.variant {
            s.push('/');
            s.push_str(v);
        }
        s
    }
}

/// An image's platform as `os/arch[/variant]`.
pub fn of_image(config: &ImageConfigFile) -> String {
    let os = if config.os.is_empty() { "linux" } else { config.os.as_str() };
    match config.variant.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{}/{v}", normalize_arch(&config.architecture)),
        None => format!("{os}/{}", normalize_arch(&config.architecture)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(arch: &str, variant: Option<&str>) -> ImageConfigFile {
        ImageConfigFile {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn platforms_match_with_normalised_names_and_optional_variants() {
        let arm = Platform::parse("linux/aarch64").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(arm.arch.as_deref(), Some("arm64"));
        assert!(arm.matches(&config("arm64", Some("v8"))));
        assert!(!arm.matches(&config("amd64", None)));
        assert!(Platform::parse("linux/arm64/v8").is_ok_and(|p| p.matches(&config("arm64", None))));
        assert!(Platform::parse("linux").is_ok_and(|p| p.matches(&config("s390x", None))));
        assert!(Platform::parse("").is_err() && Platform::parse("linux/a/b/c").is_err());
        assert_eq!(of_image(&config("aarch64", Some("v8"))), "linux/arm64/v8");
        let json = Platform::parse_query(r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#);
        assert!(json.is_ok_and(|p| p.text() == "linux/arm64/v8"));
        assert!(Platform::parse_query("linux/arm64").is_ok_and(|p| p.arch.as_deref() == Some("arm64")));
        assert!(Platform::parse_query("{").is_err());
    }
}
