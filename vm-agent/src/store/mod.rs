//! The image store under `<root>/images-store`: verified content-addressed blobs, layers unpacked once
//! into overlayfs-ready directories, and image records and tags written crash-safely.
//!
//! Layout (`S` = store root):
//! - `S/blobs/sha256/<hex>`: every blob, verified against its digest before it gets its name.
//! - `S/layers/<diff-hex>/{diff/,meta.json}`: one unpacked layer; `diff/` is an overlayfs lower dir.
//! - `S/images/<id-hex>.json`: one `ImageRecord`, written only after its blobs and layers are durable.
//! - `S/tags.json`: reference → image id.
//! - `S/tmp/`: staging; emptied on open. Nothing reaches its final name before it is complete.
//!
//! Invariants: only this module writes under `S`; a record never names a blob or layer that is absent;
//! whatever a killed process left behind (staging, orphan blobs/layers) is removed on the next open.

pub mod atomic;
pub mod compression;
pub mod digest;
pub mod durability;
pub mod layer_sink;
pub mod layer_tar;
pub mod lazy_sync;
pub mod model;
pub mod topdir;
pub mod unpack;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use digest::{Digest, HashingWriter};
use model::{ImageConfigFile, ImageRecord, LayerMeta};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation on the store failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the store.
    #[error("the store at {0} is in use by another skiff-agent")]
    Locked(PathBuf),
    /// Content did not match the digest it was announced with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The announced digest.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A layer's content is unsafe or malformed.
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    /// A blob needed to describe an image is not in the store.
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    /// JSON in a blob could not be parsed.
    #[error("invalid {what}: {source}")]
    BadJson {
        /// Which document.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// An image as the store holds it.
#[derive(Debug)]
pub struct StoredImage {
    /// The durable record.
    pub record: ImageRecord,
    /// The parsed config.
    pub config: ImageConfigFile,
}

#[derive(Debug, Default)]
struct State {
    images: HashMap<Digest, Arc<StoredImage>>,
    tags: BTreeMap<String, Digest>,
}

/// The image store. Cheap to share; all methods are blocking (call from `spawn_blocking`).
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    state: Arc<Mutex<State>>,
    /// Makes new images durable in the background (`None`: no boot id; each commit syncs).
    syncer: Option<(Arc<durability::Syncer>, String)>,
    pins: Mutex<HashMap<Digest, usize>>,
    _lock: File,
}

/// Keeps blobs and layers from being garbage-collected while an import that uses them runs.
#[derive(Debug)]
pub struct Pin<'a> {
    store: &'a Store,
    digests: Vec<Digest>,
}

impl Pin<'_> {
    /// Pins one more digest for the lifetime of this guard.
    pub fn add(&mut self, d: &Digest) {
        *self.store.pins_lock().entry(d.clone()).or_default() += 1;
        self.digests.push(d.clone());
    }
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        let mut pins = self.store.pins_lock();
        for d in &self.digests {
            if let Some(n) = pins.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(d);
                }
            }
        }
    }
}

/// A blob being written: hashed on the way in, named only by `commit`.
#[derive(Debug)]
pub struct BlobWriter {
    tmp: PathBuf,
    out: HashingWriter<BufWriter<File>>,
}

