//! Image service: lookup, list, inspect, history, tag, remove, prune. Imports live in `load` and
//! `registry`, exports in `save` and `registry`.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    DriverData, ImageDeleteResponseItem, ImageHistoryResponseItem, ImageInspect, ImageInspectMetadata,
    ImageInspectRootFs, ImagePruneResponse, ImageSummary,
};

use super::filters::{glob_match, Filters};
use super::reference::{familiar_repo, ImageRef};
use super::{blocking, now_rfc3339, Engine, EngineError};
use crate::store::digest::Digest;
use crate::store::StoredImage;

/// Finds the image `name` refers to: a reference (`busybox`, `x:tag`, `repo@sha256:…`), a full
/// id (`sha256:…`) or a unique id prefix.
pub fn resolve(engine: &Engine, name: &str) -> Result<Arc<StoredImage>, EngineError> {
    let store = &engine.store;
    let not_found = || EngineError::NotFound(format!("No such image: {name}"));
    if let Ok(d) = Digest::parse(name) {
        return store.by_id(&d).ok_or_else(not_found);
    }
    if let Ok(r) = ImageRef::parse(name) {
        if let Some(d) = r.digest() {
            let wanted = format!("{}@{d}", r.full_name());
            // An index's digest names all its stored platforms: the engine's own comes first.
            let mut found: Vec<_> =
                store.images().into_iter().filter(|i| i.record.repo_digests.contains(&wanted)).collect();
            found.sort_by_key(|i| !super::platform::Platform::host().matches(&i.config));
            if let Some(img) = found.into_iter().next() {
                return Ok(img);
            }
        } else if let Some(img) = r.full_tagged().and_then(|t| store.by_tag(&t)) {
            return Ok(img);
        }
    }
    let prefix = name.strip_prefix("sha256:").unwrap_or(name);
    if !prefix.is_empty() && prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        let matches: Vec<_> = store.images().into_iter().filter(|i| i.record.id.hex().starts_with(prefix)).collect();
        match matches.len() {
            1 => return matches.into_iter().next().ok_or_else(not_found),
            0 => {}
            _ => {
                return Err(EngineError::InvalidArgument(format!("multiple IDs found with provided prefix: {prefix}")))
            }
        }
    }
    if ImageRef::parse(name).is_err() && Digest::parse(name).is_err() {
        return Err(EngineError::InvalidArgument(format!("invalid reference format: {name}")));
    }
    Err(not_found())
}

/// The stored platform `wanted` of the image `name` refers to (a multi-platform image's other
/// platforms included); a clear 404 when it is not stored.
pub fn resolve_platform(
    engine: &Engine,
    name: &str,
    wanted: Option<&super::platform::Platform>,
) -> Result<Arc<StoredImage>, EngineError> {
    let img = resolve(engine, name)?;
    let Some(wanted) = wanted else { return Ok(img) };
    super::platform_group::for_platform(&engine.store, &img, wanted).ok_or_else(|| {
        EngineError::NotFound(format!(
            "image with reference {name} was found but does not provide the specified platform ({})",
            wanted.text()
        ))
    })
}

/// The familiar `repo:tag` names pointing at `id`, sorted.
pub fn repo_tags(engine: &Engine, id: &Digest) -> Vec<String> {
    let mut tags: Vec<String> =
        engine.store.tags().into_iter().filter(|(_, v)| v == id).map(|(k, _)| familiar_repo(&k)).collect();
    tags.sort();
    tags
}

fn repo_digests(img: &StoredImage) -> Vec<String> {
    img.record.repo_digests.iter().map(|d| familiar_repo(d)).collect()
}

