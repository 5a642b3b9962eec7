"""`docker build` (the classic builder's API) through the docker CLI, docker-py, docker-compose 1.29
and compose v2: Dockerfile instructions, multi-stage targets, the cache (hits, invalidation, after
an engine restart, --no-cache, --cache-from, cache mounts), .dockerignore, ADD archives and URLs,
heredocs, output and options, and the error cases (syntax, failing RUN, missing files, corrupt
context, a client that goes away, concurrent builds)."""

import http.server
import io
import json
import os
import socket
import subprocess
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import docker
import pytest
from docker.errors import APIError, BuildError

from test_health_compose_v2 import compose_v2
from test_networks_dockerpy import compose_bin


def cli(agent, *args, cwd=None, stdin=None, env=None, timeout=300):
    e = dict(os.environ, DOCKER_BUILDKIT="0", DOCKER_HOST=agent.base_url, **(env or {}))
    return subprocess.run(["docker", *args], cwd=cwd, input=stdin, env=e, capture_output=True, timeout=timeout)


def build(agent, ctx, *args, **kw):
    r = cli(agent, "build", *args, str(ctx), **kw)
    assert r.returncode == 0, f"{r.stdout.decode()}\n{r.stderr.decode()}\n{agent.log()[-3000:]}"
    return r.stdout.decode()


def write(ctx: Path, files: dict):
    for name, text in files.items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text) if name.endswith("Dockerfile") else text)


def run(agent, image, *cmd):
    return agent.client.containers.run(image, list(cmd) or None, remove=True).decode()


def test_a_multi_stage_build_with_every_metadata_instruction(agent, tmp_path):
    agent.load("busybox.tar")
    write(tmp_path, {
        "Dockerfile": """\
            # syntax=docker/dockerfile:1
            ARG BASE=busybox
            FROM ${BASE} AS builder
            ARG VERSION=1.0
            ENV APP_HOME=/app PATH=/app/bin:$PATH
            WORKDIR $APP_HOME
            COPY src/ src/
            RUN mkdir bin && printf '#!/bin/sh\\necho built %s\\n' "$VERSION" > bin/hello && chmod +x bin/hello
            RUN <<EOF
            echo "from a heredoc" > heredoc.txt
            echo second line >> heredoc.txt
            EOF
            COPY <<EOT /app/greeting.txt
            hello ${VERSION}
            EOT

            FROM busybox AS unused
            RUN exit 1

            FROM busybox
            LABEL org.example.name="skiff test" version=${VERSION:-none}
            ENV GREETING="hi there"
            COPY --from=builder /app /app
            COPY --chown=app:app --chmod=640 src/main.txt /owned/
            USER app
            WORKDIR /app
            EXPOSE 8080 53/udp
            VOLUME /data
            STOPSIGNAL SIGINT
            HEALTHCHECK --interval=5s --timeout=2s --retries=2 CMD test -e /app/bin/hello
            SHELL ["/bin/sh", "-ec"]
            ONBUILD RUN echo child
            ENTRYPOINT ["/app/bin/hello"]
            CMD ["ignored"]
            """,
        "src/main.txt": "main\n",
    })
    # busybox's /etc/passwd has no "app": give it one in the image through a tiny base.
    write(tmp_path / "base", {"Dockerfile": """\
        FROM busybox
        RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group
        """})
    build(agent, tmp_path / "base", "-t", "busybox:latest")
    out = build(agent, tmp_path, "-t", "multi:1", "-t", "multi:latest", "--build-arg", "VERSION=2.5",
                "--label", "from.cli=yes")
    assert "Step 1/" in out and "Successfully built" in out and "Successfully tagged multi:1" in out
    assert "Successfully tagged multi:latest" in out
    # Only the stages the target needs run: "unused" (RUN exit 1) never did.
    assert "RUN exit 1" not in out
    info = agent.client.api.inspect_image("multi:1")
    cfg = info["Config"]
    assert cfg["Labels"] == {"org.example.name": "skiff test", "version": "none", "from.cli": "yes"}
    assert "GREETING=hi there" in cfg["Env"]
    assert cfg["User"] == "app" and cfg["WorkingDir"] == "/app"
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert set(cfg["Volumes"]) == {"/data"}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "test -e /app/bin/hello"], "Interval": 5000000000,
                                  "Timeout": 2000000000, "Retries": 2}
    assert cfg["Shell"] == ["/bin/sh", "-ec"]
    assert cfg["OnBuild"] == ["RUN echo child"]
    assert cfg["Entrypoint"] == ["/app/bin/hello"] and cfg["Cmd"] == ["ignored"]
    assert run(agent, "multi:1") == "built 2.5\n"
    c = agent.client
    listing = c.containers.run("multi:1", ["-c", "cat /app/heredoc.txt /app/greeting.txt; stat -c '%U:%G %a' /owned/main.txt"],
                               entrypoint=["/bin/sh"], remove=True, user="root").decode()
    assert listing == "from a heredoc\nsecond line\nhello 2.5\napp:app 640\n", listing
    # The image's history: one entry per instruction of the final stage.
    history = c.api.history("multi:1")
    assert any("COPY" in h["CreatedBy"] for h in history)