impl BlobWriter {
    /// Gives up on the blob: its staging file goes.
    pub fn discard(self) {
        drop(self.out);
        let _ = fs::remove_file(&self.tmp);
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Clears the unsynced mark of `ids` (their files are durable now), in memory and on disk.
fn clear_unsynced_marks(state: &Mutex<State>, images_dir: &Path, ids: Vec<Digest>) {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    for id in ids {
        let Some(img) = st.images.get(&id) else { continue };
        if img.record.unsynced_boot.is_none() {
            continue;
        }
        let mut record = img.record.clone();
        record.unsynced_boot = None;
        let path = images_dir.join(format!("{}.json", id.hex()));
        match atomic::write_json(&path, &record) {
            Ok(()) => {
                let config = img.config.clone();
                st.images.insert(id, Arc::new(StoredImage { record, config }));
            }
            Err(e) => tracing::warn!(image = %id, error = %e, "clearing an image's unsynced mark"),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some((syncer, _)) = &self.syncer {
            syncer.close();
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root`, takes its lock, and recovers from any crash.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for d in ["blobs/sha256", "layers", "images", "tmp"] {
            fs::create_dir_all(root.join(d)).map_err(io_ctx(format!("creating {}", root.join(d).display())))?;
        }
        topdir::mark(&root.join("layers"));
        let lock = File::create(root.join("lock")).map_err(io_ctx("creating store lock"))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Locked(root.to_path_buf()));
        }
        let state = Arc::new(Mutex::new(State::default()));
        let syncer = durability::boot_id().map(|boot| {
            let (weak, images_dir) = (Arc::downgrade(&state), root.join("images"));
            let clear: durability::ClearMarks = Box::new(move |ids| match weak.upgrade() {
                Some(state) => {
                    clear_unsynced_marks(&state, &images_dir, ids);
                    true
                }
                None => false,
            });
            (durability::Syncer::start(root.to_path_buf(), clear), boot)
        });
        let store = Self { root: root.to_path_buf(), state, syncer, pins: Mutex::new(HashMap::new()), _lock: lock };
        store.recover()?;
        Ok(store)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pins_lock(&self) -> MutexGuard<'_, HashMap<Digest, usize>> {
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Empties staging, loads records and tags (dropping any that name missing content), and removes
    /// blobs and layers no record references.
    fn recover(&self) -> Result<(), StoreError> {
        let tmp = self.root.join("tmp");
        fs::remove_dir_all(&tmp).map_err(io_ctx("clearing staging"))?;
        fs::create_dir_all(&tmp).map_err(io_ctx("creating staging"))?;
        // Layers are unpacked here and renamed into layers/.
        topdir::mark(&tmp);

        let mut to_sync: Vec<Digest> = Vec::new();
        let mut state = State::default();
        for entry in fs::read_dir(self.root.join("images")).map_err(io_ctx("listing image records"))? {
            let entry = entry.map_err(io_ctx("listing image records"))?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                let _ = fs::remove_file(&path);
                continue;
            }
            match self.load_record(&path) {
                Ok(img) => match (&img.record.unsynced_boot, &self.syncer) {
                    (Some(written), Some((_, boot))) if written == boot => {
                        // Same boot: the page cache still holds its files; made durable below.
                        to_sync.push(img.record.id.clone());
                        state.images.insert(img.record.id.clone(), Arc::new(img));
                    }
                    (Some(_), _) => {
                        tracing::warn!(image = %img.record.id, "dropping an image written just before the machine stopped (its files may be incomplete)");
                        let _ = fs::remove_file(&path);
                    }
                    (None, _) => {
                        state.images.insert(img.record.id.clone(), Arc::new(img));
                    }
                },
                Err(e) => {
                    tracing::warn!(record = %path.display(), error = %e, "dropping unusable image record");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        if let Ok(bytes) = fs::read(self.root.join("tags.json")) {
            match serde_json::from_slice::<BTreeMap<String, Digest>>(&bytes) {
                Ok(tags) => state.tags = tags.into_iter().filter(|(_, id)| state.images.contains_key(id)).collect(),
                Err(e) => tracing::warn!(error = %e, "tags.json unreadable; images stay, untagged"),
            }
        }
        *self.state() = state;
        if let Some((syncer, _)) = &self.syncer {
            for id in to_sync {
                syncer.request(id);
            }
        }
        self.collect_garbage(None)
    }

    fn load_record(&self, path: &Path) -> Result<StoredImage, StoreError> {
        let bytes = fs::read(path).map_err(io_ctx(format!("reading {}", path.display())))?;
        let record: ImageRecord =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::BadJson { what: "image record", source })?;
        for d in [&record.id, &record.manifest].into_iter().chain(record.layers.iter().map(|l| &l.blob)) {
            if !self.has_blob(d) {
                return Err(StoreError::MissingBlob(d.clone()));
            }
        }
        for l in &record.layers {
            if self.layer(&l.diff_id).is_none() {
                return Err(StoreError::MissingBlob(l.diff_id.clone()));
            }
        }
        let mut record = record;
        if record.index.as_ref().is_some_and(|d| !self.has_blob(d)) {
            tracing::warn!(image = %record.id, "its image index is missing; the image stays, on its own");
            record.index = None;
        }
        let config = self.parse_config(&record.id)?;
        Ok(StoredImage { record, config })
    }

    /// Parses the config blob `id`.
    pub fn parse_config(&self, id: &Digest) -> Result<ImageConfigFile, StoreError> {
        let bytes = self.read_blob(id)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::BadJson { what: "image config", source })
    }

    /// Removes blobs and layers that no record references and no import has pinned. With `only`,
    /// considers just those candidates (cheap after a delete); without, scans everything.
    fn collect_garbage(&self, only: Option<(Vec<Digest>, Vec<Digest>)>) -> Result<(), StoreError> {
        let (blobs_used, layers_used): (HashSet<Digest>, HashSet<Digest>) = {
            let st = self.state();
            let mut b = HashSet::new();
            let mut l = HashSet::new();
            for img in st.images.values() {
                b.insert(img.record.id.clone());
                b.insert(img.record.manifest.clone());
                b.extend(img.record.index.clone());
                for layer in &img.record.layers {
                    b.insert(layer.blob.clone());
                    l.insert(layer.diff_id.clone());
                }
            }
            (b, l)
        };
        let pins = self.pins_lock().keys().cloned().collect::<HashSet<_>>();
        let (blob_candidates, layer_candidates): (Vec<Digest>, Vec<Digest>) = match only {
            Some(lists) => lists,
            None => (list_hex(&self.root.join("blobs/sha256")), list_hex(&self.root.join("layers"))),
        };
        for d in blob_candidates {
            if !blobs_used.contains(&d) && !pins.contains(&d) {
                let _ = fs::remove_file(self.blob_path(&d));
            }
        }
        for d in layer_candidates {
            if !layers_used.contains(&d) && !pins.contains(&d) {
                self.remove_layer_dir(&d);
            }
        }
        Ok(())
    }

    fn remove_layer_dir(&self, diff_id: &Digest) {
        let dir = self.root.join("layers").join(diff_id.hex());
        let grave = self.staging_path("deleted-layer");
        if fs::rename(&dir, &grave).is_ok() {
            if let Err(e) = fs::remove_dir_all(&grave) {
                tracing::warn!(layer = %diff_id, error = %e, "could not remove deleted layer");
            }
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh staging path (not created).
    pub fn staging_path(&self, what: &str) -> PathBuf {
        self.root.join("tmp").join(format!("{what}-{:016x}", rand::random::<u64>()))
    }

    /// Where blob `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether blob `d` is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Reads a whole (small) blob.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        fs::read(self.blob_path(d)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(d.clone()),
            _ => StoreError::Io { context: format!("reading blob {d}"), source: e },
        })
    }

    /// A blob's size, when it is stored.
    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Opens a blob for streaming.
    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        File::open(self.blob_path(d)).map_err(|_| StoreError::MissingBlob(d.clone()))
    }

    /// Starts writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let tmp = self.staging_path("blob");
        let f = File::create(&tmp).map_err(io_ctx("creating staging blob"))?;
        Ok(BlobWriter { tmp, out: HashingWriter::new(BufWriter::with_capacity(256 * 1024, f)) })
    }

    /// Finishes a blob: verifies it against `expected` (if given) and gives it its name.
    pub fn commit_blob(&self, w: BlobWriter, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let (buf, digest, len) = w.out.finish();
        let result = buf.into_inner().map_err(|e| e.into_error()).map(|_| ());
        if let Err(e) = result {
            let _ = fs::remove_file(&w.tmp);
            return Err(io_ctx("writing blob")(e));
        }
        self.adopt_blob(&w.tmp, &digest, expected)?;
        Ok((digest, len))
    }

    /// Moves an already-hashed staging file into place as blob `actual`, after checking `expected`.
    pub fn adopt_blob(&self, tmp: &Path, actual: &Digest, expected: Option<&Digest>) -> Result<(), StoreError> {
        if let Some(exp) = expected {
            if exp != actual {
                let _ = fs::remove_file(tmp);
                return Err(StoreError::DigestMismatch { expected: exp.clone(), actual: actual.clone() });
            }
        }
        if self.has_blob(actual) {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        fs::rename(tmp, self.blob_path(actual)).map_err(io_ctx(format!("storing blob {actual}")))
    }

    /// Stores small in-memory content (manifests, configs) as a blob.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(io_ctx("writing blob"))?;
        Ok(self.commit_blob(w, None)?.0)
    }

    /// The unpacked layer `diff_id`, if complete.
    pub fn layer(&self, diff_id: &Digest) -> Option<LayerMeta> {
        let bytes = fs::read(self.root.join("layers").join(diff_id.hex()).join("meta.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The overlayfs lower directory of layer `diff_id`.
    pub fn layer_diff_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex()).join("diff")
    }

    /// Unpacks blob `blob` as a layer, checking its uncompressed digest against `expected_diff_id`.
    pub fn unpack_blob(&self, blob: &Digest, expected_diff_id: &Digest) -> Result<LayerMeta, StoreError> {
        self.unpack_file(&self.blob_path(blob), expected_diff_id)
    }

    /// Unpacks the layer blob at `path` (a blob or a staging file) and commits it under its diff id,
    /// which must equal `expected_diff_id`. An existing layer is reused. On hostile or corrupt content
    /// it fails and leaves nothing behind.
    pub fn unpack_file(&self, path: &Path, expected_diff_id: &Digest) -> Result<LayerMeta, StoreError> {
        if let Some(meta) = self.layer(expected_diff_id) {
            return Ok(meta);
        }
        self.commit_layer(path, Some(expected_diff_id)).map(|(meta, _)| meta)
    }

    /// Unpacks the layer blob at `path` (plain or compressed tar) and commits it under the diff id
    /// its content has (an existing identical layer is reused). Returns the layer and how the blob
    /// is compressed. On hostile or corrupt content it fails and leaves nothing behind.
    pub fn add_layer(&self, path: &Path) -> Result<(LayerMeta, compression::Compression), StoreError> {
        self.commit_layer(path, None)
    }

    /// Unpacks `path` into a staging directory, checks its diff id against `expected` (if given)
    /// and renames it into `layers/` (or drops it when that layer exists already).
    fn commit_layer(
        &self,
        path: &Path,
        expected: Option<&Digest>,
    ) -> Result<(LayerMeta, compression::Compression), StoreError> {
        let stage = self.staging_path("layer");
        let diff = stage.join("diff");
        fs::create_dir_all(&diff).map_err(io_ctx("creating layer staging"))?;
        let unpacked = File::open(path)
            .map_err(io_ctx(format!("opening {}", path.display())))
            .and_then(|file| Ok(unpack::unpack_layer(file, &diff)?));
        match unpacked {
            Ok(unpacked) => self.commit_staged(layer_sink::StagedLayer { stage, unpacked }, expected),
            Err(e) => {
                let _ = fs::remove_dir_all(&stage);
                Err(e)
            }
        }
    }

    /// Starts unpacking a layer from chunks handed over as they arrive (a download, an archive
    /// being read); [`Store::commit_staged`] gives the result its name.
    pub fn layer_sink(&self) -> Result<layer_sink::LayerSink, StoreError> {
        layer_sink::LayerSink::start(self.staging_path("layer")).map_err(io_ctx("starting a layer unpack"))
    }

    /// Checks a staged layer's diff id against `expected` (if given) and renames it into `layers/`
    /// (or drops it when that layer exists already). On failure the stage is removed.
    pub fn commit_staged(
        &self,
        staged: layer_sink::StagedLayer,
        expected: Option<&Digest>,
    ) -> Result<(LayerMeta, compression::Compression), StoreError> {
        let unpacked = staged.unpacked.clone();
        if let Some(exp) = expected.filter(|e| **e != unpacked.diff_id) {
            return Err(StoreError::DigestMismatch { expected: exp.clone(), actual: unpacked.diff_id });
        }
        let meta = LayerMeta { diff_id: unpacked.diff_id, size: unpacked.size };
        if self.layer(&meta.diff_id).is_some() {
            return Ok((meta, unpacked.compression));
        }
        atomic::write_json(&staged.stage.join("meta.json"), &meta).map_err(io_ctx("writing layer metadata"))?;
        match fs::rename(&staged.stage, self.root.join("layers").join(meta.diff_id.hex())) {
            Ok(()) => Ok((meta, unpacked.compression)),
            Err(_) if self.layer(&meta.diff_id).is_some() => Ok((meta, unpacked.compression)),
            Err(e) => Err(io_ctx("committing layer")(e)),
        }
    }

    /// After a failed import: removes those of `blobs` and `layers` that no image references and no
    /// other import has pinned, so the store is as it was before.
    pub fn discard_unreferenced(&self, blobs: Vec<Digest>, layers: Vec<Digest>) {
        if let Err(e) = self.collect_garbage(Some((blobs, layers))) {
            tracing::warn!(error = %e, "cleanup after failed import");
        }
    }

    /// At shutdown: makes every image committed so far durable and clears the marks, so the
    /// next boot keeps them all.
    pub fn settle(&self) {
        if self.syncer.is_none() {
            return;
        }
        // The marked images first: one committed after the sync began must keep its mark.
        let marked: Vec<Digest> = self
            .state()
            .images
            .values()
            .filter(|i| i.record.unsynced_boot.is_some())
            .map(|i| i.record.id.clone())
            .collect();
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "syncing the image store at shutdown");
            return;
        }
        clear_unsynced_marks(&self.state, &self.root.join("images"), marked);
    }

