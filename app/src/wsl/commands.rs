//! The one small interface around `wsl.exe`: everything the WSL back end asks of Windows goes
//! through [`WslCommands`], so Linux tests drive the whole back end with a double that runs the
//! engine locally.

use std::io;
use std::path::Path;

/// What the back end needs from WSL.
pub trait WslCommands: Send + Sync {
    /// Registered distributions (`wsl --list --quiet`).
    fn distros(&self) -> io::Result<Vec<String>>;
    /// Registers `name` from the root file system tar `rootfs`, its disk kept in `dir`
    /// (`wsl --import NAME DIR TAR --version 2`).
    fn import(&self, name: &str, dir: &Path, rootfs: &Path) -> io::Result<()>;
    /// Removes `name` and its disk (`wsl --unregister NAME`).
    fn unregister(&self, name: &str) -> io::Result<()>;
    /// Stops every process of `name` at once (`wsl --terminate NAME`).
    fn terminate(&self, name: &str) -> io::Result<()>;
    /// A program run in `name` as root, without a shell (`wsl -d NAME -u root -e PROGRAM ARGS…`).
    fn command(&self, name: &str, program: &str, args: &[&str]) -> tokio::process::Command;
}

impl<T: WslCommands + ?Sized> WslCommands for std::sync::Arc<T> {
    fn distros(&self) -> io::Result<Vec<String>> {
        (**self).distros()
    }
    fn import(&self, name: &str, dir: &Path, rootfs: &Path) -> io::Result<()> {
        (**self).import(name, dir, rootfs)
    }
    fn unregister(&self, name: &str) -> io::Result<()> {
        (**self).unregister(name)
    }
    fn terminate(&self, name: &str) -> io::Result<()> {
        (**self).terminate(name)
    }
    fn command(&self, name: &str, program: &str, args: &[&str]) -> tokio::process::Command {
        (**self).command(name, program, args)
    }
}

/// The real `wsl.exe`.
#[derive(Debug, Clone)]
pub struct WslExe {
    /// The executable (`wsl.exe`, found on `PATH`; `SKIFF_WSL` overrides it).
    pub exe: String,
}

impl Default for WslExe {
    fn default() -> Self {
        Self { exe: std::env::var("SKIFF_WSL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "wsl.exe".into()) }
    }
}

/// `wsl.exe` writes UTF-16LE to a pipe; decodes that (or plain UTF-8) into lines.
pub fn decode_output(bytes: &[u8]) -> Vec<String> {
    let text = if bytes.len() >= 2 && bytes.len().is_multiple_of(2) && bytes.iter().skip(1).step_by(2).all(|b| *b == 0)
    {
        let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    };
    text.lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

impl WslExe {
    fn run(&self, args: &[&std::ffi::OsStr]) -> io::Result<Vec<String>> {
        let out = std::process::Command::new(&self.exe).args(args).output()?;
        let lines = decode_output(&out.stdout);
        if out.status.success() {
            Ok(lines)
        } else {
            let mut why = decode_output(&out.stderr);
            why.extend(lines);
            Err(io::Error::other(format!("{} {:?} failed ({}): {}", self.exe, args, out.status, why.join(" "))))
        }
    }
}

impl WslCommands for WslExe {
    fn distros(&self) -> io::Result<Vec<String>> {
        self.run(&["--list".as_ref(), "--quiet".as_ref()])
    }

    fn import(&self, name: &str, dir: &Path, rootfs: &Path) -> io::Result<()> {
        self.run(&[
            "--import".as_ref(),
            name.as_ref(),
            dir.as_os_str(),
            rootfs.as_os_str(),
            "--version".as_ref(),
            "2".as_ref(),
        ])
        .map(drop)
    }

    fn unregister(&self, name: &str) -> io::Result<()> {
        self.run(&["--unregister".as_ref(), name.as_ref()]).map(drop)
    }

    fn terminate(&self, name: &str) -> io::Result<()> {
        self.run(&["--terminate".as_ref(), name.as_ref()]).map(drop)
    }

    fn command(&self, name: &str, program: &str, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.exe);
        c.args(["-d", name, "-u", "root", "-e", program]).args(args);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsl_output_is_read_in_utf16_or_utf8() {
        let utf16: Vec<u8> = "skiff\r\nUbuntu\r\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode_output(&utf16), ["skiff", "Ubuntu"]);
        assert_eq!(decode_output(b"skiff\n\n"), ["skiff"]);
        let cmd = WslExe { exe: "wsl.exe".into() }.command("skiff", "skiff-agent", &["dial-stdio"]);
        let args: Vec<_> = cmd.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-d", "skiff", "-u", "root", "-e", "skiff-agent", "dial-stdio"]);
    }
}