def test_onbuild_triggers_run_in_the_child_build(agent, tmp_path):
    agent.load("busybox.tar")
    write(tmp_path / "parent", {"Dockerfile": "FROM busybox\nONBUILD RUN echo triggered > /trigger\nONBUILD COPY x /x\n"})
    build(agent, tmp_path / "parent", "-t", "withtrigger")
    write(tmp_path / "child", {"Dockerfile": "FROM withtrigger\nCMD cat /trigger /x\n", "x": "copied\n"})
    out = build(agent, tmp_path / "child", "-t", "child")
    assert "# Executing 2 build triggers" in out
    assert run(agent, "child") == "triggered\ncopied\n"
    assert not agent.client.api.inspect_image("child")["Config"].get("OnBuild")


def test_the_cache_hits_invalidates_and_survives_a_restart(agent, tmp_path):
    agent.load("busybox.tar")
    write(tmp_path, {
        "Dockerfile": """\
            FROM busybox
            ENV A=1
            RUN echo step > /step
            COPY app.txt /app.txt
            RUN cat /app.txt > /copied
            """,
        "app.txt": "v1\n",
    })
    first = build(agent, tmp_path, "-t", "cached")
    assert "Using cache" not in first
    again = build(agent, tmp_path, "-t", "cached")
    assert again.count("Using cache") == 4
    image_id = agent.client.images.get("cached").id
    # The cache lives in the engine's state: a restart keeps it.
    agent.restart()
    after = build(agent, tmp_path, "-t", "cached")
    assert after.count("Using cache") == 4 and agent.client.images.get("cached").id == image_id
    # One changed source file: the steps before the COPY stay cached, the rest run again.
    (tmp_path / "app.txt").write_text("v2\n")
    changed = build(agent, tmp_path, "-t", "cached")
    assert changed.count("Using cache") == 2
    assert run(agent, "cached", "cat", "/copied") == "v2\n"
    # A touched but unchanged file is still a hit (content, not times, keys the cache).
    os.utime(tmp_path / "app.txt", (1, 1))
    assert build(agent, tmp_path, "-t", "cached").count("Using cache") == 4
    assert "Using cache" not in build(agent, tmp_path, "--no-cache", "-t", "nocache")
    # --cache-from: only the named images (and their parents) may serve as cache.
    assert build(agent, tmp_path, "--cache-from", "cached", "-t", "from-cached").count("Using cache") == 4
    assert "Using cache" not in build(agent, tmp_path, "--cache-from", "nosuch:tag", "-t", "from-nothing")
    # The step images are not the user's to clean up: `docker images` shows the tagged images and
    # the one the rebuild replaced (dangling, as with dockerd), not the steps in between.
    listed = agent.client.images.list()
    assert [i.id for i in listed if not i.tags] == [image_id], [(i.id, i.tags) for i in listed]
    assert len(agent.client.images.list(all=True)) > len(listed)
    # Removing that dangling image takes its step images with it.
    before = len(agent.client.images.list(all=True))
    deleted = agent.client.api.remove_image(image_id)
    assert len([d for d in deleted if "Deleted" in d]) >= 2, deleted
    assert len(agent.client.images.list(all=True)) < before


