//! The container runtime, proven through the real docker CLI 28 against `skiff-agent serve`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::Agent;

fn agent_with_busybox() -> Agent {
    let a = Agent::start();
    a.load("busybox.tar");
    a
}

#[test]
fn run_prints_output_and_propagates_exit_codes() {
    let a = agent_with_busybox();
    assert_eq!(a.ok(&["run", "--rm", "busybox", "echo", "hi"]), "hi\n");
    let out = a.docker(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = a.docker(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found in $PATH"));
    assert_eq!(a.ok(&["ps", "-aq"]).trim(), "", "--rm containers must be gone, even after a failed start");
}

#[test]
fn stdin_is_streamed_and_half_close_ends_it() {
    let a = agent_with_busybox();
    let mut child = a
        .docker_cmd(&["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker run -i");
    child.stdin.take().expect("stdin").write_all(b"line one\nline two\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line one\nline two\ndone\n");
}

#[test]
fn detached_lifecycle_logs_stop_start_rm() {
    let a = agent_with_busybox();
    let id = a
        .ok(&[
            "run",
            "-d",
            "--name",
            "ticker",
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let mut follow = a.docker_cmd(&["logs", "-f", "ticker"]).stdout(Stdio::piped()).spawn().expect("logs -f");
    let mut first = [0u8; 7];
    std::io::Read::read_exact(follow.stdout.as_mut().expect("stdout"), &mut first)
        .expect("a line arrives while following");
    assert_eq!(&first, b"tick 0\n");
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(a.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]).contains("ticker Up"));
    let started = Instant::now();
    a.ok(&["stop", "-t", "1", "ticker"]);
    assert!(started.elapsed() < Duration::from_secs(8), "stop must SIGKILL after the timeout");
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ticker"]).trim(), "exited 137");
    let logs = a.ok(&["logs", "--tail", "2", "-t", "ticker"]);
    assert_eq!(logs.lines().count(), 2, "{logs}");
    assert!(logs.lines().all(|l| l.contains("Z tick ")), "{logs}");
    a.ok(&["start", "ticker"]);
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Running}}", "ticker"]).trim(), "true");
    let err = a.fails(&["rm", "ticker"]);
    assert!(err.contains("stop the container") || err.contains("force"), "{err}");
    a.ok(&["kill", "-s", "TERM", "ticker"]);
    a.ok(&["rm", "-f", "ticker"]);
    assert_eq!(a.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn ps_filters_and_inspect_fields() {
    let a = agent_with_busybox();
    a.ok(&["run", "-d", "--name", "up1", "--label", "tier=web", "busybox", "sleep", "30"]);
    assert_eq!(a.docker(&["run", "--name", "done1", "busybox", "sh", "-c", "exit 4"]).status.code(), Some(4));
    a.ok(&["create", "--name", "new1", "busybox", "true"]);
    assert_eq!(a.ok(&["ps", "--format", "{{.Names}}"]).trim(), "up1");
    let all = a.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(all.lines().count(), 3, "{all}");
    assert_eq!(a.ok(&["ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}"]).trim(), "done1");
    assert_eq!(a.ok(&["ps", "-a", "--filter", "exited=4", "--format", "{{.Names}}"]).trim(), "done1");
    assert_eq!(a.ok(&["ps", "-a", "--filter", "status=created", "--format", "{{.Names}}"]).trim(), "new1");
    assert_eq!(a.ok(&["ps", "--filter", "label=tier=web", "-q"]).trim().len(), 12);
    assert_eq!(a.ok(&["ps", "-a", "--filter", "name=done", "--format", "{{.Names}}"]).trim(), "done1");
    assert_eq!(a.ok(&["ps", "-a", "--filter", "ancestor=busybox", "-q"]).lines().count(), 3);
    assert_eq!(a.ok(&["ps", "-a", "--filter", "before=new1", "--format", "{{.Names}}"]).lines().count(), 2);
    assert_eq!(a.ok(&["ps", "-a", "--filter", "since=up1", "--format", "{{.Names}}"]).lines().count(), 2);
    assert_eq!(a.ok(&["ps", "-a", "--filter", "publish=80", "-q"]).trim(), "", "no container publishes ports");
    let fields = a.ok(&[
        "inspect",
        "-f",
        "{{.Name}} {{.Config.Image}} {{.Path}} {{.State.Status}} {{.HostConfig.NetworkMode}}",
        "up1",
    ]);
    assert!(fields.starts_with("/up1 busybox sleep running"), "{fields}");
    let err = a.fails(&["create", "--name", "up1", "busybox", "true"]);
    assert!(err.contains("is already in use"), "{err}");
    let err = a.fails(&["create", "--name", "bad name", "busybox", "true"]);
    assert!(err.contains("Invalid container name"), "{err}");
    let err = a.fails(&["inspect", "nosuchcontainer"]);
    assert!(err.contains("No such"), "{err}");
    let err = a.fails(&["rmi", "busybox"]);
    assert!(err.contains("being used by"), "{err}");
    assert_eq!(
        a.ok(&["info", "--format", "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}}"]).trim(),
        "3 1 2"
    );
    let df = a.ok(&["system", "df"]);
    assert!(df.lines().any(|l| l.starts_with("Containers") && l.split_whitespace().nth(1) == Some("3")), "{df}");
    a.ok(&["rm", "-f", "up1", "done1", "new1"]);
}

#[test]
fn isolation_matches_dockers_defaults() {
    let a = agent_with_busybox();
    let script = "echo pid=$$; echo env=$HOSTNAME; hostname; ps -o pid | wc -l; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
                  cat /proc/sys/kernel/hostname >/dev/null; echo x > /proc/sys/kernel/hostname 2>/dev/null && echo sysrw || echo sysro; \
                  unshare -n true 2>/dev/null && echo unshare-ok || echo unshare-blocked; \
                  mount -t tmpfs none /mnt 2>/dev/null && echo mount-ok || echo mount-blocked; \
                  ls /dev; cat /proc/1/cmdline | tr '\\0' ' '";
    let out = a.ok(&["run", "--rm", "--hostname", "box1", "busybox", "sh", "-c", script]);
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("box1\n"), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "Docker's default capability set: {out}");
    // Like dockerd: no NoNewPrivs unless asked for (setuid programs work), seccomp on.
    assert!(out.contains("NoNewPrivs:\t0") && out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("env=box1\n"), "HOSTNAME is in the environment: {out}");
    let nnp = a.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert!(nnp.contains("NoNewPrivs:\t1"), "{nnp}");
    assert!(out.contains("sysro"), "/proc/sys must be read-only: {out}");
    assert!(out.contains("unshare-blocked") && out.contains("mount-blocked"), "{out}");
    for dev in ["null", "zero", "random", "urandom", "tty", "pts", "shm", "mqueue"] {
        assert!(out.lines().any(|l| l == dev), "/dev/{dev} missing: {out}");
    }
    let host_hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    assert!(!out.contains(&host_hostname) || host_hostname.is_empty(), "{out}");
    // Masked paths hide what Docker hides.
    let masked = a.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "wc -c < /proc/timer_list 2>/dev/null || echo absent; ls /sys/firmware | wc -l",
    ]);
    let nums: Vec<&str> = masked.split_whitespace().collect();
    assert!(nums.first().is_some_and(|n| *n == "0" || *n == "absent"), "{masked}");
    assert_eq!(nums.get(1), Some(&"0"), "{masked}");
    // No host processes are visible.
    let ps = a.ok(&["run", "--rm", "busybox", "ps", "-o", "pid,comm"]);
    assert_eq!(ps.lines().count(), 2, "only the header and ps itself: {ps}");
}

