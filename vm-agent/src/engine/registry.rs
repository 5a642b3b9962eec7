//! Registry client work: pull, push and login over the OCI distribution protocol (`oci-client`).
//! Plain HTTP is used only for `localhost`, `127.0.0.0/8`, `::1` and the configured insecure list.

use std::sync::Arc;

use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use serde::Deserialize;

use super::progress::Progress;
use super::reference::ImageRef;
use super::{blocking, now_rfc3339, Engine, EngineError};
use crate::store::digest::Digest;
use crate::store::layer_sink::LayerSink;
use crate::store::model::{Index, LayerRef, Manifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

const ACCEPTED: [&str; 4] = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST];
const PARALLEL_LAYERS: usize = 3;

/// Credentials as the Docker API carries them (`X-Registry-Auth`, `/auth` body).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuthConfig {
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// Registry address.
    #[serde(default)]
    pub serveraddress: Option<String>,
    /// A token from a previous login.
    #[serde(default)]
    pub identitytoken: Option<String>,
    /// A registry bearer token.
    #[serde(default)]
    pub registrytoken: Option<String>,
}

impl AuthConfig {
    /// Decodes the `X-Registry-Auth` header (base64url JSON; padding optional). Absent → anonymous.
    pub fn from_header(header: Option<&str>) -> Result<Self, EngineError> {
        let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else { return Ok(Self::default()) };
        let trimmed = h.trim_end_matches('=');
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|_| EngineError::InvalidArgument("invalid X-Registry-Auth header: not base64".into()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes == b"{}" || bytes == b"null" {
            return Ok(Self::default());
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::InvalidArgument(format!("invalid X-Registry-Auth header: {e}")))
    }

    fn to_registry_auth(&self) -> RegistryAuth {
        match (&self.username, &self.password, &self.registrytoken) {
            (_, _, Some(t)) if !t.is_empty() => RegistryAuth::Bearer(t.clone()),
            (Some(u), Some(p), _) if !u.is_empty() => RegistryAuth::Basic(u.clone(), p.clone()),
            _ => RegistryAuth::Anonymous,
        }
    }
}

/// Whether `registry` (host[:port]) is reached over plain HTTP.
pub fn is_insecure(engine: &Engine, registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host == "::1"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || engine.config.insecure_registries.iter().any(|r| r == registry || r == host)
}

/// A registry client; a clear error (never oci-client's panicking fallback) when none can be made,
/// e.g. on a system without CA certificates.
fn client_for(engine: &Engine, registry: &str) -> Result<Client, EngineError> {
    let protocol = if is_insecure(engine, registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::Https
    };
    Client::try_from(ClientConfig { protocol, max_concurrent_download: PARALLEL_LAYERS, ..Default::default() })
        .map_err(|e| {
            EngineError::Internal(format!(
                "cannot reach registries: {e} (the engine needs the system's CA certificates, e.g. Debian's ca-certificates)"
            ))
        })
}

fn registry_error(r: &ImageRef, e: OciDistributionError) -> EngineError {
    use OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(_) => {
            EngineError::NotFound(format!("manifest for {r} not found: manifest unknown"))
        }
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                        | oci_client::errors::OciErrorCode::NotFound
                )
            }) =>
        {
            EngineError::NotFound(format!("manifest for {r} not found: manifest unknown"))
        }
        E::ServerError { code: 404, .. } => {
            EngineError::NotFound(format!("manifest for {r} not found: manifest unknown"))
        }
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } | E::ServerError { code: 401 | 403, .. } => {
            EngineError::NotFound(format!(
                "pull access denied for {}, repository does not exist or may require 'docker login'",
                r.familiar_name()
            ))
        }
        other => EngineError::Upstream(format!("registry {}: {other}", r.registry())),
    }
}

/// A pull whose manifest has been resolved; run it with [`pull_run`].
pub struct PullPlan {
    reference: ImageRef,
    client: Client,
    manifest_bytes: Vec<u8>,
    manifest_digest: Digest,
    manifest_media_type: String,
    manifest: Manifest,
    /// The digest the tag pointed at (index or manifest), recorded as the repo digest.
    top_digest: Digest,
    /// The image index the manifest was chosen from, kept with the image (`platform_group.rs`).
    index_bytes: Option<Vec<u8>>,
}

