"""`docker commit` and `docker import` through docker-py and the docker CLI: round trips, what a
committed layer carries (new files, deletions, replaced directories, hard links, file
capabilities), the config changes, parents and history, and the error cases."""

import gzip
import io
import json
import lzma
import subprocess
import tarfile
import time

import pytest
from docker.errors import APIError, NotFound


def tar_of(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def top_layer_names(client, image_id) -> list:
    """The entry names of an image's top layer, from `docker save`."""
    saved = tarfile.open(fileobj=io.BytesIO(b"".join(client.api.get_image(image_id))))
    manifest = json.load(saved.extractfile("manifest.json"))
    layer = saved.extractfile(manifest[0]["Layers"][-1]).read()
    if layer[:2] == b"\x1f\x8b":
        layer = gzip.decompress(layer)
    return [m.name + ("/" if m.isdir() else "") for m in tarfile.open(fileobj=io.BytesIO(layer))]


def docker_cli(agent, *args, stdin=None):
    return subprocess.run(["docker", "-H", agent.base_url, *args], input=stdin, capture_output=True, timeout=120)


def test_commit_round_trip_keeps_changes_deletions_and_replaced_directories(agent):
    agent.load("busybox.tar")
    c = agent.client
    base = c.images.get("busybox")
    box = c.containers.run(
        "busybox",
        ["sh", "-c", "echo hi > /hello && ln /hello /hello-link && rm /etc/group "
                     "&& rm -rf /home && mkdir -p /home/new && touch /home/new/file"],
        detach=True)
    assert box.wait(timeout=30)["StatusCode"] == 0
    img = box.commit(repository="committed", tag="v1", message="first commit", author="tester",
                     changes=["EXPOSE 8000", 'CMD ["cat", "/hello"]', "ENV STAGE=committed"])
    info = c.api.inspect_image(img.id)
    assert info["Parent"] == base.id
    assert info["Comment"] == "first commit"
    assert info["Author"] == "tester"
    assert "8000/tcp" in info["Config"]["ExposedPorts"]
    assert info["Config"]["Cmd"] == ["cat", "/hello"]
    assert "STAGE=committed" in info["Config"]["Env"]
    assert len(info["RootFS"]["Layers"]) == len(base.attrs["RootFS"]["Layers"]) + 1
    assert "committed:v1" in [t.split("/")[-1] for t in img.tags]
    # The new image holds exactly what the container changed.
    assert c.containers.run("committed:v1", remove=True) == b"hi\n"
    out = c.containers.run("committed:v1", ["sh", "-c",
                           "ls /etc/group 2>&1; ls -A /home; ls /home/new; stat -c %h /hello; echo $STAGE"],
                           remove=True).decode()
    assert "No such file" in out
    assert out.split("\n")[1:5] == ["new", "file", "2", "committed"], out
    history = c.api.history(img.id)
    assert history[0]["CreatedBy"].startswith("sh -c echo hi")
    assert history[0]["Comment"] == "first commit"
    # The new layer is the container's changes only; the engine's /etc files are not among them.
    # busybox has /home: removing and recreating it makes an opaque directory.
    assert top_layer_names(c, img.id) == [
        "etc/", "etc/.wh.group", "hello", "hello-link", "home/", "home/.wh..wh..opq", "home/new/", "home/new/file"]


def test_commit_of_a_running_container_pauses_it_only_while_it_reads(agent):
    agent.load("busybox.tar")
    c = agent.client
    box = c.containers.run("busybox", ["sh", "-c", "echo live > /state && sleep 600"], detach=True)
    time.sleep(0.5)
    img = box.commit(changes=["CMD cat /state"])
    box.reload()
    assert box.status == "running"
    assert c.containers.run(img.id, remove=True) == b"live\n"
    assert c.api.inspect_image(img.id)["Config"]["Cmd"] == ["/bin/sh", "-c", "cat /state"]
    box.remove(force=True)


CAP_NET_RAW_EP = "0100000200200000000000000000000000000000"


def test_commit_keeps_file_capabilities_as_xattrs(agent):
    agent.load("python.tar")
    c = agent.client
    py = "skiff-test/python:bookworm"
    box = c.containers.run(py, ["python3", "-c",
                                "import os, shutil; shutil.copy('/bin/true', '/captrue'); "
                                f"os.setxattr('/captrue', 'security.capability', bytes.fromhex('{CAP_NET_RAW_EP}'))"],
                           detach=True)
    assert box.wait(timeout=60)["StatusCode"] == 0, box.logs()
    img = box.commit()
    out = c.containers.run(img.id, ["python3", "-c",
                                    "import os; print(os.getxattr('/captrue', 'security.capability').hex())"],
                           remove=True).decode().strip()
    assert out == CAP_NET_RAW_EP


def test_commit_right_after_start_races_the_exit_without_error(agent):
    agent.load("busybox.tar")
    c = agent.client
    for _ in range(10):
        cid = c.api.create_container("busybox", ["touch", "/test"])["Id"]
        c.api.start(cid)
        assert c.api.commit(cid)["Id"].startswith("sha256:")


def test_commit_errors(agent):
    agent.load("busybox.tar")
    c = agent.client
    with pytest.raises(NotFound):
        c.api.commit("no-such-container")
    box = c.containers.create("busybox", ["true"])
    with pytest.raises(APIError) as bad:
        c.api.commit(box.id, changes=["RUN rm -rf /"])
    assert bad.value.status_code == 400 and "RUN is not a valid change command" in str(bad.value)
    with pytest.raises(APIError) as bad:
        c.api.commit(box.id, repository="Bad Name")
    assert bad.value.status_code == 400
    # A container that never ran commits as an image with an empty layer on top.
    img = c.images.get(c.api.commit(box.id)["Id"])
    assert c.api.inspect_image(img.id)["Parent"] == c.images.get("busybox").id


def test_import_from_data_file_and_stream_with_changes(agent, tmp_path):
    c = agent.client
    data = tar_of({"hello.txt": b"imported\n"})
    lines = c.api.import_image_from_data(data, repository="test/import-from-bytes",
                                         changes=["USER foobar", 'CMD ["echo"]']).splitlines()
    image_id = json.loads(lines[-1])["status"]
    info = c.api.inspect_image(image_id)
    assert info["Config"]["Cmd"] == ["echo"] and info["Config"]["User"] == "foobar"
    assert info["Comment"] == "Imported from -"
    assert info["Parent"] == ""
    assert c.images.get("test/import-from-bytes:latest").id == image_id
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gzip.compress(data))
    lines = c.api.import_image_from_file(str(path), repository="test/from-file", tag="gz").splitlines()
    assert json.loads(lines[-1])["status"].startswith("sha256:")
    assert c.images.get("test/from-file:gz")


