//! Images made here rather than pulled or loaded (`docker commit`, `docker import`, build steps):
//! an optional parent, at most one new layer, a new image config. Committed like a load: blobs and
//! layer first, the record last, and everything this attempt added removed again if it fails, so a
//! crash or an error never leaves a half image listed.

use std::io::Read;
use std::sync::Arc;

use serde_json::{json, Value};

use super::load::synthesize_manifest;
use super::{now_rfc3339, Engine, EngineError};
use crate::store::digest::Digest;
use crate::store::model::{ImageRecord, LayerRef, OCI_MANIFEST};
use crate::store::{StoreError, StoredImage};

/// What to make.
#[derive(Debug, Default)]
pub struct ImageSpec {
    /// The image it builds on (`None`: from scratch).
    pub parent: Option<Arc<StoredImage>>,
    /// The image config's `config` section (Docker's `ContainerConfig`-shaped JSON: `Cmd`,
    /// `Env`, …).
    pub config: Value,
    /// `Author`.
    pub author: String,
    /// `Comment` (the image's, and its new history entry's).
    pub comment: String,
    /// The history entry's `created_by`.
    pub created_by: String,
    /// Full tagged references to point at it.
    pub tags: Vec<String>,
    /// For an image without a parent: its architecture (default: the engine's).
    pub architecture: Option<String>,
}

/// A layer blob being written (a tar, plain or compressed): hashed on the way in.
pub type LayerWriter = crate::store::BlobWriter;

/// Makes the image: `layer` (a finished [`LayerWriter`], or none for a config-only image) on top
/// of the parent's layers. Blocking. Returns the new image's id.
pub fn create(engine: &Engine, spec: ImageSpec, layer: Option<LayerWriter>) -> Result<Digest, EngineError> {
    let store = &engine.store;
    let mut blobs_touched: Vec<Digest> = Vec::new();
    let mut layers_touched: Vec<Digest> = Vec::new();
    let result = (|| {
        let mut pin = store.pin();
        let mut layers: Vec<LayerRef> = spec.parent.as_ref().map(|p| p.record.layers.clone()).unwrap_or_default();
        if let Some(w) = layer {
            let (blob, blob_size) = store.commit_blob(w, None)?;
            pin.add(&blob);
            blobs_touched.push(blob.clone());
            let (meta, compression) = store.add_layer(&store.blob_path(&blob)).map_err(|e| match e {
                e if EngineError::is_bad_input(&e) => EngineError::InvalidArgument(format!("refusing the layer: {e}")),
                e => e.into(),
            })?;
            pin.add(&meta.diff_id);
            layers_touched.push(meta.diff_id.clone());
            layers.push(LayerRef {
                blob,
                media_type: compression.oci_layer_media_type().to_string(),
                blob_size,
                diff_id: meta.diff_id,
                unpacked_size: meta.size,
            });
        }
        let config_bytes = config_json(store, &spec, &layers)?;
        let config = store.put_blob(&config_bytes)?;
        pin.add(&config);
        blobs_touched.push(config.clone());
        let manifest = synthesize_manifest(&config, config_bytes.len() as u64, &layers);
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| EngineError::Internal(e.to_string()))?;
        let manifest = store.put_blob(&manifest_bytes)?;
        pin.add(&manifest);
        blobs_touched.push(manifest.clone());
        let record = ImageRecord {
            id: config.clone(),
            manifest,
            manifest_media_type: OCI_MANIFEST.to_string(),
            layers,
            repo_digests: Vec::new(),
            added: now_rfc3339(),
            last_tag_time: (!spec.tags.is_empty()).then(now_rfc3339),
            parent: spec.parent.as_ref().map(|p| p.record.id.clone()),
            unsynced_boot: None,
            index: None,
        };
        store.commit_image(record, &spec.tags)?;
        Ok(config)
    })();
    // On success this drops only what the image did not end up using; on failure, all it added.
    store.discard_unreferenced(blobs_touched, layers_touched);
    result
}

/// The new image config: the parent's (unknown fields kept) or a fresh one, with the new
/// `config`, author, creation time, history entry and layer list.
fn config_json(store: &crate::store::Store, spec: &ImageSpec, layers: &[LayerRef]) -> Result<Vec<u8>, EngineError> {
    let now = now_rfc3339();
    let mut cfg: Value = match &spec.parent {
        Some(p) => serde_json::from_slice(&store.read_blob(&p.record.id)?)
            .map_err(|e| EngineError::Internal(format!("reading the parent's config: {e}")))?,
        None => json!({
            "architecture": spec.architecture.as_deref().unwrap_or(host_architecture()),
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }),
    };
    let Some(obj) = cfg.as_object_mut() else {
        return Err(EngineError::Internal("the parent's config is not an object".into()));
    };
    obj.insert("created".into(), json!(now));
    obj.insert("config".into(), spec.config.clone());
    if spec.author.is_empty() {
        obj.remove("author");
    } else {
        obj.insert("author".into(), json!(spec.author));
    }
    if spec.comment.is_empty() {
        obj.remove("comment");
    } else {
        obj.insert("comment".into(), json!(spec.comment));
    }
    obj.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()}),
    );
    let parent_layers = spec.parent.as_ref().map_or(0, |p| p.record.layers.len());
    let mut entry = json!({"created": now, "created_by": spec.created_by});
    if !spec.comment.is_empty() {
        entry["comment"] = json!(spec.comment);
    }
    if !spec.author.is_empty() {
        entry["author"] = json!(spec.author);
    }
    if layers.len() == parent_layers {
        entry["empty_layer"] = json!(true);
    }
    match obj.get_mut("history").and_then(Value::as_array_mut) {
        Some(h) => h.push(entry),
        None => {
            obj.insert("history".into(), json!([entry]));
        }
    }
    serde_json::to_vec(&cfg).map_err(|e| EngineError::Internal(e.to_string()))
}

/// The architecture the engine runs on, in OCI's words.
pub fn host_architecture() -> &'static str {
    crate::runtime::binfmt::host_arch()
}

/// Copies `reader` (a layer tar from a client: plain, gzip or zstd) into a new layer blob,
/// refusing the compressions the store cannot read with a clear message.
pub fn layer_from_reader<R: Read>(engine: &Engine, mut reader: R) -> Result<LayerWriter, EngineError> {
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(EngineError::InvalidArgument(format!("reading the archive: {e}"))),
        }
    }
    if head[..got].starts_with(b"BZh") || head[..got].starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        return Err(EngineError::InvalidArgument(
            "bzip2- and xz-compressed archives are not supported: send a plain, gzip or zstd tar".into(),
        ));
    }
    let mut w = engine.store.blob_writer()?;
    let copied = std::io::Write::write_all(&mut w, &head[..got]).and_then(|()| std::io::copy(&mut reader, &mut w));
    match copied {
        Ok(_) => Ok(w),
        Err(e) => {
            w.discard();
            Err(EngineError::from(StoreError::Io { context: "receiving the archive".into(), source: e }))
        }
    }
}