    /// Flushes everything written so far to stable storage (one `syncfs`, not an fsync per file).
    pub fn sync(&self) -> Result<(), StoreError> {
        durability::syncfs(&self.root).map_err(io_ctx("syncfs"))
    }

    /// Pins nothing yet; add digests with [`Pin::add`].
    pub fn pin(&self) -> Pin<'_> {
        Pin { store: self, digests: Vec::new() }
    }

    /// Makes an image durable and visible, then points `tags` at it. Returns the images that lost a
    /// tag to it (they may now be dangling).
    pub fn commit_image(&self, mut record: ImageRecord, tags: &[String]) -> Result<Arc<StoredImage>, StoreError> {
        match &self.syncer {
            // Durable within this boot at once (the page cache), across a reboot once synced.
            Some((_, boot)) => record.unsynced_boot = Some(boot.clone()),
            None => self.sync()?,
        }
        let config = self.parse_config(&record.id)?;
        // The same image arriving as one platform of an index takes the index's manifest and layer
        // blobs (so a save or push of the index names what the record holds); those blobs are made
        // durable first, as the record is already durable.
        let adopts =
            |st: &State| record.index.is_some() && st.images.get(&record.id).is_some_and(|e| e.record.index.is_none());
        if adopts(&self.state()) && self.syncer.is_some() {
            self.sync()?;
        }
        let mut st = self.state();
        let mut replaced: Vec<Digest> = Vec::new();
        let merged = match st.images.get(&record.id) {
            Some(existing) => {
                let mut r = existing.record.clone();
                for d in &record.repo_digests {
                    if !r.repo_digests.contains(d) {
                        r.repo_digests.push(d.clone());
                    }
                }
                if r.index.is_none() && record.index.is_some() {
                    replaced.push(r.manifest.clone());
                    replaced.extend(r.layers.iter().map(|l| l.blob.clone()));
                    r.manifest = record.manifest;
                    r.manifest_media_type = record.manifest_media_type;
                    r.layers = record.layers;
                    r.index = record.index;
                }
                r
            }
            None => record,
        };
        let path = self.root.join("images").join(format!("{}.json", merged.id.hex()));
        atomic::write_json(&path, &merged).map_err(io_ctx("writing image record"))?;
        let img = Arc::new(StoredImage { record: merged, config });
        st.images.insert(img.record.id.clone(), img.clone());
        if let (Some((syncer, _)), Some(_)) = (&self.syncer, &img.record.unsynced_boot) {
            syncer.request(img.record.id.clone());
        }
        if !tags.is_empty() {
            for t in tags {
                st.tags.insert(t.clone(), img.record.id.clone());
            }
            self.write_tags(&st)?;
        }
        drop(st);
        if !replaced.is_empty() {
            self.collect_garbage(Some((replaced, Vec::new())))?;
        }
        Ok(img)
    }

    fn write_tags(&self, st: &State) -> Result<(), StoreError> {
        atomic::write_json(&self.root.join("tags.json"), &st.tags).map_err(io_ctx("writing tags"))
    }

    /// All images.
    pub fn images(&self) -> Vec<Arc<StoredImage>> {
        self.state().images.values().cloned().collect()
    }

    /// All tags with their image ids.
    pub fn tags(&self) -> BTreeMap<String, Digest> {
        self.state().tags.clone()
    }

    /// The image a full reference points at.
    pub fn by_tag(&self, full_ref: &str) -> Option<Arc<StoredImage>> {
        let st = self.state();
        st.tags.get(full_ref).and_then(|id| st.images.get(id).cloned())
    }

    /// The images stored from the image index `index` (one per platform).
    pub fn by_index(&self, index: &Digest) -> Vec<Arc<StoredImage>> {
        let mut v: Vec<_> =
            self.state().images.values().filter(|i| i.record.index.as_ref() == Some(index)).cloned().collect();
        v.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        v
    }

    /// The image with id `id`.
    pub fn by_id(&self, id: &Digest) -> Option<Arc<StoredImage>> {
        self.state().images.get(id).cloned()
    }

    /// Points `full_ref` at image `id`; records the tag time.
    pub fn tag(&self, id: &Digest, full_ref: &str, now: &str) -> Result<(), StoreError> {
        let mut st = self.state();
        let Some(img) = st.images.get(id).cloned() else { return Err(StoreError::MissingBlob(id.clone())) };
        let mut record = img.record.clone();
        record.last_tag_time = Some(now.to_string());
        let path = self.root.join("images").join(format!("{}.json", id.hex()));
        atomic::write_json(&path, &record).map_err(io_ctx("writing image record"))?;
        let config = img.config.clone();
        st.images.insert(id.clone(), Arc::new(StoredImage { record, config }));
        st.tags.insert(full_ref.to_string(), id.clone());
        self.write_tags(&st)
    }

    /// Drops the `repo@digest` reference `repo_digest` from image `id`; returns how many remain.
    pub fn remove_repo_digest(&self, id: &Digest, repo_digest: &str) -> Result<usize, StoreError> {
        let mut st = self.state();
        let Some(img) = st.images.get(id).cloned() else { return Ok(0) };
        let mut record = img.record.clone();
        record.repo_digests.retain(|d| d != repo_digest);
        let path = self.root.join("images").join(format!("{}.json", id.hex()));
        atomic::write_json(&path, &record).map_err(io_ctx("writing image record"))?;
        let left = record.repo_digests.len();
        st.images.insert(id.clone(), Arc::new(StoredImage { record, config: img.config.clone() }));
        Ok(left)
    }

    /// Removes tag `full_ref`; returns the image it pointed at.
    pub fn untag(&self, full_ref: &str) -> Result<Option<Digest>, StoreError> {
        let mut st = self.state();
        let id = st.tags.remove(full_ref);
        if id.is_some() {
            self.write_tags(&st)?;
        }
        Ok(id)
    }

    /// Deletes image `id` (its tags must already be gone) and whatever content only it used.
    /// Returns the layers (diff ids) that were removed.
    pub fn delete_image(&self, id: &Digest) -> Result<Vec<Digest>, StoreError> {
        let removed = {
            let mut st = self.state();
            let Some(img) = st.images.remove(id) else { return Ok(Vec::new()) };
            st.tags.retain(|_, v| v != id);
            self.write_tags(&st)?;
            img
        };
        let path = self.root.join("images").join(format!("{}.json", id.hex()));
        fs::remove_file(&path).map_err(io_ctx("removing image record"))?;
        let mut blobs = vec![removed.record.id.clone(), removed.record.manifest.clone()];
        blobs.extend(removed.record.index.clone());
        blobs.extend(removed.record.layers.iter().map(|l| l.blob.clone()));
        let layers: Vec<Digest> = removed.record.layers.iter().map(|l| l.diff_id.clone()).collect();
        self.collect_garbage(Some((blobs, layers.clone())))?;
        Ok(layers.into_iter().filter(|d| self.layer(d).is_none()).collect())
    }
}