fn created_unix(img: &StoredImage) -> i64 {
    img.config
        .created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn image_size(img: &StoredImage) -> i64 {
    i64::try_from(img.record.layers.iter().map(|l| l.unpacked_size).sum::<u64>()).unwrap_or(i64::MAX)
}

/// `GET /images/json`.
/// How many images name each image as their parent (images made here: commit, build steps).
pub fn child_counts(engine: &Engine) -> HashMap<Digest, usize> {
    let mut counts = HashMap::new();
    for img in engine.store.images() {
        if let Some(p) = &img.record.parent {
            *counts.entry(p.clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// `GET /images/json`. Without `all`, untagged images that other images build on (build steps)
/// are hidden, as dockerd hides intermediate images; `dangling` means untagged with no children.
pub fn list(engine: &Engine, filters: &Filters, all: bool, manifests: bool) -> Result<Vec<ImageSummary>, EngineError> {
    let dangling = filters.bool("dangling")?;
    let children = child_counts(engine);
    let bound = |key: &str| -> Result<Option<i64>, EngineError> {
        match filters.get(key).first() {
            None => Ok(None),
            Some(n) => {
                let img = resolve(engine, n)?;
                Ok(Some(created_unix(&img)))
            }
        }
    };
    let before = bound("before")?;
    let since = bound("since")?;
    let until = filters.get("until").first().map(|u| parse_until(u)).transpose()?;
    let refs = filters.get("reference");
    let all_tags = engine.store.tags();
    let held = super::platform_group::TaggedMembers::of(&engine.store, &all_tags);
    let mut out = Vec::new();
    for img in engine.store.images() {
        let mut tags: Vec<String> =
            all_tags.iter().filter(|(_, v)| **v == img.record.id).map(|(k, _)| familiar_repo(k)).collect();
        tags.sort();
        let has_children = children.contains_key(&img.record.id);
        if tags.is_empty() && has_children && (!all || dangling == Some(true)) {
            continue;
        }
        // Another platform of a tagged multi-platform image: listed under that image's tag.
        if !all && tags.is_empty() && held.hold(&img) {
            continue;
        }
        if let Some(want) = dangling {
            if want != tags.is_empty() {
                continue;
            }
        }
        let labels = img.config.config.as_ref().and_then(|c| c.labels.as_ref());
        if !filters.labels_match("label", labels) {
            continue;
        }
        let created = created_unix(&img);
        if before.is_some_and(|b| created >= b)
            || since.is_some_and(|s| created <= s)
            || until.is_some_and(|u| created >= u)
        {
            continue;
        }
        if !refs.is_empty() {
            tags.retain(|t| {
                let repo = t.rsplit_once(':').map_or(t.as_str(), |(r, _)| r);
                refs.iter().any(|p| glob_match(p, t) || glob_match(p, repo))
            });
            if tags.is_empty() {
                continue;
            }
        }
        out.push(ImageSummary {
            id: img.record.id.to_string(),
            parent_id: img.record.parent.as_ref().map(ToString::to_string).unwrap_or_default(),
            repo_tags: tags,
            repo_digests: repo_digests(&img),
            created,
            size: image_size(&img),
            shared_size: -1,
            labels: labels.cloned().unwrap_or_default(),
            containers: -1,
            manifests: manifests.then(|| super::platform_group::manifest_summaries(engine, &img)),
            descriptor: None,
        });
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

/// `GET /images/{name}/json`; `platform`: that platform of a multi-platform image.
pub fn inspect(
    engine: &Engine,
    name: &str,
    platform: Option<&super::platform::Platform>,
) -> Result<ImageInspect, EngineError> {
    let img = resolve_platform(engine, name, platform)?;
    let c = &img.config;
    let lower: Vec<String> = crate::engine::containers::lower_dirs(engine, &img);
    Ok(ImageInspect {
        id: Some(img.record.id.to_string()),
        repo_tags: Some(repo_tags(engine, &img.record.id)),
        repo_digests: Some(repo_digests(&img)),
        comment: Some(c.comment.clone().unwrap_or_default()),
        created: c.created.clone(),
        author: Some(c.author.clone().unwrap_or_default()),
        config: c.config.clone(),
        architecture: Some(c.architecture.clone()),
        variant: c.variant.clone(),
        os: Some(c.os.clone()),
        size: Some(image_size(&img)),
        graph_driver: Some(DriverData {
            name: "overlay2".into(),
            data: HashMap::from([("LowerDir".to_string(), lower.join(":"))]),
        }),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".into(),
            layers: Some(c.rootfs.diff_ids.iter().map(ToString::to_string).collect()),
        }),
        metadata: Some(ImageInspectMetadata { last_tag_time: img.record.last_tag_time.clone() }),
        ..Default::default()
    })
}

/// `GET /images/{name}/history`, newest first.
pub fn history(engine: &Engine, name: &str) -> Result<Vec<ImageHistoryResponseItem>, EngineError> {
    let img = resolve(engine, name)?;
    let mut layers = img.record.layers.iter();
    let mut out: Vec<ImageHistoryResponseItem> = Vec::new();
    let entries = if img.config.history.is_empty() {
        img.record.layers.iter().map(|_| crate::store::model::History::default()).collect()
    } else {
        img.config.history.clone()
    };
    for h in &entries {
        let size = if h.empty_layer { 0 } else { layers.next().map_or(0, |l| l.unpacked_size) };
        out.push(ImageHistoryResponseItem {
            id: "<missing>".into(),
            created: h
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map_or(0, |t| t.timestamp()),
            created_by: h.created_by.clone().unwrap_or_default(),
            tags: Vec::new(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            comment: h.comment.clone().unwrap_or_default(),
        });
    }
    out.reverse();
    if let Some(top) = out.first_mut() {
        top.id = img.record.id.to_string();
        top.tags = repo_tags(engine, &img.record.id);
    }
    Ok(out)
}

/// `POST /images/{name}/tag?repo=&tag=`.
pub async fn tag(engine: &Arc<Engine>, name: &str, repo: &str, tag: Option<&str>) -> Result<(), EngineError> {
    let img = resolve(engine, name)?;
    if repo.is_empty() {
        return Err(EngineError::InvalidArgument("repository name must have at least one component".into()));
    }
    let r = ImageRef::with_tag(repo, tag).map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
    let full = r
        .full_tagged()
        .ok_or_else(|| EngineError::InvalidArgument("refusing to create a tag with a digest reference".into()))?;
    let e = engine.clone();
    let id = img.record.id.clone();
    let id2 = id.clone();
    blocking(move || Ok(e.store.tag(&id2, &full, &now_rfc3339())?)).await?;
    engine.events.image("tag", id.as_str(), &r.to_string());
    Ok(())
}

/// `DELETE /images/{name}`.
pub async fn remove(
    engine: &Arc<Engine>,
    name: &str,
    force: bool,
) -> Result<Vec<ImageDeleteResponseItem>, EngineError> {
    let img = resolve(engine, name)?;
    let id = img.record.id.clone();
    let tags: Vec<String> = engine.store.tags().into_iter().filter(|(_, v)| *v == id).map(|(k, _)| k).collect();
    let parsed = ImageRef::parse(name).ok();
    let mut out = Vec::new();
    let e = engine.clone();
    // `repo@sha256:…` removes just that digest reference (Docker's behaviour); the image goes only
    // when no tag and no other digest reference remains.
    if let Some(repo_digest) = parsed.as_ref().and_then(|r| r.digest().map(|d| format!("{}@{d}", r.full_name()))) {
        if img.record.repo_digests.contains(&repo_digest) {
            let (e2, rd) = (e.clone(), repo_digest.clone());
            let id2 = id.clone();
            let left = blocking(move || Ok(e2.store.remove_repo_digest(&id2, &rd)?)).await?;
            let familiar = familiar_repo(&repo_digest);
            engine.events.image("untag", id.as_str(), &familiar);
            out.push(ImageDeleteResponseItem { untagged: Some(familiar), deleted: None });
            if left == 0 && tags.is_empty() {
                out.extend(delete_untagged(engine, &id).await?);
            }
            return Ok(out);
        }
    }
    let by_ref = parsed.and_then(|r| r.full_tagged()).filter(|t| tags.contains(t));
    let to_untag: Vec<String> = match &by_ref {
        Some(t) => vec![t.clone()],
        None if tags.len() > 1 && !force => {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                id.short()
            )))
        }
        None => tags.clone(),
    };
    let remaining = tags.len() - to_untag.len();
    let in_use = engine.containers.image_in_use(&id);
    if remaining == 0 && !force {
        if let Some(cid) = &in_use {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is being used by container {}",
                id.short(),
                cid.get(..12).unwrap_or(cid)
            )));
        }
    }
    for t in &to_untag {
        let t2 = t.clone();
        let e2 = e.clone();
        blocking(move || Ok(e2.store.untag(&t2)?)).await?;
        let familiar = familiar_repo(t);
        engine.events.image("untag", id.as_str(), &familiar);
        out.push(ImageDeleteResponseItem { untagged: Some(familiar), deleted: None });
    }
    let has_children = child_counts(engine).contains_key(&id);
    if remaining == 0 && has_children && to_untag.is_empty() {
        return Err(EngineError::Conflict(format!(
            "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
            id.short()
        )));
    }
    if remaining == 0 && in_use.is_none() && !has_children {
        out.extend(delete_untagged(engine, &id).await?);
        out.extend(delete_unused_parents(engine, img.record.parent.clone()).await?);
    }
    if remaining == 0 {
        out.extend(delete_unused_platforms(engine, &img).await?);
    }
    Ok(out)
}

