//! Host paths as a Windows docker CLI writes them (`C:\\Users\\me\\app`, `C:/Users/me/app`) and
//! where a WSL 2 distribution sees them (`/mnt/c/Users/me/app`): the host side (Windows) and the
//! engine (`--host-paths windows`) agree on one translation.

/// `X:\\a\\b` or `X:/a/b` → `/mnt/x/a/b`; `None` for anything else.
pub fn windows_to_wsl(path: &str) -> Option<String> {
    let b = path.as_bytes();
    if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b':' || (b.len() > 2 && b[2] != b'\\' && b[2] != b'/') {
        return None;
    }
    let drive = (b[0] as char).to_ascii_lowercase();
    let rest: String = path[2..].replace('\\', "/");
    let rest = rest.trim_end_matches('/');
    Some(format!("/mnt/{drive}{rest}"))
}

/// One `-v SRC:DEST[:MODE]` spec: a leading Windows path (whose drive colon is not a separator)
/// is translated; anything else is returned as it is.
pub fn translate_bind(bind: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_become_wsl_drive_paths() {
        assert_eq!(windows_to_wsl(r"C:\Users\me\app").as_deref(), Some("/mnt/c/Users/me/app"));
        assert_eq!(windows_to_wsl("d:/src/").as_deref(), Some("/mnt/d/src"));
        assert_eq!(windows_to_wsl(r"C:\").as_deref(), Some("/mnt/c"));
        assert_eq!(windows_to_wsl("/home/me"), None);
        assert_eq!(windows_to_wsl("data"), None);
        assert_eq!(windows_to_wsl("C:relative"), None);
        assert_eq!(translate_bind(r"C:\Users\me\cfg:/etc/cfg:ro"), "/mnt/c/Users/me/cfg:/etc/cfg:ro");
        assert_eq!(translate_bind(r"D:\data"), "/mnt/d/data");
        assert_eq!(translate_bind("named:/data"), "named:/data");
        assert_eq!(translate_bind("/already/posix:/p"), "/already/posix:/p");
    }
}
