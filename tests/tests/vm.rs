//! The Skiff VM end to end: `skiff start` from a clean SKIFF_HOME, the real docker CLI through the
//! forwarded socket, clean stop/start, a SIGKILLed QEMU, and start failures that must leave
//! nothing running. TCG on these machines (the accelerator probe falls back to it).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use skiff_tests::fixture;
use skiff_tests::vm::SkiffHome;

#[test]
fn vm_lifecycle_docker_cli_persistence_and_crash_recovery() {
    let s = SkiffHome::new();
    assert_eq!(s.status()["state"], "stopped");
    // A stale socket left by a dead run must not stop the start.
    std::fs::create_dir_all(s.home()).expect("home");
    drop(std::os::unix::net::UnixListener::bind(s.socket()).expect("stale socket"));

    let out = s.skiff_ok(&["start", "--cpus", "2", "--memory", "1024"]);
    assert!(out.contains(&format!("unix://{}", s.socket().display())), "{out}");
    let mode = std::fs::metadata(s.socket()).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the docker socket must be private");
    let context = std::fs::read_dir(s.docker_config().join("contexts/meta")).expect("docker context written").count();
    assert_eq!(context, 1);
    let status = s.status();
    assert_eq!(status["state"], "running");
    assert_eq!((status["cpus"].as_u64(), status["memory_mib"].as_u64()), (Some(2), Some(1024)));
    let config = std::fs::read_to_string(s.home().join("config.json")).expect("config persisted");
    assert!(config.contains("\"memory_mib\": 1024"), "{config}");

    // A second start while running: idempotent, quick, same VM.
    let qemu = s.qemu_pid();
    s.skiff_ok(&["start"]);
    assert_eq!(s.qemu_pid(), qemu);
    // A second daemon cannot take over the same home.
    let second = s.skiff(&["daemon"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"), "{second:?}");

    readme_steps_work_as_written(&s);

    // The docker CLI through the VM.
    let loaded = s.docker_ok(&["load", "-i", &fixture("busybox.tar").display().to_string()]);
    assert!(loaded.contains("busybox:latest"), "{loaded}");
    assert_eq!(s.docker_ok(&["run", "--rm", "busybox", "echo", "hi"]), "hi\n");
    let mut piped = s.docker_cmd(&["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo after-eof"]);
    let mut child = piped.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("docker run -i");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"through the pipe\n").expect("write");
    let out = child.wait_with_output().expect("docker run -i");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through the pipe\nafter-eof\n",
        "half-close must reach the container"
    );

    // `docker run -it` through a real pty (script(1) gives the CLI a terminal).
    let docker_host = format!("unix://{}", s.socket().display());
    let tty = std::process::Command::new("script")
        .args(["-qec", "docker run --rm -it busybox sh -c 'tty; echo tty-ok'", "/dev/null"])
        .env("DOCKER_HOST", &docker_host)
        .env("DOCKER_CONFIG", s.docker_config())
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let tty_out = String::from_utf8_lossy(&tty.stdout);
    assert!(tty_out.contains("/dev/pts/0") && tty_out.contains("tty-ok"), "{tty_out}");

    let id = s.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ]);
    assert_eq!(id.trim().len(), 64);
    let mut follow = s.docker_cmd(&["logs", "-f", "ticker"]).stdout(Stdio::piped()).spawn().expect("logs -f");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let first: Vec<String> = (0..5).map(|_| lines.next().and_then(Result::ok).unwrap_or_default()).collect();
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(first, (0..5).map(|i| format!("tick {i}")).collect::<Vec<_>>(), "logs -f must stream");
    assert_eq!(s.docker_ok(&["exec", "ticker", "sh", "-c", "echo exec-ok"]), "exec-ok\n");
    assert!(s.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]).contains("ticker Up"));

    // Clean stop and start: images, containers and their logs survive.
    let stopped = s.skiff_ok(&["stop", "--timeout", "1"]);
    assert!(stopped.contains("Skiff stopped."), "{stopped}");
    assert!(!s.socket().exists(), "the docker socket goes away with the VM");
    assert_eq!(s.status()["state"], "stopped");
    assert!(s.processes().is_empty(), "left running after stop: {:?}", s.processes());
    s.skiff_ok(&["start"]);
    assert!(s.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).contains("busybox:latest"));
    assert!(s.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]).contains("ticker"));
    let logs = s.docker_ok(&["logs", "ticker"]);
    assert!(logs.starts_with("tick 0\ntick 1\n"), "logs lost over stop/start: {logs}");

    // SIGKILL of QEMU: the daemon notices and says so, the disk stays usable, committed images stay.
    s.docker_ok(&["tag", "busybox", "busybox:committed"]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.qemu_pid()), nix::sys::signal::Signal::SIGKILL)
        .expect("kill qemu");
    s.wait_stopped(Duration::from_secs(20));
    assert!(s.daemon_log().contains("the VM stopped unexpectedly"), "{}", s.daemon_log());
    assert!(s.processes().is_empty(), "left running after the crash: {:?}", s.processes());
    s.skiff_ok(&["start"]);
    let images = s.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains("busybox:committed") && images.contains("busybox:latest"), "{images}");
    assert_eq!(s.docker_ok(&["run", "--rm", "busybox", "echo", "after-crash"]), "after-crash\n");

    // Delete needs --force, then leaves an empty VM behind.
    s.skiff_ok(&["stop"]);
    let refused = s.skiff(&["delete"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--force"));
    s.skiff_ok(&["delete", "--force"]);
    assert!(!s.home().join("disk.raw").exists());
}

#[test]
fn start_failures_are_clear_and_leave_nothing_running() {
    // QEMU missing.
    let mut s = SkiffHome::new();
    s.set_env("SKIFF_QEMU", "/nonexistent/qemu-system-x86_64");
    let out = s.skiff(&["start", "--accel", "tcg"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/qemu-system-x86_64") && err.contains("not found"),
        "{err}"
    );
    assert_eq!(s.status()["state"], "stopped");
    assert!(s.processes().is_empty(), "{:?}", s.processes());
    assert!(!s.socket().exists());

    // A guest that never answers: the start gives up after SKIFF_BOOT_TIMEOUT and kills the VM.
    let image = tempfile::tempdir().expect("image dir");
    std::os::unix::fs::symlink(skiff_tests::vm::vm_image().join("vmlinux"), image.path().join("vmlinux"))
        .expect("link");
    let made = std::process::Command::new(skiff_tests::workspace().join("vm-image/trivial-initramfs.sh"))
        .arg(image.path().join("initramfs.img"))
        .arg("hang")
        .status()
        .expect("trivial-initramfs.sh");
    assert!(made.success());
    let mut s = SkiffHome::new();
    s.set_env("SKIFF_VM_IMAGE", &image.path().display().to_string());
    s.set_env("SKIFF_BOOT_TIMEOUT", "10");
    let started = Instant::now();
    let out = s.skiff(&["start", "--accel", "tcg", "--memory", "512"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("did not become ready") && err.contains("TRIVIAL-INIT-REACHED"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(s.status()["state"], "stopped");
    assert!(s.processes().is_empty(), "{:?}", s.processes());
    assert!(!s.socket().exists());

    // The host file system holding SKIFF_HOME is (nearly) full: a clear refusal, nothing started.
    let s = SkiffHome::new();
    let _tmpfs = s.on_tmpfs("64m");
    let out = s.skiff(&["start", "--accel", "tcg"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let stopped = s.status()["state"] == "stopped";
    let leftovers = s.processes();
    assert!(!out.status.success() && err.contains("MiB are free") && err.contains("SKIFF_HOME"), "{err}");
    assert!(stopped && leftovers.is_empty(), "{leftovers:?}");

    // Bad flags are refused before anything starts.
    let s = SkiffHome::new();
    let out = s.skiff(&["start", "--cpus", "0"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--cpus 0"));
    assert!(s.processes().is_empty());
}

#[test]
fn vm_bind_mounts_through_virtio_fs_and_durable_volumes() {
    let s = SkiffHome::new();
    let shared = tempfile::Builder::new().prefix("skiff-share-").tempdir_in("/tmp").expect("share dir");
    let dir = shared.path().display().to_string();
    std::fs::write(shared.path().join("input"), "from the host\n").expect("input");
    // A registry on this host, reached from the guest as host.docker.internal over plain HTTP.
    let registry = skiff_tests::Registry::start(false);
    let insecure = format!("host.docker.internal:{}", registry.port);
    s.skiff_ok(&["start", "--accel", "tcg", "--memory", "1024", "--share", &dir, "--insecure-registry", &insecure]);
    assert!(s.status()["shares"].as_array().is_some_and(|a| a.len() == 1 && a[0] == dir.as_str()));
    s.docker_ok(&["load", "-i", &fixture("busybox.tar").display().to_string()]);

    // `-v "$PWD":/w -w /w` typed on the host: same path in the VM, output owned by the host user.
    let bind = format!("{dir}:/w");
    let out =
        s.docker_ok(&["run", "--rm", "-v", &bind, "-w", "/w", "busybox", "sh", "-c", "cat input; echo out > output"]);
    assert_eq!(out, "from the host\n");
    let output = shared.path().join("output");
    assert_eq!(std::fs::read_to_string(&output).expect("output on the host"), "out\n");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&output).expect("meta"));
    assert_eq!(owner, nix::unistd::getuid().as_raw(), "files made in a bind mount belong to the host user");

    // A host edit is seen by a running container within a second.
    std::fs::write(shared.path().join("live"), "v1\n").expect("live");
    s.docker_ok(&[
        "run",
        "-d",
        "--name",
        "watcher",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "while true; do cat /w/live; sleep 0.05; done",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(shared.path().join("live"), "v2\n").expect("edit");
    let edited = Instant::now();
    loop {
        if s.docker_ok(&["logs", "--tail", "1", "watcher"]) == "v2\n" {
            break;
        }
        assert!(edited.elapsed() < Duration::from_secs(1), "the host edit was not seen within a second");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.docker_ok(&["rm", "-f", "watcher"]);

    // A path outside every share: a clear error naming the setting.
    let err =
        String::from_utf8_lossy(&s.docker(&["run", "--rm", "-v", "/opt/not-shared:/x", "busybox", "true"]).stderr)
            .into_owned();
    assert!(err.contains("outside the host folders shared") && err.contains("--share"), "{err}");

    // `docker build` of a project folder: the context travels over the forwarded socket; the
    // cache holds across a VM restart; `docker commit` of a container works in the VM too.
    std::fs::write(
        shared.path().join("Dockerfile"),
        "FROM busybox\nCOPY input /input\nRUN --mount=type=cache,target=/cache cat /input > /copy && date >> /cache/log\n",
    )
    .expect("Dockerfile");
    let built = s.docker_ok(&["build", "-t", "vmbuilt", &dir]);
    assert!(built.contains("Successfully tagged vmbuilt:latest"), "{built}");
    assert_eq!(s.docker_ok(&["run", "--rm", "vmbuilt", "cat", "/copy"]), "from the host\n");
    s.docker_ok(&["run", "--name", "tocommit", "busybox", "sh", "-c", "echo committed > /c"]);
    s.docker_ok(&["commit", "tocommit", "vmcommitted"]);
    assert_eq!(s.docker_ok(&["run", "--rm", "vmcommitted", "cat", "/c"]), "committed\n");
    s.docker_ok(&["rm", "tocommit"]);

    // An arm64 image on this amd64 guest: the guest's bundled emulator runs it (binfmt_misc).
    s.docker_ok(&["load", "-i", &fixture("busybox-arm64.tar").display().to_string()]);
    assert_eq!(s.docker_ok(&["run", "--rm", "skiff-test/busybox-arm64", "uname", "-m"]), "aarch64\n");
    let asked = ["run", "--rm", "--platform", "linux/arm64", "skiff-test/busybox-arm64", "uname", "-m"];
    assert_eq!(s.docker_ok(&asked), "aarch64\n");
    // A multi-platform archive: the guest's own platform is the one loaded.
    s.docker_ok(&["load", "-i", &fixture("busybox-multi-oci.tar").display().to_string()]);
    let loaded = s.docker_ok(&["image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", "skiff-test/busybox-multi"]);
    assert_eq!(loaded, "linux/amd64\n");
    // Pushed as one index to the host's registry, then pulled back: the guest's platform first,
    // arm64 when asked for.
    let remote = format!("{insecure}/skiff-test/busybox-multi:latest");
    s.docker_ok(&["tag", "skiff-test/busybox-multi", &remote]);
    s.docker_ok(&["push", &remote]);
    s.docker_ok(&["rmi", "skiff-test/busybox-multi", &remote]);
    s.docker_ok(&["pull", &remote]);
    assert_eq!(s.docker_ok(&["image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", &remote]), "linux/amd64\n");
    assert_eq!(s.docker_ok(&["run", "--rm", "--platform", "linux/arm64", &remote, "uname", "-m"]), "aarch64\n");

    // A named volume: written by one container, read by another, kept over stop/start.
    s.docker_ok(&["run", "--rm", "-v", "notes:/data", "busybox", "sh", "-c", "echo kept > /data/f"]);
    assert_eq!(s.docker_ok(&["run", "--rm", "-v", "notes:/data", "busybox", "cat", "/data/f"]), "kept\n");
    s.skiff_ok(&["stop", "--timeout", "1"]);
    s.skiff_ok(&["start"]);
    assert_eq!(s.docker_ok(&["run", "--rm", "-v", "notes:/data", "busybox", "cat", "/data/f"]), "kept\n");
    let rebuilt = s.docker_ok(&["build", "-t", "vmbuilt", &dir]);
    assert_eq!(rebuilt.matches("Using cache").count(), 2, "{rebuilt}");

    // Data written with fsync survives a SIGKILL of QEMU.
    s.docker_ok(&["run", "--rm", "-v", "notes:/data", "busybox", "sh", "-c", "echo synced > /data/g && sync"]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.qemu_pid()), nix::sys::signal::Signal::SIGKILL)
        .expect("kill qemu");
    s.wait_stopped(Duration::from_secs(20));
    s.skiff_ok(&["start"]);
    assert_eq!(s.docker_ok(&["run", "--rm", "-v", "notes:/data", "busybox", "cat", "/data/g"]), "synced\n");
    assert!(s.docker_ok(&["volume", "ls", "-q"]).contains("notes"));
    s.skiff_ok(&["stop", "--timeout", "1"]);
}

#[test]
fn host_disk_full_pauses_the_vm_with_a_clear_reason_and_it_still_stops() {
    let s = SkiffHome::new();
    let _tmpfs = s.on_tmpfs("1200m");
    let filler = s.home().join("filler");
    let made = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=600", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status()
        .expect("dd");
    assert!(made.success());
    s.skiff_ok(&["start", "--accel", "tcg", "--memory", "1024"]);
    s.docker_ok(&["load", "-i", &fixture("busybox.tar").display().to_string()]);
    // The guest writes more than the host file system has left.
    let writer = s
        .docker_cmd(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1M count=900 && sync && echo written",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker run");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = s.status();
        if st["state"] == "paused" {
            let reason = st["paused_reason"].as_str().unwrap_or_default().to_owned();
            assert!(reason.contains("disk") && reason.contains("full"), "{reason}");
            break;
        }
        assert!(Instant::now() < deadline, "the VM never reported the full disk: {st}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A paused VM can still be stopped (hard, as the guest cannot answer) and nothing is left.
    let stopped = s.skiff_ok(&["stop", "--timeout", "1"]);
    assert!(stopped.contains("Skiff stopped"), "{stopped}");
    let _ = writer.wait_with_output();
    assert_eq!(s.status()["state"], "stopped");
    assert!(s.processes().is_empty(), "{:?}", s.processes());
}

#[test]
fn vm_published_ports_user_networks_and_the_host() {
    use std::io::{Read, Write};
    let s = SkiffHome::new();
    s.skiff_ok(&["start"]);
    s.docker_ok(&["load", "-i", &fixture("busybox.tar").display().to_string()]);
    s.docker_ok(&["load", "-i", &fixture("python.tar").display().to_string()]);
    let (web, dns) = (skiff_tests::free_port(), skiff_tests::free_port());
    let udp_echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',53))\nwhile True:\n    d,a=s.recvfrom(2048)\n    s.sendto(b'echo:'+d,a)\n";
    let script = format!("python3 -m http.server 80 & python3 -c \"{udp_echo}\"");
    s.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("{web}:80"),
        "-p",
        &format!("{dns}:53/udp"),
        "skiff-test/python:bookworm",
        "sh",
        "-c",
        &script,
    ]);
    // The host daemon listens on the host's loopback and tunnels each connection over vsock.
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", web)).ok().and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
            let mut body = String::new();
            c.read_to_string(&mut body).ok()?;
            body.contains("200 OK").then_some(body)
        });
        if let Some(b) = got {
            break b;
        }
        assert!(Instant::now() < deadline, "published port never answered; daemon log:\n{}", s.daemon_log());
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(page.contains("Directory listing"), "{page}");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut echoed = String::new();
    for _ in 0..20 {
        let _ = udp.send_to(b"ping", ("127.0.0.1", dns));
        let mut buf = [0u8; 64];
        if let Ok(n) = udp.recv(&mut buf) {
            echoed = String::from_utf8_lossy(&buf[..n]).to_string();
            break;
        }
    }
    assert_eq!(echoed, "echo:ping");
    assert!(s.docker_ok(&["port", "web", "80"]).contains(&format!("127.0.0.1:{web}")));
    // A port taken on the host: a clear error from `docker run`.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let out = s.docker(&["run", "--rm", "-p", &format!("{taken_port}:80"), "busybox", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("port is already allocated"), "{out:?}");
    drop(taken);
    s.docker_ok(&["rm", "-f", "web"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpListener::bind(("127.0.0.1", web)).is_err() {
        assert!(Instant::now() < deadline, "the host port was not released");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A user-defined network with DNS, inside the VM.
    s.docker_ok(&["network", "create", "app"]);
    s.docker_ok(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "app",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let host = s.docker_ok(&["inspect", "-f", "{{.Config.Hostname}}", "api"]);
    let got = s.docker_ok(&["run", "--rm", "--network", "app", "busybox", "wget", "-qO-", "http://api/hostname"]);
    assert_eq!(got.trim(), host.trim());

    // host.docker.internal is the host's loopback, reached through NAT and the user-mode network.
    let (port, greeter) = skiff_tests::greet_once("127.0.0.1", b"hello from the host\n");
    let got = s.docker_ok(&["run", "--rm", "busybox", "nc", "-w", "5", "host.docker.internal", &port.to_string()]);
    assert_eq!(got, "hello from the host\n");
    let _ = greeter.join();
    s.docker_ok(&["rm", "-f", "api"]);
    s.docker_ok(&["network", "rm", "app"]);
    s.skiff_ok(&["stop"]);
}

/// Where KVM passes the probe but QEMU aborts at launch under it (nested virtualisation: "failed
/// to set MSR", an assertion in kvm.c), `skiff start` falls back to TCG with one clear line, and
/// `skiff status` shows the accelerator in use and why.
#[test]
fn kvm_that_aborts_qemu_at_launch_falls_back_to_tcg_with_the_reason() {
    let mut s = SkiffHome::new();
    // The probe's verdict for this boot: KVM works (the test guest passed)…
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    std::fs::create_dir_all(s.home().join("run")).expect("run dir");
    let cached = serde_json::json!({"boot_id": boot_id.trim(), "kvm": {"Ok": null}});
    std::fs::write(s.home().join("run/accel.json"), cached.to_string()).expect("accel cache");
    // …but the real QEMU aborts as soon as it is asked for KVM, as on these machines.
    let bin = tempfile::tempdir().expect("bin dir");
    let qemu = bin.path().join("qemu-system-x86_64");
    let real = String::from_utf8_lossy(
        &std::process::Command::new("sh").args(["-c", "command -v qemu-system-x86_64"]).output().expect("which").stdout,
    )
    .trim()
    .to_string();
    std::fs::write(
        &qemu,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" kvm \"*)\n  echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0' >&2\n  kill -ABRT $$ ;;\nesac\nexec {real} \"$@\"\n"
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    s.set_env("SKIFF_QEMU", &qemu.display().to_string());
    let out = s.skiff(&["start", "--accel", "auto", "--memory", "512"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}\n--- daemon log ---\n{}", s.daemon_log());
    let notices: Vec<&str> = err.lines().filter(|l| l.contains("no hardware acceleration")).collect();
    assert_eq!(notices.len(), 1, "one clear line: {err}");
    assert!(notices[0].contains("KVM failed at launch") && notices[0].contains("TCG"), "{err}");
    let status = s.status();
    assert_eq!(status["accel"], "tcg", "{status}");
    assert!(status["accel_notice"].as_str().is_some_and(|n| n.contains("failed at launch")), "{status}");
    assert_eq!(s.docker_ok(&["version", "--format", "{{.Server.Os}}"]).trim(), "linux");
    s.skiff_ok(&["stop"]);
    // The daemon's last helpers may take a moment to be reaped after `stop` returns (seen on a
    // loaded machine: listed at the check, gone when the message was made).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !s.processes().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left = s.processes();
    assert!(left.is_empty(), "{left:?}");
}

/// README's steps after `scripts/run.sh` ("Then, with the VM running:"), run as written: each line
/// of that block through a shell with a terminal (`-it`), from the repository's root, with only
/// the docker context choosing the engine (no DOCKER_HOST).
fn readme_steps_work_as_written(s: &SkiffHome) {
    let readme = std::fs::read_to_string(skiff_tests::workspace().join("README.md")).expect("README.md");
    let block: Vec<String> = readme
        .split("Then, with the VM running:")
        .nth(1)
        .expect("README names the steps after run.sh")
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    "))
        .map(|l| l.trim().to_string())
        .collect();
    assert!(block.len() >= 2, "README's steps: {block:?}");
    for line in &block {
        let command = line.split("  #").next().unwrap_or(line).trim();
        let mut child = std::process::Command::new("script")
            .args(["-qec", command, "/dev/null"])
            .current_dir(skiff_tests::workspace())
            .env_remove("DOCKER_HOST")
            .env("DOCKER_CONFIG", s.docker_config())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script");
        // An interactive shell gets a command and exits.
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"echo readme-$((20+22))\nexit\n")
            .expect("typing");
        let out = child.wait_with_output().expect("README step");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "README step {command:?} failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        if command.contains("-it") {
            assert!(text.contains("readme-42"), "README step {command:?} gave no interactive shell: {text}");
        }
    }
}

/// The arm64 (Apple-silicon) guest, emulated on this amd64 machine: `skiff start --arch arm64`
/// boots it, its engine picks arm64 from a multi-platform image and runs it natively, and volumes,
/// bind mounts and published ports work as on amd64.
#[test]
fn arm64_guest_boots_under_emulation_and_runs_containers() {
    use std::io::{Read, Write};
    let s = SkiffHome::new();
    let shared = tempfile::Builder::new().prefix("skiff-share-").tempdir_in("/tmp").expect("share dir");
    let dir = shared.path().display().to_string();
    std::fs::write(shared.path().join("input"), "from the host\n").expect("input");
    s.skiff_ok(&["start", "--arch", "arm64", "--cpus", "2", "--memory", "1024", "--share", &dir]);
    let status = s.status();
    assert_eq!(status["arch"], "arm64", "{status}");
    assert!(status["accel_notice"].as_str().is_some_and(|n| n.contains("emulated")), "{status}");
    assert!(s.skiff_ok(&["status"]).contains("arm64"));

    let image = "skiff-test/busybox-multi";
    s.docker_ok(&["load", "-i", &fixture("busybox-multi-oci.tar").display().to_string()]);
    assert_eq!(s.docker_ok(&["image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", image]), "linux/arm64\n");
    assert_eq!(s.docker_ok(&["run", "--rm", image, "uname", "-m"]), "aarch64\n");

    s.docker_ok(&["run", "--rm", "-v", "data:/d", image, "sh", "-c", "echo kept > /d/f"]);
    assert_eq!(s.docker_ok(&["run", "--rm", "-v", "data:/d", image, "cat", "/d/f"]), "kept\n");
    let bind = format!("{dir}:/w");
    assert_eq!(s.docker_ok(&["run", "--rm", "-v", &bind, image, "cat", "/w/input"]), "from the host\n");

    let port = skiff_tests::free_port();
    let publish = format!("{port}:80");
    s.docker_ok(&[
        "run", "-d", "--name", "web", "-p", &publish, "-v", &bind, image, "httpd", "-f", "-p", "80", "-h", "/w",
    ]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let body = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port)).ok().and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            c.write_all(b"GET /input HTTP/1.0\r\n\r\n").ok()?;
            let mut text = String::new();
            c.read_to_string(&mut text).ok()?;
            Some(text)
        });
        match got {
            Some(text) if text.contains("from the host") => break text,
            _ if Instant::now() > deadline => panic!("the published port never served the file: {got:?}"),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"), "{body}");
    s.skiff_ok(&["stop", "--timeout", "1"]);
    assert_eq!(s.status()["state"], "stopped");
}

/// Memory and disk given back: what the guest frees leaves the host's QEMU process (virtio-balloon
/// free page reporting) and the data disk's sparse file (the guest's trimmer, QEMU's
/// `discard=unmap`), and `skiff status` shows both as the host sees them.
#[test]
fn vm_gives_freed_memory_and_disk_back_to_the_host() {
    let s = SkiffHome::new();
    s.skiff_ok(&["start", "--accel", "tcg", "--memory", "1024"]);
    s.docker_ok(&["load", "-i", &fixture("busybox.tar").display().to_string()]);
    let usage = || {
        let st = s.status();
        let mib = |k: &str| st[k].as_u64().map(|b| b >> 20).unwrap_or_else(|| panic!("no {k} in {st}"));
        (mib("host_memory_bytes"), mib("disk_allocated_bytes"))
    };
    let wait_for = |what: &str, ok: &dyn Fn((u64, u64)) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let u = usage();
            if ok(u) {
                return u;
            }
            assert!(Instant::now() < deadline, "{what}: memory {} MiB, disk {} MiB", u.0, u.1);
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let text = s.skiff_ok(&["status"]);
    assert!(text.contains("host:") && text.contains("MiB memory") && text.contains("MiB disk"), "{text}");

    // Memory (first, while the guest's page cache is small): 400 MiB of tmpfs filled in a
    // container, then the container removed: the pages the guest frees leave QEMU.
    let (mem0, _) = usage();
    s.docker_ok(&[
        "run",
        "-d",
        "--name",
        "hog",
        "--tmpfs",
        "/hog:size=512m",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/hog/f bs=1M count=400 && sleep 600",
    ]);
    let (peak, _) = wait_for("the guest's memory use reaching the host", &|(m, _)| m >= mem0 + 350);
    s.docker_ok(&["rm", "-f", "hog"]);
    let (low, _) = wait_for("freed guest memory leaving the host", &|(m, _)| m + 250 <= peak);
    eprintln!("VM memory on the host: {mem0} MiB → {peak} MiB with the tmpfs full → {low} MiB after");

    // Disk: 400 MiB written in a container and committed to an image (twice that on disk), then
    // both removed: the host's file shrinks back.
    let (_, disk0) = usage();
    s.docker_ok(&["run", "--name", "big", "busybox", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=400"]);
    s.docker_ok(&["commit", "big", "reclaim:big"]);
    let (_, full) = wait_for("the written data reaching the host's disk file", &|(_, d)| d >= disk0 + 700);
    s.docker_ok(&["rm", "big"]);
    s.docker_ok(&["rmi", "reclaim:big"]);
    let (_, after) = wait_for("the deleted data leaving the host's disk file", &|(_, d)| d <= disk0 + 100);
    eprintln!("disk file: {disk0} MiB → {full} MiB written → {after} MiB after removal");
    s.skiff_ok(&["stop"]);
}

/// File-change events from the host: `inotifywait` in a container hears of edits made on the host
/// to a bind-mounted folder (the daemon watches the folders running containers bind-mount; the
/// guest's `skiff_fsnotify` module raises each change as the guest's own VFS would have).
#[test]
fn vm_host_edits_raise_inotify_events_in_containers() {
    let s = SkiffHome::new();
    let share = tempfile::tempdir().expect("share");
    let dir = share.path().join("app");
    std::fs::create_dir_all(dir.join("deep")).expect("app dir");
    std::fs::write(dir.join("existing.txt"), "one\n").expect("file");
    let app = dir.display().to_string();
    s.skiff_ok(&["start", "--accel", "tcg", "--memory", "1024", "--share", &share.path().display().to_string()]);
    s.docker_ok(&["load", "-i", &fixture("inotify.tar").display().to_string()]);
    s.docker_ok(&[
        "run",
        "-d",
        "--name",
        "watcher",
        "-v",
        &format!("{app}:/app"),
        "skiff-test/inotify:bookworm",
        "inotifywait",
        "-m",
        "-r",
        "-e",
        "modify,close_write,attrib,create,delete,moved_from,moved_to",
        "--format",
        "%e %w%f",
        "/app",
    ]);
    let logs = || {
        let out = s.docker(&["logs", "watcher"]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(Instant::now() < deadline, "{what}\n--- watcher:\n{}\n--- daemon:\n{}", logs(), s.daemon_log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("inotifywait ready", &|| logs().contains("Watches established"));
    wait_for("the host watching the bind-mounted folder", &|| {
        s.daemon_log().contains(&format!("watching for changes to raise in containers path={app}"))
    });

    // Each kind of change a watcher reacts to, made on the host.
    let p = |name: &str| dir.join(name);
    std::fs::write(p("new.txt"), "created on the host\n").expect("create");
    let mut f = std::fs::OpenOptions::new().append(true).open(p("existing.txt")).expect("open");
    std::io::Write::write_all(&mut f, b"two\n").expect("append");
    drop(f);
    std::fs::set_permissions(p("existing.txt"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::create_dir(p("sub")).expect("mkdir");
    std::fs::write(p("deep/nested.txt"), "in a subfolder\n").expect("nested");
    std::fs::rename(p("new.txt"), p("renamed.txt")).expect("rename");
    std::fs::remove_file(p("renamed.txt")).expect("delete");
    for line in [
        "CREATE /app/new.txt",
        "MODIFY /app/existing.txt",
        "CLOSE_WRITE,CLOSE /app/existing.txt",
        "ATTRIB /app/existing.txt",
        "CREATE,ISDIR /app/sub",
        "CREATE /app/deep/nested.txt",
        "MOVED_FROM /app/new.txt",
        "MOVED_TO /app/renamed.txt",
        "DELETE /app/renamed.txt",
    ] {
        wait_for(&format!("the event {line:?}"), &|| logs().lines().any(|l| l == line));
    }
    // A change the container itself makes is seen natively, as before.
    s.docker_ok(&["exec", "watcher", "sh", "-c", "echo from-the-container > /app/inside.txt"]);
    wait_for("the container's own change", &|| logs().lines().any(|l| l == "CLOSE_WRITE,CLOSE /app/inside.txt"));
    // The content is the host's (events and data agree).
    assert_eq!(s.docker_ok(&["exec", "watcher", "cat", "/app/existing.txt"]), "one\ntwo\n");
    s.docker_ok(&["rm", "-f", "watcher"]);
    s.skiff_ok(&["stop"]);
}
