"""The image half of the engine, proven through docker-py 7 (high- and low-level APIs) against a
real `skiff-agent serve`. Each test names one behaviour a docker-py user relies on and asserts
what they would observe."""

import gzip
import io
import json
import os
import tarfile
import time

import docker
import pytest
from docker.errors import APIError, ImageLoadError, ImageNotFound, NotFound

from conftest import fixture_path

FIXTURES = [
    ("busybox.tar", "busybox:latest", 1),
    ("multilayer.tar", "skiff-test/multilayer:latest", 3),
    ("multilayer-oci.tar", "skiff-test/multilayer-oci:latest", 3),
    ("debian.tar", "skiff-test/debian:bookworm", 1),
]
ESCAPE = "/tmp/skiff-escape"
AUTH = {"username": "skiff", "password": "skiffpass"}


def statuses(lines):
    return [line.get("status", "") for line in lines]


def stream_errors(lines):
    return [line["errorDetail"]["message"] for line in lines if "errorDetail" in line]


# --- system -------------------------------------------------------------------------------------


def test_version_ping_and_info_satisfy_docker_py(agent):
    c = agent.client
    assert c.ping() is True
    v = c.version()
    assert (v["ApiVersion"], v["MinAPIVersion"], v["Os"]) == ("1.51", "1.24", "linux")
    assert any(comp["Name"] == "Engine" for comp in v["Components"])
    # docker-py's version negotiation ('auto') must pick the server's version.
    auto = docker.APIClient(base_url=agent.base_url, version="auto")
    assert auto.api_version == "1.51"
    auto.close()
    info = c.info()
    assert (info["Driver"], info["OSType"], info["Images"], info["Containers"]) == ("overlay2", "linux", 0, 0)
    agent.load("busybox.tar")
    assert c.info()["Images"] == 1


# --- load / list / inspect ----------------------------------------------------------------------