#[test]
fn user_caps_readonly_tmpfs_and_ulimits() {
    let a = agent_with_busybox();
    assert_eq!(a.ok(&["run", "--rm", "-u", "1000:1000", "busybox", "id", "-u"]).trim(), "1000");
    let app = a.ok(&["run", "--rm", "-u", "app", "busybox", "id"]);
    assert!(app.contains("uid=1000(app) gid=1000(app)"), "{app}");
    assert_eq!(
        a.ok(&["run", "--rm", "--cap-drop", "ALL", "busybox", "grep", "CapEff", "/proc/self/status"]).trim(),
        "CapEff:\t0000000000000000"
    );
    let added = a.ok(&["run", "--rm", "--cap-add", "NET_ADMIN", "busybox", "grep", "CapEff", "/proc/self/status"]);
    assert!(added.contains("00000000a80435fb"), "{added}");
    let out = a.docker(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert!(!out.status.success(), "--read-only root must refuse writes");
    assert_eq!(
        a.ok(&[
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            "/scratch",
            "busybox",
            "sh",
            "-c",
            "touch /scratch/x && echo ok"
        ])
        .trim(),
        "ok"
    );
    assert_eq!(a.ok(&["run", "--rm", "--ulimit", "nofile=512:1024", "busybox", "sh", "-c", "ulimit -n"]).trim(), "512");
    assert_eq!(
        a.ok(&["run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "busybox", "sh", "-c", "echo $FOO $PWD $HOME"]).trim(),
        "bar /tmp /root"
    );
    let err = a.fails(&["run", "--rm", "--cap-add", "NOT_A_CAP", "busybox", "true"]);
    assert!(err.contains("invalid capability"), "{err}");
}

#[test]
fn tty_run_gives_an_interactive_shell() {
    let a = agent_with_busybox();
    // `script` gives the docker CLI a real terminal, as a user's shell would.
    let cmd =
        format!("DOCKER_HOST={} docker run --rm -it busybox sh -c 'tty; stty size; echo tty-works'", a.docker_host());
    let out = Command::new("script")
        .args(["-qec", &format!("stty rows 30 cols 100; {cmd}"), "/dev/null"])
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.contains("30 100"), "window size from the client: {text}");
    assert!(text.contains("tty-works"), "{text}");
}

#[test]
fn failures_leave_nothing_behind() {
    let a = agent_with_busybox();
    // Only this engine's mounts count: tests in parallel mount their own (cp of stopped containers).
    let root = a.root().display().to_string();
    let own_mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .filter(|l| l.contains(&root))
            .count()
    };
    let before = own_mounts();
    // A port in use fails the start at its network step, after the runtime child was started.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let publish = format!("127.0.0.1:{}:80", taken.local_addr().expect("addr").port());
    let err = a.fails(&["run", "--rm", "-p", &publish, "busybox", "true"]);
    assert!(err.contains("port is already allocated"), "{err}");
    for args in [
        vec!["run", "--rm", "busybox", "nosuchcmd"],
        vec!["run", "--rm", "busybox", "sh", "-c", "exit 1"],
        vec!["run", "--rm", "-v", "/no/such/dir:/x", "busybox", "true"],
        vec!["run", "--rm", "--memory", "1k", "busybox", "true"],
        vec!["run", "--rm", "busybox", "/bin"],
        vec!["run", "--rm", "-d", "busybox", "sleep", "987654"],
    ] {
        let _ = a.docker(&args);
    }
    let ids = a.ok(&["ps", "-q"]);
    for id in ids.lines() {
        a.ok(&["rm", "-f", id]);
    }
    assert_eq!(a.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(before, own_mounts(), "container mounts leaked into the host");
    // A removed container's files are deleted in the background (renamed out of the way first).
    let dirs = || std::fs::read_dir(a.root().join("containers")).expect("containers dir").count();
    for _ in 0..100 {
        if dirs() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(dirs(), 0, "container directories leaked");
    let leaked: Vec<String> = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("cmdline")).ok())
        .filter(|c| c.contains("sleep\u{0}987654") || c.contains(&format!("child\u{0}{root}")))
        .collect();
    assert!(leaked.is_empty(), "processes leaked: {leaked:?} ({root})");
    drop(taken);
}

#[test]
fn exec_runs_in_the_container_with_and_without_tty() {
    let a = agent_with_busybox();
    a.ok(&["run", "-d", "--name", "host1", "-e", "BASE=1", "busybox", "sleep", "300"]);
    assert_eq!(a.ok(&["exec", "host1", "echo", "hi-from-exec"]), "hi-from-exec\n");
    assert_eq!(a.docker(&["exec", "host1", "sh", "-c", "exit 7"]).status.code(), Some(7));
    let out = a.ok(&[
        "exec",
        "-u",
        "1000",
        "-w",
        "/tmp",
        "-e",
        "X=y",
        "host1",
        "sh",
        "-c",
        "id -u; pwd; echo $X $BASE; ps -o comm",
    ]);
    assert_eq!(out, "1000\n/tmp\ny 1\nCOMMAND\nsleep\nps\n", "exec shares the container's pid namespace and env");
    let mut child = a
        .docker_cmd(&["exec", "-i", "host1", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("exec -i");
    child.stdin.take().expect("stdin").write_all(b"piped\n").expect("write");
    assert_eq!(String::from_utf8_lossy(&child.wait_with_output().expect("wait").stdout), "piped\n");
    let cmd = format!("DOCKER_HOST={} docker exec -it host1 sh -c 'tty; stty size'", a.docker_host());
    let out = Command::new("script")
        .args(["-qec", &format!("stty rows 25 cols 90; {cmd}"), "/dev/null"])
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/") && text.contains("25 90"), "{text}");
    // As dockerd: an exec that cannot start exits 126, a missing binary included.
    let out = a.docker(&["exec", "host1", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stdout).contains("executable file not found"));
    a.ok(&["stop", "-t", "0", "host1"]);
    let err = a.fails(&["exec", "host1", "true"]);
    assert!(err.contains("not running"), "{err}");
    a.ok(&["rm", "host1"]);
}

/// The cgroup directories of container `id` on this host (v1 controllers or v2).
fn cgroup_dirs(id: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join("skiff").join(id);
            if p.exists() {
                out.push(p);
            }
        }
    }
    let v2 = std::path::Path::new("/sys/fs/cgroup/skiff").join(id);
    if v2.exists() {
        out.push(v2);
    }
    out
}

#[test]
fn cgroup_limits_pause_top_and_stats() {
    let a = agent_with_busybox();
    // The memory hog is killed by the OOM killer and reported as such.
    let out = a.docker(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.OOMKilled}}", "hog"]).trim(), "true");
    let hog = a.ok(&["inspect", "-f", "{{.Id}}", "hog"]).trim().to_string();
    a.ok(&["rm", "hog"]);
    // A removed container's cgroups go just after the answer (remove.rs, in the background).
    assert!(
        eventually(|| cgroup_dirs(&hog).is_empty()),
        "cgroups of a removed container remain: {:?}",
        cgroup_dirs(&hog)
    );
    let forks = a.docker(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 3 & done; wait",
    ]);
    assert!(
        String::from_utf8_lossy(&forks.stderr).contains("can't fork"),
        "{}",
        String::from_utf8_lossy(&forks.stderr)
    );
    a.ok(&["run", "-d", "--name", "clock", "busybox", "sh", "-c", "while true; do echo t; sleep 0.1; done"]);
    std::thread::sleep(Duration::from_millis(300));
    a.ok(&["pause", "clock"]);
    assert!(a.ok(&["ps", "--format", "{{.Status}}"]).contains("(Paused)"));
    // An exec would join the frozen cgroups and freeze with them: refused, as by dockerd.
    let err = a.fails(&["exec", "clock", "true"]);
    assert!(err.contains("is paused, unpause the container before exec"), "{err}");
    let before = a.ok(&["logs", "clock"]).lines().count();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(a.ok(&["logs", "clock"]).lines().count(), before, "a paused container printed");
    a.ok(&["unpause", "clock"]);
    std::thread::sleep(Duration::from_millis(400));
    assert!(a.ok(&["logs", "clock"]).lines().count() > before);
    // An exec'd process is in the container's cgroups, as with runc: listed by top, frozen by pause.
    a.ok(&["exec", "-d", "clock", "sleep", "4321"]);
    std::thread::sleep(Duration::from_millis(200));
    let top = a.ok(&["top", "clock"]);
    assert!(top.contains("PID") && top.contains("while true") && top.contains("sleep 4321"), "{top}");
    let stats = a.ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "clock"]);
    assert!(stats.starts_with("clock ") && !stats.contains(" 0B /"), "{stats}");
    let id = a.ok(&["inspect", "-f", "{{.Id}}", "clock"]).trim().to_string();
    assert!(!cgroup_dirs(&id).is_empty(), "a running container has cgroups");
    // Each hierarchy holds PID 1 and the exec'd process: v1 ones are joined thread by thread, the
    // v2 one from birth (CLONE_INTO_CGROUP), and that is the whole process either way.
    let pid1 = a.ok(&["inspect", "-f", "{{.State.Pid}}", "clock"]).trim().to_string();
    for dir in cgroup_dirs(&id) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let cmdline = |p: &str| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        assert!(procs.lines().any(|p| p == pid1), "{}: no PID 1 ({pid1}) in {procs:?}", dir.display());
        assert!(procs.lines().any(|p| cmdline(p) == b"sleep\x004321\x00"), "{}: no exec in {procs:?}", dir.display());
    }
    a.ok(&["rm", "-f", "clock"]);
    assert!(eventually(|| cgroup_dirs(&id).is_empty()), "cgroups leaked: {:?}", cgroup_dirs(&id));
    let err = a.fails(&["run", "--rm", "--memory", "4m", "busybox", "true"]);
    assert!(err.contains("Minimum memory limit"), "{err}");
}

