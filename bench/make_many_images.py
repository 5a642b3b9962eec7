#!/usr/bin/env python3
"""Writes a docker-archive holding N distinct small images (bench/images.sh uses 50).

Each image shares the busybox fixture's layer and differs only by a label, so `docker images`
lists N entries while the archive stays small. Usage: make_many_images.py BUSYBOX_TAR N OUT_TAR
"""
import hashlib, io, json, sys, tarfile

src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with tarfile.open(src) as t:
    manifest = json.load(t.extractfile("manifest.json"))[0]
    config = json.load(t.extractfile(manifest["Config"]))
    layer_name = manifest["Layers"][0]
    layer = t.extractfile(layer_name).read()

def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))

entries = []
with tarfile.open(out, "w") as tar:
    add(tar, "layer.tar", layer)
    for i in range(n):
        cfg = json.loads(json.dumps(config))
        cfg.setdefault("config", {}).setdefault("Labels", {})["bench.index"] = str(i)
        cfg["created"] = f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z"
        data = json.dumps(cfg, sort_keys=True).encode()
        name = hashlib.sha256(data).hexdigest() + ".json"
        add(tar, name, data)
        entries.append({"Config": name, "RepoTags": [f"bench/many{i}:latest"], "Layers": ["layer.tar"]})
    add(tar, "manifest.json", json.dumps(entries).encode())
