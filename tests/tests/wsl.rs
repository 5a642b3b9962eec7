//! The Windows (WSL 2) back end on Linux: every `wsl.exe` call answered by a double that keeps
//! "distributions" as directories and runs their programs here. The distribution is imported from
//! the guest image's real `wsl-rootfs.tar` (its own skiff-agent serves), the engine is reached only
//! through `skiff-agent dial-stdio` processes, and the real docker CLI drives it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff::wsl::commands::WslCommands;
use skiff::wsl::{WslConfig, WslEngine};
use skiff_tests::{fixture, workspace};

/// `wsl.exe` as a double: `--import` unpacks the tar into the directory, `-e PROGRAM` runs the
/// distribution's own copy of PROGRAM (found under its /usr/local/bin) on this host.
#[derive(Default)]
struct FakeWsl {
    distros: Mutex<Vec<(String, PathBuf)>>,
    calls: Mutex<Vec<String>>,
}

impl FakeWsl {
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.distros.lock().unwrap_or_else(|p| p.into_inner());
        d.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone()).unwrap_or_default()
    }
}

impl WslCommands for FakeWsl {
    fn distros(&self) -> std::io::Result<Vec<String>> {
        Ok(self.distros.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(n, _)| n.clone()).collect())
    }

    fn import(&self, name: &str, dir: &Path, rootfs: &Path) -> std::io::Result<()> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(format!("import {name}"));
        let status = Command::new("tar").arg("-xf").arg(rootfs).arg("-C").arg(dir).status()?;
        if !status.success() {
            return Err(std::io::Error::other("tar failed"));
        }
        self.distros.lock().unwrap_or_else(|p| p.into_inner()).push((name.into(), dir.to_path_buf()));
        Ok(())
    }

    fn unregister(&self, name: &str) -> std::io::Result<()> {
        self.distros.lock().unwrap_or_else(|p| p.into_inner()).retain(|(n, _)| n != name);
        Ok(())
    }

    fn terminate(&self, name: &str) -> std::io::Result<()> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(format!("terminate {name}"));
        Ok(())
    }

    fn command(&self, name: &str, program: &str, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(self.dir(name).join("usr/local/bin").join(program));
        c.args(args);
        c
    }
}

fn docker(host: &str, args: &[&str]) -> std::process::Output {
    Command::new("docker").env("DOCKER_HOST", host).args(args).output().expect("docker")
}

fn ok(host: &str, args: &[&str]) -> String {
    let out = docker(host, args);
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_wsl_back_end_imports_its_distribution_and_serves_the_docker_cli_through_dial_stdio() {
    let rootfs = workspace().join("target/vm-image/wsl-rootfs.tar");
    assert!(rootfs.is_file(), "{} missing: build it with vm-image/build.py", rootfs.display());
    let tmp = tempfile::Builder::new().prefix("skiff-wsl-").tempdir().expect("tmp");
    let t = tmp.path();
    let cfg = WslConfig {
        distro: "skiff".into(),
        install_dir: t.join("distro"),
        rootfs,
        socket: t.join("engine.sock").display().to_string(),
        root: t.join("state").display().to_string(),
        pid_file: t.join("agent.pid").display().to_string(),
        log: Some(t.join("engine.log")),
    };
    let fake = Arc::new(FakeWsl::default());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let engine = Arc::new(WslEngine::new(fake.clone(), cfg));
    runtime.block_on(engine.start(Duration::from_secs(30))).expect("the engine in WSL starts");
    assert!(!engine.ensure_imported().expect("listed"), "imported once, found the second time");
    // The user's endpoint (a named pipe on Windows): here a Unix socket, each connection a dial.
    let endpoint = t.join("docker.sock");
    let listener = runtime.block_on(async { tokio::net::UnixListener::bind(&endpoint) }).expect("bind");
    runtime.spawn(skiff::endpoint::serve::serve_unix(listener, engine.clone()));
    let host = format!("unix://{}", endpoint.display());

    ok(&host, &["load", "-i", &fixture("busybox.tar").display().to_string()]);
    assert_eq!(ok(&host, &["run", "--rm", "busybox", "echo", "hi"]), "hi\n");
    // A Windows path as the Windows docker CLI sends it: the engine mounts /mnt/<drive>/….
    let out = docker(&host, &["run", "--rm", "-v", r"C:\Users\me\app:/app", "busybox", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/mnt/c/Users/me/app"), "{err}");
    // stdin's end travels as a half-close through the relay and dial-stdio.
    let mut child = Command::new("docker")
        .env("DOCKER_HOST", &host)
        .args(["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo end"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker run -i");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"through wsl\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through wsl\nend\n");

    runtime.block_on(engine.stop(Duration::from_secs(20))).expect("stops");
    assert!(!t.join("agent.pid").exists(), "the engine removed its pid file as it exited");
    let calls = fake.calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(calls, ["import skiff", "terminate skiff"]);
    assert!(docker(&host, &["version"]).status.code() != Some(0));
}
