//! Docker's image reference grammar (distribution/reference), checked by hand. oci-spec checks it
//! with one regex whose Unicode-aware `\w` compiles into a 4.4 MiB automaton, kept in a static for
//! the engine's whole life: more than the rest of an idle engine's heap. The grammar is small:
//!
//! ```text
//! reference := name [":" tag] ["@" digest]
//! name      := [domain "/"] path ("/" path)*
//! domain    := label ("." label)* [":" port]     label := alnum | alnum [A-Za-z0-9-]* alnum (any case)
//! path      := lower+ (sep lower+)*               lower := [a-z0-9]   sep := "." | "_" | "__" | "-"+
//! tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest    := algorithm ":" hex{32,}             algorithm := word ([-_+.] word)*   word := [A-Za-z][A-Za-z0-9]*
//! ```
//!
//! Splitting the domain off and the `docker.io/library/` defaults follow Docker's
//! `splitDockerDomain`.

/// Why a string is not a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// It does not follow the grammar.
    #[error("invalid reference format")]
    Format,
    /// It would follow the grammar in lower case.
    #[error("repository name must be lowercase")]
    Uppercase,
    /// The repository path is longer than Docker allows.
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// A known digest algorithm with the wrong number of hex digits.
    #[error("invalid checksum digest length")]
    DigestLength,
    /// A digest algorithm registries do not use.
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
}

/// A reference split into its normalised parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// `docker.io` when none was given.
    pub registry: String,
    /// With `library/` for Docker Hub's official images.
    pub repository: String,
    /// `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `algorithm:hex`.
    pub digest: Option<String>,
}

const NAME_MAX: usize = 255;

/// Checks `s` against the grammar and normalises it.
pub fn parse(s: &str) -> Result<Parts, Invalid> {
    let (name, tag, digest) = split(s);
    if !follows_grammar(name, tag, digest) {
        let lower = s.to_ascii_lowercase();
        let (n, t, d) = split(&lower);
        return Err(if lower != s && follows_grammar(n, t, d) { Invalid::Uppercase } else { Invalid::Format });
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_MAX {
        return Err(Invalid::NameTooLong);
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Invalid::Uppercase);
    }
    if let Some(d) = digest {
        let (algorithm, hex) = d.split_once(':').ok_or(Invalid::Format)?;
        let want = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(Invalid::DigestUnsupported),
        };
        if hex.len() != want {
            return Err(Invalid::DigestLength);
        }
    }
    let tag = match (tag, digest) {
        (None, None) => Some("latest".to_string()),
        (t, _) => t.map(str::to_string),
    };
    Ok(Parts { registry, repository, tag, digest: digest.map(str::to_string) })
}

/// `name[:tag]` → the name and the tag (a `:` followed by no `/`).
fn split_tag(s: &str) -> (&str, Option<&str>) {
    match s.rfind(':') {
        Some(i) if !s[i..].contains('/') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    }
}

/// Docker's `splitDockerDomain`: the first component is a registry only if it looks like one.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.to_ascii_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".to_string();
    }
    let remainder =
        if domain == "docker.io" && !remainder.contains('/') { format!("library/{remainder}") } else { remainder };
    (domain, remainder)
}

/// `name[:tag][@digest]` → its three parts (the grammar forbids `@` elsewhere).
fn split(s: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    let (name, tag) = split_tag(rest);
    (name, tag, digest)
}

fn follows_grammar(name: &str, tag: Option<&str>, digest: Option<&str>) -> bool {
    is_name(name) && tag.is_none_or(is_tag) && digest.is_none_or(is_digest)
}

fn is_name(name: &str) -> bool {
    let mut parts = name.split('/');
    let Some(first) = parts.next() else { return false };
    let rest: Vec<&str> = parts.collect();
    let first_ok = is_path(first) || (!rest.is_empty() && is_domain(first));
    first_ok && rest.iter().all(|p| is_path(p))
}

