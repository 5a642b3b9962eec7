//! `COPY` and `ADD` as a layer: the sources (context paths with wildcards, a stage's or image's
//! files, here-documents, for `ADD` local archives to unpack and URLs to download) planned into
//! tar entries under the destination, hashed for the cache (content, names, modes and owners;
//! not modification times), then written. Parent directories that already exist in the image
//! keep their owner and mode.

use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use super::tree::{self, Kind, Node, Tree};
use super::view::ImageView;

/// Owner and mode overrides (`--chown`, `--chmod`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Perms {
    /// `--chown` as numbers (default root).
    pub owner: Option<(u32, u32)>,
    /// `--chmod` bits.
    pub mode: Option<u32>,
}

/// One source, resolved.
#[derive(Debug, Clone)]
pub enum Source {
    /// An entry of the tree copied from (its path there, symlinks resolved) and its name.
    Path { rel: String, name: String },
    /// Bytes to write as a file (a here-document, a downloaded URL).
    Data { name: String, bytes: Vec<u8>, mode: u32, mtime: u64 },
}

/// What goes into the layer (`src`: a path in the tree copied from).
#[derive(Debug)]
enum Item {
    Dir { dest: String, mode: u32, uid: u32, gid: u32, mtime: u64 },
    File { src: String, dest: String, mode: u32, uid: u32, gid: u32, mtime: u64, size: u64 },
    Data { dest: String, bytes: Vec<u8>, mode: u32, uid: u32, gid: u32, mtime: u64 },
    Symlink { dest: String, target: PathBuf, uid: u32, gid: u32, mtime: u64 },
    Archive { src: String, dest: String },
}

/// A planned copy: the layer's entries.
#[derive(Debug)]
pub struct Plan {
    items: Vec<Item>,
}

/// Resolves the sources matching `pattern` in `tree` (wildcards `*`, `?`, `[…]` per path
/// component). A pattern that matches nothing is an error naming it.
pub fn resolve(tree: &dyn Tree, pattern: &str) -> Result<Vec<Source>, String> {
    let clean = clean_rel(pattern).ok_or_else(|| format!("forbidden path outside the build context: {pattern}"))?;
    if !clean.contains(['*', '?', '[']) {
        let rel = tree::resolve(tree, &clean).ok_or_else(|| not_found(pattern))?;
        let name = Path::new(&clean).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(vec![Source::Path { rel, name }]);
    }
    let re = regex::Regex::new(&format!("^{}$", glob_regex(&clean)))
        .map_err(|e| format!("invalid pattern {pattern}: {e}"))?;
    let mut found = Vec::new();
    let depth = clean.split('/').count();
    walk_names(tree, "", depth, &mut |rel| {
        if re.is_match(rel) {
            // A match that is a symlink is followed, inside the tree.
            if let Some(resolved) = tree::resolve(tree, rel) {
                let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
                found.push((rel.to_string(), Source::Path { rel: resolved, name }));
            }
        }
    });
    found.sort_by(|a, b| a.0.cmp(&b.0));
    if found.is_empty() {
        return Err(not_found(pattern));
    }
    Ok(found.into_iter().map(|(_, s)| s).collect())
}

fn not_found(pattern: &str) -> String {
    format!("file not found in build context or excluded by .dockerignore: stat {pattern}: file does not exist")
}

fn walk_names(t: &dyn Tree, rel: &str, depth: usize, f: &mut dyn FnMut(&str)) {
    if depth == 0 {
        return;
    }
    let Ok(names) = t.list(rel) else { return };
    for name in names {
        let r = tree::join(rel, &name);
        f(&r);
        if t.lstat(&r).is_some_and(|n| n.kind == Kind::Dir) {
            walk_names(t, &r, depth - 1, f);
        }
    }
}

/// A relative, cleaned path; `None` for one that climbs out.
pub fn clean_rel(p: &str) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(out.join("/"))
}

fn glob_regex(p: &str) -> String {
    let mut re = String::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'^') || chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                for n in chars.by_ref() {
                    if n == ']' {
                        break;
                    }
                    if n == '\\' || n == '[' {
                        re.push('\\');
                    }
                    re.push(n);
                }
                re.push(']');
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    re
}

