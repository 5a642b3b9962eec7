//! `docker load`: imports docker-archive (`manifest.json`) and OCI image-layout (`index.json`) tars.
//!
//! The archive is spooled once into staging, each file hashed on the way (the outer tar's paths are
//! only map keys, never filesystem paths). Layers are unpacked and verified against the config's
//! `diff_ids` before anything gets a name in the store; on any failure nothing of this load remains.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::platform::Platform;
use super::progress::Progress;
use super::reference::ImageRef;
use super::{now_rfc3339, Engine, EngineError};
use crate::store::compression::Compression;
use crate::store::digest::{Digest, HashingWriter};
use crate::store::layer_sink::LayerSink;
use crate::store::model::{
    Descriptor, ImageConfigFile, ImageRecord, Index, LayerRef, Manifest, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST,
};
use crate::store::Store;

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

struct Spooled {
    path: PathBuf,
    digest: Digest,
    size: u64,
    /// The file unpacked as a layer while it was spooled, if it was large enough to be one.
    unpacking: RefCell<Option<LayerSink>>,
}

/// Entries at least this large are unpacked as layers while they are spooled (configs and
/// manifests are far smaller; an entry that turns out not to be a layer costs only the attempt).
const SPECULATE_FROM: u64 = 1024 * 1024;

/// How much of an entry is read, written and handed to the unpacker at a time.
const CHUNK: usize = 256 * 1024;

/// The archive's files, by normalised path.
struct Spool {
    dir: PathBuf,
    files: HashMap<String, Spooled>,
    links: HashMap<String, String>,
}

impl Spool {
    fn get(&self, name: &str) -> Result<&Spooled, EngineError> {
        let mut key = normalise(name).ok_or_else(|| bad(format!("invalid path {name:?} in archive")))?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&key) {
                return Ok(f);
            }
            match self.links.get(&key) {
                Some(t) => key = t.clone(),
                None => break,
            }
        }
        Err(bad(format!("file {name:?} referenced by the archive's manifest is missing")))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, EngineError> {
        let f = self.get(name)?;
        if f.size > 16 * 1024 * 1024 {
            return Err(bad(format!("{name} is too large for a manifest or config")));
        }
        fs::read(&f.path).map_err(|e| EngineError::Internal(format!("reading spooled {name}: {e}")))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(msg.into())
}

/// Lexically normalises an archive path; `None` if it climbs out of the archive.
fn normalise(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// Reads up to [`CHUNK`] bytes (fewer only at the end).
fn read_chunk<R: Read>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut chunk = Vec::with_capacity(CHUNK);
    r.take(CHUNK as u64).read_to_end(&mut chunk)?;
    Ok(chunk)
}

fn spool<R: Read>(store: &Store, reader: R) -> Result<Spool, EngineError> {
    let dir = store.staging_path("load");
    fs::create_dir_all(&dir).map_err(|e| EngineError::Internal(format!("creating load staging: {e}")))?;
    let mut spool = Spool { dir, files: HashMap::new(), links: HashMap::new() };
    // `docker load` accepts a compressed archive as well as a plain one.
    let (_, reader) = crate::store::compression::decompress(std::io::BufReader::with_capacity(256 * 1024, reader))
        .map_err(|e| bad(format!("reading archive: {e}")))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| bad(format!("invalid tar archive: {e}")))?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| bad(format!("invalid tar archive: {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = normalise(&raw) else { return Err(bad(format!("invalid path {raw:?} in archive"))) };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let path = spool.dir.join(n.to_string());
                let f = File::create(&path).map_err(|e| EngineError::Internal(format!("spooling: {e}")))?;
                let mut w = HashingWriter::new(f);
                let sink = if entry.size() >= SPECULATE_FROM { store.layer_sink().ok() } else { None };
                loop {
                    let chunk = read_chunk(&mut entry).map_err(|e| bad(format!("reading archive entry {raw}: {e}")))?;
                    if chunk.is_empty() {
                        break;
                    }
                    w.write_all(&chunk).map_err(|e| EngineError::Internal(format!("spooling: {e}")))?;
                    if let Some(sink) = &sink {
                        sink.send_blocking(chunk.into());
                    }
                }
                let (_, digest, size) = w.finish();
                spool.files.insert(name, Spooled { path, digest, size, unpacking: RefCell::new(sink) });
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target =
                    entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
                let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                    name.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string())
                } else {
                    String::new()
                };
                if let Some(t) = normalise(&format!("{base}/{target}")) {
                    spool.links.insert(name, t);
                }
            }
            _ => {}
        }
    }
    Ok(spool)
}

