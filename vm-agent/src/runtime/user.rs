//! Resolves Docker's `--user` (`name`, `uid`, `name:group`, `uid:gid`) against the container's own
//! `/etc/passwd` and `/etc/group`, after `pivot_root`, as Docker does.

/// The identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership).
    pub groups: Vec<u32>,
    /// Home directory (for `HOME` when the image sets none).
    pub home: String,
}

/// Resolves `spec` (`""` means root) using the contents of passwd and group files.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Identity, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let pw: Vec<Vec<&str>> =
        passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 7).collect();
    let gr: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 3).collect();
    let entry = pw.iter().find(|f| f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user));
    let (uid, mut gid, name, home) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().map_err(|_| format!("bad uid for {user} in /etc/passwd"))?,
            f[3].parse().unwrap_or(0),
            f[0].to_string(),
            f[5].to_string(),
        ),
        (None, Ok(uid)) => (uid, 0, String::new(), "/".to_string()),
        (None, Err(_)) => return Err(format!("unable to find user {user}: no matching entries in passwd file")),
    };
    if let Some(g) = grp {
        gid = match (gr.iter().find(|f| f[0] == g), g.parse::<u32>()) {
            (Some(f), _) => f[2].parse().map_err(|_| format!("bad gid for {g} in /etc/group"))?,
            (None, Ok(n)) => n,
            (None, Err(_)) => return Err(format!("unable to find group {g}: no matching entries in group file")),
        };
    }
    let mut groups: Vec<u32> = if name.is_empty() {
        Vec::new()
    } else {
        gr.iter()
            .filter(|f| f.get(3).is_some_and(|m| m.split(',').any(|x| x == name)))
            .filter_map(|f| f[2].parse().ok())
            .collect()
    };
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    Ok(Identity { uid, gid, groups, home: if home.is_empty() { "/".into() } else { home } })
}

/// `--group-add`: names (looked up in the container's `/etc/group`) or numeric ids.
pub fn extra_groups(specs: &[&str], group: &str) -> Result<Vec<u32>, String> {
    let gr: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 3).collect();
    specs
        .iter()
        .filter(|g| !g.is_empty())
        .map(|g| match (gr.iter().find(|f| f[0] == *g), g.parse::<u32>()) {
            (Some(f), _) => f[2].parse().map_err(|_| format!("bad gid for {g} in /etc/group")),
            (None, Ok(n)) => Ok(n),
            (None, Err(_)) => Err(format!("Unable to find group {g}: no matching entries in group file")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_groups_by_name_or_number() {
        let group = "root:x:0:\naudio:x:29:\nstaff:x:50:bob\n";
        assert_eq!(extra_groups(&["audio", "1234", ""], group), Ok(vec![29, 1234]));
        assert!(extra_groups(&["nosuch"], group).is_err());
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:2000:app\n";

    #[test]
    fn resolves_names_numbers_and_supplementary_groups() {
        assert_eq!(resolve("", PASSWD, GROUP).expect("root").uid, 0);
        let app = resolve("app", PASSWD, GROUP).expect("app");
        assert_eq!((app.uid, app.gid, app.home.as_str()), (1000, 1000, "/home/app"));
        assert!(app.groups.contains(&2000));
        let n = resolve("1000:1000", PASSWD, GROUP).expect("numeric");
        assert_eq!((n.uid, n.gid), (1000, 1000));
        let unknown_numeric = resolve("4242:4242", PASSWD, GROUP).expect("numeric ids need no entry");
        assert_eq!(unknown_numeric.uid, 4242);
        assert!(resolve("nobody-here", PASSWD, GROUP).is_err());
    }
}
