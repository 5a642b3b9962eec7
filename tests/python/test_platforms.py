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


def archive_files(path):
    with tarfile.open(path) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def blob(files, digest):
    return json.loads(files["blobs/sha256/" + digest.split(":")[1]])


def ids(agent):
    return set(cli(agent, "images", "-a", "-q", "--no-trunc").stdout.split())


def test_a_multi_platform_image_stays_whole_through_load_save_push_and_remove(agent, registry, tmp_path):
    name = "skiff-test/busybox-multi"
    fixture = archive_files(fixture_path("busybox-multi-oci.tar"))
    fixture_index = json.loads(fixture["index.json"])["manifests"][0]["digest"]

    # Loading keeps both platforms: one image listed (the engine's platform, tagged), the other
    # found through it without a registry.
    cli(agent, "load", "-i", str(fixture_path("busybox-multi-oci.tar")))
    listed = [line for line in cli(agent, "images", "--format", "{{.Repository}}").stdout.split("\n") if line]
    assert listed == [name], listed
    assert len(ids(agent)) == 2
    r = cli(agent, "run", "--rm", "--pull", "never", "--platform", "linux/arm64", name, "uname", "-m")
    assert (r.returncode, r.stdout) == (0, "aarch64\n"), r.stderr
    fmt = "{{.Os}}/{{.Architecture}}"
    assert cli(agent, "image", "inspect", "-f", fmt, name).stdout == "linux/amd64\n"
    r = cli(agent, "image", "inspect", "--platform", "linux/arm64", "-f", fmt, name)
    assert r.stdout == "linux/arm64\n", r.stderr
    r = cli(agent, "image", "inspect", "--platform", "linux/s390x", name)
    assert r.returncode != 0 and "does not provide the specified platform (linux/s390x)" in r.stderr, r.stderr
    # `docker images --tree` shows the platforms stored.
    tree = agent.client.api.get(agent.client.api._url("/images/json"), params={"manifests": "1"}).json()
    platforms = sorted(m["ImageData"]["Platform"]["architecture"] for i in tree for m in i["Manifests"])
    assert platforms == ["amd64", "arm64"], tree

    # Saved whole: index.json names the very index the fixture had, byte for byte.
    whole = tmp_path / "whole.tar"
    r = cli(agent, "save", "-o", str(whole), name)
    assert r.returncode == 0, r.stderr
    files = archive_files(whole)
    top = json.loads(files["index.json"])["manifests"]
    assert [m["digest"] for m in top] == [fixture_index], top
    assert top[0]["annotations"]["io.containerd.image.name"] == f"docker.io/{name}:latest"
    archs = sorted(m["platform"]["architecture"] for m in blob(files, fixture_index)["manifests"])
    assert archs == ["amd64", "arm64"]
    assert len(json.loads(files["manifest.json"])) == 1

    # Saved for one platform: just that image.
    arm = tmp_path / "arm.tar"
    r = cli(agent, "save", "--platform", "linux/arm64", "-o", str(arm), name)
    assert r.returncode == 0, r.stderr
    files = archive_files(arm)
    top = json.loads(files["index.json"])["manifests"]
    assert len(top) == 1 and blob(files, blob(files, top[0]["digest"])["config"]["digest"])["architecture"] == "arm64"
    r = cli(agent, "save", "--platform", "linux/s390x", "-o", str(tmp_path / "none.tar"), name)
    assert r.returncode != 0 and "linux/s390x" in r.stderr, r.stderr

    # Pushed whole: the registry gets the index and both platforms.
    remote = f"{registry}/skiff-test/pushed-multi:v1"
    assert cli(agent, "tag", name, remote).returncode == 0
    r = cli(agent, "push", remote)
    assert r.returncode == 0, r.stdout + r.stderr
    req = urllib.request.Request(f"http://{registry}/v2/skiff-test/pushed-multi/manifests/v1",
                                 headers={"Accept": OCI_INDEX})
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Content-Type"] == OCI_INDEX
        pushed = json.loads(resp.read())
    assert sorted(m["platform"]["architecture"] for m in pushed["manifests"]) == ["amd64", "arm64"]
    assert cli(agent, "rmi", remote).returncode == 0

    # Removing the last tag removes every platform; the saved archive brings both back.
    r = cli(agent, "rmi", name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Deleted: sha256:") >= 2, r.stdout
    assert ids(agent) == set()
    assert cli(agent, "load", "-i", str(whole)).returncode == 0
    assert len(ids(agent)) == 2
    r = cli(agent, "run", "--rm", "--pull", "never", "--platform", "linux/arm64", name, "uname", "-m")
    assert r.stdout == "aarch64\n", r.stderr

    # `docker load --platform`: only that platform, named.
    assert cli(agent, "rmi", name).returncode == 0
    r = cli(agent, "load", "--platform", "linux/arm64", "-i", str(fixture_path("busybox-multi-oci.tar")))
    assert r.returncode == 0, r.stderr
    assert len(ids(agent)) == 1
    assert cli(agent, "image", "inspect", "-f", fmt, name).stdout == "linux/arm64\n"
    r = cli(agent, "load", "--platform", "linux/s390x", "-i", str(fixture_path("busybox-multi-oci.tar")))
    assert r.returncode != 0 and "linux/s390x" in r.stderr, r.stderr

    # The arm64 image stored before from a single-image archive (its own manifest): loading the
    # index makes it one of the index's platforms, so the index is saved whole again.
    assert cli(agent, "rmi", name).returncode == 0
    assert cli(agent, "load", "-i", str(fixture_path("busybox-arm64.tar"))).returncode == 0
    assert cli(agent, "load", "-i", str(fixture_path("busybox-multi-oci.tar"))).returncode == 0
    again = tmp_path / "again.tar"
    assert cli(agent, "save", "-o", str(again), name).returncode == 0
    assert [m["digest"] for m in json.loads(archive_files(again)["index.json"])["manifests"]] == [fixture_index]
    assert cli(agent, "run", "--rm", "skiff-test/busybox-arm64", "uname", "-m").stdout == "aarch64\n"