/// Plans copying `sources` (from `tree`) to `dest` (absolute). `add` unpacks local archives.
/// `image` is the view of the image the layer goes on (for the destination and its parents).
pub fn plan(
    tree: &dyn Tree,
    sources: &[Source],
    dest: &str,
    perms: Perms,
    add: bool,
    image: &ImageView,
) -> io::Result<Plan> {
    let (uid, gid) = perms.owner.unwrap_or((0, 0));
    let dest_is_dir = dest.ends_with('/')
        || sources.len() > 1
        || image.stat(dest).is_some_and(|m| m.is_dir())
        || matches!(sources, [Source::Path { rel, .. }]
            if tree.lstat(rel).is_some_and(|n| n.kind == Kind::Dir) && !(add && is_archive(tree, rel)));
    let dest = format!("/{}", clean_rel(dest).unwrap_or_default());
    let mut items = Vec::new();
    // The destination's parents: as the image has them, or new (root, 0755).
    let target_dir = if dest_is_dir { dest.clone() } else { parent_of(&dest) };
    let mut at = String::new();
    for part in target_dir.split('/').filter(|p| !p.is_empty()) {
        at = format!("{at}/{part}");
        match image.stat(&at) {
            Some(m) if m.is_dir() => items.push(Item::Dir {
                dest: at.clone(),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: u64::try_from(m.mtime()).unwrap_or(0),
            }),
            _ => {
                // Only the destination directory itself takes --chown; new parents are root's.
                let own = at == target_dir;
                items.push(Item::Dir {
                    dest: at.clone(),
                    mode: 0o755,
                    uid: if own { uid } else { 0 },
                    gid: if own { gid } else { 0 },
                    mtime: now(),
                });
            }
        }
    }
    for s in sources {
        let to = if dest_is_dir { join(&dest, source_name(s)) } else { dest.clone() };
        source_items(tree, s, to, &dest, perms, add, &mut items)?;
    }
    Ok(Plan { items })
}

/// Hex sha256 over the sources' names, types, modes and contents, wherever they go (the
/// instruction and the parent image, which decide that, key the cache with it). `--chown` and
/// `--chmod` are left to the key too.
pub fn source_hash(tree: &dyn Tree, sources: &[Source], add: bool) -> io::Result<String> {
    let mut items = Vec::new();
    for s in sources {
        let name = source_name(s);
        if let Source::Path { rel, .. } = s {
            if let Some(node) = tree.lstat(rel).filter(|n| n.kind == Kind::Dir) {
                items.push(Item::Dir { dest: name.to_string(), mode: node.mode, uid: 0, gid: 0, mtime: 0 });
            }
        }
        source_items(tree, s, name.to_string(), name, Perms::default(), add, &mut items)?;
    }
    hash_items(tree, &items)
}

fn source_name(s: &Source) -> &str {
    match s {
        Source::Path { name, .. } | Source::Data { name, .. } => name,
    }
}

/// What copying one source adds: a file (or here-document) as `to`; a directory's contents, or
/// an archive `ADD` unpacks, under `dir`.
fn source_items(
    tree: &dyn Tree,
    s: &Source,
    to: String,
    dir: &str,
    perms: Perms,
    add: bool,
    items: &mut Vec<Item>,
) -> io::Result<()> {
    let (uid, gid) = perms.owner.unwrap_or((0, 0));
    match s {
        Source::Data { bytes, mode, mtime, .. } => items.push(Item::Data {
            dest: to,
            bytes: bytes.clone(),
            mode: perms.mode.unwrap_or(*mode),
            uid,
            gid,
            mtime: *mtime,
        }),
        Source::Path { rel, name } => {
            let node = tree
                .lstat(rel)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file")))?;
            match node.kind {
                Kind::Other => {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name} is not a regular file")))
                }
                Kind::Dir => tree_items(tree, rel, dir, perms, items)?,
                _ if add && is_archive(tree, rel) => {
                    items.push(Item::Archive { src: rel.clone(), dest: dir.to_string() })
                }
                _ => items.push(file_item(rel, &node, to, perms)),
            }
        }
    }
    Ok(())
}

fn file_item(rel: &str, node: &Node, dest: String, perms: Perms) -> Item {
    let (uid, gid) = perms.owner.unwrap_or((0, 0));
    Item::File {
        src: rel.to_string(),
        dest,
        mode: perms.mode.unwrap_or(node.mode),
        uid,
        gid,
        mtime: node.mtime,
        size: node.size,
    }
}