def test_export_then_import_is_a_runnable_image_cli(agent, tmp_path):
    agent.load("busybox.tar")
    c = agent.client
    box = c.containers.run("busybox", ["sh", "-c", "echo exported > /marker"], detach=True)
    box.wait(timeout=30)
    exported = tmp_path / "box.tar"
    r = docker_cli(agent, "export", "-o", str(exported), box.id)
    assert r.returncode == 0, r.stderr
    r = docker_cli(agent, "import", "-c", "CMD [\"cat\", \"/marker\"]", "-m", "from a file", str(exported), "flat:file")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip().startswith("sha256:")
    assert c.containers.run("flat:file", remove=True) == b"exported\n"
    r = docker_cli(agent, "import", "-", "flat:stdin", stdin=exported.read_bytes())
    assert r.returncode == 0, r.stderr
    assert c.containers.run("flat:stdin", ["cat", "/marker"], remove=True) == b"exported\n"
    assert c.api.inspect_image("flat:file")["Comment"] == "from a file"
    r = docker_cli(agent, "commit", "-c", "ENV FROM_CLI=1", box.id, "committed:cli")
    assert r.returncode == 0, r.stderr
    assert "FROM_CLI=1" in c.api.inspect_image("committed:cli")["Config"]["Env"]


def test_bad_imports_are_refused_and_leave_nothing(agent):
    c = agent.client
    before = sorted(i.id for i in c.images.list(all=True))
    store_tmp = agent.root / "image-store" / "tmp"
    for body, expect in [
        (b"this is not a tar archive at all" * 100, 400),
        (lzma.compress(tar_of({"a": b"b"})), 400),
        (tar_of({"../escape": b"x"}), 400),
        (gzip.compress(b"\x00" * 10)[:-4], 400),
    ]:
        resp = c.api._post(c.api._url("/images/create"), params={"fromSrc": "-", "repo": "bad/import"}, data=body)
        assert resp.status_code == expect, (resp.status_code, resp.text)
        assert resp.json()["message"], resp.text
    assert sorted(i.id for i in c.images.list(all=True)) == before
    assert not store_tmp.exists() or list(store_tmp.iterdir()) == []
    with pytest.raises(APIError) as bad:
        c.api.import_image_from_data(tar_of({"a": b"b"}), changes=["FROM scratch"])
    assert bad.value.status_code == 400 and "FROM is not a valid change command" in str(bad.value)
    resp = c.api._post(c.api._url("/images/create"), params={"fromSrc": "http://example.invalid/x.tar"})
    assert resp.status_code == 400
