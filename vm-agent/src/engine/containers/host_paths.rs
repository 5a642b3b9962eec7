//! Bind sources as a Windows docker CLI writes them (`C:\Users\me\app`, `C:/Users/me/app`), seen
//! by an engine in WSL 2, where Windows drives are mounted at `/mnt/<drive>`: the path is
//! translated before anything else reads the request, so `docker run -v C:\src:/src` and
//! `--mount type=bind,source=C:\src,…` mount `/mnt/c/src`. An engine started with
//! `--host-paths windows` does this; others take paths as they are.

use bollard_stubs::models::{HostConfig, MountType};
use skiff_proto::host_paths::{translate_bind, windows_to_wsl};

/// How the clients' host paths are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HostPaths {
    /// POSIX paths, used as given (Linux hosts, the VM's shares).
    #[default]
    Posix,
    /// Windows paths of a WSL 2 distro's host: drive `X:` is `/mnt/x`.
    Windows,
}

/// Rewrites the bind sources of a create request for `mode`.
pub fn translate(host: &mut HostConfig, mode: HostPaths) {
    if mode != HostPaths::Windows {
        return;
    }
    for bind in host.binds.iter_mut().flatten() {
        *bind = translate_bind(bind);
    }
    for m in host.mounts.iter_mut().flatten() {
        if m.typ == Some(MountType::BIND) {
            if let Some(s) = m.source.as_deref().and_then(windows_to_wsl) {
                m.source = Some(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::Mount;

    #[test]
    fn windows_bind_sources_of_a_create_request_are_translated() {
        let mut host = HostConfig {
            binds: Some(vec![
                r"C:\Users\me\app:/app".into(),
                r"C:\Users\me\cfg:/etc/cfg:ro".into(),
                "named:/data".into(),
                "/already/posix:/p".into(),
            ]),
            mounts: Some(vec![Mount {
                typ: Some(MountType::BIND),
                source: Some("E:/work".into()),
                target: Some("/w".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let untouched = host.clone();
        translate(&mut host, HostPaths::Posix);
        assert_eq!(host.binds, untouched.binds);
        translate(&mut host, HostPaths::Windows);
        assert_eq!(
            host.binds.unwrap_or_default(),
            ["/mnt/c/Users/me/app:/app", "/mnt/c/Users/me/cfg:/etc/cfg:ro", "named:/data", "/already/posix:/p"]
        );
        assert_eq!(host.mounts.unwrap_or_default()[0].source.as_deref(), Some("/mnt/e/work"));
    }
}