/// Polls `cond` for up to 5 s.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The memory limit (bytes) of a container's v1 memory cgroup or v2 one.
fn memory_limit(id: &str) -> Option<String> {
    cgroup_dirs(id).iter().find_map(|d| {
        std::fs::read_to_string(d.join("memory.limit_in_bytes"))
            .or_else(|_| std::fs::read_to_string(d.join("memory.max")))
            .ok()
            .map(|v| v.trim().to_string())
    })
}

/// A container's cgroups are made right after `create`, while the client gets ready to start it
/// (engine/containers/early_cgroup.rs): its start uses them with the limits of that moment, and
/// its removal takes them, whether it ran or not, with or without `--rm`.
#[test]
fn cgroups_made_at_create_follow_updates_and_go_with_the_container() {
    let a = agent_with_busybox();
    let id = a.ok(&["create", "--memory", "64m", "busybox", "sleep", "100"]).trim().to_string();
    assert!(eventually(|| memory_limit(&id).as_deref() == Some("67108864")), "{:?}", memory_limit(&id));
    // Changed before the start: the start applies the new limit, not the one made ahead.
    a.ok(&["update", "--memory", "48m", "--memory-swap", "96m", &id]);
    a.ok(&["start", &id]);
    assert_eq!(memory_limit(&id).as_deref(), Some("50331648"));
    let pid1 = a.ok(&["inspect", "-f", "{{.State.Pid}}", &id]).trim().to_string();
    for dir in cgroup_dirs(&id) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        assert!(procs.lines().any(|p| p == pid1), "PID 1 not in {}: {procs:?}", dir.display());
    }
    a.ok(&["rm", "-f", &id]);
    assert!(
        eventually(|| cgroup_dirs(&id).is_empty()),
        "cgroups of a removed container remain: {:?}",
        cgroup_dirs(&id)
    );
    // Never started.
    let idle = a.ok(&["create", "busybox", "true"]).trim().to_string();
    a.ok(&["rm", &idle]);
    assert!(eventually(|| cgroup_dirs(&idle).is_empty()), "{:?}", cgroup_dirs(&idle));
    // `--rm`: the limit made ahead holds, and the cgroups go with the container.
    let rm = a.ok(&["run", "-d", "--rm", "--memory", "40m", "busybox", "sleep", "60"]).trim().to_string();
    assert_eq!(memory_limit(&rm).as_deref(), Some("41943040"));
    a.ok(&["kill", &rm]);
    assert!(eventually(|| cgroup_dirs(&rm).is_empty()), "{:?}", cgroup_dirs(&rm));
}