@pytest.mark.parametrize("fixture,tag,layers", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_load_returns_image_objects_with_the_archive_tags(agent, fixture, tag, layers):
    images = agent.load(fixture)
    assert len(images) == 1, images
    img = images[0]
    assert isinstance(img, docker.models.images.Image)
    assert img.tags == [tag]
    assert img.id.startswith("sha256:") and len(img.id) == 71
    assert len(img.attrs["RootFS"]["Layers"]) == layers
    assert agent.client.images.get(tag).id == img.id
    assert [i.id for i in agent.client.images.list()] == [img.id]


def test_low_level_load_streams_progress_and_loaded_line(agent):
    with open(fixture_path("multilayer.tar"), "rb") as f:
        lines = list(agent.client.api.load_image(f))
    assert any(line.get("status") == "Loading layer" for line in lines), lines
    assert {"stream": "Loaded image: skiff-test/multilayer:latest\n"} in lines, lines
    assert not stream_errors(lines)
    with open(fixture_path("busybox.tar"), "rb") as f:
        quiet = list(agent.client.api.load_image(f, quiet=True))
    assert quiet == [{"stream": "Loaded image: busybox:latest\n"}], quiet


def test_docker_archive_and_oci_layout_of_the_same_image_share_one_id(agent):
    (docker_img,) = agent.load("multilayer.tar")
    (oci_img,) = agent.load("multilayer-oci.tar")
    assert docker_img.id == oci_img.id
    assert docker_img.attrs["RootFS"]["Layers"] == oci_img.attrs["RootFS"]["Layers"]
    assert sorted(agent.client.images.get(docker_img.id).tags) == [
        "skiff-test/multilayer-oci:latest",
        "skiff-test/multilayer:latest",
    ]


def test_load_accepts_a_gzip_compressed_archive(agent):
    # `docker load` documents gzip/bzip2/xz/zstd-compressed archives; dockerd decompresses the
    # request body before reading the tar.
    with open(fixture_path("busybox.tar"), "rb") as f:
        data = gzip.compress(f.read(), 1)
    (img,) = agent.client.images.load(data)
    assert img.tags == ["busybox:latest"]


def test_load_of_a_multi_image_archive_returns_every_image(agent, agent_factory):
    agent.load("busybox.tar")
    agent.load("multilayer.tar")
    # docker-py's get_image takes one name; /images/get?names=…&names=… is `docker save a b`.
    resp = agent.client.api._get(
        agent.client.api._url("/images/get"),
        params={"names": ["busybox", "skiff-test/multilayer:latest"]},
        stream=True,
    )
    agent.client.api._raise_for_status(resp)
    archive = resp.raw.read()
    other = agent_factory()
    images = other.client.images.load(archive)
    assert sorted(t for i in images for t in i.tags) == ["busybox:latest", "skiff-test/multilayer:latest"]
    assert {i.id for i in images} == {i.id for i in agent.client.images.list()}


def test_list_with_name_filters_and_all(agent):
    c = agent.client
    for f, _, _ in FIXTURES[:3]:
        agent.load(f)
    busybox = c.images.get("busybox")
    multi = c.images.get("skiff-test/multilayer")

    everything = c.images.list()
    assert {i.id for i in everything} == {busybox.id, multi.id}
    assert {i.id for i in c.images.list(all=True)} == {busybox.id, multi.id}
    tags = sorted(t for i in everything for t in i.tags)
    assert tags == ["busybox:latest", "skiff-test/multilayer-oci:latest", "skiff-test/multilayer:latest"]

    # name= becomes a reference filter. (The high-level list re-inspects each id, so its Image
    # objects carry every tag; the raw summaries report only the matching ones, as Docker does.)
    assert [i.id for i in c.images.list(name="busybox")] == [busybox.id]
    assert [i.id for i in c.images.list(name="skiff-test/multilayer-oci")] == [multi.id]
    assert [i.id for i in c.images.list(name="skiff-test/*")] == [multi.id]
    assert [i.id for i in c.images.list(name="busybox:latest")] == [busybox.id]
    assert c.images.list(name="nothing-here") == []
    assert c.images.list(name="busybox:other") == []
    (raw,) = c.api.images(name="skiff-test/multilayer-oci")
    assert (raw["Id"], raw["RepoTags"]) == (multi.id, ["skiff-test/multilayer-oci:latest"])
    both = c.images.list(filters={"reference": ["busybox", "skiff-test/multilayer"]})
    assert {i.id for i in both} == {busybox.id, multi.id}
    (raw,) = c.api.images(name="skiff-test/*")
    assert sorted(raw["RepoTags"]) == ["skiff-test/multilayer-oci:latest", "skiff-test/multilayer:latest"]

    (labelled,) = c.images.list(filters={"label": "org.skiff.fixture=multilayer"})
    assert labelled.id == multi.id and labelled.labels == {"org.skiff.fixture": "multilayer"}
    assert [i.id for i in c.images.list(filters={"label": "org.skiff.fixture"})] == [multi.id]
    assert c.images.list(filters={"label": "org.skiff.fixture=other"}) == []

    assert c.images.list(filters={"dangling": True}) == []
    assert {i.id for i in c.images.list(filters={"dangling": False})} == {busybox.id, multi.id}
    # Moving busybox's only tag onto the other image leaves busybox dangling.
    assert multi.tag("busybox", "latest") is True
    (dangling,) = c.images.list(filters={"dangling": True})
    assert (dangling.id, dangling.tags) == (busybox.id, [])

    # Low level: quiet gives ids only.
    assert sorted(c.api.images(quiet=True)) == sorted([busybox.id, multi.id])
    with pytest.raises(APIError) as e:
        c.images.list(filters={"bogus": "1"})
    assert e.value.status_code == 400 and "invalid filter" in e.value.explanation


def test_get_exposes_id_tags_labels_layers_and_history(agent):
    c = agent.client
    agent.load("multilayer.tar")
    img = c.images.get("skiff-test/multilayer")
    assert img.id.startswith("sha256:")
    assert img.short_id == img.id[:19]
    assert img.tags == ["skiff-test/multilayer:latest"]
    assert img.labels == {"org.skiff.fixture": "multilayer"}
    assert len(img.attrs["RootFS"]["Layers"]) == 3
    assert img.attrs["Os"] == "linux" and img.attrs["Architecture"] == "amd64"
    # The same image by full id, by id prefix, by fully qualified name and by tag.
    for name in [img.id, img.id[7:19], "docker.io/skiff-test/multilayer:latest", "skiff-test/multilayer:latest"]:
        assert c.images.get(name).id == img.id, name
    hist = img.history()
    assert len(hist) == 3
    assert hist[0]["Id"] == img.id and hist[0]["Tags"] == ["skiff-test/multilayer:latest"]
    assert [h["Id"] for h in hist[1:]] == ["<missing>", "<missing>"]
    assert [h["CreatedBy"] for h in hist] == [
        "skiff fixture: whiteout, opaque dir",
        "skiff fixture: files, hard link, fifo, xattrs, caps, suid",
        "skiff fixture: busybox",
    ]
    assert c.api.history(img.id) == hist
    assert c.api.inspect_image("skiff-test/multilayer")["Id"] == img.id


# --- tag / remove -------------------------------------------------------------------------------


def test_tag_adds_names_to_the_same_image(agent):
    c = agent.client
    (img,) = agent.load("busybox.tar")
    assert img.tag("mytag", "1") is True
    assert img.tag("127.0.0.1:5999/other/name", tag="v2") is True
    assert img.tag("notag") is True  # no tag means :latest
    assert c.api.tag(img.id, "lowlevel", "x") is True
    img.reload()
    assert sorted(img.tags) == [
        "127.0.0.1:5999/other/name:v2",
        "busybox:latest",
        "lowlevel:x",
        "mytag:1",
        "notag:latest",
    ]
    for name in ["mytag:1", "127.0.0.1:5999/other/name:v2", "notag", "lowlevel:x"]:
        assert c.images.get(name).id == img.id


def test_remove_untags_conflicts_and_force_deletes(agent):
    c = agent.client
    (img,) = agent.load("busybox.tar")
    img.tag("second", "1")
    # By id with two tags and no force: 409.
    with pytest.raises(APIError) as e:
        c.images.remove(img.id)
    assert e.value.status_code == 409, e.value
    assert "must be forced" in e.value.explanation
    # By one of the tags: only that tag goes.
    assert c.api.remove_image("second:1") == [{"Untagged": "second:1"}]
    assert c.images.get(img.id).tags == ["busybox:latest"]
    img.tag("third", "1")
    # Forced by id: every tag and the image go.
    out = c.api.remove_image(img.id, force=True)
    assert {"Untagged": "busybox:latest"} in out and {"Untagged": "third:1"} in out, out
    assert {"Deleted": img.id} in out, out
    assert c.images.list() == []
    with pytest.raises(ImageNotFound):
        c.images.get(img.id)
    with pytest.raises(ImageNotFound):
        c.images.remove("busybox")
    # The last image gone, its content is gone too.
    store = agent.root / "image-store"
    assert os.listdir(store / "blobs" / "sha256") == [] and os.listdir(store / "layers") == []


def test_remove_by_last_tag_deletes_the_image(agent):
    c = agent.client
    (img,) = agent.load("busybox.tar")
    c.images.remove("busybox:latest")
    assert c.images.list() == []
    with pytest.raises(ImageNotFound):
        c.images.get(img.id)


# --- save / load round trip ---------------------------------------------------------------------


def _save(image, **kw):
    buf = io.BytesIO()
    for chunk in image.save(**kw):
        buf.write(chunk)
    buf.seek(0)
    return buf


def _archive_repo_tags(buf):
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        names = t.getnames()
    assert "index.json" in names and "oci-layout" in names
    return [m["RepoTags"] for m in manifest]


def test_save_then_load_into_a_second_agent_keeps_the_id(agent, agent_factory):
    other = agent_factory()
    (img,) = agent.load("multilayer-oci.tar")

    unnamed = _save(img)
    assert _archive_repo_tags(unnamed) == [[]]
    (loaded,) = other.client.images.load(unnamed)
    assert (loaded.id, loaded.tags) == (img.id, [])

    named = _save(agent.client.images.get("skiff-test/multilayer-oci:latest"), named=True)
    assert _archive_repo_tags(named) == [["skiff-test/multilayer-oci:latest"]]
    (loaded,) = other.client.images.load(named)
    assert (loaded.id, loaded.tags) == (img.id, ["skiff-test/multilayer-oci:latest"])
    assert loaded.attrs["RootFS"]["Layers"] == img.attrs["RootFS"]["Layers"]

    # Saving again from the second agent gives the same bytes (blobs kept as stored).
    again = _save(other.client.images.get("skiff-test/multilayer-oci:latest"), named=True)
    assert again.getvalue() == named.getvalue()

    # Low level, several names in one archive.
    agent.load("busybox.tar")
    raw = b"".join(agent.client.api.get_image("busybox"))
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        manifest = json.load(t.extractfile("manifest.json"))
    assert [m["RepoTags"] for m in manifest] == [["busybox:latest"]]
    with pytest.raises(ImageNotFound):
        b"".join(agent.client.api.get_image("nosuchimage"))


# --- registry: push / pull ----------------------------------------------------------------------


def test_push_then_pull_streams_docker_progress(agent, agent_factory, registry):
    c = agent.client
    agent.load("multilayer.tar")
    repo = f"{registry}/skiff/multilayer"
    assert c.images.get("skiff-test/multilayer").tag(repo, "v1")

    pushed = list(c.images.push(repo, tag="v1", stream=True, decode=True))
    assert not stream_errors(pushed), pushed
    st = statuses(pushed)
    assert f"The push refers to repository [{repo}]" in st, st
    assert st.count("Pushed") == 3, st
    aux = [line["aux"] for line in pushed if "aux" in line]
    assert len(aux) == 1 and aux[0]["Tag"] == "v1" and aux[0]["Digest"].startswith("sha256:"), pushed
    digest = aux[0]["Digest"]
    assert any(s.startswith(f"v1: digest: {digest} size: ") for s in st), st
    assert f"{repo}@{digest}" in c.images.get(f"{repo}:v1").attrs["RepoDigests"]

    # Pushing again: every layer is already there. Without stream=, docker-py returns the text.
    again = list(c.images.push(repo, tag="v1", stream=True, decode=True))
    assert statuses(again).count("Layer already exists") == 3, again
    text = c.images.push(repo, tag="v1")
    assert isinstance(text, str) and f"v1: digest: {digest}" in text, text

    # A second agent that already has busybox shares the bottom layer.
    b = agent_factory()
    b.load("busybox.tar")
    lines = list(b.client.api.pull(repo, tag="v1", stream=True, decode=True))
    assert not stream_errors(lines), lines
    st = statuses(lines)
    # dockerd's graphdriver store trims the registry host here, its containerd store keeps it.
    assert st[0] in ("Pulling from skiff/multilayer", f"Pulling from {repo}"), st
    assert lines[0]["id"] == "v1", lines[0]
    assert st.count("Already exists") == 1, st
    assert st.count("Pulling fs layer") == 2, st
    assert "Downloading" in st and "Download complete" in st and st.count("Pull complete") == 2, st
    assert f"Digest: {digest}" in st, st
    assert st[-1] == f"Status: Downloaded newer image for {repo}:v1", st
    pulled = b.client.images.get(f"{repo}:v1")
    assert pulled.id == c.images.get(f"{repo}:v1").id
    assert pulled.attrs["RepoDigests"] == [f"{repo}@{digest}"]

    # High level: returns the Image; a second pull is a no-op.
    img = b.client.images.pull(repo, tag="v1")
    assert isinstance(img, docker.models.images.Image) and img.id == pulled.id
    lines = list(b.client.api.pull(repo, tag="v1", stream=True, decode=True))
    assert statuses(lines)[-1] == f"Status: Image is up to date for {repo}:v1", lines
    assert "Downloading" not in statuses(lines)

    # By digest, into an empty agent: no tag, found by repo@digest.
    d = agent_factory()
    img = d.client.images.pull(repo, tag=digest)
    assert img.id == pulled.id and img.tags == []
    assert img.attrs["RepoDigests"] == [f"{repo}@{digest}"]

    # Unknown repository: an HTTP error before any stream.
    with pytest.raises(NotFound) as e:
        b.client.images.pull(f"{registry}/doesnotexist", tag="latest")
    assert e.value.status_code == 404 and "not found" in e.value.explanation
    # Pushing a name that is not tagged locally.
    with pytest.raises(NotFound) as e:
        list(c.images.push(f"{registry}/not/here", tag="v1", stream=True, decode=True))
    assert e.value.explanation == f"An image does not exist locally with the tag: {registry}/not/here"


def _push(client, repo, tag, **kw):
    lines = list(client.images.push(repo, tag=tag, stream=True, decode=True, **kw))
    assert not stream_errors(lines), lines
    (aux,) = [line["aux"] for line in lines if "aux" in line]
    return aux["Digest"]


def test_remove_by_repo_digest_keeps_an_image_that_has_other_tags(agent, registry):
    # dockerd (either image store) never needs force here: the graphdriver store untags only the
    # digest reference, the containerd store the same repository's tags; busybox:latest stays.
    c = agent.client
    (img,) = agent.load("busybox.tar")
    repo = f"{registry}/skiff/bb"
    img.tag(repo, "v1")
    digest = _push(c, repo, "v1")
    assert c.images.get(f"{repo}@{digest}").id == img.id
    out = c.api.remove_image(f"{repo}@{digest}")
    assert out and all("Untagged" in item for item in out), out
    assert {"Deleted": img.id} not in out
    assert c.images.get("busybox:latest").id == img.id


def test_pull_all_tags_fetches_every_tag_of_the_repository(agent, agent_factory, registry):
    # Docker API: POST /images/create with fromImage and no tag pulls all tags (docker-py's
    # all_tags=True sends exactly that). The repository here has v1 and v2 but no latest.
    (img,) = agent.load("busybox.tar")
    (multi,) = agent.load("multilayer.tar")
    repo = f"{registry}/skiff/tags"
    img.tag(repo, "v1")
    multi.tag(repo, "v2")
    _push(agent.client, repo, "v1")
    _push(agent.client, repo, "v2")
    b = agent_factory()
    images = b.client.images.pull(repo, all_tags=True)
    assert {i.id for i in images} == {img.id, multi.id}
    assert sorted(t for i in images for t in i.tags) == [f"{repo}:v1", f"{repo}:v2"]


def test_push_pull_and_login_with_an_authenticated_registry(agent, agent_factory, auth_registry):
    c = agent.client
    (img,) = agent.load("busybox.tar")
    repo = f"{auth_registry}/private/busybox"
    img.tag(repo, "1")

    # No credentials: the push stream carries the error.
    lines = list(c.images.push(repo, tag="1", stream=True, decode=True))
    errs = stream_errors(lines)
    assert errs and "unauthorized" in errs[0].lower(), lines

    # Explicit auth_config.
    lines = list(c.images.push(repo, tag="1", stream=True, decode=True, auth_config=AUTH))
    assert not stream_errors(lines), lines
    assert "Pushed" in statuses(lines)

    # Pulling needs credentials too.
    b = agent_factory()
    with pytest.raises(APIError) as e:
        b.client.images.pull(repo, tag="1")
    assert "pull access denied" in e.value.explanation or "unauthorized" in e.value.explanation.lower(), e.value
    assert b.client.images.list() == []
    pulled = b.client.images.pull(repo, tag="1", auth_config=AUTH)
    assert pulled.id == img.id and pulled.tags == [f"{repo}:1"]

    # login: wrong password is an APIError; the right one succeeds and docker-py reuses it.
    fresh = agent_factory()
    with pytest.raises(APIError) as e:
        fresh.client.login("skiff", "wrong", registry=auth_registry)
    assert e.value.status_code == 401, e.value
    out = fresh.client.login("skiff", "skiffpass", registry=auth_registry)
    assert out["Status"] == "Login Succeeded", out
    img2 = fresh.client.images.pull(repo, tag="1")  # credentials stored by login()
    assert img2.id == img.id


# --- prune --------------------------------------------------------------------------------------


def test_prune_removes_dangling_then_all_unused(agent):
    c = agent.client
    (busybox,) = agent.load("busybox.tar")
    (multi,) = agent.load("multilayer.tar")
    out = c.images.prune()
    assert not out["ImagesDeleted"] and out["SpaceReclaimed"] == 0, out
    assert len(c.images.list()) == 2

    multi.tag("busybox", "latest")  # busybox's image is now dangling
    out = c.images.prune()
    assert {"Deleted": busybox.id} in out["ImagesDeleted"], out
    assert out["SpaceReclaimed"] > 0, out
    assert [i.id for i in c.images.list()] == [multi.id]
    # The shared bottom layer is still in use by the multilayer image.
    assert len(os.listdir(agent.root / "image-store" / "layers")) == 3

    out = c.images.prune(filters={"dangling": False})
    assert {"Deleted": multi.id} in out["ImagesDeleted"], out
    assert {"Untagged": "busybox:latest"} in out["ImagesDeleted"], out
    assert c.images.list() == []
    with pytest.raises(APIError) as e:
        c.images.prune(filters={"bogus": True})
    assert e.value.status_code == 400


# --- errors -------------------------------------------------------------------------------------


def test_unknown_and_malformed_names_get_docker_errors(agent):
    c = agent.client
    (img,) = agent.load("busybox.tar")
    with pytest.raises(ImageNotFound) as e:
        c.images.get("nosuch")
    assert e.value.status_code == 404 and "No such image" in e.value.explanation
    with pytest.raises(APIError) as e:
        c.images.get("Bad Ref")
    assert e.value.status_code == 400 and "invalid reference format" in e.value.explanation, e.value
    with pytest.raises(APIError) as e:
        img.tag("Bad", "Tag")
    assert e.value.status_code == 400 and "invalid reference format" in e.value.explanation, e.value
    with pytest.raises(APIError) as e:
        img.tag("ok", "bad tag")
    assert e.value.status_code == 400, e.value
    with pytest.raises(ImageNotFound):
        c.api.tag("nosuch", "x", "1")
    with pytest.raises(APIError) as e:
        c.images.pull("Bad Ref")
    assert e.value.status_code == 400, e.value
    with pytest.raises(APIError) as e:
        c.images.list(filters={"dangling": "maybe"})
    assert e.value.status_code == 400
    with pytest.raises(ImageLoadError) as e:
        c.images.load(b"this is not a tar archive at all")
    assert "archive" in str(e.value), e.value
    assert c.images.get("busybox").tags == ["busybox:latest"]


HOSTILE_REFUSED = [
    ("dotdot", "not a clean relative path"),
    ("abs-path", "not a clean relative path"),
    ("abs-symlink-follow", "resolves outside the layer"),
    ("rel-symlink-follow", "resolves outside the layer"),
    ("symlink-chain", "resolves outside the layer"),
    ("hardlink-out", "hard link"),
    ("devnode", "device node"),
]


def _store_listing(agent):
    """The store's files once it is quiet: a loaded image is committed with an "unsynced" mark that a
    background sync clears by rewriting its record (an atomic replace through a `.tmp-` file), so the
    listing waits for that to be done before it is compared."""
    root = agent.root / "image-store"
    deadline = time.monotonic() + 60
    while True:
        listing = _store_listing_now(root)
        images = root / "images"
        settling = any(n.startswith("images/.") for n in listing) or any(
            "unsynced_boot" in _read_or_empty(images / n) for n in (os.listdir(images) if images.exists() else [])
        )
        if not settling or time.monotonic() > deadline:
            return listing
        time.sleep(0.05)


def _read_or_empty(path):
    try:
        return path.read_text()
    except OSError:
        return ""


def _store_listing_now(root):
    out = []
    for d in ["blobs/sha256", "layers", "images", "tmp"]:
        p = root / d
        out.extend(sorted(f"{d}/{n}" for n in os.listdir(p)) if p.exists() else [])
    tags = root / "tags.json"
    out.append(tags.read_text() if tags.exists() else "")
    return out


@pytest.mark.parametrize("case,why", HOSTILE_REFUSED, ids=[h[0] for h in HOSTILE_REFUSED])
def test_hostile_layer_load_fails_and_nothing_escapes(agent, case, why):
    os.makedirs(ESCAPE, exist_ok=True)
    assert os.listdir(ESCAPE) == [], f"{ESCAPE} not empty before the test"
    agent.load("busybox.tar")
    before = _store_listing(agent)
    with pytest.raises((ImageLoadError, APIError)) as e:
        agent.load(f"hostile/{case}.tar")
    assert why in str(e.value), e.value
    assert os.listdir(ESCAPE) == [], f"{case} escaped"
    assert _store_listing(agent) == before, f"{case} changed the store"
    if case == "hardlink-out":
        host = {os.stat(p).st_ino for p in ("/etc/passwd", "/etc/shadow") if os.path.exists(p)}
        for dirpath, _, files in os.walk(agent.root):
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))
                assert st.st_ino not in host or st.st_dev != os.stat("/etc/passwd").st_dev, name
    assert [t for i in agent.client.images.list() for t in i.tags] == ["busybox:latest"]