/// A directory's contents (not the directory itself) under `dest`.
fn tree_items(tree: &dyn Tree, dir: &str, dest: &str, perms: Perms, items: &mut Vec<Item>) -> io::Result<()> {
    let (uid, gid) = perms.owner.unwrap_or((0, 0));
    for name in tree.list(dir)? {
        let to = join(dest, &name);
        let rel = tree::join(dir, &name);
        let Some(node) = tree.lstat(&rel) else { continue };
        match node.kind {
            Kind::Dir => {
                items.push(Item::Dir {
                    dest: to.clone(),
                    mode: perms.mode.unwrap_or(node.mode),
                    uid,
                    gid,
                    mtime: node.mtime,
                });
                tree_items(tree, &rel, &to, perms, items)?;
            }
            Kind::Symlink => {
                items.push(Item::Symlink { dest: to, target: tree.read_link(&rel)?, uid, gid, mtime: node.mtime });
            }
            Kind::File => items.push(file_item(&rel, &node, to, perms)),
            Kind::Other => {}
        }
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn parent_of(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].to_string(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A tar archive (plain, gzip or zstd) that `ADD` unpacks.
fn is_archive(tree: &dyn Tree, rel: &str) -> bool {
    if tree.lstat(rel).map(|n| n.kind) != Some(Kind::File) {
        return false;
    }
    let Ok(f) = tree.open(rel) else { return false };
    let Ok((_, mut decoded)) = crate::store::compression::decompress(io::BufReader::new(f)) else { return false };
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match decoded.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got == 512 && &head[257..262] == b"ustar"
}

fn hash_items(tree: &dyn Tree, items: &[Item]) -> io::Result<String> {
    let mut h = Sha256::new();
    for item in items {
        match item {
            Item::Dir { dest, mode, uid, gid, .. } => h.update(format!("d {dest} {mode:o} {uid}:{gid}\n")),
            Item::Symlink { dest, target, uid, gid, .. } => {
                h.update(format!("l {dest} {} {uid}:{gid}\n", target.display()));
            }
            Item::Data { dest, bytes, mode, uid, gid, .. } => {
                h.update(format!("f {dest} {mode:o} {uid}:{gid} {}\n", bytes.len()));
                h.update(Sha256::digest(bytes));
            }
            Item::File { src, dest, mode, uid, gid, size, .. } => {
                h.update(format!("f {dest} {mode:o} {uid}:{gid} {size}\n"));
                h.update(tree.content_digest(src)?);
            }
            Item::Archive { src, dest } => {
                h.update(format!("a {dest}\n"));
                h.update(tree.content_digest(src)?);
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Writes the planned layer into `out`, reading files from `tree`.
pub fn write<W: Write>(tree: &dyn Tree, plan: &Plan, out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    for item in &plan.items {
        match item {
            Item::Dir { dest, mode, uid, gid, mtime } => {
                let mut h = header(EntryType::Directory, *mode, *uid, *gid, *mtime, 0);
                b.append_data(&mut h, rel(dest), io::empty())?;
            }
            Item::File { src, dest, mode, uid, gid, mtime, size } => {
                let mut h = header(EntryType::Regular, *mode, *uid, *gid, *mtime, *size);
                b.append_data(&mut h, rel(dest), tree.open(src)?.take(*size))?;
            }
            Item::Data { dest, bytes, mode, uid, gid, mtime } => {
                let mut h = header(EntryType::Regular, *mode, *uid, *gid, *mtime, bytes.len() as u64);
                b.append_data(&mut h, rel(dest), bytes.as_slice())?;
            }
            Item::Symlink { dest, target, uid, gid, mtime } => {
                let mut h = header(EntryType::Symlink, 0o777, *uid, *gid, *mtime, 0);
                b.append_link(&mut h, rel(dest), target)?;
            }
            Item::Archive { src, dest } => unpack_into(&mut b, tree.open(src)?, dest)?,
        }
    }
    b.into_inner()
}

fn rel(dest: &str) -> &str {
    dest.trim_start_matches('/')
}

fn header(kind: EntryType, mode: u32, uid: u32, gid: u32, mtime: u64, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

/// `ADD archive.tar /dest`: the archive's entries re-rooted under `dest` (the store checks them
/// as it checks any layer: no escapes, no devices).
fn unpack_into<W: Write>(b: &mut tar::Builder<W>, src: impl Read, dest: &str) -> io::Result<()> {
    let (_, decoded) = crate::store::compression::decompress(io::BufReader::new(src))?;
    let mut archive = tar::Archive::new(decoded);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(clean) = clean_rel(&path) else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("archive entry {path} climbs out")));
        };
        if clean.is_empty() {
            continue;
        }
        let to = join(dest, &clean);
        let mut h = entry.header().clone();
        match h.entry_type() {
            EntryType::Symlink | EntryType::Link => {
                let target = entry.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                let target = if h.entry_type() == EntryType::Link {
                    PathBuf::from(rel(&join(dest, &clean_rel(&target.to_string_lossy()).unwrap_or_default())))
                } else {
                    target
                };
                b.append_link(&mut h, rel(&to), target)?;
            }
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => {}
            _ => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                h.set_size(data.len() as u64);
                b.append_data(&mut h, rel(&to), data.as_slice())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn paths_are_cleaned_and_escapes_refused() {
        assert_eq!(clean_rel("./a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(clean_rel("/abs/x").as_deref(), Some("abs/x"));
        assert_eq!(clean_rel("../x"), None);
        assert_eq!(glob_regex("src/*.rs"), "src/[^/]*\\.rs");
    }

    #[test]
    fn wildcards_and_symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = root.path();
        fs::create_dir_all(r.join("src/sub")).unwrap_or_else(|e| panic!("{e}"));
        for f in ["src/a.rs", "src/b.rs", "src/c.txt", "src/sub/d.rs"] {
            fs::write(r.join(f), f).unwrap_or_else(|e| panic!("{e}"));
        }
        std::os::unix::fs::symlink("/etc", r.join("escape")).unwrap_or_else(|e| panic!("{e}"));
        let t = tree::FsTree::new(r);
        let names: Vec<String> = resolve(&t, "src/*.rs")
            .unwrap_or_default()
            .iter()
            .map(|s| match s {
                Source::Path { name, .. } => name.clone(),
                Source::Data { name, .. } => name.clone(),
            })
            .collect();
        assert_eq!(names, vec!["a.rs", "b.rs"]);
        assert!(resolve(&t, "nosuch*").is_err());
        assert!(resolve(&t, "../outside").is_err());
        // An absolute symlink restarts at the context root: /etc is not the host's.
        assert!(resolve(&t, "escape/passwd").is_err());
        assert!(resolve(&t, "escape*").is_err());
    }
}