def test_cache_mounts_persist_between_builds(agent, tmp_path):
    agent.load("busybox.tar")
    write(tmp_path, {"Dockerfile": """\
        FROM busybox
        ARG RUN_ID
        RUN --mount=type=cache,target=/cache echo "$RUN_ID" >> /cache/runs && cat /cache/runs > /seen
        RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && test -e /scratch/x
        RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cp /mnt/data.txt /data-copy
        """, "data.txt": "bound\n"})
    build(agent, tmp_path, "--build-arg", "RUN_ID=one", "-t", "cm:1")
    build(agent, tmp_path, "--build-arg", "RUN_ID=two", "-t", "cm:2")
    assert run(agent, "cm:2", "cat", "/seen") == "one\ntwo\n"
    assert run(agent, "cm:2", "cat", "/data-copy") == "bound\n"
    assert run(agent, "cm:2", "ls", "/scratch") == ""


def test_dockerignore_and_dockerfile_locations(agent, tmp_path):
    agent.load("busybox.tar")
    write(tmp_path, {
        ".dockerignore": "*.log\nsecret/\n!secret/public.txt\n**/node_modules\n",
        "keep.txt": "k", "debug.log": "x", "secret/key": "x", "secret/public.txt": "p",
        "web/node_modules/m.js": "x", "web/index.js": "i",
        "docker/custom.Dockerfile": "FROM busybox\nCOPY . /ctx\n",
    })
    build(agent, tmp_path, "-f", str(tmp_path / "docker/custom.Dockerfile"), "-t", "ignored")
    files = sorted(run(agent, "ignored", "find", "/ctx", "-type", "f").split())
    assert files == ["/ctx/.dockerignore", "/ctx/docker/custom.Dockerfile", "/ctx/keep.txt", "/ctx/secret/public.txt",
                     "/ctx/web/index.js"], files
    # A Dockerfile outside the context, and one from stdin.
    outside = tmp_path.parent / f"{tmp_path.name}-outside.Dockerfile"
    outside.write_text("FROM busybox\nCOPY keep.txt /k\n")
    build(agent, tmp_path, "-f", str(outside), "-t", "outside")
    assert run(agent, "outside", "cat", "/k") == "k"
    r = cli(agent, "build", "-t", "stdin-df", "-f", "-", str(tmp_path), stdin=b"FROM busybox\nCOPY keep.txt /from-stdin\n")
    assert r.returncode == 0, r.stderr
    assert run(agent, "stdin-df", "cat", "/from-stdin") == "k"
    # The whole context as a tar on stdin.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in {"Dockerfile": b"FROM busybox\nCOPY a /a\n", "a": b"tarred\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    r = cli(agent, "build", "-q", "-t", "from-tar", "-", stdin=buf.getvalue())
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip().startswith("sha256:")
    assert run(agent, "from-tar", "cat", "/a") == "tarred\n"
    iid = tmp_path / "iid"
    build(agent, tmp_path, "-f", str(outside), "--iidfile", str(iid))
    assert iid.read_text().startswith("sha256:")


