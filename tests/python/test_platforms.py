"""Platforms: a multi-platform image (amd64 + arm64 busybox, built offline from Debian's
busybox-static packages) loaded, pushed as one index to a local registry, pulled for the engine's
platform or another, and run natively or through QEMU's user-mode emulator (binfmt_misc, F flag);
an image of an architecture without an emulator fails with a message that names the fix."""

import io
import json
import os
import subprocess
import tarfile
import urllib.request

from conftest import fixture_path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def cli(agent, *args, env=None):
    env = dict(os.environ, DOCKER_HOST=agent.base_url, **(env or {}))
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=300)


def push_layout(archive, registry, repo, tag):
    """Pushes an OCI layout tar (index.json → one nested index) with the registry's HTTP API:
    every blob, the manifests by digest, the nested index as `tag`."""
    with tarfile.open(archive) as t:
        files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    top = json.loads(files["index.json"])["manifests"][0]
    nested = files["blobs/sha256/" + top["digest"].split(":")[1]]
    base = f"http://{registry}/v2/{repo}"

    def put_blob(digest, data):
        req = urllib.request.Request(f"{base}/blobs/uploads/", method="POST", data=b"")
        location = urllib.request.urlopen(req).headers["Location"]
        sep = "&" if "?" in location else "?"
        url = location if location.startswith("http") else f"http://{registry}{location}"
        urllib.request.urlopen(urllib.request.Request(f"{url}{sep}digest={digest}", method="PUT", data=data,
                                                      headers={"Content-Type": "application/octet-stream"}))

    def put_manifest(ref, data, media_type):
        urllib.request.urlopen(urllib.request.Request(f"{base}/manifests/{ref}", method="PUT", data=data,
                                                      headers={"Content-Type": media_type}))

    for m in json.loads(nested)["manifests"]:
        manifest = files["blobs/sha256/" + m["digest"].split(":")[1]]
        body = json.loads(manifest)
        for d in [body["config"], *body["layers"]]:
            put_blob(d["digest"], files["blobs/sha256/" + d["digest"].split(":")[1]])
        put_manifest(m["digest"], manifest, m["mediaType"])
    put_manifest(tag, nested, OCI_INDEX)


def inspect(agent, ref):
    return agent.client.api.inspect_image(ref)


def test_loading_a_multi_platform_archive_keeps_the_engines_platform(agent):
    agent.load("busybox-multi-oci.tar")
    img = inspect(agent, "skiff-test/busybox-multi:latest")
    assert (img["Os"], img["Architecture"]) == ("linux", "amd64"), img
    assert agent.client.containers.run("skiff-test/busybox-multi", ["uname", "-m"], remove=True) == b"x86_64\n"


def test_pull_run_and_build_pick_the_platform_asked_for_and_emulate_a_foreign_one(agent, registry, tmp_path):
    ref = f"{registry}/skiff-test/busybox-multi:latest"
    push_layout(fixture_path("busybox-multi-oci.tar"), registry, "skiff-test/busybox-multi", "latest")

    # A plain pull resolves the index to the engine's platform.
    r = cli(agent, "pull", ref)
    assert r.returncode == 0, r.stderr
    assert inspect(agent, ref)["Architecture"] == "amd64"
    assert cli(agent, "run", "--rm", ref, "uname", "-m").stdout == "x86_64\n"

    # --platform: the local amd64 image does not match (404), so the CLI pulls arm64 and runs it
    # through the emulator.
    r = cli(agent, "run", "--rm", "--platform", "linux/arm64", ref, "uname", "-m")
    assert r.returncode == 0, r.stderr + agent.log()[-2000:]
    assert r.stdout.endswith("aarch64\n"), r.stdout
    img = inspect(agent, ref)
    assert (img["Os"], img["Architecture"]) == ("linux", "arm64"), img
    # Asked again, it is found locally; a shell pipeline runs every program emulated.
    r = cli(agent, "run", "--rm", "--platform", "linux/arm64/v8", ref, "sh", "-c", "uname -m | tr a-z A-Z")
    assert (r.returncode, r.stdout) == (0, "AARCH64\n"), r.stderr
    # docker-py, which passes the platform on create too.
    out = agent.client.containers.run(ref, ["uname", "-m"], platform="linux/arm64", remove=True)
    assert out == b"aarch64\n"

    # docker build --platform: the base is pulled for that platform, RUN steps run emulated, the
    # image is of that platform, and TARGETARCH says which.
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {ref}\nARG TARGETARCH\nRUN uname -m > /arch && echo $TARGETARCH >> /arch\n")
    r = cli(agent, "build", "--platform", "linux/arm64", "-t", "built-arm64", str(ctx), env={"DOCKER_BUILDKIT": "0"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert inspect(agent, "built-arm64")["Architecture"] == "arm64"
    r = cli(agent, "run", "--rm", "built-arm64", "cat", "/arch")
    assert r.stdout == "aarch64\narm64\n", r.stdout + r.stderr
    r = cli(agent, "build", "--platform", "linux/s390x", str(ctx), env={"DOCKER_BUILDKIT": "0"})
    assert r.returncode != 0 and "qemu-user-static" in r.stderr, r.stderr

    # A platform the index does not have is a clear error.
    r = cli(agent, "pull", "--platform", "linux/s390x", ref)
    assert r.returncode != 0 and "no matching manifest for linux/s390x" in r.stderr, r.stderr
    # A create for a platform the local image does not have is dockerd's 404.
    r = cli(agent, "create", "--platform", "linux/ppc64le", "--pull", "never", ref)
    assert r.returncode != 0 and "does not match the specified platform" in r.stderr, r.stderr


def test_an_architecture_without_an_emulator_says_what_to_install(agent):
    # busybox's files under an s390x config: no emulator is registered for it.
    with tarfile.open(fixture_path("busybox.tar")) as t:
        members = {m.name: m for m in t.getmembers()}
        manifest = json.loads(t.extractfile("manifest.json").read())
        config = json.loads(t.extractfile(manifest[0]["Config"]).read())
        config["architecture"] = "s390x"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as out:
            for name, m in members.items():
                if name == "manifest.json" or name == manifest[0]["Config"] or name == "repositories":
                    continue
                out.addfile(m, t.extractfile(m) if m.isfile() else None)
            cfg = json.dumps(config).encode()
            for name, data in [("s390x.json", cfg), ("manifest.json", json.dumps(
                    [{"Config": "s390x.json", "RepoTags": ["skiff-test/s390x:latest"],
                      "Layers": manifest[0]["Layers"]}]).encode())]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
    agent.client.images.load(buf.getvalue())
    r = cli(agent, "run", "--rm", "skiff-test/s390x", "true")
    assert r.returncode != 0
    assert "does not match the detected host platform" in r.stderr, r.stderr
    assert "linux/s390x" in r.stderr and "qemu-user-static" in r.stderr, r.stderr
