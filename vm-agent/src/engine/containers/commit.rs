//! `POST /commit`: what a container changed (its overlay upper directory; volumes and binds are
//! mounts, not part of it, and neither are the engine's /etc files) as a new image on top of the
//! container's image, with its config, `--change` instructions applied.

use std::sync::Arc;

use serde_json::Value;

use super::record::Status;
use super::{event, Container};
use crate::engine::new_image::{self, ImageSpec, LayerWriter};
use crate::engine::{blocking, config_changes, Engine, EngineError};
use crate::store::digest::Digest;
use crate::store::layer_tar;

/// The engine's bind-mount targets, never part of an image (as with dockerd).
const ENGINE_FILES: [&str; 3] = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// What `docker commit` asks for.
#[derive(Debug, Default)]
pub struct CommitOptions {
    /// A full tagged reference for the new image.
    pub tag: Option<String>,
    /// `-m`.
    pub comment: String,
    /// `-a`.
    pub author: String,
    /// Freeze a running container while its files are read (dockerd's default).
    pub pause: bool,
    /// `-c` instructions.
    pub changes: Vec<String>,
    /// A `Config` object from the request body, overriding the container's.
    pub config: Option<Value>,
    /// The new image's config exactly (a build step: the stage's config, not the command's).
    pub exact_config: Option<Value>,
    /// The history entry's `created_by` (default: the container's command).
    pub created_by: Option<String>,
}

/// Commits `c`; returns the new image's id.
pub async fn commit(engine: &Arc<Engine>, c: &Arc<Container>, opts: CommitOptions) -> Result<Digest, EngineError> {
    let rec = c.record();
    if matches!(rec.state.status, Status::Removing | Status::Dead) {
        return Err(EngineError::Conflict(format!("container {} is being removed", c.id)));
    }
    let parent = engine
        .store
        .by_id(&rec.image_id)
        .ok_or_else(|| EngineError::NotFound(format!("No such image: {}", rec.image)))?;
    let config = match opts.exact_config {
        Some(exact) => exact,
        None => {
            let mut config = serde_json::to_value(&rec.config).map_err(|e| EngineError::Internal(e.to_string()))?;
            if let (Some(Value::Object(over)), Some(base)) = (opts.config, config.as_object_mut()) {
                base.extend(over.into_iter().filter(|(_, v)| !v.is_null()));
            }
            config_changes::apply(&mut config, &opts.changes)?;
            config
        }
    };
    let freeze = opts.pause && rec.state.status == Status::Running;
    let cg = c.cgroup(engine);
    // A container whose process just exited (its cgroup gone or being removed by the exit
    // monitor, the record not yet updated) needs no pause: its files no longer change.
    let freeze = freeze
        && match cg.freeze(true) {
            Ok(()) => true,
            Err(e) if crate::runtime::cgroup::is_gone(&e) || !c.is_running() => false,
            Err(e) => return Err(EngineError::Internal(format!("pausing the container: {e}"))),
        };
    let upper = c.dir().join("upper");
    let e2 = engine.clone();
    let layer = blocking(move || layer_of(&e2, &upper)).await;
    if freeze {
        let _ = cg.freeze(false);
    }
    let layer = layer?;
    let spec = ImageSpec {
        parent: Some(parent),
        config,
        author: opts.author,
        comment: opts.comment.clone(),
        created_by: opts.created_by.unwrap_or_else(|| rec.args.join(" ")),
        tags: opts.tag.clone().into_iter().collect(),
        architecture: None,
    };
    let e2 = engine.clone();
    let id = blocking(move || new_image::create(&e2, spec, Some(layer))).await?;
    let mut attrs = vec![("comment", opts.comment), ("imageID", id.to_string())];
    if let Some(t) = opts.tag {
        attrs.push(("imageRef", crate::engine::reference::familiar_repo(&t)));
    }
    event(engine, "commit", &c.record(), &attrs);
    Ok(id)
}

/// The upper directory as a layer blob (an empty layer for a container that never ran).
fn layer_of(engine: &Engine, upper: &std::path::Path) -> Result<LayerWriter, EngineError> {
    std::fs::create_dir_all(upper)
        .map_err(|e| EngineError::Internal(format!("preparing the container's layer: {e}")))?;
    let w = engine.store.blob_writer()?;
    layer_tar::write_layer_tar(upper, w, &ENGINE_FILES)
        .map_err(|e| EngineError::Internal(format!("reading the container's changes: {e}")))
}