fn list_hex(dir: &Path) -> Vec<Digest> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    rd.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| Digest::from_hex(n).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(store: &Store) -> ImageRecord {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
        let id = store.put_blob(config).unwrap_or_else(|e| panic!("{e}"));
        let manifest = store.put_blob(b"{}").unwrap_or_else(|e| panic!("{e}"));
        ImageRecord::bare(id, manifest)
    }

    fn on_disk(root: &Path, id: &Digest) -> ImageRecord {
        let bytes = fs::read(root.join("images").join(format!("{}.json", id.hex()))).unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn new_images_are_synced_in_the_background_and_torn_ones_dropped_after_a_reboot() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("store");
        let Some(boot) = durability::boot_id() else { return };
        let id = {
            let store = Store::open(&root).unwrap_or_else(|e| panic!("{e}"));
            let img = store.commit_image(record(&store), &["x/y:latest".into()]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(img.record.unsynced_boot.as_deref(), Some(boot.as_str()));
            let id = img.record.id.clone();
            // The syncer clears the mark, in memory and on disk.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while store.by_id(&id).is_some_and(|i| i.record.unsynced_boot.is_some()) {
                assert!(std::time::Instant::now() < deadline, "the mark was never cleared");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert_eq!(on_disk(&root, &id).unsynced_boot, None);
            id
        };
        // Marked in this boot (an engine killed before the sync): kept, and synced again.
        let mut r = on_disk(&root, &id);
        r.unsynced_boot = Some(boot);
        atomic::write_json(&root.join("images").join(format!("{}.json", id.hex())), &r)
            .unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&root).unwrap_or_else(|e| panic!("{e}"));
        assert!(store.by_id(&id).is_some());
        drop(store);
        // Marked in another boot (the machine stopped first): dropped, with its tag.
        r.unsynced_boot = Some("another-boot".into());
        atomic::write_json(&root.join("images").join(format!("{}.json", id.hex())), &r)
            .unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&root).unwrap_or_else(|e| panic!("{e}"));
        assert!(store.by_id(&id).is_none());
        assert!(store.by_tag("x/y:latest").is_none());
    }
}
