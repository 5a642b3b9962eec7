//! Multi-platform images: the platforms of one image index (a pulled or loaded manifest list)
//! that are stored. Each platform is an ordinary image record naming the index (`ImageRecord.index`);
//! a tag points at one of them (the engine's platform, or the last one pulled), and the others are
//! found through it: `run --platform`, `save` (the index re-emitted), `push` (the index pushed),
//! `image inspect --platform`, `docker images --tree`. An untagged member of a group that has a
//! tagged member is not dangling: it is hidden from `docker images`, kept by `prune`, and goes when
//! the group's last tag is removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::platform::Platform;
use super::{Engine, EngineError};
use crate::store::digest::Digest;
use crate::store::model::{Descriptor, Index, OCI_INDEX};
use crate::store::{Store, StoredImage};

/// All stored platforms of `img`'s index, `img` first; just `img` when it has no index.
pub fn members(store: &Store, img: &Arc<StoredImage>) -> Vec<Arc<StoredImage>> {
    let mut out = vec![img.clone()];
    if let Some(index) = &img.record.index {
        out.extend(store.by_index(index).into_iter().filter(|m| m.record.id != img.record.id));
    }
    out
}

/// The stored platform of `img` that is `wanted`: `img` itself when it is, else another member.
pub fn for_platform(store: &Store, img: &Arc<StoredImage>, wanted: &Platform) -> Option<Arc<StoredImage>> {
    members(store, img).into_iter().find(|m| wanted.matches(&m.config))
}

/// For each index, its tagged members: made once per listing, so whether an image is held by a
/// tagged member is a lookup, not a scan of the store per image.
#[derive(Debug, Default)]
pub struct TaggedMembers(HashMap<Digest, HashSet<Digest>>);

impl TaggedMembers {
    /// Reads the store once.
    pub fn of(store: &Store, tags: &BTreeMap<String, Digest>) -> Self {
        let tagged: HashSet<&Digest> = tags.values().collect();
        let mut map: HashMap<Digest, HashSet<Digest>> = HashMap::new();
        for img in store.images() {
            if let Some(index) = &img.record.index {
                if tagged.contains(&img.record.id) {
                    map.entry(index.clone()).or_default().insert(img.record.id.clone());
                }
            }
        }
        Self(map)
    }

    /// Whether another member of `img`'s group is tagged.
    pub fn hold(&self, img: &StoredImage) -> bool {
        let Some(index) = &img.record.index else { return false };
        self.0.get(index).is_some_and(|ids| ids.iter().any(|id| *id != img.record.id))
    }
}

/// Whether another member of `img`'s group is tagged (one question; for many, [`TaggedMembers`]).
pub fn held_by_tagged_member(store: &Store, img: &StoredImage, tags: &BTreeMap<String, Digest>) -> bool {
    TaggedMembers::of(store, tags).hold(img)
}

/// The index to export or push for `members`: the original bytes when every platform it lists is
/// stored, else an index of the stored ones only (entries kept as they were, platforms included).
/// Returns the bytes and the media type. `None` when there is nothing to group (one member).
pub fn index_for(store: &Store, members: &[Arc<StoredImage>]) -> Result<Option<(Vec<u8>, String)>, EngineError> {
    let Some(index_digest) = members.first().and_then(|m| m.record.index.clone()) else { return Ok(None) };
    if members.len() < 2 {
        return Ok(None);
    }
    let bytes = store.read_blob(&index_digest)?;
    let mut index: Index = serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Internal(format!("stored image index {index_digest} is unreadable: {e}")))?;
    let media_type = index.media_type.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| OCI_INDEX.to_string());
    let stored = |d: &Descriptor| members.iter().any(|m| m.record.manifest == d.digest);
    if index.manifests.iter().all(stored) {
        return Ok(Some((bytes, media_type)));
    }
    index.manifests.retain(stored);
    let filtered = serde_json::to_vec(&index).map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(Some((filtered, media_type)))
}

