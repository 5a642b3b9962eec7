//! Test harness: starts a real `skiff-agent serve` on a private socket and state directory, and runs
//! the real `docker` CLI against it. Everything a test starts is stopped and removed on drop.

pub mod sshd;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The agent binary (`SKIFF_AGENT_BIN`, else `target/debug/skiff-agent`, built by the test script).
pub fn agent_bin() -> PathBuf {
    std::env::var_os("SKIFF_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/skiff-agent"))
}

/// The fixture directory (`SKIFF_FIXTURES`, else `target/fixtures`).
pub fn fixture(name: &str) -> PathBuf {
    std::env::var_os("SKIFF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/fixtures"))
        .join(name)
}

/// A running agent with its own socket and state.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Whether `--bridge` is passed (else the engine picks its default bridge itself).
    own_bridge: bool,
}

impl Agent {
    /// Starts an agent with a fresh state directory.
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// Starts an agent without `--bridge`: it names its default bridge itself.
    pub fn start_default_bridge() -> Self {
        Self::start_with(false)
    }

    fn start_with(own_bridge: bool) -> Self {
        let dir = tempfile::Builder::new().prefix("skiff-test-").tempdir().expect("temp dir for agent");
        let mut a = Self { child: None, dir, own_bridge };
        a.spawn();
        a
    }

    fn serve_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(agent_bin());
        // Tests leave containers running at the end: a short grace keeps engine stops quick.
        c.args(["serve", "--shutdown-timeout", "2", "--socket"])
            .arg(self.socket())
            .arg("--root")
            .arg(self.root())
            .args(args);
        c
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let bridge = self.bridge();
        let args: &[&str] = if self.own_bridge { &["--bridge", &bridge] } else { &[] };
        let child = self
            .serve_command(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", agent_bin().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "agent did not start; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// This agent's default bridge device: unique, so agents of parallel tests do not share one.
    pub fn bridge(&self) -> String {
        let name = self.dir.path().file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let suffix: String = name.chars().rev().filter(char::is_ascii_alphanumeric).take(8).collect();
        format!("skiffT{suffix}")
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// The state directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `DOCKER_HOST` for this agent.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Kills the agent with SIGKILL (no cleanup), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the agent again on the same state.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the agent with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A `docker` command aimed at this agent.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", self.docker_host()).env("DOCKER_CONFIG", self.dir.path().join("docker-config")).args(args);
        c
    }

    /// Runs `docker ARGS` and returns its output.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd(args).output().expect("running docker")
    }

    /// Runs `docker ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n{}\nagent log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `docker ARGS`, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "docker {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Loads a fixture image.
    pub fn load(&self, fixture_name: &str) -> String {
        self.ok(&["load", "-i", &fixture(fixture_name).display().to_string()])
    }

    /// A raw HTTP request over the socket (for malformed-input tests): returns (status, body).
    pub fn raw(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.socket()).expect("connect to agent");
        let head = format!("{method} {path} HTTP/1.1\r\nHost: skiff\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        s.write_all(head.as_bytes()).expect("write request");
        s.write_all(body).expect("write body");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read response");
        let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Debian `docker-registry` on 127.0.0.1, started through `scripts/registry.sh`.
#[derive(Debug)]
pub struct Registry {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; `auth` enables htpasswd (user `skiff`, password `skiffpass`).
    pub fn start(auth: bool) -> Self {
        let dir = tempfile::Builder::new().prefix("skiff-registry-").tempdir().expect("temp dir for registry");
        let port = free_port();
        let status = Command::new(workspace().join("scripts/registry.sh"))
            .arg(if auth { "start-auth" } else { "start" })
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::null())
            .status()
            .expect("running scripts/registry.sh");
        assert!(status.success(), "registry did not start");
        Self { port, dir }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("scripts/registry.sh"))
            .arg("stop")
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .status();
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A server on the host (`addr`, port 0) that sends `greeting` to its first client: what a
/// container reaching `host.docker.internal` should read. Returns its port and thread.
pub fn greet_once(addr: &str, greeting: &'static [u8]) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind((addr, 0)).expect("host listener");
    let port = listener.local_addr().expect("addr").port();
    let thread = std::thread::spawn(move || {
        if let Ok((mut c, _)) = listener.accept() {
            let _ = c.write_all(greeting);
        }
    });
    (port, thread)
}
