"""Reliability: the engine killed with SIGKILL at bad moments (running containers, mid-load, mid-commit,
mid-pull), a batch of failing runs of every kind that must leave nothing behind, malformed
input, and a soak of create/start/remove cycles whose engine memory stays flat. Everything is
checked against what the kernel shows (processes, mounts, links, nftables, listeners, cgroups)."""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest
from docker.errors import APIError

from conftest import fixture_path, free_port


def links_on(bridge: str) -> list:
    out = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if ":" in line]


def pid_alive(pid: int) -> bool:
    return pid > 0 and Path(f"/proc/{pid}").exists()


def wait_until(what, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def http_get(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
        chunks = []
        while data := s.recv(4096):
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def test_kill9_with_running_containers_then_a_restart_recovers_everything(agent):
    agent.load("busybox.tar")
    c = agent.client
    net = c.networks.create("rel")
    port = free_port()
    web = c.containers.run("busybox", ["httpd", "-f", "-p", "80", "-h", "/etc"], detach=True, name="web",
                           network="rel", ports={"80/tcp": port})
    plain = c.containers.run("busybox", ["sleep", "600"], detach=True, name="plain")
    always = c.containers.run("busybox", ["sleep", "600"], detach=True, name="always",
                              restart_policy={"Name": "always"})
    paused = c.containers.run("busybox", ["sleep", "600"], detach=True, name="paused")
    paused.pause()
    wait_until("the web server", lambda: "200 OK" in http_get(port))
    pids = {x.name: c.containers.get(x.id).attrs["State"]["Pid"] for x in (web, plain, always, paused)}
    user_bridge = "skiff-" + net.id[:9]
    assert len(links_on(user_bridge)) == 1

    agent.kill9()
    agent.start()
    c = agent.client
    # Every process of the dead engine's containers is gone; nothing stays frozen.
    for name, pid in pids.items():
        wait_until(f"{name}'s process to end", lambda pid=pid: not pid_alive(pid))
    states = {x.name: x.status for x in c.containers.list(all=True)}
    assert states["web"] == "exited" and states["plain"] == "exited" and states["paused"] == "exited", states
    assert states["always"] == "running", states
    assert c.containers.get("always").attrs["State"]["Pid"] != pids["always"]
    # Their veths went with their namespaces; the published port is free and usable again.
    wait_until("the dead veths to go", lambda: links_on(user_bridge) == [] or links_on(user_bridge) is None)
    c.containers.get("web").start()
    wait_until("the web server after the restart", lambda: "200 OK" in http_get(port))
    assert len(links_on(user_bridge)) == 1
    c.containers.get("paused").start()
    assert c.containers.get("paused").status == "running"
    for x in c.containers.list(all=True):
        x.remove(force=True)
    net.remove()


def _load_raw(agent, data: bytes, send: int, linger: float):
    """Sends the first `send` bytes of a `docker load` request body, waits, then kills the engine."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(agent.socket))
    s.sendall(b"POST /v1.41/images/load?quiet=1 HTTP/1.1\r\nHost: skiff\r\nContent-Type: application/x-tar\r\n"
              + f"Content-Length: {len(data)}\r\n\r\n".encode())
    s.sendall(data[:send])
    time.sleep(linger)
    agent.kill9()
    s.close()


@pytest.mark.parametrize("fraction,linger", [(0.5, 0.3), (1.0, 0.4), (1.0, 1.5)])
def test_kill9_mid_load_leaves_no_half_image_and_the_next_load_works(agent, fraction, linger):
    data = fixture_path("debian.tar").read_bytes()
    _load_raw(agent, data, int(len(data) * fraction), linger)
    agent.start()
    images = agent.client.images.list(all=True)
    # Either nothing, or the complete image (the kill may land after the commit).
    for img in images:
        assert img.tags == ["skiff-test/debian:bookworm"] or img.tags == [], img.tags
        agent.client.containers.run(img.id, ["true"], remove=True)
    tmp = agent.root / "image-store" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == [], list(tmp.iterdir())
    loaded = agent.load("debian.tar")
    assert loaded and "skiff-test/debian:bookworm" in loaded[0].tags
    assert agent.client.containers.run("skiff-test/debian:bookworm", ["echo", "ok"], remove=True) == b"ok\n"


@pytest.mark.parametrize("linger", [0.15, 0.6, 1.5])
def test_kill9_mid_commit_leaves_no_half_image_and_the_next_commit_works(agent, linger):
    agent.load("busybox.tar")
    c = agent.client
    box = c.containers.run("busybox", ["sh", "-c", "dd if=/dev/urandom of=/big bs=1M count=200 2>/dev/null"],
                           detach=True)
    assert box.wait(timeout=120)["StatusCode"] == 0
    before = sorted(i.id for i in c.images.list(all=True))
    container_id = box.id

    def commit():
        try:
            c.api.commit(container_id, repository="half", tag="done")
        except Exception:  # the engine dies under it: that is the point
            pass

    t = threading.Thread(target=commit)
    t.start()
    time.sleep(linger)
    agent.kill9()
    t.join(30)
    agent.start()
    c = agent.client
    after = sorted(i.id for i in c.images.list(all=True))
    # Either nothing new, or the complete image (the kill may land after the commit).
    new = [i for i in after if i not in before]
    for image_id in new:
        assert c.containers.run(image_id, ["sh", "-c", "ls -l /big | awk '{print $5}'"], remove=True) == b"209715200\n"
    tmp = agent.root / "image-store" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == [], list(tmp.iterdir())
    image_id = c.api.commit(container_id, repository="half", tag="again")["Id"]
    assert c.containers.run(image_id, ["sh", "-c", "ls -l /big | awk '{print $5}'"], remove=True) == b"209715200\n"


def test_kill9_mid_build_leaves_no_half_image_and_the_next_build_works(agent, tmp_path):
    agent.load("busybox.tar")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nCOPY big /big\nRUN echo running && sleep 3 && echo done > /done\n")
    (tmp_path / "big").write_bytes(os.urandom(30 * 1024 * 1024))
    env = dict(os.environ, DOCKER_HOST=agent.base_url, DOCKER_BUILDKIT="0")
    build = subprocess.Popen(["docker", "build", "-t", "half:built", str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    seen = b""
    # The command's own output line (the step line names it too).
    while b"\nrunning\n" not in seen:
        line = build.stdout.readline()
        assert line or time.monotonic() < deadline, seen
        seen += line
    agent.kill9()
    build.wait(30)
    agent.start()
    c = agent.client
    assert [i.tags for i in c.images.list() if i.tags] == [["busybox:latest"]]
    assert not list((agent.root / "build").glob("context-*")) and not list((agent.root / "build").glob("view-*"))
    tmp = agent.root / "image-store" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    # The step container the kill interrupted is an exited container, as any other.
    assert all(x.status == "exited" for x in c.containers.list(all=True)), [(x.name, x.status) for x in c.containers.list(all=True)]
    r = subprocess.run(["docker", "build", "-t", "half:built", str(tmp_path)], env=env, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # The COPY step finished before the kill: its image serves as cache.
    assert r.stdout.count(b"Using cache") == 1, r.stdout
    assert c.containers.run("half:built", ["cat", "/done"], remove=True) == b"done\n"


def test_kill9_mid_pull_leaves_the_store_consistent(agent, agent_factory, registry):
    source = agent_factory()
    source.load("debian.tar")
    repo = f"{registry}/skiff/debian"
    source.client.images.get("skiff-test/debian:bookworm").tag(repo, "v1")
    for line in source.client.images.push(repo, tag="v1", stream=True, decode=True):
        assert "error" not in line, line
    progress = threading.Event()

    def pull():
        try:
            for line in agent.client.api.pull(repo, tag="v1", stream=True, decode=True):
                if line.get("status") in ("Downloading", "Extracting", "Download complete"):
                    progress.set()
        except Exception:  # the engine dies under it: that is the point
            pass
        progress.set()

    t = threading.Thread(target=pull)
    t.start()
    assert progress.wait(60), "the pull never made progress"
    agent.kill9()
    t.join(30)
    agent.start()
    listed = [i.tags for i in agent.client.images.list(all=True)]
    assert listed in ([], [[f"{repo}:v1"]]), listed
    agent.client.images.pull(repo, tag="v1")
    assert agent.client.containers.run(f"{repo}:v1", ["echo", "pulled"], remove=True) == b"pulled\n"


def _baseline(agent) -> dict:
    def count(cmd):
        return len(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines())

    def file_fds(pid):
        """The process's fds that are not sockets; one closed between listing and reading is
        not counted (the engine's background work opens and closes fds while this looks)."""
        n = 0
        for f in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += not os.readlink(f"/proc/{pid}/fd/{f}").startswith("socket:")
            except FileNotFoundError:
                pass
        return n

    mounts = Path("/proc/self/mountinfo").read_text()
    cgroups = subprocess.run(["find", "/sys/fs/cgroup", "-maxdepth", "3", "-name", "*skiff*"],
                             capture_output=True, text=True).stdout
    return {
        "mounts": sum(1 for line in mounts.splitlines() if str(agent.dir) in line),
        "links": count(["ip", "-o", "link"]),
        "nft tables": count(["nft", "list", "tables"]),
        # The engine's own (published ports): other processes on the host may come and go.
        "listeners": sum(1 for line in subprocess.run(["ss", "-H", "-ltnup"], capture_output=True, text=True).stdout.splitlines()
                         if f"pid={agent.pid()}," in line),
        "engine children": count(["pgrep", "-P", str(agent.pid())]),
        # Client connections come and go with docker-py's pool: everything but sockets counts.
        "engine fds (not sockets)": file_fds(agent.pid()),
        "cgroups": len(cgroups.splitlines()),
    }


def _settled_baseline(agent) -> dict:
    """The baseline once the engine's background work is done: a removed container's
    directory is deleted after `--rm` returns, and the deletion holds directory fds
    while it walks. Two equal snapshots 0.3 s apart mean nothing is in flight."""
    deadline = time.monotonic() + 10
    last = _baseline(agent)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = _baseline(agent)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the engine never settled: last {last}")


def test_failing_runs_of_every_kind_leave_nothing_behind(agent, tmp_path):
    agent.load("busybox.tar")
    c = agent.client
    c.networks.create("leaky")
    # Warm up what a first run sets up once (bridges, tables) so it does not count as a leak.
    c.containers.run("busybox", ["true"], remove=True)
    c.containers.run("busybox", ["true"], remove=True, network="leaky")
    before = _settled_baseline(agent)
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    busy_port = taken.getsockname()[1]
    failing = [
        dict(command=["/no/such/binary"]),
        dict(command=["true"], user="nosuchuser"),
        dict(command=["true"], ports={"80/tcp": busy_port}),
        dict(command=["true"], ports={"80/tcp": busy_port}, network="leaky"),
        dict(command=["true"], group_add=["nosuchgroup"]),
        dict(command=["true"], network="nosuchnet"),
        dict(command=["true"], volumes={str(tmp_path / "missing"): {"bind": "/m", "mode": "rw"}}),
        dict(command=["true"], mem_limit="1m"),
        dict(command=["true"], mac_address="01:00:5e:00:00:01"),
        dict(command=["true"], healthcheck={"test": ["CMD", "true"], "interval": 10}),
        dict(command=["true"], working_dir="relative/dir"),
        dict(command=["true"], cap_add=["CAP_NO_SUCH"]),
        dict(command=["sh", "-c", "exit 3"]),
    ]
    for i in range(2):
        for n, kw in enumerate(failing):
            try:
                c.containers.run("busybox", name=f"f{i}-{n}", detach=False, **kw)
            except (APIError, docker.errors.ContainerError, docker.errors.ImageNotFound):
                pass
        # An exec that cannot start, and one into a stopped container.
        live = c.containers.run("busybox", ["sleep", "600"], detach=True)
        assert live.exec_run(["/no/such/exec"]).exit_code == 126
        live.stop(timeout=0)
        with pytest.raises(APIError):
            live.exec_run(["true"])
        live.remove()
        for x in c.containers.list(all=True):
            x.remove(force=True)
    taken.close()
    # A removed container's veths are deleted just after its removal returns (in the background,
    # off `docker run --rm`'s path): what is left must be gone within moments, and stay gone.
    deadline = time.monotonic() + 5
    after = _baseline(agent)
    while after != before and time.monotonic() < deadline:
        time.sleep(0.1)
        after = _baseline(agent)
    assert after == before, f"leaked: before {before}, after {after}"


@pytest.mark.parametrize("method,path,body,status", [
    ("POST", "/containers/{id}/stop?t=AAA", b"", 400),
    ("POST", "/containers/{id}/restart?t=1.5", b"", 400),
    ("GET", "/containers/json?limit=abc", b"", 400),
    ("POST", "/containers/create", b"{not json", 400),
    ("POST", "/containers/create", b'{"Image": 5}', 400),
    ("POST", "/containers/create", b'{"Image":"busybox","HostConfig":{"Runtime":"kata"}}', 400),
    ("GET", "/containers/nosuchcontainer/json", b"", 404),
    ("POST", "/exec/nosuchexec/start", b"{}", 404),
    ("GET", "/swarm", b"", 503),
    ("GET", "/nodes", b"", 503),
    ("POST", "/swarm/leave", b"", 503),
    ("GET", "/services", b"", 503),
])
def test_malformed_input_gets_docker_style_errors(agent, method, path, body, status):
    agent.load("busybox.tar")
    cid = agent.client.containers.create("busybox", ["sleep", "1"]).id
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(agent.socket))
    s.sendall(f"{method} {path.format(id=cid)} HTTP/1.1\r\nHost: skiff\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    resp = b""
    while data := s.recv(65536):
        resp += data
    head, _, payload = resp.partition(b"\r\n\r\n")
    got = int(head.split()[1])
    assert got == status, resp
    assert b'"message"' in payload, resp


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_soak_of_a_thousand_cycles_keeps_engine_memory_flat(agent):
    agent.load("busybox.tar")
    api = agent.client.api

    def cycle():
        cid = api.create_container("busybox", ["true"])["Id"]
        api.start(cid)
        assert api.wait(cid)["StatusCode"] == 0
        api.remove_container(cid)

    for _ in range(200):
        cycle()
    warm = _rss_kib(agent.pid())
    for _ in range(800):
        cycle()
    end = _rss_kib(agent.pid())
    assert agent.client.containers.list(all=True) == []
    # Flat: what 800 more cycles add must stay within a small share of the warmed-up footprint
    # (allocator noise), nowhere near a per-container leak (800 × even 8 KiB = 6 MiB).
    assert end - warm < max(4096, warm // 10), f"engine RSS grew from {warm} KiB to {end} KiB over 800 cycles"
