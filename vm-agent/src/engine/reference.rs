//! Image references the Docker way: `busybox` is `docker.io/library/busybox:latest`; the store keys
//! tags by the full form and the API shows the familiar one.

use std::fmt;

use oci_client::Reference;

use super::reference_grammar::{Invalid, Parts};

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef(Reference);

/// Why a reference was refused; the text is Docker's.
#[derive(Debug, thiserror::Error)]
#[error("invalid reference format{detail}")]
pub struct BadReference {
    detail: String,
}

impl ImageRef {
    /// Parses and normalises `s` (adds `docker.io`, `library/` and `:latest` where Docker would).
    pub fn parse(s: &str) -> Result<Self, BadReference> {
        if s.is_empty() || s.trim() != s {
            return Err(BadReference { detail: String::new() });
        }
        let parts = super::reference_grammar::parse(s).map_err(|e| BadReference {
            detail: match e {
                Invalid::Format => String::new(),
                Invalid::Uppercase => format!(": repository name ({s}) must be lowercase"),
                e => format!(": {e}"),
            },
        })?;
        let Parts { registry, repository, tag, digest } = parts;
        Ok(Self(match (tag, digest) {
            (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t, d),
            (None, Some(d)) => Reference::with_digest(registry, repository, d),
            (t, None) => Reference::with_tag(registry, repository, t.unwrap_or_else(|| "latest".into())),
        }))
    }

    /// Parses `repo` plus an optional separate `tag` (as `/images/create?fromImage=&tag=` sends them).
    /// A `tag` that looks like a digest pins the digest instead.
    pub fn with_tag(repo: &str, tag: Option<&str>) -> Result<Self, BadReference> {
        match tag.filter(|t| !t.is_empty()) {
            None => Self::parse(repo),
            Some(t) if t.starts_with("sha256:") => Self::parse(&format!("{repo}@{t}")),
            Some(t) => Self::parse(&format!("{repo}:{t}")),
        }
    }

    /// The registry host (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    /// The tag, if any (absent when only a digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    /// The digest, if one was given.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// `registry/repository`, fully qualified.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// `registry/repository:tag` — the key the store uses for tags (`None` for digest-only refs).
    pub fn full_tagged(&self) -> Option<String> {
        self.tag().map(|t| format!("{}:{t}", self.full_name()))
    }

    /// The repository as users type it (`busybox`, `127.0.0.1:5000/busybox`).
    pub fn familiar_name(&self) -> String {
        familiar_repo(&self.full_name())
    }

    /// The underlying distribution reference.
    pub fn as_oci(&self) -> &Reference {
        &self.0
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar_name())?;
        if let Some(t) = self.tag() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = self.digest() {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Shortens a fully qualified `docker.io/library/x[:tag]` to `x[:tag]` (and `docker.io/u/x` to `u/x`).
pub fn familiar_repo(full: &str) -> String {
    match full.strip_prefix("docker.io/") {
        Some(rest) => rest.strip_prefix("library/").filter(|r| !r.contains('/')).unwrap_or(rest).to_string(),
        None => full.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r = ImageRef::parse("busybox").expect("valid");
        assert_eq!(r.full_tagged().as_deref(), Some("docker.io/library/busybox:latest"));
        assert_eq!(r.to_string(), "busybox:latest");
        let r = ImageRef::parse("127.0.0.1:5000/a/b:v1").expect("valid");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.to_string(), "127.0.0.1:5000/a/b:v1");
        assert_eq!(familiar_repo("docker.io/user/app:1"), "user/app:1");
    }

    #[test]
    fn refuses_bad_references_with_dockers_words() {
        let e = ImageRef::parse("Bad:tag").expect_err("uppercase");
        assert!(e.to_string().starts_with("invalid reference format"), "{e}");
        assert!(ImageRef::parse("a b").is_err());
        assert!(ImageRef::parse("").is_err());
        assert!(ImageRef::parse("x:").is_err());
    }
}