/// The engine's descriptors that are a container's root: `O_PATH` descriptors of another mount
/// namespace's "/" (runtime/report.rs).
fn held_roots(agent: u32) -> usize {
    std::fs::read_dir(format!("/proc/{agent}/fd"))
        .map(|d| {
            d.flatten().filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == std::path::Path::new("/"))).count()
        })
        .unwrap_or(0)
}

/// While a container runs, the engine holds its root (so its overlay is not unmounted, and the
/// file system under it synced, before its exit is answered), and lets go of it after its exit
/// or removal: nothing accumulates, and the container starts again on the same directories.
#[test]
fn a_containers_root_is_held_while_it_runs_and_let_go_after() {
    let a = agent_with_busybox();
    let agent = a.pid().unwrap_or_else(|| panic!("the agent runs"));
    let id = a.ok(&["run", "-d", "busybox", "sh", "-c", "echo kept > /kept; sleep 100"]).trim().to_string();
    assert_eq!(held_roots(agent), 1);
    a.ok(&["kill", &id]);
    a.ok(&["wait", &id]);
    assert!(eventually(|| held_roots(agent) == 0), "{}", held_roots(agent));
    a.ok(&["start", &id]);
    assert_eq!(a.ok(&["exec", &id, "cat", "/kept"]).trim(), "kept");
    assert_eq!(held_roots(agent), 1);
    a.ok(&["rm", "-f", &id]);
    for _ in 0..5 {
        assert_eq!(a.ok(&["run", "--rm", "busybox", "sh", "-c", "echo hi > /f && cat /f"]).trim(), "hi");
    }
    assert!(eventually(|| held_roots(agent) == 0), "{}", held_roots(agent));
}

/// The children of `parent` whose command line is `skiff-agent ready` (runtime children made
/// ahead), with their scheduling policy (field 41 of /proc/PID/stat; 5 is SCHED_IDLE).
fn ready_children(parent: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the command name (which is in parentheses and may hold spaces).
        let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split(' ').collect()).unwrap_or_default();
        let ppid = fields.get(1).and_then(|f| f.parse::<u32>().ok());
        let policy = fields.get(38).and_then(|f| f.parse::<u32>().ok()).unwrap_or(u32::MAX);
        if ppid == Some(parent) && cmdline == b"skiff-agent\0ready\0" {
            out.push((pid, policy));
        }
    }
    out
}