impl std::fmt::Debug for PullPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullPlan")
            .field("reference", &self.reference)
            .field("manifest", &self.manifest_digest)
            .finish_non_exhaustive()
    }
}

/// Resolves `reference` to one image manifest for `platform` (default: the host's). Errors here
/// (unknown image, denied access) happen before any progress is streamed.
pub async fn pull_prepare(
    engine: &Engine,
    reference: ImageRef,
    platform: Option<&str>,
    auth: &AuthConfig,
) -> Result<PullPlan, EngineError> {
    let wanted = match platform.filter(|p| !p.is_empty()) {
        // `linux` alone means the engine's architecture, as Docker normalises it.
        Some(p) => crate::engine::platform::Platform::parse(p)?.or_host_arch(),
        None => crate::engine::platform::Platform::host(),
    };
    let client = client_for(engine, reference.registry())?;
    let auth = auth.to_registry_auth();
    let oci = reference.as_oci();
    let (bytes, digest) =
        client.pull_manifest_raw(oci, &auth, &ACCEPTED).await.map_err(|e| registry_error(&reference, e))?;
    let top_digest = Digest::parse(&digest).unwrap_or_else(|_| Digest::of(&bytes));
    let kind: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Upstream(format!("invalid manifest from registry: {e}")))?;
    let media_type = kind.get("mediaType").and_then(|m| m.as_str()).unwrap_or_default().to_string();
    let is_index = media_type == OCI_INDEX
        || media_type == DOCKER_MANIFEST_LIST
        || (media_type.is_empty() && kind.get("manifests").is_some());
    let index_bytes = is_index.then(|| bytes.to_vec());
    let (bytes, digest, media_type) = if is_index {
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::Upstream(format!("invalid index from registry: {e}")))?;
        let entry = index
            .manifests
            .iter()
            .find(|m| {
                m.platform.as_ref().is_some_and(|p| wanted.matches_parts(&p.os, &p.architecture, p.variant.as_deref()))
            })
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "no matching manifest for {} in the manifest list entries",
                    wanted.text()
                ))
            })?;
        let by_digest = oci_client::Reference::with_digest(
            reference.registry().to_string(),
            reference.repository().to_string(),
            entry.digest.to_string(),
        );
        let (b, d) =
            client.pull_manifest_raw(&by_digest, &auth, &ACCEPTED).await.map_err(|e| registry_error(&reference, e))?;
        (b, d, entry.media_type.clone())
    } else {
        (bytes, digest, media_type)
    };
    let manifest_digest = Digest::of(&bytes);
    if let Ok(claimed) = Digest::parse(&digest) {
        if claimed != manifest_digest {
            return Err(EngineError::Upstream(format!(
                "manifest digest mismatch: registry said {claimed}, content is {manifest_digest}"
            )));
        }
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Upstream(format!("invalid manifest from registry: {e}")))?;
    let manifest_media_type = manifest
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or(if media_type.is_empty() { OCI_MANIFEST.to_string() } else { media_type });
    Ok(PullPlan {
        reference,
        client,
        manifest_bytes: bytes.to_vec(),
        manifest_digest,
        manifest_media_type,
        manifest,
        top_digest,
        index_bytes,
    })
}

fn oci_descriptor(d: &crate::store::model::Descriptor) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

async fn download_blob(
    engine: &Arc<Engine>,
    plan: &PullPlan,
    desc: &crate::store::model::Descriptor,
    progress: &Progress,
    unpacking: Option<&LayerSink>,
) -> Result<(), EngineError> {
    if engine.store.has_blob(&desc.digest) {
        return Ok(());
    }
    let short = desc.digest.short().to_string();
    let sized = plan
        .client
        .pull_blob_stream(plan.reference.as_oci(), &oci_descriptor(desc))
        .await
        .map_err(|e| EngineError::Upstream(format!("downloading {}: {e}", desc.digest)))?;
    let total = sized.content_length.unwrap_or(desc.size);
    let store = engine.store.clone();
    let mut writer = blocking(move || Ok(store.blob_writer()?)).await?;
    let mut stream = sized.stream;
    let mut done: u64 = 0;
    let mut last_report = 0u64;
    while let Some(chunk) =
        stream.try_next().await.map_err(|e| EngineError::Upstream(format!("downloading {}: {e}", desc.digest)))?
    {
        std::io::Write::write_all(&mut writer, &chunk)
            .map_err(|e| EngineError::Internal(format!("writing blob: {e}")))?;
        if let Some(sink) = unpacking {
            sink.send(chunk.clone()).await;
        }
        done += chunk.len() as u64;
        if done - last_report >= 512 * 1024 || done == total {
            progress.bytes(&short, "Downloading", done, total);
            last_report = done;
        }
    }
    progress.status(Some(&short), "Verifying Checksum");
    let store = engine.store.clone();
    let expected = desc.digest.clone();
    blocking(move || Ok(store.commit_blob(writer, Some(&expected))?)).await?;
    progress.status(Some(&short), "Download complete");
    Ok(())
}