/// After a multi-platform image lost its last tag: its other platforms that are untagged and used
/// by no container and no other image go too.
async fn delete_unused_platforms(
    engine: &Arc<Engine>,
    img: &Arc<StoredImage>,
) -> Result<Vec<ImageDeleteResponseItem>, EngineError> {
    let mut out = Vec::new();
    let tags = engine.store.tags();
    let children = child_counts(engine);
    for m in super::platform_group::members(&engine.store, img).into_iter().skip(1) {
        let id = &m.record.id;
        if tags.values().any(|v| v == id) || children.contains_key(id) || engine.containers.image_in_use(id).is_some() {
            continue;
        }
        out.extend(delete_untagged(engine, id).await?);
    }
    Ok(out)
}

/// After an image went: its parents that are untagged, have no other child and no container go
/// too (the build steps it was made of), as dockerd does.
async fn delete_unused_parents(
    engine: &Arc<Engine>,
    mut parent: Option<Digest>,
) -> Result<Vec<ImageDeleteResponseItem>, EngineError> {
    let mut out = Vec::new();
    while let Some(p) = parent.take() {
        let Some(img) = engine.store.by_id(&p) else { break };
        let tagged = engine.store.tags().values().any(|v| *v == p);
        if tagged || child_counts(engine).contains_key(&p) || engine.containers.image_in_use(&p).is_some() {
            break;
        }
        out.extend(delete_untagged(engine, &p).await?);
        parent = img.record.parent.clone();
    }
    Ok(out)
}