/// Waits for the one runtime child made ahead; returns its pid.
fn ready_child(agent: u32) -> u32 {
    for _ in 0..200 {
        if let [(pid, policy)] = ready_children(agent)[..] {
            assert_eq!(policy, 5, "a runtime child made ahead waits at idle priority (SCHED_IDLE)");
            return pid;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no runtime child made ahead: {:?}", ready_children(agent));
}

fn policy_of(pid: &str) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').nth(38).map(str::to_string)).unwrap_or_default()
}

#[test]
fn a_runtime_child_made_ahead_starts_the_next_container_and_exec() {
    let a = agent_with_busybox();
    let agent = a.pid().unwrap_or_else(|| panic!("the agent is not running"));
    // An engine that started nothing holds none; a start makes one, after it.
    assert!(ready_children(agent).is_empty(), "{:?}", ready_children(agent));
    a.ok(&["run", "--rm", "busybox", "true"]);
    let first = ready_child(agent);
    // The next start hands it the job: it becomes that container's runtime child and exits.
    a.ok(&["run", "-d", "--name", "warm", "busybox", "sleep", "1000"]);
    let second = ready_child(agent);
    assert_ne!(first, second, "the ready child was not used");
    assert!(!std::path::Path::new(&format!("/proc/{first}")).exists(), "the used ready child is still there");
    // The container's process was made in its v2 cgroup at the fork and joined the v1 ones; it
    // runs at normal priority, not the idle one its runtime child was made with.
    let id = a.ok(&["inspect", "-f", "{{.Id}}", "warm"]).trim().to_string();
    let pid1 = a.ok(&["inspect", "-f", "{{.State.Pid}}", "warm"]).trim().to_string();
    assert!(!cgroup_dirs(&id).is_empty(), "a running container has cgroups");
    for dir in cgroup_dirs(&id) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        assert!(procs.lines().any(|p| p == pid1), "{}: no PID 1 ({pid1}) in {procs:?}", dir.display());
    }
    assert_eq!(policy_of(&pid1), "0", "the container runs at SCHED_OTHER");
    // docker exec takes the next one the same way. Both PID 1 and the exec'd process see their
    // cgroups as the root of their cgroup namespace (it is made once they are in them).
    let seen = a.ok(&["exec", "warm", "cat", "/proc/1/cgroup", "/proc/self/cgroup"]);
    assert!(!seen.is_empty() && seen.lines().all(|l| l.ends_with(":/")), "{seen}");
    let third = ready_child(agent);
    assert_ne!(second, third, "exec did not use the ready child");
    a.ok(&["exec", "-d", "warm", "sleep", "4321"]);
    let fourth = ready_child(agent);
    assert_ne!(third, fourth, "exec did not use the ready child");
    std::thread::sleep(Duration::from_millis(200));
    let top = a.ok(&["top", "warm"]);
    assert!(top.contains("sleep 4321"), "{top}");
    for dir in cgroup_dirs(&id) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let exec = procs
            .lines()
            .find(|p| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default() == b"sleep\x004321\x00");
        let exec = exec.unwrap_or_else(|| panic!("{}: no exec in {procs:?}", dir.display()));
        assert_eq!(policy_of(exec), "0", "the exec'd process runs at SCHED_OTHER");
    }
    a.ok(&["rm", "-f", "warm"]);
    // A ready child goes with its engine.
    drop(a);
    let alive = || {
        let stat = std::fs::read_to_string(format!("/proc/{fourth}/stat")).unwrap_or_default();
        stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
    };
    for _ in 0..100 {
        if !alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(), "a ready child outlived its engine");
}

#[test]
fn restart_policies_apply_also_across_an_engine_restart() {
    let mut a = agent_with_busybox();
    a.ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1"]);
    a.ok(&["run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "1000"]);
    a.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "1000"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky"]).trim() != "2 exited" {
        assert!(Instant::now() < deadline, "on-failure:2 did not settle after two restarts");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.ok(&["logs", "flaky"]).lines().count(), 3);
    let ids: Vec<String> =
        ["always", "plain"].iter().map(|n| a.ok(&["inspect", "-f", "{{.Id}}", n]).trim().to_string()).collect();
    a.kill9();
    a.restart();
    // Nothing of the old processes is left; the restart policy brought `always` back.
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Status}}", "always"]).trim(), "running");
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "plain"]).trim(), "exited 255");
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cgroup"))
                .is_ok_and(|cg| ids.iter().any(|id| cg.contains(id.as_str())))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .collect();
    assert_eq!(leftovers.len(), 1, "only the restarted `always` container may run: {leftovers:?}");
    // A user's stop is respected by `always` until the next start.
    a.ok(&["stop", "-t", "0", "always"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Status}}", "always"]).trim(), "exited");
    a.ok(&["rm", "-f", "flaky", "always", "plain"]);
}

/// A tar ends before the body carrying it (GNU tar pads to a 10 KiB record): a client still
/// sending that padding when the extraction is done gets the answer, not a broken pipe, and the
/// connection stays usable.
fn put_archive_reads_what_follows_the_tar(a: &Agent, dir: &std::path::Path) {
    use std::io::Read;
    std::fs::write(dir.join("late.txt"), "late\n").expect("host file");
    let tar = Command::new("tar").arg("-cf").arg("-").arg("-C").arg(dir).arg("late.txt").output().expect("tar");
    assert!(tar.status.success() && tar.stdout.len() == 10240, "a GNU tar record");
    // Header, data and the two zero blocks that end the archive; the rest is padding.
    let (archive, padding) = tar.stdout.split_at(2048);
    let mut s = std::os::unix::net::UnixStream::connect(a.socket()).expect("connect");
    let head = format!(
        "PUT /containers/files/archive?path=/data HTTP/1.1\r\nHost: skiff\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        tar.stdout.len()
    );
    s.write_all(head.as_bytes()).expect("request head");
    s.write_all(archive).expect("archive");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(padding).expect("the padding is read, not refused");
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: skiff\r\nConnection: close\r\n\r\n").expect("second request");
    let mut answers = String::new();
    s.read_to_string(&mut answers).expect("answers");
    assert!(answers.starts_with("HTTP/1.1 200 OK"), "{answers}");
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "both requests answered on one connection: {answers}");
}

