//! The image half of the engine, proven through the real docker CLI 28 against `skiff-agent serve`.

use std::io::Write;
use std::process::Stdio;

use skiff_tests::{fixture, Agent, Registry};

#[test]
fn version_info_and_ping_satisfy_the_cli() {
    let a = Agent::start();
    let v = a.ok(&["version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}"]);
    assert_eq!(v.trim(), "1.51 1.24 linux");
    let info = a.ok(&["info", "--format", "{{.Driver}} {{.OSType}} {{.Images}}"]);
    assert_eq!(info.trim(), "overlay2 linux 0");
    let (status, body) = a.raw("GET", "/_ping", b"");
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, _) = a.raw("GET", "/v1.44/version", b"");
    assert_eq!(status, 200);
    let (status, body) = a.raw("GET", "/v9.99/version", b"");
    assert_eq!(status, 400);
    assert!(body.contains("too new"), "{body}");
    let (status, body) = a.raw("GET", "/no/such/endpoint", b"");
    assert_eq!(status, 404);
    assert!(body.contains("\"message\""), "{body}");
}

#[test]
fn load_every_fixture_and_list_with_filters() {
    let a = Agent::start();
    for (f, name) in [
        ("busybox.tar", "busybox:latest"),
        ("multilayer.tar", "skiff-test/multilayer:latest"),
        ("multilayer-oci.tar", "skiff-test/multilayer-oci:latest"),
        ("debian.tar", "skiff-test/debian:bookworm"),
    ] {
        let out = a.load(f);
        assert!(out.contains(&format!("Loaded image: {name}")), "{f}: {out}");
    }
    let all = a.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for n in [
        "busybox:latest",
        "skiff-test/multilayer:latest",
        "skiff-test/multilayer-oci:latest",
        "skiff-test/debian:bookworm",
    ] {
        assert!(all.lines().any(|l| l == n), "{n} missing from {all}");
    }
    let by_ref = a.ok(&["images", "--filter", "reference=skiff-test/*", "--format", "{{.Repository}}"]);
    assert_eq!(by_ref.lines().count(), 3, "{by_ref}");
    let by_label = a.ok(&["images", "--filter", "label=org.skiff.fixture=multilayer", "--format", "{{.Repository}}"]);
    assert!(
        by_label.lines().all(|l| l.starts_with("skiff-test/multilayer")) && by_label.lines().count() == 2,
        "{by_label}"
    );
    assert_eq!(a.ok(&["images", "--filter", "dangling=true", "-q"]).trim(), "");
    a.ok(&["images", "--filter", "before=skiff-test/debian:bookworm"]);
    a.ok(&["images", "--filter", "since=busybox"]);
    // The fixtures were built "in 2024": all are older than an hour ago, none older than 2020.
    assert_eq!(
        a.ok(&["images", "-q", "--filter", "until=1h"]).lines().count(),
        a.ok(&["images", "-q"]).lines().count()
    );
    assert_eq!(a.ok(&["images", "-q", "--filter", "until=2020-01-01T00:00:00Z"]).trim(), "");
    let digests = a.ok(&["images", "--digests"]);
    assert!(digests.contains("DIGEST"), "{digests}");
    let err = a.fails(&["images", "--filter", "bogus=1"]);
    assert!(err.contains("invalid filter"), "{err}");

    // The multi-layer image really has its whiteout, opaque dir, hard link, xattr and file capability.
    let inspect = a.ok(&[
        "image",
        "inspect",
        "skiff-test/multilayer",
        "--format",
        "{{json .GraphDriver.Data.LowerDir}} {{len .RootFS.Layers}}",
    ]);
    assert!(inspect.trim().ends_with(" 3"), "{inspect}");
    let lower: Vec<String> = serde_json::from_str::<String>(inspect.split_whitespace().next().unwrap_or("\"\""))
        .unwrap_or_default()
        .split(':')
        .map(str::to_string)
        .collect();
    let top = std::path::Path::new(&lower[0]);
    let mid = std::path::Path::new(&lower[1]);
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let wh = std::fs::symlink_metadata(top.join("data/a")).expect("whiteout exists");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout must be a 0/0 char device");
    assert!(xattr(&top.join("opq"), "trusted.overlay.opaque").as_deref() == Some(&b"y"[..]));
    assert_eq!(
        std::fs::metadata(mid.join("data/b")).expect("b").ino(),
        std::fs::metadata(mid.join("data/hard")).expect("hard").ino()
    );
    assert_eq!(xattr(&mid.join("xattr/file"), "user.skiff").as_deref(), Some(&b"hello"[..]));
    assert!(xattr(&mid.join("caps/ping"), "security.capability").is_some(), "file capability lost");
    assert_eq!(std::fs::metadata(mid.join("perm/suid")).expect("suid").permissions().mode() & 0o7777, 0o4755);
    assert_eq!(std::fs::metadata(mid.join("home/app/owned")).expect("owned").uid(), 1000);
}

