//! A private OpenSSH server on 127.0.0.1 for remote-engine tests: its own host key, root logs in
//! with a key made for the test, and the session's `PATH` starts with a directory the test fills
//! (e.g. with `docker` → skiff-agent). The client side is an `ssh` wrapper on the docker CLI's
//! `PATH` that uses the test's key and config, so nothing in the machine's own ssh setup is read
//! or changed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd and the client-side files to reach it.
#[derive(Debug)]
pub struct Sshd {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
}

impl Sshd {
    /// Starts sshd; its sessions see `remote_bin` first on `PATH`.
    pub fn start(remote_bin: &Path) -> Self {
        let dir = tempfile::Builder::new().prefix("skiff-sshd-").tempdir().expect("temp dir for sshd");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let port = crate::free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nPidFile {pid}\nSetEnv PATH={bin}:/usr/local/bin:/usr/bin:/bin\n",
            host = d.join("host_key").display(),
            auth = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
            bin = remote_bin.display(),
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let client = format!(
            "Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  \
             UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            key = d.join("client_key").display()
        );
        std::fs::write(d.join("ssh_config"), client).expect("ssh_config");
        let wrapper_dir = d.join("client-bin");
        std::fs::create_dir_all(&wrapper_dir).expect("client bin dir");
        let wrapper = wrapper_dir.join("ssh");
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n", d.join("ssh_config").display()),
        )
        .expect("ssh wrapper");
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).expect("sshd log"))
            .spawn()
            .expect("starting /usr/sbin/sshd (openssh-server)");
        let s = Self { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen: {}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// A directory to put first on the client's `PATH` (its `ssh` uses the test's key).
    pub fn client_path(&self) -> PathBuf {
        self.dir.path().join("client-bin")
    }

    /// The `PATH` for a client process.
    pub fn client_path_env(&self) -> String {
        format!("{}:{}", self.client_path().display(), std::env::var("PATH").unwrap_or_default())
    }

    /// sshd's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