/// `docker images --tree` (`manifests=1`): one summary per stored platform.
pub fn manifest_summaries(engine: &Engine, img: &Arc<StoredImage>) -> Vec<bollard_stubs::models::ImageManifestSummary> {
    use bollard_stubs::models::{
        ImageManifestSummary, ImageManifestSummaryImageData, ImageManifestSummaryImageDataSize,
        ImageManifestSummaryKindEnum, ImageManifestSummarySize, OciDescriptor, OciPlatform,
    };
    let store = &engine.store;
    let mut all = members(store, img);
    all.sort_by_key(|m| super::platform::of_image(&m.config));
    all.iter()
        .map(|m| {
            let blob_size = |d: &Digest| store.blob_size(d).unwrap_or(0);
            let content: u64 = m.record.layers.iter().map(|l| l.blob_size).sum::<u64>()
                + blob_size(&m.record.id)
                + blob_size(&m.record.manifest);
            let unpacked: u64 = m.record.layers.iter().map(|l| l.unpacked_size).sum();
            let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let c = &m.config;
            ImageManifestSummary {
                id: m.record.manifest.to_string(),
                descriptor: OciDescriptor {
                    media_type: Some(m.record.manifest_media_type.clone()),
                    digest: Some(m.record.manifest.to_string()),
                    size: Some(as_i64(blob_size(&m.record.manifest))),
                    ..Default::default()
                },
                available: true,
                size: ImageManifestSummarySize { total: as_i64(content + unpacked), content: as_i64(content) },
                kind: Some(ImageManifestSummaryKindEnum::IMAGE),
                image_data: Some(ImageManifestSummaryImageData {
                    platform: OciPlatform {
                        architecture: Some(c.architecture.clone()),
                        os: Some(if c.os.is_empty() { "linux".into() } else { c.os.clone() }),
                        variant: c.variant.clone().filter(|v| !v.is_empty()),
                        ..Default::default()
                    },
                    containers: engine.containers.using_image(&m.record.id),
                    size: ImageManifestSummaryImageDataSize { unpacked: as_i64(unpacked) },
                }),
                attestation_data: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{ImageRecord, OCI_MANIFEST};

    fn stored(store: &Store, arch: &str, index: &Digest) -> Arc<StoredImage> {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#);
        let id = store.put_blob(config.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let manifest = store.put_blob(format!("manifest-{arch}").as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let record = ImageRecord { index: Some(index.clone()), ..ImageRecord::bare(id, manifest) };
        store.commit_image(record, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_index_is_exported_whole_or_cut_down_to_the_platforms_stored() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        let entry = |arch: &str| {
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": Digest::of(format!("manifest-{arch}").as_bytes()).to_string(),
                "size": 15, "platform": {"architecture": arch, "os": "linux"}})
        };
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [entry("amd64"), entry("arm64"), entry("s390x")]});
        let index_bytes = serde_json::to_vec(&index).unwrap_or_default();
        let digest = store.put_blob(&index_bytes).unwrap_or_else(|e| panic!("{e}"));
        let amd = stored(&store, "amd64", &digest);
        let arm = stored(&store, "arm64", &digest);

        let group = members(&store, &amd);
        assert_eq!(group.len(), 2);
        let arm64 = Platform::parse("linux/arm64").unwrap_or_else(|e| panic!("{e}"));
        assert!(for_platform(&store, &amd, &arm64).is_some_and(|m| m.record.id == arm.record.id));
        let s390x = Platform::parse("linux/s390x").unwrap_or_else(|e| panic!("{e}"));
        assert!(for_platform(&store, &amd, &s390x).is_none());

        // Two of three platforms stored: the exported index lists those two, entries unchanged.
        let (bytes, media_type) = index_for(&store, &group).ok().flatten().unwrap_or_default();
        assert_eq!(media_type, OCI_INDEX);
        let cut: Index = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let archs: Vec<_> =
            cut.manifests.iter().filter_map(|m| m.platform.as_ref()).map(|p| p.architecture.as_str()).collect();
        assert_eq!(archs, ["amd64", "arm64"]);
        // Every platform stored: the original bytes.
        let s390 = stored(&store, "s390x", &digest);
        let all = members(&store, &s390);
        assert_eq!(index_for(&store, &all).ok().flatten().map(|(b, _)| b), Some(index_bytes));
        // One image alone is no group.
        assert!(index_for(&store, &[amd]).ok().flatten().is_none());

        // Tagged member: the others are held; untagged all: none is.
        let tags = BTreeMap::from([("docker.io/library/x:latest".to_string(), arm.record.id.clone())]);
        assert!(held_by_tagged_member(&store, &s390, &tags));
        assert!(!held_by_tagged_member(&store, &s390, &BTreeMap::new()));
    }
}