/// One image found in an archive, ready to import.
struct Candidate {
    config: Digest,
    config_bytes: Vec<u8>,
    /// Existing manifest (OCI archives) or `None` (synthesized for docker-archives).
    manifest: Option<(Digest, String)>,
    layers: Vec<(String, Option<Digest>)>,
    tags: Vec<ImageRef>,
    /// The image index it is one platform of (its bytes, checked against its digest).
    index: Option<Vec<u8>>,
    /// Another platform than the one the name goes to: loaded silently.
    sibling: bool,
}

fn docker_candidates(spool: &Spool) -> Result<Vec<Candidate>, EngineError> {
    let bytes = spool.read("manifest.json")?;
    let entries: Vec<ArchiveManifestEntry> =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid manifest.json: {e}")))?;
    entries
        .into_iter()
        .map(|e| {
            let config_bytes = spool.read(&e.config)?;
            let tags = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| ImageRef::parse(t).map_err(|err| bad(format!("invalid tag {t:?} in manifest.json: {err}"))))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Candidate {
                config: Digest::of(&config_bytes),
                config_bytes,
                manifest: None,
                layers: e.layers.into_iter().map(|l| (l, None)).collect(),
                tags,
                index: None,
                sibling: false,
            })
        })
        .collect()
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// An index entry that is not an image (a build's attestation manifest).
fn is_attestation(d: &Descriptor) -> bool {
    d.annotations.as_ref().is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
        || d.platform.as_ref().is_some_and(|p| p.os == "unknown")
}

/// One entry of the OCI layout to read: the descriptor, the name it inherits, and the index it is
/// a platform of (with whether it is the platform the name goes to).
struct Pending {
    desc: Descriptor,
    name: Option<String>,
    index: Option<Vec<u8>>,
    sibling: bool,
}

