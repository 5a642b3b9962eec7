//! Bind sources as a Windows docker CLI writes them (`C:\Users\me\app`, `C:/Users/me/app`), seen
//! by an engine in WSL 2, where Windows drives are mounted at `/mnt/<drive>`: the path is
//! translated before anything else reads the request, so `docker run -v C:\src:/src` and
//! `--mount type=bind,source=C:\src,…` mount `/mnt/c/src`. An engine started with
//! `--host-paths windows` does this; others take paths as they are.

use bollard_stubs::models::{HostConfig, MountType};

/// How the clients' host paths are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HostPaths {
    /// POSIX paths, used as given (Linux hosts, the VM's shares).
    #[default]
    Posix,
    /// Windows paths of a WSL 2 distro's host: drive `X:` is `/mnt/x`.
    Windows,
}

/// `X:\a\b` or `X:/a/b` → `/mnt/x/a/b`; `None` for anything else.
pub fn windows_to_wsl(path: &str) -> Option<String> {
    let b = path.as_bytes();
    if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b':' || (b.len() > 2 && b[2] != b'\\' && b[2] != b'/') {
        return None;
    }
    let drive = (b[0] as char).to_ascii_lowercase();
    let rest: String = path[2..].replace('\\', "/");
    let rest = rest.trim_end_matches('/');
    Some(format!("/mnt/{drive}{}", if rest.is_empty() { "" } else { rest }))
}

/// One `-v` spec: a leading Windows path (whose drive colon is not a separator) is translated.
fn translate_bind(bind: &str) -> String {
    let b = bind.as_bytes();
    let drive_path = b.len() > 2 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/');
    if !drive_path {
        return bind.to_string();
    }
    let (source, rest) = match bind[2..].find(':') {
        Some(i) => bind.split_at(i + 2),
        None => (bind, ""),
    };
    match windows_to_wsl(source) {
        Some(s) => format!("{s}{rest}"),
        None => bind.to_string(),
    }
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
    fn windows_paths_become_wsl_drive_paths() {
        assert_eq!(windows_to_wsl(r"C:\Users\me\app").as_deref(), Some("/mnt/c/Users/me/app"));
        assert_eq!(windows_to_wsl("d:/src/").as_deref(), Some("/mnt/d/src"));
        assert_eq!(windows_to_wsl(r"C:\").as_deref(), Some("/mnt/c"));
        assert_eq!(windows_to_wsl("/home/me"), None);
        assert_eq!(windows_to_wsl("data"), None);
        assert_eq!(windows_to_wsl("C:relative"), None);

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