#[test]
fn cp_both_ways_export_diff_rename_update() {
    let a = agent_with_busybox();
    a.ok(&[
        "run",
        "-d",
        "--name",
        "files",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data && echo inside > /data/f && rm /bin/vi && sleep 1000",
    ]);
    let tmp = tempfile::tempdir().expect("tmp");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.docker(&["exec", "files", "test", "-f", "/data/f"]).status.success() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let dest = tmp.path().display().to_string();
    a.ok(&["cp", "files:/data", &dest]);
    assert_eq!(std::fs::read_to_string(tmp.path().join("data/f")).expect("copied out"), "inside\n");
    std::fs::write(tmp.path().join("h.txt"), "from host\n").expect("host file");
    a.ok(&["cp", &tmp.path().join("h.txt").display().to_string(), "files:/data/"]);
    assert_eq!(a.ok(&["exec", "files", "cat", "/data/h.txt"]), "from host\n");
    put_archive_reads_what_follows_the_tar(&a, tmp.path());
    assert_eq!(a.ok(&["exec", "files", "cat", "/data/late.txt"]), "late\n");
    let diff = a.ok(&["diff", "files"]);
    assert!(diff.contains("A /data/f") && diff.contains("D /bin/vi") && diff.contains("C /bin"), "{diff}");
    assert!(!diff.contains("/etc/hosts"), "engine files must not show as changes: {diff}");
    // A stopped container's files are reachable too, and nothing stays mounted afterwards.
    a.ok(&["stop", "-t", "0", "files"]);
    a.ok(&["cp", "files:/data/h.txt", &tmp.path().join("back.txt").display().to_string()]);
    assert_eq!(std::fs::read_to_string(tmp.path().join("back.txt")).expect("copied back"), "from host\n");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&a.root().display().to_string()), "a container filesystem stayed mounted");
    let export = a.docker_cmd(&["export", "files"]).output().expect("export");
    assert!(export.status.success() && export.stdout.len() > 1_000_000, "export is the whole filesystem");
    let err = a.fails(&["cp", "files:/no/such/file", &dest]);
    assert!(err.contains("Could not find the file"), "{err}");
    let size = a.ok(&["ps", "-a", "-s", "--filter", "name=files", "--format", "{{.Size}}"]);
    assert!(size.trim_start().starts_with(|c: char| c.is_ascii_digit()) && !size.starts_with("0B"), "{size}");
    a.ok(&["rename", "files", "renamed"]);
    a.ok(&["update", "--memory", "64m", "--restart", "on-failure:3", "renamed"]);
    assert_eq!(
        a.ok(&["inspect", "-f", "{{.Name}} {{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}", "renamed"])
            .trim(),
        "/renamed 67108864 on-failure"
    );
    a.ok(&["rm", "renamed"]);
}

#[test]
fn cp_into_a_container_cannot_escape_through_its_symlinks() {
    let a = agent_with_busybox();
    let outside = tempfile::tempdir().expect("tmp");
    let target = outside.path().display().to_string();
    a.ok(&["run", "-d", "--name", "trap", "busybox", "sh", "-c", &format!("ln -s {target} /escape && sleep 1000")]);
    std::thread::sleep(Duration::from_millis(300));
    let src = tempfile::tempdir().expect("tmp");
    std::fs::write(src.path().join("payload"), "x").expect("payload");
    let _ = a.docker(&["cp", &src.path().join("payload").display().to_string(), "trap:/escape/"]);
    assert!(!outside.path().join("payload").exists(), "docker cp followed a container symlink onto the host");
    a.ok(&["rm", "-f", "trap"]);
}

#[test]
fn init_reaps_and_forwards_signals_and_detach_keys_leave_it_running() {
    let a = agent_with_busybox();
    let ps = a.docker(&["run", "--rm", "--init", "busybox", "sh", "-c", "ps -o pid,comm; exit 5"]);
    assert_eq!(ps.status.code(), Some(5));
    let out = String::from_utf8_lossy(&ps.stdout);
    assert!(out.lines().nth(1).is_some_and(|l| l.trim() == "1 skiff-init"), "{out}");
    a.ok(&["run", "-d", "--name", "ini", "--init", "busybox", "sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    a.ok(&["stop", "-t", "5", "ini"]);
    assert!(started.elapsed() < Duration::from_secs(3), "SIGTERM must reach the command through --init");
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.ExitCode}}", "ini"]).trim(), "143");
    a.ok(&["rm", "ini"]);
    // ctrl-p ctrl-q detaches the client and leaves the container running.
    let session = format!("skiff-detach-{}", std::process::id());
    let cmd = format!("DOCKER_HOST={} docker run -it --name det busybox sh", a.docker_host());
    assert!(Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "100", "-y", "30", &cmd])
        .status()
        .expect("tmux")
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.ok(&["ps", "--format", "{{.Names}}"]).contains("det") {
        assert!(Instant::now() < deadline, "container did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("tmux").args(["send-keys", "-t", &session, "C-p", "C-q"]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Command::new("tmux")
        .args(["has-session", "-t", &session])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "the client did not detach");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Running}}", "det"]).trim(), "true");
    a.ok(&["rm", "-f", "det"]);
}

#[test]
fn devices_are_limited_unless_privileged() {
    let a = agent_with_busybox();
    let probe = "mknod /tmp/blk b 7 0 && (head -c1 /tmp/blk >/dev/null 2>&1 && echo blk-opened || echo blk-denied); echo x > /dev/null && echo null-ok";
    let out = a.ok(&["run", "--rm", "busybox", "sh", "-c", probe]);
    assert!(out.contains("null-ok") && out.contains("blk-denied"), "{out}");
    let out = a.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        &format!("{probe}; grep CapEff /proc/self/status"),
    ]);
    assert!(out.contains("blk-opened"), "--privileged allows every device: {out}");
    assert!(!out.contains("CapEff:\t00000000a80425fb"), "--privileged has more than the default capabilities: {out}");
}