fn xattr(p: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os,sys; sys.stdout.buffer.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False))",
        ])
        .arg(p)
        .arg(name)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

#[test]
fn tag_inspect_history_and_rmi_semantics() {
    let a = Agent::start();
    a.load("busybox.tar");
    a.ok(&["tag", "busybox", "mytag:1"]);
    a.ok(&["tag", "busybox:latest", "127.0.0.1:5999/other/name:v2"]);
    let tags = a.ok(&["image", "inspect", "busybox", "--format", "{{json .RepoTags}}"]);
    assert!(tags.contains("mytag:1") && tags.contains("127.0.0.1:5999/other/name:v2"), "{tags}");
    let id = a.ok(&["image", "inspect", "mytag:1", "--format", "{{.Id}}"]).trim().to_string();
    assert!(id.starts_with("sha256:"));
    let hist = a.ok(&["history", "--no-trunc", "--format", "{{.ID}}", "busybox"]);
    assert!(hist.lines().next().is_some_and(|l| l == id), "{hist}");
    // Untag vs delete, conflicts, force.
    let err = a.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("must be forced"), "{err}");
    let out = a.ok(&["rmi", "mytag:1"]);
    assert!(out.contains("Untagged: mytag:1") && !out.contains("Deleted"), "{out}");
    let err = a.fails(&["tag", "busybox", "Bad:Tag"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = a.fails(&["image", "inspect", "nosuchimage"]);
    assert!(err.contains("No such image"), "{err}");
    let err = a.fails(&["rmi", "nosuchimage"]);
    assert!(err.contains("No such image"), "{err}");
    let out = a.ok(&["rmi", "-f", &id]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(a.ok(&["images", "-q"]).trim(), "");
    let blobs = std::fs::read_dir(a.root().join("image-store/blobs/sha256")).expect("blobs").count();
    let layers = std::fs::read_dir(a.root().join("image-store/layers")).expect("layers").count();
    assert_eq!((blobs, layers), (0, 0), "deleting the last image must free its content");
}

#[test]
fn save_then_load_round_trips_byte_identically() {
    let a = Agent::start();
    let b = Agent::start();
    a.load("busybox.tar");
    a.load("multilayer-oci.tar");
    let dir = tempfile::tempdir().expect("tmp");
    let first = dir.path().join("first.tar");
    let second = dir.path().join("second.tar");
    a.ok(&["save", "-o", &first.display().to_string(), "busybox", "skiff-test/multilayer-oci:latest"]);
    let loaded = b.ok(&["load", "-i", &first.display().to_string()]);
    assert!(loaded.contains("busybox:latest") && loaded.contains("skiff-test/multilayer-oci:latest"), "{loaded}");
    b.ok(&["save", "-o", &second.display().to_string(), "busybox", "skiff-test/multilayer-oci:latest"]);
    let (x, y) = (std::fs::read(&first).expect("first"), std::fs::read(&second).expect("second"));
    assert!(x == y, "save → load → save changed the archive ({} vs {} bytes)", x.len(), y.len());
    for img in ["busybox", "skiff-test/multilayer-oci"] {
        let ia = a.ok(&["image", "inspect", img, "--format", "{{.Id}} {{json .RootFS.Layers}}"]);
        let ib = b.ok(&["image", "inspect", img, "--format", "{{.Id}} {{json .RootFS.Layers}}"]);
        assert_eq!(ia, ib);
    }
    // `docker save | docker load` through pipes too.
    let mut save = a.docker_cmd(&["save", "busybox"]).stdout(Stdio::piped()).spawn().expect("save");
    let pipe = save.stdout.take().expect("pipe");
    let out = b.docker_cmd(&["load"]).stdin(pipe).output().expect("load");
    assert!(save.wait().expect("save exit").success());
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Loaded image: busybox:latest"));
}

#[test]
fn hostile_layers_cannot_write_outside_store_and_leave_it_intact() {
    let a = Agent::start();
    a.load("busybox.tar");
    let before = store_listing(&a);
    let escape = std::path::Path::new("/tmp/skiff-escape");
    std::fs::create_dir_all(escape).expect("escape dir");
    for (case, why) in [
        ("dotdot", "not a clean relative path"),
        ("abs-path", "not a clean relative path"),
        ("abs-symlink-follow", "resolves outside the layer"),
        ("rel-symlink-follow", "resolves outside the layer"),
        ("symlink-chain", "resolves outside the layer"),
        ("hardlink-out", "hard link"),
        ("devnode", "device node"),
    ] {
        let out = a.docker(&["load", "-i", &fixture(&format!("hostile/{case}.tar")).display().to_string()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case} loaded");
        assert!(err.contains(why), "{case}: {err}");
        assert_eq!(store_listing(&a), before, "{case} changed the store");
        assert_eq!(std::fs::read_dir(escape).expect("escape dir").count(), 0, "{case} escaped");
    }
    // A symlink planted by one layer and followed by the next stays inside the second layer's dir.
    a.load("hostile/cross-layer-symlink.tar");
    assert_eq!(std::fs::read_dir(escape).expect("escape dir").count(), 0, "cross-layer symlink escaped");
}

/// The store's files once it is quiet: a loaded image is committed with an "unsynced" mark that a
/// background sync clears by rewriting its record (an atomic replace through a `.tmp-` file), so
/// the listing waits for that to be done before it is compared.
fn store_listing(a: &Agent) -> Vec<String> {
    let root = a.root().join("image-store");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let listing = store_listing_now(&root);
        let settling = listing.iter().any(|n| n.starts_with("images/."))
            || std::fs::read_dir(root.join("images"))
                .map(|r| {
                    r.flatten().any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("unsynced_boot")))
                })
                .unwrap_or(false);
        if !settling || std::time::Instant::now() > deadline {
            return listing;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn store_listing_now(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["blobs/sha256", "layers", "images", "tmp"] {
        let mut names: Vec<String> = std::fs::read_dir(root.join(d))
            .map(|r| r.flatten().map(|e| format!("{d}/{}", e.file_name().to_string_lossy())).collect())
            .unwrap_or_default();
        names.sort();
        out.extend(names);
    }
    out.push(std::fs::read_to_string(root.join("tags.json")).unwrap_or_default());
    out
}

#[test]
fn malformed_requests_get_docker_style_errors() {
    let a = Agent::start();
    let (s, body) = a.raw("POST", "/auth", b"{not json");
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("\"message\""), "{body}");
    let (s, _) = a.raw("POST", "/images/create?fromImage=Bad%20Ref", b"");
    assert_eq!(s, 400);
    let (s, _) = a.raw("GET", "/images/nosuch/json", b"");
    assert_eq!(s, 404);
    let (s, _) = a.raw("GET", "/images/json?filters=%7Bbroken", b"");
    assert_eq!(s, 400);
    let (s, _) = a.raw("POST", "/images/busybox/tag?repo=x", b"");
    assert_eq!(s, 404);
    let out =
        a.docker_cmd(&["load"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().and_then(
            |mut c| {
                c.stdin.take().expect("stdin").write_all(b"this is not a tar archive at all")?;
                c.wait_with_output()
            },
        );
    let out = out.expect("docker load");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("archive"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn push_pull_against_a_local_registry_with_progress() {
    let reg = Registry::start(false);
    let a = Agent::start();
    a.load("multilayer.tar");
    let name = format!("{}/skiff/multilayer:v1", reg.host());
    a.ok(&["tag", "skiff-test/multilayer", &name]);
    let push = a.ok(&["push", &name]);
    assert!(push.contains("Pushed") && push.contains("digest: sha256:"), "{push}");
    let b = Agent::start();
    b.load("busybox.tar"); // shares the bottom layer: it must not be downloaded again
    let pull = b.ok(&["pull", &name]);
    assert!(
        pull.contains("Already exists") && pull.contains("Pull complete") && pull.contains("Downloaded newer image"),
        "{pull}"
    );
    let ids = (
        a.ok(&["image", "inspect", &name, "--format", "{{.Id}}"]),
        b.ok(&["image", "inspect", &name, "--format", "{{.Id}}"]),
    );
    assert_eq!(ids.0, ids.1);
    let digests = b.ok(&["images", "--digests", "--format", "{{.Digest}}", &name]);
    assert!(digests.trim().starts_with("sha256:"), "{digests}");
    let again = b.ok(&["pull", &name]);
    assert!(again.contains("Image is up to date"), "{again}");
    let err = b.fails(&["pull", &format!("{}/doesnotexist:latest", reg.host())]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn login_and_push_to_an_authenticated_registry() {
    let reg = Registry::start(true);
    let a = Agent::start();
    a.load("busybox.tar");
    let name = format!("{}/private/busybox:1", reg.host());
    a.ok(&["tag", "busybox", &name]);
    let err = a.fails(&["login", "-u", "skiff", "-p", "wrong", &reg.host()]);
    assert!(err.contains("401") || err.contains("unauthorized") || err.contains("Unauthorized"), "{err}");
    a.ok(&["login", "-u", "skiff", "-p", "skiffpass", &reg.host()]);
    a.ok(&["push", &name]);
    a.ok(&["rmi", &name]);
    a.ok(&["pull", &name]);
}

#[test]
fn prune_removes_dangling_then_unused() {
    let a = Agent::start();
    a.load("busybox.tar");
    a.load("multilayer.tar");
    a.ok(&["rmi", "skiff-test/multilayer"]);
    a.load("multilayer.tar");
    // Make busybox's image dangling by moving its only tag onto another image.
    a.ok(&["tag", "skiff-test/multilayer", "busybox:latest"]);
    assert_eq!(a.ok(&["images", "-q", "--filter", "dangling=true"]).lines().count(), 1);
    let out = a.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Deleted") && out.contains("reclaimed"), "{out}");
    assert_eq!(a.ok(&["images", "-q", "--filter", "dangling=true"]).trim(), "");
    a.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(a.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn events_stream_image_events() {
    let a = Agent::start();
    let since = chrono_now();
    a.load("busybox.tar");
    a.ok(&["tag", "busybox", "evt:1"]);
    a.ok(&["rmi", "evt:1"]);
    let until = chrono_now() + 1;
    let ev = a.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    for want in ["image load", "image tag", "image untag"] {
        assert!(ev.contains(want), "{want} missing from {ev}");
    }
    let tags_only = a.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "event=tag",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(tags_only.trim(), "tag");
    let none = a.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "container=nosuch",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(none.trim(), "");
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[test]
fn killed_mid_load_the_store_recovers_and_the_load_then_succeeds() {
    let mut a = Agent::start();
    let data = std::fs::read(fixture("debian.tar")).expect("debian fixture");
    let mut child = a
        .docker_cmd(&["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker load");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&data[..data.len() / 2]).expect("half the archive");
    stdin.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(300));
    a.kill9();
    drop(stdin);
    let _ = child.wait();
    a.restart();
    assert_eq!(a.ok(&["images", "-q"]).trim(), "", "a half-loaded image is listed");
    assert_eq!(std::fs::read_dir(a.root().join("image-store/tmp")).expect("tmp").count(), 0, "staging not cleaned");
    a.load("debian.tar");
    assert_eq!(a.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).trim(), "skiff-test/debian:bookworm");
}

#[test]
fn killed_mid_pull_the_store_recovers_and_the_pull_then_succeeds() {
    let reg = Registry::start(false);
    let src = Agent::start();
    src.load("debian.tar");
    let name = format!("{}/skiff/debian:bookworm", reg.host());
    src.ok(&["tag", "skiff-test/debian:bookworm", &name]);
    src.ok(&["push", &name]);
    let mut a = Agent::start();
    let mut child =
        a.docker_cmd(&["pull", &name]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("docker pull");
    let mut first = [0u8; 16];
    let _ = std::io::Read::read(child.stdout.as_mut().expect("stdout"), &mut first);
    a.kill9();
    let _ = child.wait();
    a.restart();
    let listed = a.ok(&["images", "-q"]);
    if !listed.trim().is_empty() {
        // The pull finished before the kill: then it must be complete and usable.
        a.ok(&["image", "inspect", &name]);
    }
    assert_eq!(std::fs::read_dir(a.root().join("image-store/tmp")).expect("tmp").count(), 0, "staging not cleaned");
    a.ok(&["pull", &name]);
    a.ok(&["image", "inspect", &name]);
}