/// `GET /system/df`'s `BuildCache`: the build steps' images that are not images of their own
/// (untagged), with their layer's size; reclaimable when nothing builds on them.
pub fn build_cache_usage(engine: &Engine) -> Vec<serde_json::Value> {
    let tags = engine.store.tags();
    let children = child_counts(engine);
    let mut out = Vec::new();
    for id in engine.build_cache.images() {
        let Some(img) = engine.store.by_id(&id) else { continue };
        if tags.values().any(|v| *v == id) {
            continue;
        }
        let parent_layers =
            img.record.parent.as_ref().and_then(|p| engine.store.by_id(p)).map_or(0, |p| p.record.layers.len());
        let size: u64 = img.record.layers.iter().skip(parent_layers).map(|l| l.unpacked_size).sum();
        let created = img.config.created.clone().unwrap_or_default();
        let description = img.config.history.last().and_then(|h| h.created_by.clone()).unwrap_or_default();
        out.push(serde_json::json!({
            "ID": id.hex().chars().take(25).collect::<String>(),
            "Parents": img.record.parent.as_ref().map(|p| vec![p.hex().to_string()]).unwrap_or_default(),
            "Type": "regular",
            "Description": description,
            "InUse": children.contains_key(&id),
            "Shared": false,
            "Size": size,
            "CreatedAt": created,
            "LastUsedAt": created,
            "UsageCount": 1,
        }));
    }
    out
}

/// `POST /build/prune`: deletes the build cache's step images that nothing needs (untagged, no
/// child, no container) and forgets entries whose images are gone. Returns the ids deleted and
/// the bytes freed. Blocking.
pub fn prune_build_cache(engine: &Engine) -> (Vec<String>, u64) {
    let cached: std::collections::HashSet<Digest> = engine.build_cache.images().into_iter().collect();
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    loop {
        let tags = engine.store.tags();
        let children = child_counts(engine);
        let victims: Vec<_> = engine
            .store
            .images()
            .into_iter()
            .filter(|i| cached.contains(&i.record.id))
            .filter(|i| !tags.values().any(|v| *v == i.record.id) && !children.contains_key(&i.record.id))
            .filter(|i| engine.containers.image_in_use(&i.record.id).is_none())
            .collect();
        if victims.is_empty() {
            break;
        }
        for v in victims {
            let layers = v.record.layers.clone();
            match engine.store.delete_image(&v.record.id) {
                Ok(freed) => {
                    reclaimed +=
                        layers.iter().filter(|l| freed.contains(&l.diff_id)).map(|l| l.unpacked_size).sum::<u64>();
                    engine.events.image("delete", v.record.id.as_str(), v.record.id.as_str());
                    deleted.push(v.record.id.to_string());
                }
                Err(e) => {
                    tracing::warn!(image = %v.record.id, error = %e, "pruning the build cache");
                    return (deleted, reclaimed);
                }
            }
        }
    }
    engine.build_cache.retain(|id| engine.store.by_id(id).is_some());
    (deleted, reclaimed)
}

