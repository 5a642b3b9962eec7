"""Volumes and mounts through docker-py 7 against a real `skiff-agent serve`: the volumes API
(create/list/get/remove/prune), containers with `volumes=` and `mounts=`, copy-up of image
content, anonymous volumes, `--volumes-from`, and the errors a user gets for bad input."""

import os
import tempfile
import time

import docker
import pytest
from docker.errors import APIError, NotFound
from docker.types import Mount

IMAGE = "busybox"


@pytest.fixture
def client(agent):
    agent.load("busybox.tar")
    c = agent.client
    yield c
    for ctr in c.containers.list(all=True):
        ctr.remove(force=True, v=True)
    for vol in c.volumes.list():
        vol.remove(force=True)


def test_volume_api_create_list_get_remove_prune(client):
    vol = client.volumes.create("data", labels={"team": "a"})
    assert vol.name == "data"
    assert vol.attrs["Driver"] == "local" and vol.attrs["Labels"] == {"team": "a"}
    assert vol.attrs["Mountpoint"].endswith("/volumes/data/_data")
    assert client.volumes.create("data").id == vol.id, "creating an existing name returns it"
    client.volumes.create("other")
    assert sorted(v.name for v in client.volumes.list()) == ["data", "other"]
    assert [v.name for v in client.volumes.list(filters={"label": "team=a"})] == ["data"]
    assert [v.name for v in client.volumes.list(filters={"name": "oth"})] == ["other"]
    assert client.volumes.get("data").attrs["Labels"] == {"team": "a"}
    with pytest.raises(NotFound):
        client.volumes.get("nope")
    client.volumes.get("other").remove()
    with pytest.raises(NotFound):
        client.volumes.get("other")
    # prune takes only anonymous volumes unless all=true; named ones stay.
    anon = client.api.create_volume()["Name"]
    assert len(anon) == 64
    pruned = client.volumes.prune()
    assert pruned["VolumesDeleted"] == [anon]
    assert [v.name for v in client.volumes.list()] == ["data"]
    pruned = client.api.prune_volumes(filters={"all": "true"})
    assert pruned["VolumesDeleted"] == ["data"]
    assert client.volumes.list() == []


def test_bad_volume_requests_get_docker_errors(client):
    with pytest.raises(APIError) as e:
        client.volumes.create("a/b")
    assert e.value.status_code == 400 and "invalid characters" in str(e.value)
    with pytest.raises(APIError) as e:
        client.volumes.create("x1", driver="nfs")
    assert e.value.status_code == 404
    with pytest.raises(APIError) as e:
        client.volumes.create("x2", driver_opts={"colour": "red"})
    assert e.value.status_code == 400
    with pytest.raises(APIError) as e:
        client.containers.create(IMAGE, "true", volumes=["/does/not/exist:/x"])
    assert e.value.status_code == 400 and "bind source path does not exist" in str(e.value)
    with pytest.raises(APIError) as e:
        client.containers.create(IMAGE, "true", volumes=["v1:/x", "v2:/x"])
    assert "Duplicate mount point" in str(e.value)


def test_named_volume_is_shared_between_containers_and_in_use_blocks_removal(client):
    client.containers.run(IMAGE, ["sh", "-c", "echo persisted > /data/f"], volumes={"shared": {"bind": "/data", "mode": "rw"}}, remove=True)
    out = client.containers.run(IMAGE, ["cat", "/data/f"], volumes=["shared:/data:ro"], remove=True)
    assert out == b"persisted\n"
    holder = client.containers.create(IMAGE, "true", volumes=["shared:/data"])
    with pytest.raises(APIError) as e:
        client.volumes.get("shared").remove()
    assert e.value.status_code == 409 and "in use" in str(e.value)
    assert client.volumes.list(filters={"dangling": "false"})[0].name == "shared"
    holder.remove()
    assert [v.name for v in client.volumes.list(filters={"dangling": "true"})] == ["shared"]
    client.volumes.get("shared").remove()


