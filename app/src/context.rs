//! The docker CLI context `skiff`, written the way `docker context create` writes it
//! (`~/.docker/contexts/meta/<sha256 of the name>/meta.json`), so no docker CLI is needed.

use std::path::{Path, PathBuf};

use sha2::Digest;

/// The context's name.
pub const NAME: &str = "skiff";

fn docker_config_dir() -> PathBuf {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::home::user_home().join(".docker"))
}

/// Creates or updates the `skiff` context to point at the Unix socket `socket`.
pub fn ensure(socket: &Path) -> std::io::Result<PathBuf> {
    ensure_host(&format!("unix://{}", socket.display()))
}

/// Creates or updates the `skiff` context to point at `host` (`unix://…`, `npipe://…`); returns
/// the file written.
pub fn ensure_host(host: &str) -> std::io::Result<PathBuf> {
    let dir = docker_config_dir().join("contexts/meta").join(hex::encode(sha2::Sha256::digest(NAME.as_bytes())));
    std::fs::create_dir_all(&dir)?;
    let meta = serde_json::json!({
        "Name": NAME,
        "Metadata": { "Description": "Skiff (the Skiff engine in its VM or WSL distribution)" },
        "Endpoints": { "docker": { "Host": host, "SkipTLSVerify": false } }
    });
    let path = dir.join("meta.json");
    let tmp = dir.join("meta.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&meta).unwrap_or_default())?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