def test_context_links_stay_inside_the_context(agent, tmp_path):
    """The context is read from its tar, never extracted for COPY: symlinks resolve with the
    context's root as `/`, hard links carry their target's content, and a link that points out
    of the context reaches nothing outside it (COPY, a wildcard, a RUN bind mount)."""
    agent.load("busybox.tar")
    write(tmp_path, {"Dockerfile": "FROM busybox\nCOPY data/ /d/\nCOPY alias.txt /alias\nCOPY data/*.txt /txt/\n",
                     "data/real.txt": "real\n"})
    os.symlink("real.txt", tmp_path / "data/rel-link")
    os.symlink("/data/real.txt", tmp_path / "alias.txt")
    os.link(tmp_path / "data/real.txt", tmp_path / "data/hard.txt")
    os.symlink("/etc/hostname", tmp_path / "escape")
    build(agent, tmp_path, "-t", "links")
    assert run(agent, "links", "cat", "/alias") == "real\n"
    assert run(agent, "links", "readlink", "/d/rel-link") == "real.txt\n"
    assert run(agent, "links", "cat", "/d/hard.txt") == "real\n"
    assert sorted(run(agent, "links", "ls", "/txt").split()) == ["hard.txt", "real.txt"]
    for df, says in [
        ("FROM busybox\nCOPY escape /x\n", "file not found in build context"),
        ("FROM busybox\nCOPY escap* /x\n", "file not found in build context"),
        ("FROM busybox\nRUN --mount=type=bind,source=escape,target=/m cat /m\n", "is not in the build context"),
    ]:
        (tmp_path / "Dockerfile").write_text(df)
        r = cli(agent, "build", str(tmp_path))
        out = (r.stdout + r.stderr).decode()
        assert r.returncode != 0 and says in out, out
    # A bind mount of a directory of the context sees it, links resolved inside.
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=bind,source=data,target=/m cat /m/rel-link > /seen\n")
    build(agent, tmp_path, "-t", "bound")
    assert run(agent, "bound", "cat", "/seen") == "real\n"


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_add_unpacks_local_archives_and_downloads_urls(agent, tmp_path):
    agent.load("busybox.tar")
    served = tmp_path / "served"
    served.mkdir()
    (served / "remote.txt").write_text("from http\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tarfile.open(tmp_path / "bundle.tar.gz", "w:gz") as t:
            for name, data in {"pkg/a.txt": b"A\n", "pkg/sub/b.txt": b"B\n"}.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        url = f"http://127.0.0.1:{server.server_address[1]}/remote.txt"
        write(tmp_path, {"Dockerfile": f"FROM busybox\nADD bundle.tar.gz /opt/\nADD {url} /downloads/\nCOPY bundle.tar.gz /kept/\n"})
        build(agent, tmp_path, "--network", "host", "-t", "added")
        assert run(agent, "added", "cat", "/opt/pkg/a.txt", "/opt/pkg/sub/b.txt", "/downloads/remote.txt") == "A\nB\nfrom http\n"
        assert run(agent, "added", "ls", "/kept") == "bundle.tar.gz\n"
    finally:
        server.shutdown()


def test_build_errors_are_clear(agent, tmp_path):
    agent.load("busybox.tar")
    write(tmp_path, {"Dockerfile": "FROM busybox\nRUN true\nCOPPY a b\n"})
    r = cli(agent, "build", str(tmp_path))
    assert r.returncode != 0 and b"dockerfile parse error line 3" in r.stderr + r.stdout
    write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo some output && exit 7\n"})
    r = cli(agent, "build", str(tmp_path))
    text = (r.stdout + r.stderr).decode()
    assert r.returncode != 0 and "some output" in text
    assert "The command '/bin/sh -c echo some output && exit 7' returned a non-zero code: 7" in text
    # A failed step's container stays for inspection, unless --force-rm.
    failed = [x for x in agent.client.containers.list(all=True) if x.attrs["State"]["ExitCode"] == 7]
    assert len(failed) == 1
    failed[0].remove()
    assert cli(agent, "build", "--force-rm", str(tmp_path)).returncode != 0
    assert agent.client.containers.list(all=True) == []
    write(tmp_path, {"Dockerfile": "FROM busybox\nCOPY missing.txt /\n"})
    r = cli(agent, "build", str(tmp_path))
    assert r.returncode != 0 and b"missing.txt" in r.stderr + r.stdout
    write(tmp_path, {"Dockerfile": "FROM no-such-image-here\n"})
    assert cli(agent, "build", str(tmp_path)).returncode != 0
    c = agent.client
    # A corrupt context: a clear 400 once the whole body was read.
    resp = c.api._post(c.api._url("/build"), data=b"\x1f\x8b this is not a tar" * 1000,
                       headers={"Content-Type": "application/x-tar"})
    assert resp.status_code == 400 and "invalid build context" in resp.json()["message"]
    # Errors before any output (an empty Dockerfile) are the answer's HTTP status, as in dockerd.
    with pytest.raises(APIError) as empty:
        list(c.api.build(fileobj=io.BytesIO(b""), tag="a/b/c"))
    assert empty.value.response.status_code == 400 and "empty" in str(empty.value)
    with pytest.raises(BuildError) as bad:
        c.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN exit 1"))
    assert "returned a non-zero code: 1" in str(bad.value)
    # A failed build tags nothing and leaves no build context behind.
    assert not list((agent.root / "build").glob("context-*"))


def test_a_client_that_goes_away_cancels_the_build(agent, tmp_path):
    agent.load("busybox.tar")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"FROM busybox\nRUN echo sleep-now && sleep 60\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(agent.socket))
    s.sendall(b"POST /v1.41/build HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    # The command's own output (the step line also names it, without the newline).
    while b'"sleep-now\\n"' not in got:
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    assert len(agent.client.containers.list()) == 1
    s.close()
    # One GET /containers/json per poll: docker-py's containers.list() also inspects each listed
    # container, and fails with 404 when the one it waits for goes between the two requests.
    deadline = time.monotonic() + 20
    while agent.client.api.containers(all=True) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert agent.client.api.containers(all=True) == []
    assert not list((agent.root / "build").glob("context-*"))


def test_concurrent_builds_of_one_dockerfile(agent, tmp_path):
    agent.load("busybox.tar")
    write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo $((1+1)) > /two\nCOPY f /f\n", "f": "same\n"})
    results = []

    def one(tag):
        r = cli(agent, "build", "-t", tag, str(tmp_path))
        results.append((tag, r.returncode, r.stderr))

    threads = [threading.Thread(target=one, args=(f"conc:{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(rc == 0 for _, rc, _ in results), results
    for i in range(3):
        assert run(agent, f"conc:{i}", "cat", "/two", "/f") == "2\nsame\n"


def test_docker_py_build_options(agent, tmp_path):
    agent.load("busybox.tar")
    c = agent.client
    since = int(time.time()) - 1
    image, logs = c.images.build(fileobj=io.BytesIO(b"FROM busybox\nARG who\nCMD echo hello $who"),
                                 tag="dp:1", buildargs={"who": "docker-py"}, labels={"l": "v"})
    assert c.containers.run(image, remove=True) == b"hello\n"  # ARG is not ENV: gone at run time
    assert image.labels == {"l": "v"}
    assert any("Successfully built" in line.get("stream", "") for line in logs)
    # extrahosts and networkmode reach RUN.
    img, _ = c.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN cp /etc/hosts /hosts-file"),
                            extra_hosts={"extra.test": "127.0.0.1"}, tag="hosts")
    assert "127.0.0.1\textra.test" in c.containers.run("hosts", ["cat", "/hosts-file"], remove=True).decode()
    with pytest.raises(BuildError):
        c.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN wget -q -T 2 http://10.255.255.1/ || nslookup x.invalid"),
                       network_mode="none", nocache=True)
    # Steps that change nothing make identical empty layers; later steps still run on them.
    img, _ = c.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN true\nRUN true\nRUN echo after > /after"), tag="empties")
    assert c.containers.run("empties", ["cat", "/after"], remove=True) == b"after\n"
    # docker-py sends a Dockerfile outside the context as a second `dockerfile` value.
    outside = tmp_path / "outside.Dockerfile"
    outside.write_text("FROM busybox\nCOPY . /src\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "file.txt").write_text("hello")
    (ctx / ".dockerignore").write_text(".dockerignore\n")
    img, _ = c.images.build(path=str(ctx), dockerfile=str(outside), tag="ooc")
    assert c.containers.run("ooc", ["ls", "-A", "/src"], remove=True) == b"file.txt\n"
    # target
    img, _ = c.images.build(fileobj=io.BytesIO(b"FROM busybox AS first\nRUN touch /first\nFROM busybox\nRUN touch /second"),
                            target="first", tag="first")
    assert c.containers.run("first", ["ls", "/first"], remove=True) == b"/first\n"
    # `system df` counts the build steps; builder prune removes only what nothing builds on.
    cache = c.df()["BuildCache"]
    assert cache and all(isinstance(e["Size"], int) and e["Type"] == "regular" for e in cache), cache
    assert any(e["InUse"] for e in cache)
    r = cli(agent, "system", "df")
    assert b"Build Cache" in r.stdout, r.stdout
    # A failed build leaves the steps that worked in the cache, and nothing builds on them.
    with pytest.raises(BuildError):
        c.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN echo kept > /kept\nRUN exit 1"))
    c.containers.prune()  # the failed step's container stays (as with dockerd, without --force-rm)
    pruned = c.api.prune_builds()
    assert pruned["CachesDeleted"] and pruned["SpaceReclaimed"] >= 0, pruned
    assert c.images.get("dp:1") and c.images.get("hosts")
    # Builds show in /events: their steps' containers and the tags of their images.
    events = list(c.events(since=since, until=int(time.time()) + 1, decode=True))
    assert any(e["Type"] == "image" and e["Action"] == "tag" and "dp:1" in e["Actor"]["Attributes"].get("name", "") for e in events)
    assert any(e["Type"] == "container" and e["Action"] == "commit" for e in events)


def test_compose_1_29_and_v2_build_services(agent, tmp_path):
    agent.load("busybox.tar")
    write(tmp_path, {
        "app/Dockerfile": "FROM busybox\nARG MSG\nRUN echo \"$MSG\" > /msg\nCMD cat /msg\n",
        "docker-compose.yml": textwrap.dedent("""\
            version: "3.7"
            services:
              app:
                build:
                  context: ./app
                  args:
                    MSG: built by compose
                image: composed/app:latest
            """),
    })
    env = dict(os.environ, DOCKER_HOST=agent.base_url, COMPOSE_PROJECT_NAME="bld")
    r = subprocess.run([compose_bin(), "build"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert run(agent, "composed/app:latest") == "built by compose\n"
    agent.client.images.remove("composed/app:latest")
    env2 = dict(env, DOCKER_BUILDKIT="0", COMPOSE_BAKE="false")
    r = subprocess.run([compose_v2(), "up", "--build", "--abort-on-container-exit"], cwd=tmp_path, env=env2,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "built by compose" in r.stdout
    subprocess.run([compose_v2(), "down"], cwd=tmp_path, env=env2, capture_output=True, timeout=120)


def test_independent_stages_run_at_the_same_time(agent, tmp_path):
    agent.load("busybox.tar")
    write(tmp_path, {"Dockerfile": """\
        FROM busybox AS left
        RUN cut -d' ' -f1 /proc/uptime > /start && sleep 2 && cut -d' ' -f1 /proc/uptime > /end

        FROM busybox AS right
        RUN cut -d' ' -f1 /proc/uptime > /start && sleep 2 && cut -d' ' -f1 /proc/uptime > /end

        FROM busybox
        COPY --from=left /start /left-start
        COPY --from=left /end /left-end
        COPY --from=right /start /right-start
        COPY --from=right /end /right-end
        """})
    build(agent, tmp_path, "-t", "overlap")
    t = [float(x) for x in run(agent, "overlap", "cat", "/left-start", "/left-end", "/right-start", "/right-end").split()]
    left, right = (t[0], t[1]), (t[2], t[3])
    # Both RUNs were running at once: each started before the other ended.
    assert left[0] < right[1] and right[0] < left[1], (left, right)
