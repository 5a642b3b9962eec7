//! Remote engines: the real docker CLI over ssh (`docker -H ssh://`, a docker context) to a Linux
//! host running `skiff-agent serve` and no docker CLI: skiff-agent itself answers the
//! `docker system dial-stdio` the CLI runs there.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use skiff_tests::sshd::Sshd;
use skiff_tests::{agent_bin, Agent};

struct Remote {
    sshd: Sshd,
    url: String,
    config: tempfile::TempDir,
    _remote_bin: tempfile::TempDir,
}

impl Remote {
    fn to(agent: &Agent) -> Self {
        // The remote host's PATH: `docker` is skiff-agent (a symlink, as an install would make it).
        let remote_bin = tempfile::Builder::new().prefix("skiff-remote-bin-").tempdir().expect("dir");
        std::os::unix::fs::symlink(agent_bin(), remote_bin.path().join("docker")).expect("docker symlink");
        std::os::unix::fs::symlink(agent_bin(), remote_bin.path().join("skiff-agent")).expect("agent symlink");
        let sshd = Sshd::start(remote_bin.path());
        let url = format!("ssh://root@127.0.0.1:{}{}", sshd.port, agent.socket().display());
        let config = tempfile::Builder::new().prefix("skiff-docker-config-").tempdir().expect("docker config");
        Self { sshd, url, config, _remote_bin: remote_bin }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("PATH", self.sshd.client_path_env()).env("DOCKER_CONFIG", self.config.path()).env_remove("DOCKER_HOST");
        c
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.command("docker").args(["-H", &self.url]).args(args).output().expect("docker")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} over ssh failed: {}\n--- sshd ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.sshd.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn the_docker_cli_over_ssh_drives_a_remote_skiff_agent() {
    let a = Agent::start();
    a.load("busybox.tar");
    let r = Remote::to(&a);

    assert_eq!(r.ok(&["run", "--rm", "busybox", "echo", "hi"]), "hi\n");
    assert!(r.ok(&["version", "--format", "{{.Server.Version}}"]).trim().len() > 1);
    // stdin through ssh and the relay, its end a half-close the container sees.
    let mut child = r
        .command("docker")
        .args(["-H", &r.url, "run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker run -i");
    child.stdin.take().expect("stdin").write_all(b"over ssh\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over ssh\ndone\n");
    // A long-running container made remotely is the local engine's.
    r.ok(&["run", "-d", "--name", "remote-made", "busybox", "sleep", "60"]);
    assert!(a.ok(&["ps", "--format", "{{.Names}}"]).contains("remote-made"));
    r.ok(&["rm", "-f", "remote-made"]);

    // A docker context over ssh, as users keep one per remote engine.
    let create =
        r.command("docker").args(["context", "create", "remote", "--docker"]).arg(format!("host={}", r.url)).output();
    assert!(create.is_ok_and(|o| o.status.success()));
    let ps = r.command("docker").args(["--context", "remote", "ps", "-a", "-q"]).output().expect("docker --context");
    assert!(ps.status.success(), "{}", String::from_utf8_lossy(&ps.stderr));

    // Any other `docker` command on the remote is refused with the reason.
    let port = r.sshd.port.to_string();
    let other = r.command("ssh").args(["-p", &port, "root@127.0.0.1", "docker", "ps"]).output().expect("ssh");
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("only `docker system dial-stdio`"));
    // `skiff-agent dial-stdio` itself: an HTTP request in, the engine's answer out.
    let socket = a.socket().display().to_string();
    let mut dial = r
        .command("ssh")
        .args(["-p", &port, "root@127.0.0.1", "skiff-agent", "dial-stdio", "--socket", &socket])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh dial-stdio");
    // stdin stays open until the answer is in (an HTTP client that half-closes early may lose it).
    let mut stdin = dial.stdin.take().expect("stdin");
    stdin.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n").expect("request");
    let mut stdout = Vec::new();
    std::io::Read::read_to_end(&mut dial.stdout.take().expect("stdout"), &mut stdout).expect("answer");
    drop(stdin);
    let answer = Output { status: dial.wait().expect("ssh ends"), stdout, stderr: Vec::new() };
    let text = String::from_utf8_lossy(&answer.stdout);
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("OK"), "{text}");
}

/// `skiff stdio-endpoint`: a Docker socket whose connections are each carried by a command's
/// stdin/stdout (here `skiff-agent dial-stdio`; one is kept dialled ahead).
#[test]
fn a_stdio_endpoint_carries_every_connection_through_its_command() {
    let a = Agent::start();
    a.load("busybox.tar");
    let dir = tempfile::Builder::new().prefix("skiff-stdio-").tempdir().expect("dir");
    let endpoint = dir.path().join("stdio.sock");
    let socket = a.socket().display().to_string();
    let agent = agent_bin().display().to_string();
    let mut server = Command::new(skiff_tests::vm::skiff_bin())
        .arg("stdio-endpoint")
        .arg("--listen")
        .arg(&endpoint)
        .args(["--", &agent, "dial-stdio", "--socket", &socket])
        .stdout(Stdio::null())
        .spawn()
        .expect("skiff stdio-endpoint");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !endpoint.exists() {
        assert!(std::time::Instant::now() < deadline, "the endpoint never listened");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let host = format!("unix://{}", endpoint.display());
    for round in 0..3 {
        let out = Command::new("docker")
            .env("DOCKER_HOST", &host)
            .args(["run", "--rm", "busybox", "echo", &format!("round {round}")])
            .output()
            .expect("docker");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("round {round}\n"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}
