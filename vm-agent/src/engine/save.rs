//! `docker save`: writes images as one tar that is both an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/`) and a docker-archive (`manifest.json`), as Docker 25+ does. Blobs are
//! written exactly as stored, so a save/load round trip keeps ids, digests and layers. A
//! multi-platform image is saved as its index (every stored platform) unless `--platform` picks
//! some; `manifest.json` (read by older loaders) lists the tagged platform only.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use super::images::resolve;
use super::platform::{self, Platform};
use super::platform_group;
use super::reference::ImageRef;
use super::{Engine, EngineError};
use crate::store::digest::Digest;
use crate::store::model::{Descriptor, Index, OCI_INDEX};
use crate::store::StoredImage;

/// One image of a save: the image named, the tags it is saved under, and its other platforms
/// (a multi-platform image saved whole).
#[derive(Debug)]
struct Planned {
    image: Arc<StoredImage>,
    refs: Vec<ImageRef>,
    others: Vec<Arc<StoredImage>>,
}

/// What one `save` will write, resolved before the response starts.
#[derive(Debug)]
pub struct SavePlan {
    images: Vec<Planned>,
}

/// Resolves `names` (with `platforms`: only those platforms of each); an unknown name or a
/// platform an image does not have fails the whole save before any byte is sent.
pub fn plan(engine: &Engine, names: &[String], platforms: &[Platform]) -> Result<SavePlan, EngineError> {
    if names.is_empty() {
        return Err(EngineError::InvalidArgument("no images specified".into()));
    }
    let mut by_id: BTreeMap<Digest, Planned> = BTreeMap::new();
    for n in names {
        let named = resolve(engine, n)?;
        // A tag the name is, saved with whichever platforms of the image are picked.
        let tag = ImageRef::parse(n)
            .ok()
            .filter(|r| r.full_tagged().is_some_and(|t| engine.store.tags().get(&t) == Some(&named.record.id)));
        let members = platform_group::members(&engine.store, &named);
        let chosen: Vec<(Arc<StoredImage>, Vec<Arc<StoredImage>>)> = if platforms.is_empty() {
            vec![(named.clone(), members[1..].to_vec())]
        } else {
            let picked: Vec<_> =
                members.into_iter().filter(|m| platforms.iter().any(|p| p.matches(&m.config))).collect();
            if picked.is_empty() {
                let wanted: Vec<String> = platforms.iter().map(Platform::text).collect();
                return Err(EngineError::NotFound(format!(
                    "image {n} has no stored platform {} (it is {})",
                    wanted.join(", "),
                    platform::of_image(&named.config)
                )));
            }
            picked.into_iter().map(|m| (m, Vec::new())).collect()
        };
        for (img, others) in chosen {
            let entry = by_id.entry(img.record.id.clone()).or_insert_with(|| Planned {
                image: img.clone(),
                refs: Vec::new(),
                others,
            });
            if let Some(r) = &tag {
                if !entry.refs.contains(r) {
                    entry.refs.push(r.clone());
                }
            }
        }
    }
    Ok(SavePlan { images: by_id.into_values().collect() })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn header(size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Appends blob `d` once.
fn write_blob<W: Write>(
    store: &crate::store::Store,
    tar: &mut tar::Builder<W>,
    written: &mut BTreeSet<Digest>,
    d: &Digest,
) -> Result<(), EngineError> {
    if !written.insert(d.clone()) {
        return Ok(());
    }
    let io = |e: std::io::Error| EngineError::Internal(format!("writing archive: {e}"));
    let f = store.open_blob(d)?;
    let size = f.metadata().map_err(io)?.len();
    let mut h = header(size, tar::EntryType::Regular, 0o644);
    tar.append_data(&mut h, blob_name(d), f).map_err(io)
}

/// Writes the archive for `plan` to `out`.
pub fn write_archive<W: Write>(engine: &Engine, plan: &SavePlan, out: W) -> Result<(), EngineError> {
    let store = &engine.store;
    let io = |e: std::io::Error| EngineError::Internal(format!("writing archive: {e}"));
    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(0, tar::EntryType::Directory, 0o755);
        tar.append_data(&mut h, dir, std::io::empty()).map_err(io)?;
    }
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let mut index = Index { schema_version: 2, media_type: Some(OCI_INDEX.to_string()), manifests: Vec::new() };
    let mut docker_manifest = Vec::new();
    for planned in &plan.images {
        let (img, refs) = (&planned.image, &planned.refs);
        let r = &img.record;
        for m in std::iter::once(img).chain(&planned.others) {
            let r = &m.record;
            let blobs =
                std::iter::once(&r.id).chain(r.layers.iter().map(|l| &l.blob)).chain(std::iter::once(&r.manifest));
            for d in blobs {
                write_blob(store, &mut tar, &mut written, d)?;
            }
        }
        let members: Vec<Arc<StoredImage>> = std::iter::once(img.clone()).chain(planned.others.clone()).collect();
        let top = match platform_group::index_for(store, &members)? {
            // A multi-platform image: index.json names its index, which names each platform.
            Some((bytes, media_type)) => {
                let digest = Digest::of(&bytes);
                if written.insert(digest.clone()) {
                    let mut h = header(bytes.len() as u64, tar::EntryType::Regular, 0o644);
                    tar.append_data(&mut h, blob_name(&digest), &bytes[..]).map_err(io)?;
                }
                (media_type, digest, bytes.len() as u64)
            }
            None => {
                let size = store.open_blob(&r.manifest)?.metadata().map_err(io)?.len();
                (r.manifest_media_type.clone(), r.manifest.clone(), size)
            }
        };
        let descriptor = |annotations| Descriptor {
            media_type: top.0.clone(),
            digest: top.1.clone(),
            size: top.2,
            platform: None,
            annotations,
        };
        if refs.is_empty() {
            index.manifests.push(descriptor(None));
        }
        for t in refs {
            let full = format!("{}:{}", t.full_name(), t.tag().unwrap_or("latest"));
            let ann = std::collections::BTreeMap::from([
                ("io.containerd.image.name".to_string(), full),
                ("org.opencontainers.image.ref.name".to_string(), t.tag().unwrap_or("latest").to_string()),
            ]);
            index.manifests.push(descriptor(Some(ann)));
        }
        docker_manifest.push(ArchiveManifestEntry {
            config: blob_name(&r.id),
            repo_tags: refs.iter().map(ToString::to_string).collect(),
            layers: r.layers.iter().map(|l| blob_name(&l.blob)).collect(),
        });
    }
    let enc = |e: serde_json::Error| EngineError::Internal(e.to_string());
    let files: [(&str, Vec<u8>); 3] = [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json", serde_json::to_vec(&index).map_err(enc)?),
        ("manifest.json", serde_json::to_vec(&docker_manifest).map_err(enc)?),
    ];
    for (name, bytes) in files {
        let mut h = header(bytes.len() as u64, tar::EntryType::Regular, 0o644);
        tar.append_data(&mut h, name, &bytes[..]).map_err(io)?;
    }
    tar.into_inner().map_err(io)?.flush().map_err(io)?;
    for Planned { image: img, refs, .. } in &plan.images {
        let name = refs.first().map_or_else(|| img.record.id.to_string(), ToString::to_string);
        engine.events.image("save", img.record.id.as_str(), &name);
    }
    Ok(())
}
