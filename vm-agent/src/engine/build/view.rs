//! A read-only view of an image's root filesystem on the host, for the builder: what `COPY
//! --from` reads, where `COPY` looks up whether its destination is a directory and whose owner its
//! parent directories have, and the `/etc/passwd` that `--chown=name` resolves against. Several
//! layers are merged with a read-only overlay mount (unmounted when the view goes); a single layer
//! is its own directory; scratch is an empty directory.

use std::path::{Path, PathBuf};

use crate::engine::{Engine, EngineError};
use crate::store::StoredImage;

/// A mounted (or direct) view; unmounted and removed on drop.
#[derive(Debug)]
pub struct ImageView {
    path: PathBuf,
    /// The mount point (and directory) this view owns.
    owned: Option<(PathBuf, bool)>,
}

impl ImageView {
    /// Opens a view of `image` (`None`: scratch). Blocking.
    pub fn open(engine: &Engine, image: Option<&StoredImage>) -> Result<Self, EngineError> {
        let layers: Vec<PathBuf> = image
            .map(|i| crate::engine::containers::lower_dirs(engine, i).into_iter().map(PathBuf::from).collect())
            .unwrap_or_default();
        if layers.len() == 1 {
            return Ok(Self { path: layers[0].clone(), owned: None });
        }
        let dir = engine.config.root.join("build").join(format!("view-{}", hex::encode(rand::random::<[u8; 8]>())));
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::Internal(format!("creating an image view: {e}")))?;
        if layers.is_empty() {
            return Ok(Self { path: dir.clone(), owned: Some((dir, false)) });
        }
        let lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
        let data = format!("lowerdir={}", lower.join(":"));
        if let Err(e) = nix::mount::mount(
            Some("overlay"),
            &dir,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOSUID,
            Some(data.as_str()),
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(EngineError::Internal(format!("mounting an image view: {e}")));
        }
        Ok(Self { path: dir.clone(), owned: Some((dir, true)) })
    }

    /// The root of the view.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` inside the view (absolute in the image), without following a final symlink; `None`
    /// when it does not exist (or a whiteout hides it).
    pub fn stat(&self, path: &str) -> Option<std::fs::Metadata> {
        let p = self.path.join(path.trim_start_matches('/'));
        let m = std::fs::symlink_metadata(p).ok()?;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        (!(m.file_type().is_char_device() && m.rdev() == 0)).then_some(m)
    }

    /// A text file of the image (for `/etc/passwd` and `/etc/group`), empty if absent.
    pub fn read_text(&self, path: &str) -> String {
        std::fs::read_to_string(self.path.join(path.trim_start_matches('/'))).unwrap_or_default()
    }
}

impl Drop for ImageView {
    fn drop(&mut self) {
        if let Some((dir, mounted)) = self.owned.take() {
            if mounted {
                let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}