/// Downloads what is missing, unpacks the layers, and records and tags the image.
pub async fn pull_run(engine: &Arc<Engine>, plan: PullPlan, progress: &Progress) -> Result<(), EngineError> {
    let r = plan.reference.clone();
    let tag_or_digest = r.tag().or(r.digest()).unwrap_or("latest").to_string();
    progress.status(Some(&tag_or_digest), format!("Pulling from {}", familiar_path(&r)));
    let existed = r
        .full_tagged()
        .and_then(|t| engine.store.by_tag(&t))
        .is_some_and(|i| i.record.id == plan.manifest.config.digest);

    let config_desc = plan.manifest.config.clone();
    download_blob(engine, &plan, &config_desc, &Progress::discard(), None).await?;
    let store = engine.store.clone();
    let cfg_digest = config_desc.digest.clone();
    let config = blocking(move || Ok(store.parse_config(&cfg_digest)?)).await.map_err(|e| match e {
        EngineError::Store(s) if EngineError::is_bad_input(&s) => {
            EngineError::Upstream(format!("invalid image config: {s}"))
        }
        e => e,
    })?;
    if config.rootfs.diff_ids.len() != plan.manifest.layers.len() {
        return Err(EngineError::Upstream("image config and manifest disagree on the number of layers".into()));
    }

    let mut blobs_touched: Vec<Digest> = vec![config_desc.digest.clone()];
    let mut layers_touched: Vec<Digest> = Vec::new();
    let layers: Vec<(crate::store::model::Descriptor, Digest)> =
        plan.manifest.layers.iter().cloned().zip(config.rootfs.diff_ids.iter().cloned()).collect();
    for (d, diff) in &layers {
        blobs_touched.push(d.digest.clone());
        layers_touched.push(diff.clone());
    }
    let result = async {
        let mut pin = engine.store.pin();
        pin.add(&config_desc.digest);
        for (d, diff) in &layers {
            pin.add(&d.digest);
            pin.add(diff);
            if engine.store.layer(diff).is_none() || !engine.store.has_blob(&d.digest) {
                progress.status(Some(d.digest.short()), "Pulling fs layer");
            }
        }
        let jobs: Vec<_> = layers.iter().map(|(d, diff)| pull_layer(engine, &plan, d, diff, progress)).collect();
        let refs: Vec<LayerRef> = futures::stream::iter(jobs).buffered(PARALLEL_LAYERS).try_collect().await?;
        let store = engine.store.clone();
        let bytes = plan.manifest_bytes.clone();
        let stored = blocking(move || Ok(store.put_blob(&bytes)?)).await?;
        pin.add(&stored);
        let index = match plan.index_bytes.clone() {
            Some(bytes) => {
                let store = engine.store.clone();
                let d = blocking(move || Ok(store.put_blob(&bytes)?)).await?;
                pin.add(&d);
                Some(d)
            }
            None => None,
        };
        let record = crate::store::model::ImageRecord {
            id: config_desc.digest.clone(),
            manifest: stored,
            manifest_media_type: plan.manifest_media_type.clone(),
            layers: refs,
            repo_digests: vec![format!("{}@{}", r.full_name(), plan.top_digest)],
            added: now_rfc3339(),
            last_tag_time: r.tag().map(|_| now_rfc3339()),
            parent: None,
            unsynced_boot: None,
            index,
        };
        let tags: Vec<String> = r.full_tagged().into_iter().collect();
        let store = engine.store.clone();
        blocking(move || Ok(store.commit_image(record, &tags)?)).await?;
        Ok::<(), EngineError>(())
    }
    .await;
    if let Err(e) = result {
        blobs_touched.push(plan.manifest_digest.clone());
        blobs_touched.extend(plan.index_bytes.as_deref().map(Digest::of));
        let store = engine.store.clone();
        let _ = blocking(move || {
            store.discard_unreferenced(blobs_touched, layers_touched);
            Ok(())
        })
        .await;
        return Err(e);
    }
    progress.final_status(format!("Digest: {}", plan.top_digest));
    if existed {
        progress.final_status(format!("Status: Image is up to date for {r}"));
    } else {
        progress.final_status(format!("Status: Downloaded newer image for {r}"));
    }
    engine.events.image("pull", config_desc.digest.as_str(), &r.to_string());
    Ok(())
}

