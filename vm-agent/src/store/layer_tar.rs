//! An overlayfs upper directory written as an OCI layer tar: what a container changed becomes a
//! layer (`docker commit`, and each build step). Overlay whiteouts (0/0 character devices) become
//! `.wh.NAME` entries, opaque directories get a `.wh..wh..opq` marker, hard links stay links, and
//! extended attributes (file capabilities…) travel as PAX `SCHILY.xattr.*` records; overlay's own
//! `trusted.overlay.*` attributes never do. Device nodes, sockets and FIFOs are left out (the
//! store refuses device nodes in layers). The order is sorted, so the same tree gives the same
//! bytes and the same diff id.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Writes the tree under `upper` as a layer tar into `out`. `skip` names paths (relative to the
/// upper directory, without a leading `/`) that must not be part of the layer.
pub fn write_layer_tar<W: Write>(upper: &Path, out: W, skip: &[&str]) -> io::Result<W> {
    let mut writer = LayerWriter { builder: tar::Builder::new(out), links: HashMap::new(), skip };
    writer.dir(upper, Path::new(""))?;
    writer.builder.into_inner()
}

struct LayerWriter<'a, W: Write> {
    builder: tar::Builder<W>,
    /// (device, inode) of files with several links → the first path written.
    links: HashMap<(u64, u64), PathBuf>,
    skip: &'a [&'a str],
}

impl<W: Write> LayerWriter<'_, W> {
    fn dir(&mut self, dir: &Path, rel: &Path) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
        names.sort_by_key(|e| e.file_name());
        if !rel.as_os_str().is_empty() && is_opaque(dir) {
            self.empty_file(&rel.join(".wh..wh..opq"), &fs::symlink_metadata(dir)?)?;
        }
        for entry in names {
            let path = entry.path();
            let name = rel.join(entry.file_name());
            if self.skip.iter().any(|s| Path::new(s) == name) {
                continue;
            }
            let meta = fs::symlink_metadata(&path)?;
            let kind = meta.file_type();
            if kind.is_char_device() && meta.rdev() == 0 {
                let mut whiteout = std::ffi::OsString::from(".wh.");
                whiteout.push(entry.file_name());
                self.empty_file(&rel.join(whiteout), &meta)?;
            } else if kind.is_dir() {
                let mut h = header(&meta, EntryType::Directory);
                self.xattrs(&path)?;
                self.builder.append_data(&mut h, &name, io::empty())?;
                self.dir(&path, &name)?;
            } else if kind.is_symlink() {
                let mut h = header(&meta, EntryType::Symlink);
                self.xattrs(&path)?;
                self.builder.append_link(&mut h, &name, fs::read_link(&path)?)?;
            } else if kind.is_file() {
                if meta.nlink() > 1 {
                    if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                        let mut h = header(&meta, EntryType::Link);
                        h.set_size(0);
                        let first = first.clone();
                        self.builder.append_link(&mut h, &name, first)?;
                        continue;
                    }
                    self.links.insert((meta.dev(), meta.ino()), name.clone());
                }
                let mut h = header(&meta, EntryType::Regular);
                self.xattrs(&path)?;
                self.builder.append_data(&mut h, &name, File::open(&path)?)?;
            } else {
                tracing::warn!(path = %name.display(), "left out of the layer: devices, sockets and FIFOs are not kept");
            }
        }
        Ok(())
    }

    fn empty_file(&mut self, name: &Path, like: &fs::Metadata) -> io::Result<()> {
        let mut h = header(like, EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o600);
        self.builder.append_data(&mut h, name, io::empty())
    }

    /// A PAX header with the entry's extended attributes, written just before the entry.
    fn xattrs(&mut self, path: &Path) -> io::Result<()> {
        let Ok(names) = xattr::list(path) else { return Ok(()) };
        let mut records = Vec::new();
        for name in names {
            let n = name.as_bytes();
            if n.starts_with(b"trusted.overlay.") {
                continue;
            }
            if let Ok(Some(value)) = xattr::get(path, &name) {
                records.extend(pax_record(&[b"SCHILY.xattr.", n].concat(), &value));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_size(records.len() as u64);
        h.set_mode(0o644);
        self.builder.append_data(&mut h, "PaxHeader", records.as_slice())
    }
}

fn header(meta: &fs::Metadata, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    h.set_entry_type(kind);
    if kind != EntryType::Regular {
        h.set_size(0);
    }
    h
}

fn is_opaque(dir: &Path) -> bool {
    matches!(xattr::get(dir, OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
}

/// One PAX record: `LEN KEY=VALUE\n`, where LEN counts the whole record, itself included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let r = pax_record(b"SCHILY.xattr.user.a", b"1");
        let text = String::from_utf8_lossy(&r);
        let len: usize = text.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        assert_eq!(len, r.len(), "{text:?}");
        let long = pax_record(b"k", &[b'x'; 95]);
        let len: usize = String::from_utf8_lossy(&long).split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        assert_eq!(len, long.len());
    }

    #[test]
    fn a_tree_becomes_sorted_entries_with_whiteouts_links_and_skips() {
        let upper = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let u = upper.path();
        fs::create_dir_all(u.join("etc")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(u.join("etc/b"), "bee").unwrap_or_else(|e| panic!("{e}"));
        fs::write(u.join("etc/hosts"), "").unwrap_or_else(|e| panic!("{e}"));
        fs::hard_link(u.join("etc/b"), u.join("etc/c")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("b", u.join("etc/a")).unwrap_or_else(|e| panic!("{e}"));
        // A whiteout as overlayfs writes it (needs CAP_MKNOD: these tests run as root).
        let whiteout = u.join("gone");
        nix::sys::stat::mknod(&whiteout, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes = write_layer_tar(u, Vec::new(), &["etc/hosts"]).unwrap_or_else(|e| panic!("{e}"));
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, EntryType, String)> = archive
            .entries()
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| {
                let e = e.unwrap_or_else(|e| panic!("{e}"));
                let link = e.link_name().ok().flatten().map(|l| l.display().to_string()).unwrap_or_default();
                (e.path().map(|p| p.display().to_string()).unwrap_or_default(), e.header().entry_type(), link)
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("etc".to_string(), EntryType::Directory, String::new()),
                ("etc/a".to_string(), EntryType::Symlink, "b".to_string()),
                ("etc/b".to_string(), EntryType::Regular, String::new()),
                ("etc/c".to_string(), EntryType::Link, "etc/b".to_string()),
                (".wh.gone".to_string(), EntryType::Regular, String::new()),
            ]
        );
    }
}