fn is_path(p: &str) -> bool {
    let b = p.as_bytes();
    let lower = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && lower(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep_start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                while i < b.len() && b[i] == b'_' && i - sep_start < 2 {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

fn is_domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    host.split('.').all(label_ok) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    (1..=128).contains(&b.len()) && word(&b[0]) && b[1..].iter().all(|c| word(c) || *c == b'.' || *c == b'-')
}

fn is_digest(d: &str) -> bool {
    let Some((algorithm, hex)) = d.split_once(':') else { return false };
    let word = |w: &str| {
        let b = w.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    };
    algorithm.split(['-', '_', '+', '.']).all(word) && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str, registry: &str, repository: &str, tag: Option<&str>, digest: Option<&str>) {
        let p = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            (p.registry.as_str(), p.repository.as_str(), p.tag.as_deref(), p.digest.as_deref()),
            (registry, repository, tag, digest),
            "{s}"
        );
    }

    /// The cases oci-spec's own tests give, which the regex this module replaces passed.
    #[test]
    fn valid_references_normalise_as_docker_does() {
        let f64 = "f".repeat(64);
        let f128 = "f".repeat(128);
        ok("busybox", "docker.io", "library/busybox", Some("latest"), None);
        ok("test.com:tag", "docker.io", "library/test.com", Some("tag"), None);
        ok("test.com:5000", "docker.io", "library/test.com", Some("5000"), None);
        ok("test.com/repo:tag", "test.com", "repo", Some("tag"), None);
        ok("test:5000/repo", "test:5000", "repo", Some("latest"), None);
        ok("test:5000/repo:tag", "test:5000", "repo", Some("tag"), None);
        let d = format!("sha256:{f64}");
        ok(&format!("test:5000/repo@{d}"), "test:5000", "repo", None, Some(&d));
        ok(&format!("test:5000/repo:tag@{d}"), "test:5000", "repo", Some("tag"), Some(&d));
        ok("lowercase:Uppercase", "docker.io", "library/lowercase", Some("Uppercase"), None);
        ok("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", Some("latest"), None);
        ok(
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("some-long-tag"),
            None,
        );
        ok(
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            Some("test.example.com"),
            None,
        );
        ok("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", Some("xn--n3h.com"), None);
        let d = format!("sha512:{f128}");
        ok(
            &format!("xn--7o8h.com/myimage:xn--7o8h.com@{d}"),
            "xn--7o8h.com",
            "myimage",
            Some("xn--7o8h.com"),
            Some(&d),
        );
        ok("foo_bar.com:8080", "docker.io", "library/foo_bar.com", Some("8080"), None);
        ok("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", Some("8080"), None);
        ok("opensuse/leap:15.3", "docker.io", "opensuse/leap", Some("15.3"), None);
        ok("localhost/app", "localhost", "app", Some("latest"), None);
        ok("localhost:5000", "docker.io", "library/localhost", Some("5000"), None);
        ok("index.docker.io/user/app", "docker.io", "user/app", Some("latest"), None);
        ok("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000", "a/b", Some("v1"), None);
        ok("a__b/c--d/e.f_g:1", "docker.io", "a__b/c--d/e.f_g", Some("1"), None);
    }

    #[test]
    fn invalid_references_are_refused_with_dockers_reasons() {
        let f64 = "f".repeat(64);
        for bad in [
            ":justtag",
            &format!("@sha256:{f64}"),
            "aa/asdf$$^/aa",
            "a b",
            "x:",
            "a___b",
            "a._b",
            "-a",
            "a-",
            "a//b",
            "/a",
            "a/",
            "a:b:c",
            "a@sha256:xyz",
            "-host.com/a",
            "host.com:/a",
            &format!("a:{}", "t".repeat(129)),
            "a:.tag",
            "é",
            "busybox:tâg",
        ] {
            assert_eq!(parse(bad), Err(Invalid::Format), "{bad}");
        }
        assert_eq!(parse("Uppercase:tag"), Err(Invalid::Uppercase));
        assert_eq!(parse("test:5000/Uppercase/lowercase:tag"), Err(Invalid::Uppercase));
        assert_eq!(parse(&"a".repeat(256)), Err(Invalid::NameTooLong));
        assert_eq!(parse(&format!("repo@sha256:{}", "f".repeat(34))), Err(Invalid::DigestLength));
        assert_eq!(parse(&format!("validname@invaliddigest:{f64}")), Err(Invalid::DigestUnsupported));
        // Docker takes an upper-case first component for a registry.
        ok("Uppercase/lowercase:tag", "Uppercase", "lowercase", Some("tag"), None);
    }
}
