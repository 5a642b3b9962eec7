//! `POST /images/create?fromSrc=-` (`docker import`): a root filesystem tar from the request body
//! (plain, gzip or zstd) becomes a one-layer image, `--change` instructions applied to its config.

use std::io::Read;

use serde_json::json;

use super::new_image::{self, ImageSpec};
use super::{config_changes, Engine, EngineError};
use crate::store::digest::Digest;

/// What `docker import` asks for.
#[derive(Debug, Default)]
pub struct ImportOptions {
    /// A full tagged reference for the image.
    pub tag: Option<String>,
    /// `-m`.
    pub message: String,
    /// `-c` instructions.
    pub changes: Vec<String>,
}

/// Imports the archive read from `reader`. Blocking. Returns the new image's id.
pub fn import<R: Read>(engine: &Engine, reader: R, opts: ImportOptions) -> Result<Digest, EngineError> {
    let mut config = json!({});
    config_changes::apply(&mut config, &opts.changes)?;
    let layer = new_image::layer_from_reader(engine, reader)?;
    let comment = if opts.message.is_empty() { "Imported from -".to_string() } else { opts.message };
    let spec = ImageSpec {
        parent: None,
        config,
        author: String::new(),
        comment,
        created_by: String::new(),
        tags: opts.tag.clone().into_iter().collect(),
        architecture: None,
    };
    let id = new_image::create(engine, spec, Some(layer))?;
    let name = opts.tag.as_deref().map(super::reference::familiar_repo).unwrap_or_else(|| id.to_string());
    engine.events.image("import", id.as_str(), &name);
    Ok(id)
}