fn oci_candidates(spool: &Spool, platform: Option<&Platform>) -> Result<Vec<Candidate>, EngineError> {
    let index: Index =
        serde_json::from_slice(&spool.read("index.json")?).map_err(|e| bad(format!("invalid index.json: {e}")))?;
    let mut out = Vec::new();
    let mut queue: Vec<Pending> =
        index.manifests.into_iter().map(|desc| Pending { desc, name: None, index: None, sibling: false }).collect();
    while let Some(Pending { desc, name: inherited_name, index: in_index, sibling }) = queue.pop() {
        let ann = desc.annotations.clone().unwrap_or_default();
        let name = ann
            .get("io.containerd.image.name")
            .cloned()
            .or_else(|| {
                ann.get("org.opencontainers.image.ref.name").filter(|n| n.contains('/') || n.contains(':')).cloned()
            })
            .or(inherited_name);
        let bytes = spool.read(&blob_name(&desc.digest))?;
        if Digest::of(&bytes) != desc.digest {
            return Err(bad(format!("blob {} does not match its digest", desc.digest)));
        }
        if desc.media_type == OCI_INDEX || desc.media_type == DOCKER_MANIFEST_LIST {
            let nested: Index =
                serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid index {}: {e}", desc.digest)))?;
            // Every platform the archive carries is loaded (`--platform`: only that one); the name
            // goes to the engine's platform (or the one asked for), else to the first.
            let wanted = platform.cloned().unwrap_or_else(Platform::host);
            let matches = |m: &Descriptor| {
                m.platform.as_ref().is_some_and(|p| wanted.matches_parts(&p.os, &p.architecture, p.variant.as_deref()))
            };
            let loadable: Vec<Descriptor> = nested
                .manifests
                .into_iter()
                .filter(|m| !is_attestation(m) && spool.get(&blob_name(&m.digest)).is_ok())
                .filter(|m| platform.is_none() || matches(m))
                .collect();
            let Some(named) = loadable.iter().find(|m| matches(m)).or(loadable.first()).map(|m| m.digest.clone())
            else {
                let what = name.as_deref().unwrap_or("the archive's image");
                return Err(match platform {
                    Some(p) => {
                        EngineError::NotFound(format!("{what} has no image for platform {} in this archive", p.text()))
                    }
                    None => bad(format!("index {} lists no image this archive contains", desc.digest)),
                });
            };
            for m in loadable {
                let sibling = m.digest != named;
                queue.push(Pending {
                    desc: m,
                    name: if sibling { None } else { name.clone() },
                    index: Some(bytes.clone()),
                    sibling,
                });
            }
            continue;
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid manifest {}: {e}", desc.digest)))?;
        let config_bytes = spool.read(&blob_name(&manifest.config.digest))?;
        let tags = match name {
            Some(n) => vec![ImageRef::parse(&n).map_err(|e| bad(format!("invalid image name {n:?}: {e}")))?],
            None => Vec::new(),
        };
        out.push(Candidate {
            config: manifest.config.digest.clone(),
            config_bytes,
            manifest: Some((
                desc.digest.clone(),
                manifest.media_type.clone().unwrap_or_else(|| desc.media_type.clone()),
            )),
            layers: manifest.layers.iter().map(|l| (blob_name(&l.digest), Some(l.digest.clone()))).collect(),
            tags,
            index: in_index,
            sibling,
        });
    }
    Ok(out)
}

/// Imports every image of the archive read from `reader`; returns the familiar names (or ids) loaded.
/// With `platform`, only images of that platform are loaded (a 404 when the archive has none).
pub fn load_archive<R: Read>(
    engine: &Arc<Engine>,
    reader: R,
    platform: Option<&Platform>,
    progress: &Progress,
) -> Result<Vec<String>, EngineError> {
    let store = &engine.store;
    let started = std::time::Instant::now();
    let spool = spool(store, reader)?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis(), files = spool.files.len(), "archive spooled");
    // Docker 25+ archives carry both; the OCI index keeps the original manifests byte for byte.
    let mut candidates = if spool.files.contains_key("index.json") {
        oci_candidates(&spool, platform)?
    } else if spool.files.contains_key("manifest.json") {
        docker_candidates(&spool)?
    } else {
        return Err(bad("invalid archive: it has neither manifest.json (docker-archive) nor index.json (OCI layout)"));
    };
    if let Some(p) = platform {
        candidates.retain(|c| {
            serde_json::from_slice::<ImageConfigFile>(&c.config_bytes).is_ok_and(|config| p.matches(&config))
        });
        if candidates.is_empty() {
            return Err(EngineError::NotFound(format!("the archive has no image for platform {}", p.text())));
        }
    }
    let mut loaded = Vec::new();
    for c in candidates {
        loaded.extend(import_candidate(engine, &spool, c, progress)?);
    }
    Ok(loaded)
}

