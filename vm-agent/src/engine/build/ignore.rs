//! `.dockerignore`: moby's pattern syntax. Lines are trimmed, `#` starts a comment, `!` makes an
//! exception, patterns are cleaned paths relative to the context root (a leading `/` is dropped),
//! `*` and `?` stay within one path component, `**` spans any number of them, `[…]` is a class
//! and `\` escapes. A path is excluded when the last pattern that matches it (or one of its parent
//! directories) is not an exception.

use regex::Regex;

/// One pattern.
#[derive(Debug)]
struct Pattern {
    regex: Regex,
    exclusion: bool,
}

/// The compiled patterns of a `.dockerignore`.
#[derive(Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Compiles the file's text. A pattern that cannot be compiled is an error naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let mut p = line.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let cleaned = clean(p);
            if cleaned.is_empty() {
                continue;
            }
            let regex =
                Regex::new(&to_regex(&cleaned)).map_err(|e| format!("invalid .dockerignore pattern {p:?}: {e}"))?;
            patterns.push(Pattern { regex, exclusion });
        }
        Ok(Self { patterns })
    }

    /// Whether `path` (relative, `/`-separated) is excluded, itself or through a parent directory.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        let mut excluded = false;
        for p in &self.patterns {
            if p.exclusion != excluded {
                continue; // it cannot change the verdict
            }
            let hit = p.regex.is_match(&path) || parents(&path).any(|parent| p.regex.is_match(parent));
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether any pattern is an exception (a parent directory then cannot be skipped whole).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

/// `a/b/c` → `a`, `a/b`.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Go's `filepath.Clean` for relative slash paths, without a leading `/`.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.join("/")
}

/// The pattern as an anchored regex (moby's patternmatcher translation).
fn to_regex(pattern: &str) -> String {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                // `**/` at any point matches zero or more directories.
                if chars.get(i + 1) == Some(&'/') {
                    i += 1;
                    re.push_str("(.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let mut j = i + 1;
                let mut class = String::from("[");
                if chars.get(j) == Some(&'^') || chars.get(j) == Some(&'!') {
                    class.push('^');
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        j += 1;
                    }
                    if chars[j] == '\\' || chars[j] == '[' {
                        class.push('\\');
                    }
                    class.push(chars[j]);
                    j += 1;
                }
                if j < chars.len() {
                    class.push(']');
                    re.push_str(&class);
                    i = j;
                } else {
                    re.push_str("\\[");
                }
            }
            '\\' => {
                i += 1;
                if let Some(n) = chars.get(i) {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn docker_pys_own_dockerignore_case() {
        let i = ig("ignored\nDockerfile\n.dockerignore\n ignored-with-spaces \n!ignored/subdir/excepted-file\n! ignored/subdir/excepted-with-spaces  \n\n#*\n");
        for kept in ["not-ignored", "#file.txt", "ignored/subdir/excepted-file", "ignored/subdir/excepted-with-spaces"]
        {
            assert!(!i.excludes(kept), "{kept} should be kept");
        }
        for gone in ["Dockerfile", ".dockerignore", "ignored-with-spaces", "ignored/subdir/file", "ignored"] {
            assert!(i.excludes(gone), "{gone} should be excluded");
        }
        assert!(i.has_exceptions());
    }

    #[test]
    fn stars_questions_classes_and_double_stars() {
        let i = ig("*.log\n/build/\ndocs/**/*.md\n!docs/keep/README.md\nsrc/?.tmp\n[ab]*.bin\n**/node_modules\n");
        assert!(i.excludes("x.log") && !i.excludes("sub/x.log"));
        assert!(i.excludes("build/out/a.o"));
        assert!(i.excludes("docs/a.md") && i.excludes("docs/x/y/z.md") && !i.excludes("docs/keep/README.md"));
        assert!(i.excludes("src/a.tmp") && !i.excludes("src/ab.tmp"));
        assert!(i.excludes("a1.bin") && !i.excludes("c1.bin"));
        assert!(i.excludes("node_modules/x") && i.excludes("web/app/node_modules/y"));
        assert!(!i.excludes("main.rs"));
    }

    #[test]
    fn blank_and_whitespace_only_lines_mean_nothing() {
        let i = ig("   \n\n\t\t\n\t     \n");
        assert!(!i.excludes("Dockerfile"));
        assert!(!i.has_exceptions());
    }
}