async fn pull_layer(
    engine: &Arc<Engine>,
    plan: &PullPlan,
    d: &crate::store::model::Descriptor,
    diff: &Digest,
    progress: &Progress,
) -> Result<LayerRef, EngineError> {
    let short = d.digest.short().to_string();
    let existing = engine.store.layer(diff).filter(|_| engine.store.has_blob(&d.digest));
    let meta = match existing {
        Some(m) => {
            progress.status(Some(&short), "Already exists");
            m
        }
        None => {
            // A layer not stored yet is unpacked while it downloads.
            let sink = if engine.store.has_blob(&d.digest) {
                None
            } else {
                let store = engine.store.clone();
                Some(blocking(move || Ok(store.layer_sink()?)).await?)
            };
            download_blob(engine, plan, d, progress, sink.as_ref()).await?;
            progress.bytes(&short, "Extracting", 0, d.size);
            let store = engine.store.clone();
            let (blob, diff2) = (d.digest.clone(), diff.clone());
            let meta = blocking(move || {
                let unpacked = match sink {
                    Some(sink) => sink
                        .finish()
                        .map_err(crate::store::StoreError::from)
                        .and_then(|staged| store.commit_staged(staged, Some(&diff2)))
                        .map(|(meta, _)| meta),
                    None => store.unpack_blob(&blob, &diff2),
                };
                unpacked.map_err(|e| match e {
                    e if EngineError::is_bad_input(&e) => EngineError::Upstream(format!("refusing layer {blob}: {e}")),
                    e => e.into(),
                })
            })
            .await?;
            progress.bytes(&short, "Extracting", d.size, d.size);
            progress.status(Some(&short), "Pull complete");
            meta
        }
    };
    Ok(LayerRef {
        blob: d.digest.clone(),
        media_type: d.media_type.clone(),
        blob_size: d.size,
        diff_id: meta.diff_id,
        unpacked_size: meta.size,
    })
}

fn familiar_path(r: &ImageRef) -> String {
    if r.registry() == "docker.io" {
        r.repository().to_string()
    } else {
        r.familiar_name()
    }
}

