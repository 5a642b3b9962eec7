//! On-disk JSON shapes: OCI/Docker manifests, indexes and image configs as read from archives and
//! registries (tolerant: unknown fields ignored), and our own image records (strict).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// For index entries: the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OS/architecture pair.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// e.g. `linux`.
    #[serde(default)]
    pub os: String,
    /// e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (Docker schema 2 or OCI).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's media type, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
}

/// The parts of an image config the engine reads. The original bytes stay the source of truth.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfigFile {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Architecture variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created: Option<String>,
    /// Author.
    #[serde(default)]
    pub author: Option<String>,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// The builder's docker version.
    #[serde(default)]
    pub docker_version: Option<String>,
    /// Default container settings.
    #[serde(default)]
    pub config: Option<bollard_stubs::models::ImageConfig>,
    /// The layers' diff ids.
    pub rootfs: RootFs,
    /// Build history.
    #[serde(default)]
    pub history: Vec<History>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Uncompressed layer digests, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// One history entry of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct History {
    /// When.
    #[serde(default)]
    pub created: Option<String>,
    /// Which command.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Whether this step produced no layer.
    #[serde(default)]
    pub empty_layer: bool,
}

/// One layer of a stored image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LayerRef {
    /// The blob as distributed (maybe compressed).
    pub blob: Digest,
    /// The blob's media type.
    pub media_type: String,
    /// The blob's size.
    pub blob_size: u64,
    /// The uncompressed tar's digest (the unpacked directory's key).
    pub diff_id: Digest,
    /// Bytes of regular files in the unpacked layer.
    pub unpacked_size: u64,
}

/// What the store keeps per image; written once all its blobs and layers are in place (durable at
/// once within this boot, across a reboot once synced: `store/durability.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    /// The image id: the config blob's digest.
    pub id: Digest,
    /// The manifest blob (from the registry, or synthesized for archives that had none).
    pub manifest: Digest,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// `repo@digest` names this image is known by in registries.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// When the store received it (RFC 3339).
    pub added: String,
    /// When a tag was last added (RFC 3339).
    #[serde(default)]
    pub last_tag_time: Option<String>,
    /// The image this one was made from here (`docker commit`, a build step); `None` for pulled,
    /// loaded and imported images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    /// The boot this image was committed in while its files may still be only in the page cache
    /// (`store/durability.rs`); cleared once they are synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsynced_boot: Option<String>,
    /// The image index (manifest list) this image arrived in as one of its platforms (a pull, a
    /// load). The index's other platforms that are stored name the same index: together they are
    /// one multi-platform image (`engine/platform_group.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
}

#[cfg(test)]
impl ImageRecord {
    /// A layerless record of config `id` and manifest `manifest`, for tests.
    pub fn bare(id: Digest, manifest: Digest) -> Self {
        Self {
            id,
            manifest,
            manifest_media_type: OCI_MANIFEST.to_string(),
            layers: Vec::new(),
            repo_digests: Vec::new(),
            added: "2026-01-01T00:00:00Z".into(),
            last_tag_time: None,
            parent: None,
            unsynced_boot: None,
            index: None,
        }
    }
}

/// Metadata kept beside each unpacked layer directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerMeta {
    /// The uncompressed tar's digest.
    pub diff_id: Digest,
    /// Bytes of regular files.
    pub size: u64,
}