/// Deletes an image that has no tags left, reporting it and the layers freed with it.
async fn delete_untagged(engine: &Arc<Engine>, id: &Digest) -> Result<Vec<ImageDeleteResponseItem>, EngineError> {
    let (e, id2) = (engine.clone(), id.clone());
    let removed_layers = blocking(move || Ok(e.store.delete_image(&id2)?)).await?;
    engine.events.image("delete", id.as_str(), id.as_str());
    let mut out = vec![ImageDeleteResponseItem { untagged: None, deleted: Some(id.to_string()) }];
    out.extend(
        removed_layers.into_iter().map(|l| ImageDeleteResponseItem { untagged: None, deleted: Some(l.to_string()) }),
    );
    Ok(out)
}

/// `POST /images/prune`: dangling images by default, every unused image with `dangling=false`.
pub async fn prune(engine: &Arc<Engine>, filters: &Filters) -> Result<ImagePruneResponse, EngineError> {
    let only_dangling = filters.bool("dangling")?.unwrap_or(true);
    let until = match filters.get("until").first() {
        None => None,
        Some(u) => Some(parse_until(u)?),
    };
    let tags = engine.store.tags();
    let mut deleted = Vec::new();
    let mut reclaimed: u64 = 0;
    let children = child_counts(engine);
    for img in engine.store.images() {
        let tagged = tags.values().any(|v| *v == img.record.id);
        // An untagged image that others build on is not dangling: it goes with its last child; nor
        // is another platform of a tagged image: it goes with the image's last tag.
        if (only_dangling && tagged)
            || children.contains_key(&img.record.id)
            // Asked per image: the loop removes images as it goes.
            || super::platform_group::held_by_tagged_member(&engine.store, &img, &tags)
        {
            continue;
        }
        let labels = img.config.config.as_ref().and_then(|c| c.labels.as_ref());
        if !filters.labels_match("label", labels) {
            continue;
        }
        if until.is_some_and(|u| created_unix(&img) >= u) {
            continue;
        }
        let size: u64 = img.record.layers.iter().map(|l| l.unpacked_size).sum();
        match remove(engine, img.record.id.as_str(), true).await {
            Ok(items) => {
                if items.iter().any(|i| i.deleted.as_deref() == Some(img.record.id.as_str())) {
                    reclaimed += size;
                }
                deleted.extend(items);
            }
            Err(EngineError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    engine.events.publish(
        bollard_stubs::models::EventMessageTypeEnum::IMAGE,
        "prune",
        "",
        HashMap::from([("reclaimed".to_string(), reclaimed.to_string())]),
    );
    Ok(ImagePruneResponse {
        images_deleted: Some(deleted),
        space_reclaimed: Some(i64::try_from(reclaimed).unwrap_or(i64::MAX)),
    })
}

/// Parses Docker's `until` value: a Unix timestamp or an RFC 3339 time, or a Go duration like `24h`.
fn parse_until(u: &str) -> Result<i64, EngineError> {
    if let Ok(n) = u.split('.').next().unwrap_or(u).parse::<i64>() {
        return Ok(n);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(u) {
        return Ok(t.timestamp());
    }
    let (num, unit) = u.split_at(u.find(|c: char| !c.is_ascii_digit()).unwrap_or(u.len()));
    let n: i64 = num.parse().map_err(|_| EngineError::InvalidArgument(format!("invalid filter 'until={u}'")))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(EngineError::InvalidArgument(format!("invalid filter 'until={u}'"))),
    };
    Ok(chrono::Utc::now().timestamp() - secs)
}