/// Pushes the image tagged `reference` to its registry: a multi-platform image as its index
/// with every stored platform, unless `platform` picks one.
pub async fn push(
    engine: &Arc<Engine>,
    reference: ImageRef,
    platform: Option<&crate::engine::platform::Platform>,
    auth: &AuthConfig,
    progress: &Progress,
) -> Result<(), EngineError> {
    let full = reference.full_tagged().ok_or_else(|| EngineError::InvalidArgument("push needs a tag".into()))?;
    let img = engine.store.by_tag(&full).ok_or_else(|| {
        EngineError::NotFound(format!("An image does not exist locally with the tag: {}", reference.familiar_name()))
    })?;
    let store = &engine.store;
    let members = match platform {
        Some(p) => vec![crate::engine::platform_group::for_platform(store, &img, p).ok_or_else(|| {
            EngineError::NotFound(format!("{} has no stored platform {}", reference.familiar_name(), p.text()))
        })?],
        None => crate::engine::platform_group::members(store, &img),
    };
    let index = match platform {
        Some(_) => None,
        None => crate::engine::platform_group::index_for(store, &members)?,
    };
    let client = client_for(engine, reference.registry())?;
    let rauth = auth.to_registry_auth();
    let oci = reference.as_oci();
    progress.final_status(format!("The push refers to repository [{}]", reference.familiar_name()));
    client.auth(oci, &rauth, oci_client::RegistryOperation::Push).await.map_err(|e| {
        EngineError::Unauthorized(format!(
            "unauthorized: authentication required to push to {}: {e}",
            reference.registry()
        ))
    })?;
    let pushed = match &index {
        // Each platform by digest, then the index under the tag.
        Some((bytes, media_type)) => {
            for m in &members {
                push_blobs(&client, &reference, store, m, progress).await?;
                let by_digest = oci_client::Reference::with_digest(
                    reference.registry().to_string(),
                    reference.repository().to_string(),
                    m.record.manifest.to_string(),
                );
                push_manifest(
                    &client,
                    &reference,
                    &by_digest,
                    m.record.manifest_media_type.as_str(),
                    store.read_blob(&m.record.manifest)?,
                )
                .await?;
            }
            push_manifest(&client, &reference, oci, media_type, bytes.clone()).await?
        }
        None => {
            let m = &members[0];
            push_blobs(&client, &reference, store, m, progress).await?;
            push_manifest(&client, &reference, oci, &m.record.manifest_media_type, store.read_blob(&m.record.manifest)?)
                .await?
        }
    };
    let (digest, size) = pushed;
    let tag = reference.tag().unwrap_or("latest");
    progress.final_status(format!("{tag}: digest: {digest} size: {size}"));
    progress.aux(serde_json::json!({"Tag": tag, "Digest": digest.to_string(), "Size": size}));
    // The digest the tag now has names every platform pushed under it.
    let repo_digest = format!("{}@{digest}", reference.full_name());
    for m in &members {
        let mut record = m.record.clone();
        if !record.repo_digests.contains(&repo_digest) {
            record.repo_digests.push(repo_digest.clone());
            let store = engine.store.clone();
            blocking(move || Ok(store.commit_image(record, &[])?)).await?;
        }
    }
    engine.events.image("push", members[0].record.id.as_str(), &reference.to_string());
    Ok(())
}

/// Uploads the layers and config of `img` that the registry does not have.
async fn push_blobs(
    client: &Client,
    reference: &ImageRef,
    store: &crate::store::Store,
    img: &crate::store::StoredImage,
    progress: &Progress,
) -> Result<(), EngineError> {
    let oci = reference.as_oci();
    let mut blobs: Vec<(Digest, u64)> = img.record.layers.iter().rev().map(|l| (l.blob.clone(), l.blob_size)).collect();
    for (d, _) in &blobs {
        progress.status(Some(d.short()), "Preparing");
    }
    blobs.push((img.record.id.clone(), store.blob_size(&img.record.id).unwrap_or(0)));
    for (d, size) in &blobs {
        let is_layer = d != &img.record.id;
        let short = d.short().to_string();
        if client.blob_exists(oci, d.as_str()).await.unwrap_or(false) {
            if is_layer {
                progress.status(Some(&short), "Layer already exists");
            }
            continue;
        }
        if is_layer {
            progress.bytes(&short, "Pushing", 0, *size);
        }
        let path = store.blob_path(d);
        let data = tokio::fs::read(&path).await.map_err(|e| EngineError::Internal(format!("reading blob {d}: {e}")))?;
        client.push_blob(oci, data, d.as_str()).await.map_err(|e| push_error(reference, e))?;
        if is_layer {
            progress.bytes(&short, "Pushing", *size, *size);
            progress.status(Some(&short), "Pushed");
        }
    }
    Ok(())
}

/// Uploads a manifest or index under `target` (a tag or a digest); returns its digest and size.
async fn push_manifest(
    client: &Client,
    reference: &ImageRef,
    target: &oci_client::Reference,
    media_type: &str,
    bytes: Vec<u8>,
) -> Result<(Digest, usize), EngineError> {
    let ct = reqwest::header::HeaderValue::from_str(media_type).map_err(|e| EngineError::Internal(e.to_string()))?;
    let (digest, size) = (Digest::of(&bytes), bytes.len());
    client.push_manifest_raw(target, bytes, ct).await.map_err(|e| push_error(reference, e))?;
    Ok((digest, size))
}

fn push_error(r: &ImageRef, e: OciDistributionError) -> EngineError {
    match e {
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
            EngineError::Unauthorized(format!("unauthorized: authentication required to push to {}", r.registry()))
        }
        other => EngineError::Upstream(format!("pushing to {}: {other}", r.registry())),
    }
}

