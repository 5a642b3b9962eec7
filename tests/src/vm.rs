//! Harness for the VM tests: a private `SKIFF_HOME` (and docker config) driven through the real
//! `skiff` CLI; whatever is still running is stopped hard on drop.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::workspace;

/// How long one `skiff` or `docker` command of a VM test may take under TCG before the test
/// fails with the guest's console log (a hung guest must fail the test, not time out the suite).
const COMMAND_PATIENCE: Duration = Duration::from_secs(300);

/// The `skiff` binary (`SKIFF_BIN`, else `target/debug/skiff`).
pub fn skiff_bin() -> PathBuf {
    std::env::var_os("SKIFF_BIN").map(PathBuf::from).unwrap_or_else(|| workspace().join("target/debug/skiff"))
}

/// The guest image directory (`SKIFF_VM_IMAGE`, else `target/vm-image`, built by vm-image/build.py).
pub fn vm_image() -> PathBuf {
    let dir =
        std::env::var_os("SKIFF_VM_IMAGE").map(PathBuf::from).unwrap_or_else(|| workspace().join("target/vm-image"));
    assert!(
        dir.join("vmlinux").is_file() && dir.join("initramfs.img").is_file(),
        "no guest image in {}: run vm-image/build.py first (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// One Skiff installation: its home, its docker config, its environment.
#[derive(Debug)]
pub struct SkiffHome {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl SkiffHome {
    /// A fresh, empty home (short path: Unix socket paths are limited to 108 bytes).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("skiff-vm-").tempdir_in("/tmp").expect("temp home");
        let env = vec![
            ("SKIFF_HOME".into(), dir.path().join("home").display().to_string()),
            ("DOCKER_CONFIG".into(), dir.path().join("docker-config").display().to_string()),
            ("SKIFF_VM_IMAGE".into(), vm_image().display().to_string()),
        ];
        Self { dir, env }
    }

    /// Sets an environment variable for every later command.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    pub fn socket(&self) -> PathBuf {
        self.home().join("docker.sock")
    }
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    /// `skiff ARGS`.
    pub fn skiff(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(skiff_bin());
        cmd.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        self.output_within(cmd, "skiff", args)
    }

    /// Runs `cmd` to its end with nothing on stdin; one that outlives [`COMMAND_PATIENCE`] is
    /// killed and fails the test with the guest's console and the daemon's log.
    fn output_within(&self, mut cmd: Command, program: &str, args: &[&str]) -> Output {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let (done, finished) = std::sync::mpsc::channel::<()>();
        // The child is not reaped before `done` is sent, so `pid` names it for as long as the
        // watcher may signal it.
        let watcher = std::thread::spawn(move || {
            let overdue = finished.recv_timeout(COMMAND_PATIENCE).is_err();
            if overdue {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            overdue
        });
        let out = child.wait_with_output();
        let _ = done.send(());
        let overdue = watcher.join().unwrap_or(false);
        assert!(
            !overdue,
            "{program} {args:?} did not finish within {COMMAND_PATIENCE:?}\n--- guest console (end) ---\n{}\n--- daemon log (end) ---\n{}",
            tail(&std::fs::read_to_string(self.home().join("logs/console.log")).unwrap_or_default(), 200),
            tail(&self.daemon_log(), 60)
        );
        out.unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    /// `skiff ARGS`, which must succeed; its stdout.
    pub fn skiff_ok(&self, args: &[&str]) -> String {
        let out = self.skiff(args);
        assert!(
            out.status.success(),
            "skiff {args:?} failed:\n{}{}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.home().join("logs/daemon.log")).unwrap_or_default()
    }

    /// The docker CLI against this home's socket.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.docker_config());
        cmd
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.output_within(self.docker_cmd(args), "docker", args)
    }

    /// `docker ARGS`, which must succeed; its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `skiff status --json`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.skiff_ok(&["status", "--json"])).expect("status JSON")
    }

    /// The QEMU process of the running VM.
    pub fn qemu_pid(&self) -> i32 {
        std::fs::read_to_string(self.home().join("run/qemu.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .expect("run/qemu.pid")
    }

    /// Waits until `skiff status` says stopped.
    pub fn wait_stopped(&self, patience: Duration) {
        let deadline = Instant::now() + patience;
        while self.status()["state"] != "stopped" {
            assert!(Instant::now() < deadline, "skiff still running after {patience:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Processes whose command line mentions this home (the daemon, QEMU, vhost-device-vsock).
    pub fn processes(&self) -> Vec<String> {
        let needle = self.home().display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let mine = entry.file_name().to_string_lossy().parse::<u32>().ok() == Some(std::process::id());
            if !mine && (cmdline.contains(&needle) || String::from_utf8_lossy(&environ).contains(&needle)) {
                found.push(cmdline);
            }
        }
        found
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A size-limited tmpfs mounted over a home's directory (to fill the host's disk on purpose);
/// unmounted on drop.
#[derive(Debug)]
pub struct TmpfsHome(PathBuf);

impl SkiffHome {
    /// Mounts a tmpfs of `size` (e.g. `64m`) as this home.
    pub fn on_tmpfs(&self, size: &str) -> TmpfsHome {
        std::fs::create_dir_all(self.home()).expect("home");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(self.home())
            .status()
            .expect("mount");
        assert!(mounted.success(), "mounting a tmpfs on {}", self.home().display());
        TmpfsHome(self.home())
    }
}

impl Drop for TmpfsHome {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

impl Default for SkiffHome {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SkiffHome {
    fn drop(&mut self) {
        if self.home().join("run/daemon.sock").exists() {
            let _ = self.skiff(&["stop", "--timeout", "2"]);
        }
    }
}
