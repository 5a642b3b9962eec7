//! The build cache: which image a step produced, keyed by everything that decides its result
//! (the parent image, the instruction after substitution, the build args in effect, the content
//! of the files it copies). Persisted in `<root>/build/cache.json`, so it survives an engine
//! restart; an entry whose image is gone is simply a miss. The cached results are the untagged
//! step images themselves: `docker images` hides them while they have children, removing the
//! final image removes them, and `docker builder prune` removes the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::store::atomic;
use crate::store::digest::Digest;

/// How many images one key remembers (builds with `--no-cache`, or of other parents' chains
/// that `--cache-from` may name, add theirs).
const PER_KEY: usize = 8;

/// The cache of one engine: each key names the images that step produced, newest first.
#[derive(Debug)]
pub struct BuildCache {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Vec<Digest>>>,
}

impl BuildCache {
    /// Opens (or starts) the cache at `path`; an unreadable file starts an empty cache.
    pub fn open(path: PathBuf) -> Self {
        let entries = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Self { path, entries: Mutex::new(entries) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<Digest>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest image recorded for `key` that `usable` accepts (it still exists, `--cache-from`
    /// allows it).
    pub fn get(&self, key: &str, usable: impl Fn(&Digest) -> bool) -> Option<Digest> {
        self.lock().get(key)?.iter().find(|d| usable(d)).cloned()
    }

    /// Records `image` for `key` (persisted at once; a failed write only loses the entry).
    pub fn put(&self, key: String, image: Digest) {
        let mut entries = self.lock();
        let list = entries.entry(key).or_default();
        list.retain(|d| d != &image);
        list.insert(0, image);
        list.truncate(PER_KEY);
        if let Err(e) = atomic::write_json(&self.path, &*entries) {
            tracing::warn!(error = %e, "saving the build cache");
        }
    }

    /// Drops the images `keep` rejects; returns how many went.
    pub fn retain(&self, keep: impl Fn(&Digest) -> bool) -> usize {
        let mut entries = self.lock();
        let before: usize = entries.values().map(Vec::len).sum();
        for list in entries.values_mut() {
            list.retain(&keep);
        }
        entries.retain(|_, v| !v.is_empty());
        let removed = before - entries.values().map(Vec::len).sum::<usize>();
        if removed > 0 {
            if let Err(e) = atomic::write_json(&self.path, &*entries) {
                tracing::warn!(error = %e, "saving the build cache");
            }
        }
        removed
    }

    /// Every image the cache names.
    pub fn images(&self) -> Vec<Digest> {
        let mut all: Vec<Digest> = self.lock().values().flatten().cloned().collect();
        all.sort();
        all.dedup();
        all
    }
}

/// A cache key from its parts.
pub fn key(parent: Option<&Digest>, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(parent.map(Digest::as_str).unwrap_or("scratch").as_bytes());
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}