/// `POST /auth`: checks credentials against the registry the way `docker login` expects.
pub async fn login(engine: &Engine, auth: &AuthConfig) -> Result<(), EngineError> {
    let server = auth.serveraddress.clone().unwrap_or_default();
    let host = server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let host = if host.is_empty() || host == "index.docker.io" || host == "docker.io" {
        "registry-1.docker.io".to_string()
    } else {
        host
    };
    let scheme = if is_insecure(engine, &host) { "http" } else { "https" };
    let (user, pass) = (auth.username.clone().unwrap_or_default(), auth.password.clone().unwrap_or_default());
    let http = reqwest::Client::builder().build().map_err(|e| EngineError::Internal(e.to_string()))?;
    let unreachable = |e: reqwest::Error| EngineError::Upstream(format!("cannot reach registry {host}: {e}"));
    let resp =
        http.get(format!("{scheme}://{host}/v2/")).basic_auth(&user, Some(&pass)).send().await.map_err(unreachable)?;
    let denied = || {
        EngineError::Unauthorized(format!(
            "login attempt to {scheme}://{host}/v2/ failed with status: 401 Unauthorized"
        ))
    };
    if resp.status().is_success() {
        return Ok(());
    }
    if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(EngineError::Upstream(format!("registry {host} answered {}", resp.status())));
    }
    let challenge =
        resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let Some(params) = challenge.strip_prefix("Bearer ") else { return Err(denied()) };
    let field = |name: &str| {
        params
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix(&format!("{name}=")).map(|v| v.trim_matches('"').to_string()))
    };
    let realm = field("realm").ok_or_else(denied)?;
    let mut req = http.get(realm).basic_auth(&user, Some(&pass));
    if let Some(service) = field("service") {
        req = req.query(&[("service", service), ("account", user.clone())]);
    }
    let token = req.send().await.map_err(|e| EngineError::Upstream(format!("cannot reach token service: {e}")))?;
    if token.status().is_success() {
        Ok(())
    } else {
        Err(denied())
    }
}

/// Every tag of `reference`'s repository (for `docker pull --all-tags`).
pub async fn list_tags(engine: &Engine, reference: &ImageRef, auth: &AuthConfig) -> Result<Vec<ImageRef>, EngineError> {
    let client = client_for(engine, reference.registry())?;
    let resp = client
        .list_tags(reference.as_oci(), &auth.to_registry_auth(), None, None)
        .await
        .map_err(|e| registry_error(reference, e))?;
    if resp.tags.is_empty() {
        return Err(EngineError::NotFound(format!("repository {} has no tags", reference.familiar_name())));
    }
    let mut tags = resp.tags;
    tags.sort();
    tags.iter()
        .map(|t| {
            ImageRef::with_tag(&reference.full_name(), Some(t))
                .map_err(|e| EngineError::Upstream(format!("registry returned tag {t:?}: {e}")))
        })
        .collect()
}

/// Runs pulls in the background, streaming their progress: the first plan is already resolved (so
/// its errors were HTTP statuses); later references are resolved in turn.
pub fn spawn_pull(engine: Arc<Engine>, first: PullPlan, rest: Vec<ImageRef>, auth: AuthConfig, progress: Progress) {
    tokio::spawn(async move {
        if let Err(e) = pull_run(&engine, first, &progress).await {
            progress.error(e.to_string());
            return;
        }
        for r in rest {
            let result = match pull_prepare(&engine, r, None, &auth).await {
                Ok(plan) => pull_run(&engine, plan, &progress).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                progress.error(e.to_string());
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_registry_auth_header_with_and_without_padding() {
        let json = r#"{"username":"skiff","password":"skiffpass","serveraddress":"127.0.0.1:5001"}"#;
        for enc in [
            base64::engine::general_purpose::URL_SAFE.encode(json),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json),
        ] {
            let a = AuthConfig::from_header(Some(&enc)).expect("valid header");
            assert_eq!(a.username.as_deref(), Some("skiff"));
        }
        assert!(AuthConfig::from_header(Some("%%%")).is_err());
        assert!(AuthConfig::from_header(None).expect("absent").username.is_none());
    }
}