#[test]
fn log_rotation_follows_log_opts() {
    let a = agent_with_busybox();
    a.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=10k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "seq 1 5000",
    ]);
    let id = a.ok(&["inspect", "-f", "{{.Id}}", "chatty"]).trim().to_string();
    let dir = a.root().join("containers").join(&id);
    let logs: Vec<String> = std::fs::read_dir(&dir)
        .expect("container dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    assert_eq!(logs.len(), 3, "max-file=3 keeps three files: {logs:?}");
    for n in &logs {
        let len = std::fs::metadata(dir.join(n)).expect("log").len();
        assert!(len <= 10 * 1024 + 200, "{n} is {len} bytes");
    }
    let out = a.ok(&["logs", "chatty"]);
    assert_eq!(out.lines().last(), Some("5000"), "the newest lines survive rotation");
    let first: u32 = out.lines().next().and_then(|l| l.parse().ok()).expect("a number");
    assert!(first > 1, "old lines were rotated away");
    let nums: Vec<u32> = out.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "rotated files are read in order");
    let err = a.fails(&["run", "--rm", "--log-opt", "max-size=lots", "busybox", "true"]);
    assert!(err.contains("invalid max-size"), "{err}");
    // `--log-driver none` keeps nothing, and says so when asked.
    assert_eq!(a.ok(&["run", "--name", "quiet", "--log-driver", "none", "busybox", "echo", "shown"]), "shown\n");
    let err = a.fails(&["logs", "quiet"]);
    assert!(err.contains("does not support reading"), "{err}");
    a.ok(&["rm", "quiet"]);
    a.ok(&["rm", "chatty"]);
}

/// CVE-2019-5736 class: whatever of the engine runs inside a container (here the `--init`
/// reaper, PID 1 for the container's life) is a sealed in-memory copy, never the host's binary.
#[test]
fn nothing_in_a_container_can_reach_or_change_the_engine_binary() {
    let a = agent_with_busybox();
    let agent = skiff_tests::agent_bin();
    let before = std::fs::read(&agent).expect("agent binary");
    // Default capabilities: the reaper is not dumpable, so its exe cannot even be opened.
    a.ok(&["run", "-d", "--name", "plain", "--init", "busybox", "sleep", "1000"]);
    let probe = "readlink /proc/1/exe || echo NOLINK; cat /proc/1/exe >/dev/null 2>&1 && echo READABLE; \
                 echo x >> /proc/1/exe && echo WRITTEN; true";
    let out = a.ok(&["exec", "plain", "sh", "-c", probe]);
    assert!(out.contains("NOLINK") && !out.contains("READABLE") && !out.contains("WRITTEN"), "{out}");
    // With CAP_SYS_PTRACE the handle opens, but it is an anonymous sealed copy: writes fail.
    a.ok(&["run", "-d", "--name", "ptrace", "--cap-add", "SYS_PTRACE", "--init", "busybox", "sleep", "1000"]);
    let out = a.ok(&["exec", "ptrace", "sh", "-c", probe]);
    assert!(out.contains("memfd:skiff-agent"), "PID 1 must run the sealed copy: {out}");
    assert!(!out.contains(&agent.display().to_string()), "{out}");
    assert!(!out.contains("WRITTEN"), "{out}");
    let wrote = a.docker(&["exec", "ptrace", "sh", "-c", "printf '#!/bin/sh\\n' | dd of=/proc/1/exe conv=notrunc"]);
    assert!(!wrote.status.success(), "{wrote:?}");
    // The same through `docker exec` helpers: the exec'd process's parent chain never shows
    // the host binary either.
    let chain = a.ok(&["exec", "ptrace", "sh", "-c", "for p in /proc/[0-9]*; do readlink $p/exe; done"]);
    assert!(!chain.contains(&agent.display().to_string()), "{chain}");
    a.ok(&["rm", "-f", "plain", "ptrace"]);
    drop(a);
    assert!(std::fs::read(&agent).expect("agent binary") == before, "the engine binary changed");
}

/// `--init` is no more privileged than the container's own process (docker-init after execve).
#[test]
fn init_reaper_has_the_users_privileges() {
    let a = agent_with_busybox();
    let caps =
        "grep -E '^(Uid|CapPrm|CapEff)' /proc/1/status; echo --; grep -E '^(Uid|CapPrm|CapEff)' /proc/self/status";
    let out = a.ok(&["run", "--rm", "--init", "--user", "1000", "busybox", "sh", "-c", caps]);
    let (reaper, command) = out.split_once("--").expect("two reports");
    assert_eq!(reaper.trim(), command.trim(), "the reaper must hold what the command holds:\n{out}");
    assert!(reaper.contains("CapEff:\t0000000000000000") && reaper.contains("CapPrm:\t0000000000000000"), "{out}");
    assert!(reaper.lines().any(|l| l.starts_with("Uid:") && l.contains("1000")), "{out}");
    // As root, both hold the container's default set (not the engine's full one).
    let out = a.ok(&["run", "--rm", "--init", "busybox", "sh", "-c", caps]);
    let (reaper, command) = out.split_once("--").expect("two reports");
    assert_eq!(reaper.trim(), command.trim(), "{out}");
    assert!(reaper.contains("CapEff:\t00000000a80425fb"), "{out}");
    // Seccomp applies to the reaper too.
    let out = a.ok(&["run", "--rm", "--init", "busybox", "sh", "-c", "grep Seccomp: /proc/1/status"]);
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[test]
fn health_checks_time_out_and_show_in_ps_and_events() {
    let a = agent_with_busybox();
    let since = chrono_now_secs();
    a.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-timeout",
        "300ms",
        "--health-interval",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "600",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.ok(&["inspect", "-f", "{{.State.Health.Status}}", "slow"]).trim() != "unhealthy" {
        assert!(
            Instant::now() < deadline,
            "never unhealthy: {}",
            a.ok(&["inspect", "-f", "{{json .State.Health}}", "slow"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let health = a.ok(&["inspect", "-f", "{{json .State.Health}}", "slow"]);
    assert!(health.contains("Health check exceeded timeout") && health.contains("\"ExitCode\":-1"), "{health}");
    assert!(a.ok(&["ps", "--format", "{{.Status}}"]).contains("(unhealthy)"));
    assert_eq!(a.ok(&["ps", "-q", "--filter", "health=unhealthy"]).lines().count(), 1);
    assert_eq!(a.ok(&["ps", "-q", "--filter", "health=none"]).lines().count(), 0);
    let until = (chrono_now_secs() + 1).to_string();
    let events = a.ok(&["events", "--since", &since.to_string(), "--until", &until, "--filter", "event=health_status"]);
    assert!(events.contains("health_status: unhealthy"), "{events}");
    // The probe processes do not pile up: each timed-out one was killed.
    let procs = a.ok(&["top", "slow"]);
    assert!(procs.matches("sleep 5").count() <= 1, "{procs}");
    // Stopped: no longer healthy; bad settings are refused.
    a.ok(&["stop", "-t", "1", "slow"]);
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Health.Status}}", "slow"]).trim(), "unhealthy");
    let (status, body) = a.raw(
        "POST",
        "/containers/create",
        br#"{"Image":"busybox","Cmd":["true"],"Healthcheck":{"Test":["CMD","true"],"Interval":10}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Interval in Healthcheck cannot be less than 1ms"), "{body}");
    // No health check: no Health.
    a.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "600"]);
    assert_eq!(a.ok(&["inspect", "-f", "{{json .State.Health}}", "plain"]).trim(), "null");
    a.ok(&["rm", "-f", "slow", "plain"]);
}

fn chrono_now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[test]
fn engine_stop_stops_containers_and_thaws_paused_ones() {
    let mut a = agent_with_busybox();
    a.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 3' TERM; while :; do sleep 0.1; done",
    ]);
    a.ok(&["run", "-d", "--name", "frozen", "busybox", "sleep", "600"]);
    a.ok(&["pause", "frozen"]);
    let pids: Vec<i32> = ["polite", "frozen"]
        .iter()
        .map(|n| a.ok(&["inspect", "-f", "{{.State.Pid}}", n]).trim().parse().expect("pid"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    a.stop();
    assert!(started.elapsed() < Duration::from_secs(8), "the engine must stop within its grace");
    for pid in &pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "container process {pid} outlived the engine");
    }
    a.restart();
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "polite"]).trim(), "exited 3");
    assert!(a.ok(&["logs", "polite"]).contains("bye"));
    // The paused one was thawed, asked, then killed: nothing stays frozen.
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "frozen"]).trim(), "exited 137");
    a.ok(&["rm", "polite", "frozen"]);
}