def test_cross_layer_symlink_loads_contained(agent):
    os.makedirs(ESCAPE, exist_ok=True)
    (img,) = agent.load("hostile/cross-layer-symlink.tar")
    assert img.tags == ["hostile/cross-layer-symlink:latest"]
    assert os.listdir(ESCAPE) == []


# --- events -------------------------------------------------------------------------------------


def test_events_report_load_tag_untag_and_delete(agent):
    c = agent.client
    since = int(time.time())
    (img,) = agent.load("busybox.tar")
    img.tag("evt", "1")
    c.images.remove("evt:1")
    c.images.remove("busybox:latest")
    until = int(time.time()) + 1
    events = list(c.events(since=since, until=until, decode=True))
    seen = [(e["Type"], e["Action"], e["Actor"]["Attributes"].get("name")) for e in events]
    for want in [
        ("image", "load", "busybox:latest"),
        ("image", "tag", "evt:1"),
        ("image", "untag", "evt:1"),
        ("image", "untag", "busybox:latest"),
        ("image", "delete", img.id),
    ]:
        assert want in seen, f"{want} missing from {seen}"
    assert all(e["Actor"]["ID"] == img.id for e in events)
    assert all(since <= e["time"] <= until and e["timeNano"] // 10**9 == e["time"] for e in events)
    # Filters apply to the backlog.
    tags_only = list(c.events(since=since, until=until, decode=True, filters={"event": "tag"}))
    assert [e["Action"] for e in tags_only] == ["tag"], tags_only


def test_events_are_delivered_live(agent):
    c = agent.client
    (img,) = agent.load("busybox.tar")
    # `until` a few seconds ahead bounds the wait should the event never come.
    stream = c.events(decode=True, until=int(time.time()) + 5, filters={"type": "image", "event": "tag"})
    try:
        img.tag("live", "1")
        ev = next(stream, None)
        assert ev is not None, "no live event before until"
        assert (ev["Action"], ev["Actor"]["Attributes"]["name"]) == ("tag", "live:1"), ev
    finally:
        stream.close()