def test_read_only_volume_and_bind_refuse_writes(client):
    with tempfile.TemporaryDirectory() as d:
        with pytest.raises(docker.errors.ContainerError) as e:
            client.containers.run(IMAGE, ["sh", "-c", "echo x > /w/f"], volumes=[f"{d}:/w:ro"], remove=True)
        assert b"Read-only file system" in e.value.stderr
        assert os.listdir(d) == []


def test_bind_mount_reads_and_writes_the_host_directory(client):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "input"), "w") as f:
            f.write("from host\n")
        out = client.containers.run(
            IMAGE, ["sh", "-c", "cat input; echo out > output"], volumes=[f"{d}:/w"], working_dir="/w", remove=True
        )
        assert out == b"from host\n"
        with open(os.path.join(d, "output")) as f:
            assert f.read() == "out\n"


def test_mounts_bind_volume_and_tmpfs(client):
    with tempfile.TemporaryDirectory() as d:
        mounts = [
            Mount("/b", d, type="bind", read_only=True),
            Mount("/v", "mvol", type="volume", labels={"made": "by-mount"}),
            Mount("/t", None, type="tmpfs", tmpfs_size=1 << 20),
        ]
        c = client.containers.run(IMAGE, ["sh", "-c", "touch /v/ok && df /t | tail -1 && ! touch /b/no"], mounts=mounts, detach=True)
        assert c.wait()["StatusCode"] == 0, c.logs()
        assert b"1024" in c.logs()
        kinds = {m["Destination"]: (m["Type"], m["RW"]) for m in c.attrs["Mounts"]}
        assert kinds == {"/b": ("bind", False), "/v": ("volume", True), "/t": ("tmpfs", True)}
        assert client.volumes.get("mvol").attrs["Labels"] == {"made": "by-mount"}
        c.remove()


def test_new_volume_gets_a_copy_of_the_image_content_unless_nocopy(client):
    client.containers.run(IMAGE, "true", volumes=["etc-copy:/etc"], remove=True)
    listing = client.containers.run(IMAGE, ["ls", "/v"], volumes=["etc-copy:/v"], remove=True)
    assert b"passwd" in listing
    client.containers.run(IMAGE, "true", volumes=["etc-empty:/etc:nocopy"], remove=True)
    assert client.containers.run(IMAGE, ["ls", "/v"], volumes=["etc-empty:/v"], remove=True) == b""


def test_anonymous_volumes_volumes_from_and_rm_v(client):
    c = client.containers.create(IMAGE, ["sh", "-c", "echo anon > /anon/f"], volumes=["/anon"])
    anon = [m for m in c.attrs["Mounts"] if m["Destination"] == "/anon"][0]
    assert anon["Type"] == "volume" and len(anon["Name"]) == 64
    c.start()
    c.wait()
    reader = client.containers.run(IMAGE, ["cat", "/anon/f"], volumes_from=[c.id + ":ro"], detach=True)
    reader.wait()
    assert reader.logs() == b"anon\n"
    assert [m["RW"] for m in reader.attrs["Mounts"]] == [False]
    reader.remove()
    c.remove(v=True)
    with pytest.raises(NotFound):
        client.volumes.get(anon["Name"])
    # AutoRemove (`docker run --rm`) removes a container's anonymous volumes too; named ones stay.
    client.containers.run(IMAGE, "true", volumes=["/gone", "kept:/kept"], auto_remove=True, detach=True)
    deadline = time.monotonic() + 10
    while client.api.containers(all=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [v.name for v in client.volumes.list()] == ["kept"]


def test_volumes_survive_an_engine_restart(agent_factory):
    a = agent_factory()
    a.load("busybox.tar")
    a.client.containers.run(IMAGE, ["sh", "-c", "echo durable > /d/f && sync"], volumes=["keep:/d"], remove=True)
    a.restart()
    assert a.client.containers.run(IMAGE, ["cat", "/d/f"], volumes=["keep:/d"], remove=True) == b"durable\n"