#[test]
fn cp_sees_volumes_and_binds_of_running_and_stopped_containers() {
    let a = agent_with_busybox();
    let host = tempfile::tempdir().expect("host dir");
    std::fs::write(host.path().join("hello.txt"), "from host\n").expect("host file");
    let bind = format!("{}:/hostdir:ro", host.path().display());
    a.ok(&[
        "run",
        "-d",
        "--name",
        "vc",
        "-v",
        "cpvol:/data",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "echo in-volume > /data/v.txt; sleep 600",
    ]);
    let out = tempfile::tempdir().expect("out dir");
    let read = |src: &str, name: &str| -> String {
        let dest = out.path().join(name);
        a.ok(&["cp", src, &dest.display().to_string()]);
        std::fs::read_to_string(dest).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.docker(&["cp", "vc:/data/v.txt", "-"]).status.success() {
        assert!(Instant::now() < deadline, "the volume file never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read("vc:/data/v.txt", "r1"), "in-volume\n");
    assert_eq!(read("vc:/hostdir/hello.txt", "r2"), "from host\n");
    a.ok(&["stop", "-t", "1", "vc"]);
    // Stopped: the same paths, through the container's own mounts.
    assert_eq!(read("vc:/data/v.txt", "r3"), "in-volume\n");
    assert_eq!(read("vc:/hostdir/hello.txt", "r4"), "from host\n");
    let put = out.path().join("put.txt");
    std::fs::write(&put, "copied in\n").expect("file");
    a.ok(&["cp", &put.display().to_string(), "vc:/data/put.txt"]);
    assert_eq!(a.ok(&["run", "--rm", "-v", "cpvol:/v", "busybox", "cat", "/v/put.txt"]), "copied in\n");
    // A read-only bind stays read-only for cp too.
    assert!(!a.docker(&["cp", &put.display().to_string(), "vc:/hostdir/put.txt"]).status.success());
    assert!(!host.path().join("put.txt").exists());
    // Nothing stays mounted on the host afterwards.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(!mounts.contains(&a.root().display().to_string()), "{mounts}");
    a.ok(&["rm", "-f", "vc"]);
}

#[test]
fn group_add_mac_address_and_kill_waits_for_the_exit() {
    let a = agent_with_busybox();
    let out = a.ok(&[
        "run",
        "--rm",
        "--user",
        "1000",
        "--group-add",
        "nogroup",
        "--group-add",
        "4242",
        "busybox",
        "id",
        "-G",
    ]);
    let groups: Vec<&str> = out.split_whitespace().collect();
    assert!(groups.contains(&"65534") && groups.contains(&"4242"), "{out}");
    let err = a.fails(&["run", "--rm", "--group-add", "nosuchgroup", "busybox", "true"]);
    assert!(err.contains("Unable to find group nosuchgroup"), "{err}");
    let out =
        a.ok(&["run", "--rm", "--mac-address", "02:42:ac:11:99:01", "busybox", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(out.trim(), "02:42:ac:11:99:01");
    a.ok(&["run", "-d", "--name", "macd", "--mac-address", "02:42:ac:11:99:02", "busybox", "sleep", "600"]);
    assert_eq!(a.ok(&["inspect", "-f", "{{.NetworkSettings.MacAddress}}", "macd"]).trim(), "02:42:ac:11:99:02");
    let err = a.fails(&["run", "--rm", "--mac-address", "01:00:5e:00:00:01", "busybox", "true"]);
    assert!(err.contains("invalid MAC address"), "{err}");
    // `docker kill` returns once the process has exited, paused or not.
    a.ok(&["pause", "macd"]);
    a.ok(&["kill", "macd"]);
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "macd"]).trim(), "exited 137");
    a.ok(&["rm", "macd"]);
}