fn import_candidate(
    engine: &Arc<Engine>,
    spool: &Spool,
    c: Candidate,
    progress: &Progress,
) -> Result<Vec<String>, EngineError> {
    let store = &engine.store;
    if Digest::of(&c.config_bytes) != c.config {
        return Err(bad(format!("config {} does not match its digest", c.config)));
    }
    let config: ImageConfigFile =
        serde_json::from_slice(&c.config_bytes).map_err(|e| bad(format!("invalid image config: {e}")))?;
    if config.rootfs.diff_ids.len() != c.layers.len() {
        return Err(bad(format!(
            "image config lists {} layers but the manifest has {}",
            config.rootfs.diff_ids.len(),
            c.layers.len()
        )));
    }
    let mut blobs_touched: Vec<Digest> = vec![c.config.clone()];
    let mut layers_touched: Vec<Digest> = Vec::new();
    let result = (|| {
        let mut pin = store.pin();
        pin.add(&c.config);
        let mut layer_refs = Vec::new();
        let mut adopted: HashSet<Digest> = HashSet::new();
        for ((name, expected), diff_id) in c.layers.iter().zip(&config.rootfs.diff_ids) {
            let f = spool.get(name)?;
            if let Some(exp) = expected {
                if exp != &f.digest {
                    return Err(bad(format!("layer {name} does not match its digest {exp}")));
                }
            }
            pin.add(&f.digest);
            pin.add(diff_id);
            blobs_touched.push(f.digest.clone());
            layers_touched.push(diff_id.clone());
            let short = diff_id.short().to_string();
            progress.bytes(&short, "Loading layer", 0, f.size);
            let source = if store.has_blob(&f.digest) { store.blob_path(&f.digest) } else { f.path.clone() };
            let unpack_started = std::time::Instant::now();
            // The layer unpacked while it was spooled, if that worked; otherwise from the file.
            let staged = f.unpacking.borrow_mut().take().and_then(|sink| sink.finish().ok());
            let unpacked = match staged {
                Some(staged) => store.commit_staged(staged, Some(diff_id)).map(|(meta, _)| meta),
                None => store.unpack_file(&source, diff_id),
            };
            let meta = unpacked.map_err(|e| match e {
                crate::store::StoreError::DigestMismatch { .. } => {
                    bad(format!("layer {name}: content does not match diff_id {diff_id}"))
                }
                e if EngineError::is_bad_input(&e) => bad(format!("refusing layer {name}: {e}")),
                e => e.into(),
            })?;
            tracing::debug!(layer = %diff_id, elapsed_ms = unpack_started.elapsed().as_millis(), "layer unpacked");
            progress.bytes(&short, "Loading layer", f.size, f.size);
            let mut head = [0u8; 4];
            let compression = File::open(&source)
                .and_then(|mut fh| fh.read(&mut head))
                .map(|n| Compression::detect(&head[..n]))
                .unwrap_or(Compression::None);
            layer_refs.push(LayerRef {
                blob: f.digest.clone(),
                media_type: compression.oci_layer_media_type().to_string(),
                blob_size: f.size,
                diff_id: meta.diff_id,
                unpacked_size: meta.size,
            });
            if adopted.insert(f.digest.clone()) && !store.has_blob(&f.digest) {
                // The spool file becomes the blob (a rename, no copy). A later reference to the
                // same archive path finds it in the store.
                store.adopt_blob(&f.path, &f.digest, None)?;
            }
        }
        store.put_blob(&c.config_bytes)?;
        let (manifest, manifest_media_type) = match &c.manifest {
            Some((d, mt)) => {
                let bytes = spool.read(&blob_name(d))?;
                let stored = store.put_blob(&bytes)?;
                pin.add(&stored);
                (stored, mt.clone())
            }
            None => {
                let m = synthesize_manifest(&c.config, c.config_bytes.len() as u64, &layer_refs);
                let bytes = serde_json::to_vec(&m).map_err(|e| EngineError::Internal(e.to_string()))?;
                let stored = store.put_blob(&bytes)?;
                pin.add(&stored);
                (stored, OCI_MANIFEST.to_string())
            }
        };
        blobs_touched.push(manifest.clone());
        let index = match &c.index {
            Some(bytes) => {
                let stored = store.put_blob(bytes)?;
                pin.add(&stored);
                blobs_touched.push(stored.clone());
                Some(stored)
            }
            None => None,
        };
        let record = ImageRecord {
            id: c.config.clone(),
            manifest,
            manifest_media_type,
            layers: layer_refs,
            repo_digests: Vec::new(),
            added: now_rfc3339(),
            last_tag_time: (!c.tags.is_empty()).then(now_rfc3339),
            parent: None,
            unsynced_boot: None,
            index,
        };
        let tags: Vec<String> = c.tags.iter().filter_map(ImageRef::full_tagged).collect();
        store.commit_image(record, &tags)?;
        Ok(())
    })();
    // On success this drops only what the image did not end up using (e.g. a second copy of an
    // image already stored under other blobs); on failure, everything this import added.
    store.discard_unreferenced(blobs_touched, layers_touched);
    result?;
    let mut names = Vec::new();
    if c.sibling {
        engine.events.image("load", c.config.as_str(), c.config.as_str());
        return Ok(names);
    }
    if c.tags.is_empty() {
        progress.stream(format!("Loaded image ID: {}\n", c.config));
        engine.events.image("load", c.config.as_str(), c.config.as_str());
        names.push(c.config.to_string());
    }
    for t in &c.tags {
        progress.stream(format!("Loaded image: {t}\n"));
        engine.events.image("load", c.config.as_str(), &t.to_string());
        names.push(t.to_string());
    }
    Ok(names)
}

/// An OCI manifest for an image that arrived without one (docker-archive).
pub fn synthesize_manifest(config: &Digest, config_size: u64, layers: &[LayerRef]) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor {
            media_type: OCI_CONFIG.to_string(),
            digest: config.clone(),
            size: config_size,
            platform: None,
            annotations: None,
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: l.media_type.clone(),
                digest: l.blob.clone(),
                size: l.blob_size,
                platform: None,
                annotations: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn archive_paths_never_climb_out() {
        assert_eq!(normalise("./a/../b/layer.tar").as_deref(), Some("b/layer.tar"));
        assert_eq!(normalise("../x"), None);
    }
}
