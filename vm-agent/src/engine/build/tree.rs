//! A file tree the builder copies from: the build context (an index over the received tar,
//! `context.rs`) or an image's files on the host (`FsTree`, a view from `view.rs`). Paths are
//! relative and `/`-separated (`""` is the root); symlinks are resolved with the tree's root as
//! `/`, so nothing outside it can be reached.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file (a hard link counts as its target).
    File,
    /// A symbolic link.
    Symlink,
    /// Anything else (fifos, sockets): never copied.
    Other,
}

/// One entry's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Its type.
    pub kind: Kind,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds).
    pub mtime: u64,
    /// Size of a regular file.
    pub size: u64,
}

/// Read access to a tree.
pub trait Tree: Send + Sync {
    /// The entry at `rel` itself (a final symlink not followed); `None` if there is none.
    fn lstat(&self, rel: &str) -> Option<Node>;
    /// A symlink's target as written.
    fn read_link(&self, rel: &str) -> io::Result<PathBuf>;
    /// The names in the directory `rel`, sorted.
    fn list(&self, rel: &str) -> io::Result<Vec<String>>;
    /// A regular file's content.
    fn open(&self, rel: &str) -> io::Result<Box<dyn Read + Send + '_>>;
    /// sha256 of a regular file's content (the context knows it from receiving it).
    fn content_digest(&self, rel: &str) -> io::Result<[u8; 32]> {
        content_sha256(self.open(rel)?)
    }
}

/// sha256 of everything `r` reads.
fn content_sha256(mut r: impl Read) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// `a` joined with `b` (either may be the root `""`).
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// `rel` inside `tree`, every symlink on the way (the last one too) resolved as if the tree's
/// root were `/`; the resolved path, or `None` when it does not exist.
pub fn resolve(tree: &dyn Tree, rel: &str) -> Option<String> {
    let mut cur: Vec<String> = Vec::new();
    let mut todo: Vec<String> = rel.split('/').filter(|c| !c.is_empty()).map(str::to_string).rev().collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        cur.push(c);
        let at = cur.join("/");
        let node = tree.lstat(&at)?;
        if node.kind == Kind::Symlink {
            hops += 1;
            if hops > 40 {
                return None;
            }
            cur.pop();
            let target = tree.read_link(&at).ok()?;
            if target.is_absolute() {
                cur.clear();
            }
            for part in target.to_string_lossy().split('/').filter(|p| !p.is_empty()).rev() {
                todo.push(part.to_string());
            }
        }
    }
    Some(cur.join("/"))
}

/// The entry at `rel` with symlinks followed.
pub fn stat(tree: &dyn Tree, rel: &str) -> Option<Node> {
    tree.lstat(&resolve(tree, rel)?)
}

/// A directory on the host (an image view): read with ordinary file calls, as the views are
/// read-only and their paths are resolved by [`resolve`] first.
#[derive(Debug)]
pub struct FsTree {
    root: PathBuf,
}

impl FsTree {
    /// The tree under `root`.
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

impl Tree for FsTree {
    fn lstat(&self, rel: &str) -> Option<Node> {
        let m = fs::symlink_metadata(self.path(rel)).ok()?;
        let t = m.file_type();
        let kind = if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else if t.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        };
        Some(Node {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: u64::try_from(m.mtime()).unwrap_or(0),
            size: m.len(),
        })
    }

    fn read_link(&self, rel: &str) -> io::Result<PathBuf> {
        fs::read_link(self.path(rel))
    }

    fn list(&self, rel: &str) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        Ok(names)
    }

    fn open(&self, rel: &str) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(self.path(rel))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = root.path();
        fs::create_dir_all(r.join("a/b")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(r.join("a/b/f"), "x").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/a/b", r.join("abs")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("../../..", r.join("a/b/up")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/etc", r.join("etc")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap_or_else(|e| panic!("{e}"));
        let t = FsTree::new(r);
        assert_eq!(resolve(&t, "abs/f").as_deref(), Some("a/b/f"));
        assert_eq!(resolve(&t, "a/b/up/a").as_deref(), Some("a"));
        assert_eq!(resolve(&t, "etc/passwd"), None);
        assert_eq!(resolve(&t, "loop"), None);
        assert_eq!(stat(&t, "abs").map(|n| n.kind), Some(Kind::Dir));
        assert_eq!(t.list("a/b").unwrap_or_default(), vec!["f", "up"]);
    }
}
