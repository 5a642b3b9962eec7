#!/usr/bin/env python3
"""Build the Skiff guest: an uncompressed kernel for direct boot and an initramfs.

    vm-image/build.py [--arch amd64|arm64] [--out DIR] [--offline]

The host's architecture goes to target/vm-image, another one to target/vm-image/ARCH (where
`skiff start --arch ARCH` finds it). Another architecture's agent is cross-built with Debian's
rustc-web (-Zbuild-std) and the cross gcc; scripts/install-deps.sh installs both.

Everything comes from pinned Debian packages (vm-image/packages.lock, with sha256 sums) that are
downloaded once into OUT/debs; with them cached the build needs no network (--offline makes that an
error instead of a download) and its output is byte-identical from run to run: files are sorted,
timestamps, owners and inode numbers are fixed, and the cpio archive is written here, not by a tool.

The initramfs holds exactly:
  /init                      skiff-agent (PID 1 and the engine), linked against glibc, libgcc_s,
                             libnftnl and libmnl from the pinned packages below
  /lib/modules/VER/...       the kernel modules listed in modules.txt plus their dependencies,
                             with a modules.dep computed from each module's own `depends=`
  /sbin/{mke2fs,e2fsck,resize2fs} + the shared libraries they need, /etc/mke2fs.conf
  /usr/libexec/skiff/qemu-*-static  QEMU's user-mode emulator for the other architecture, which
                             the agent registers with binfmt_misc (foreign-architecture images)
  /lib/modules/VER/extra/skiff_fsnotify.ko  our module (vm-image/fsnotify): file-change events from
                             the host, built here against the pinned kernel's headers package
  empty mount points (dev proc sys run tmp var/lib/skiff) and /etc/{hosts,nsswitch.conf}
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Per-architecture facts. arm64 is the Apple-silicon guest; on amd64 machines it boots under
# emulation (qemu-system-aarch64, TCG).
ARCHES = {
    "amd64": {
        "rust_target": "x86_64-unknown-linux-gnu",
        "triplet": "x86_64-linux-gnu",
        "loader": ("lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        "kernel_file": "vmlinuz-{ver}",
        # QEMU user-mode emulators the guest registers with binfmt_misc (foreign-architecture
        # images: arm64 ones on an amd64 guest), from the pinned qemu-user-static.
        "emulators": ["aarch64"],
    },
    "arm64": {
        "rust_target": "aarch64-unknown-linux-gnu",
        "triplet": "aarch64-linux-gnu",
        "loader": ("lib/ld-linux-aarch64.so.1", "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"),
        "kernel_file": "vmlinuz-{ver}",
        "emulators": ["x86_64"],
    },
}

# Userland the engine runs in the guest, and the libraries they load (by soname).
TOOLS = ["sbin/mke2fs", "sbin/e2fsck", "sbin/resize2fs"]
TOOL_LINKS = {"sbin/mkfs.ext4": "mke2fs", "sbin/fsck.ext4": "e2fsck"}
LIBS = ["libext2fs.so.2", "libcom_err.so.2", "libblkid.so.1", "libuuid.so.1", "libe2p.so.2", "libc.so.6",
        # the agent's own: nftables over netlink needs libnftnl + libmnl (Debian ships no static
        # libmnl, so the agent is linked dynamically, against exactly these pinned copies).
        "libm.so.6", "libgcc_s.so.1", "libnftnl.so.11", "libmnl.so.0"]


def log(msg: str) -> None:
    print(f"vm-image: {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> None:
    log(f"error: {msg}")
    sys.exit(1)


def read_lock(arch: str) -> list[dict]:
    """packages.lock lines: [ROLE:]ARCH NAME VERSION SHA256 (sha256 '-' = not yet recorded).
    ARCH `all`: architecture-independent. ROLE: none = goes into the guest of ARCH; `build` = used
    to build that guest (kernel headers), not shipped; `tool` = runs on a build machine of ARCH."""
    pkgs = []
    for line in (HERE / "packages.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        a, name, version, sha = line.split()
        role, _, a = a.rpartition(":")
        role = role or "guest"
        if a in (host_arch() if role == "tool" else arch, "all"):
            pkgs.append({"name": name, "version": version, "sha256": sha, "arch": a, "role": role})
    if not pkgs:
        die(f"packages.lock pins no packages for {arch}")
    return pkgs


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_debs(pkgs: list[dict], cache: Path, offline: bool) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for p in pkgs:
        ver = p["version"].replace(":", "%3a")
        deb = cache / f"{p['name']}_{ver}_{p['arch']}.deb"
        spec = f"{p['name']}={p['version']}" if p["arch"] == "all" else f"{p['name']}:{p['arch']}={p['version']}"
        if not deb.exists():
            if offline:
                die(f"{deb.name} is not cached in {cache} and --offline was given")
            log(f"downloading {p['name']}={p['version']}")
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                os.chmod(tmp, 0o755)
                r = subprocess.run(["apt-get", "download", "-q", spec],
                                   cwd=tmp, capture_output=True, text=True)
                got = list(Path(tmp).glob("*.deb"))
                if r.returncode != 0 or len(got) != 1:
                    die(f"cannot download {p['name']}={p['version']} for {p['arch']}: {r.stderr.strip()}\n"
                        "  (the archive may have moved on: pin a version `apt-cache policy` lists in "
                        "vm-image/packages.lock)")
                got[0].rename(deb)
        digest = sha256_file(deb)
        if p["sha256"] != "-" and digest != p["sha256"]:
            die(f"{deb.name}: sha256 {digest} does not match packages.lock ({p['sha256']})")
        p["sha256"] = digest
        found[p["name"]] = deb
    return found


def extract(deb: Path, dest: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)


def decompress_kernel(vmlinuz: Path, out: Path, arch: str) -> None:
    """The uncompressed kernel: amd64's bzImage carries an LZ4 payload (Debian's cloud config);
    arm64's vmlinuz is the raw Image QEMU boots (an EFI-stub PE file, "ARMd" at 0x38) in Debian
    12, gzipped in some other releases."""
    data = vmlinuz.read_bytes()
    if arch == "arm64":
        if data[0x38:0x3C] == b"ARMd":
            out.write_bytes(data)
            return
        import gzip
        out.write_bytes(gzip.decompress(data))
        return
    magic = b"\x02\x21\x4c\x18"  # LZ4 legacy frame, as the kernel's extract-vmlinux looks for
    pos = data.find(magic)
    while pos >= 0:
        r = subprocess.run(["lz4", "-dc"], input=data[pos:], capture_output=True)
        if r.stdout[:4] == b"\x7fELF":
            out.write_bytes(r.stdout)
            return
        pos = data.find(magic, pos + 1)
    die(f"no LZ4-compressed ELF kernel found in {vmlinuz}")


def elf_section(path: Path, wanted: str) -> bytes:
    """The bytes of one section of a 64-bit little-endian ELF file."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        die(f"{path} is not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)

    strtab = header(shstrndx)
    for i in range(shnum):
        h = header(i)
        name_start = strtab[4] + h[0]
        name = data[name_start:data.index(b"\0", name_start)].decode()
        if name == wanted:
            return data[h[4]:h[4] + h[5]]
    return b""


def modinfo(path: Path) -> dict[str, str]:
    info = {}
    for field in elf_section(path, ".modinfo").split(b"\0"):
        if b"=" in field:
            k, v = field.decode(errors="replace").split("=", 1)
            info.setdefault(k, v)
    return info


def select_modules(moddir: Path, wanted: list[str]) -> dict[str, tuple[Path, list[str]]]:
    """name -> (path, depends) for the wanted modules and everything they depend on."""
    index = {}
    for ko in moddir.rglob("*.ko"):
        index[ko.name[:-3].replace("-", "_")] = ko
    builtin = set()
    for line in (moddir / "modules.builtin").read_text().splitlines():
        builtin.add(Path(line).name.removesuffix(".ko").replace("-", "_"))
    chosen: dict[str, tuple[Path, list[str]]] = {}
    todo = [w.replace("-", "_") for w in wanted]
    while todo:
        name = todo.pop()
        if name in chosen or name in builtin:
            continue
        if name not in index:
            die(f"module {name} is neither built in nor shipped by this kernel")
        deps = [d.replace("-", "_") for d in modinfo(index[name]).get("depends", "").split(",") if d]
        chosen[name] = (index[name], deps)
        todo.extend(deps)
    return chosen


class Cpio:
    """A deterministic newc archive: fixed mtime/uid/gid, inode numbers in write order."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.ino = 0

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        self.ino += 1
        nlink = 2 if (mode & 0o170000) == 0o040000 else 1
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        self.out += b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out += name.encode() + b"\0"
        self.out += b"\0" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\0" * (-len(self.out) % 4)

    def add_tree(self, root: Path) -> None:
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if path.is_symlink():
                self._entry(rel, 0o120777, os.readlink(path).encode())
            elif path.is_dir():
                self._entry(rel, 0o040000 | (st.st_mode & 0o7777))
            else:
                self._entry(rel, 0o100000 | (st.st_mode & 0o7777), path.read_bytes())

    def add_char_device(self, name: str, mode: int, major: int, minor: int) -> None:
        """A device node (the kernel opens /dev/console for /init before devtmpfs is mounted)."""
        self.ino += 1
        fields = [self.ino, 0o020000 | mode, 0, 0, 1, 0, 0, 0, 0, major, minor, len(name) + 1, 0]
        self.out += b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
        self.out += b"\0" * (-len(self.out) % 4)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self.out)


def needed(path: Path) -> list[str]:
    """The shared libraries an ELF file names (DT_NEEDED), via readelf."""
    r = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        die(f"readelf {path}: {r.stderr.strip()}")
    return [line.split("[", 1)[1].rstrip("]") for line in r.stdout.splitlines() if "(NEEDED)" in line]


def host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def build_agent(arch: str, prebuilt: str | None, pkgroot: Path, work: Path) -> Path:
    if prebuilt:
        return Path(prebuilt)
    target = ARCHES[arch]["rust_target"]
    cmd = ["cargo", "build", "--release", "--quiet", "-p", "skiff-agent", "--target", target]
    env = dict(os.environ)
    var = target.upper().replace("-", "_")
    # Packed relative relocations (DT_RELR): the loader's table of pointers to fix up shrinks from
    # 0.6 MB to 7 KB, and so does what PID 1 keeps resident after reading it (~0.5 MiB). The
    # guest's glibc is the pinned 2.36, which reads them; a native build skips this, as older
    # hosts' glibc (< 2.36, e.g. Ubuntu 22.04) would refuse to load such a binary. Debian 12's
    # aarch64 linker (binutils 2.40) cannot write them yet: it ignores the flag with a warning.
    rustflags = ["-C", "link-arg=-Wl,-z,pack-relative-relocs"] if arch == "amd64" else []
    if arch != host_arch():
        # Another architecture without a rustup target: Debian's rustc-web ships the standard
        # library's sources, so cargo builds std itself (-Zbuild-std, allowed by RUSTC_BOOTSTRAP),
        # with Debian's toolchain first on PATH for this build only; the cross gcc links, against
        # the pinned packages' libnftnl and libmnl (their unversioned names in a directory of ours).
        triplet = ARCHES[arch]["triplet"]
        # A fixed place: the link flags name it, and a changed flag would rebuild everything.
        libs = REPO / "target" / "cross-libs" / arch
        libs.mkdir(parents=True, exist_ok=True)
        for lib, soname in [("libnftnl.so", "libnftnl.so.11"), ("libmnl.so", "libmnl.so.0")]:
            found = next((d / soname for d in [pkgroot / "usr" / "lib" / triplet, pkgroot / "lib" / triplet]
                          if (d / soname).exists()), None)
            if found is None:
                die(f"{soname} is in none of the pinned {arch} packages")
            for name in (lib, soname):
                shutil.copyfile(found.resolve(), libs / name)
        rustflags += ["-C", f"link-arg=-Wl,-rpath-link,{libs}"]
        env.update({
            "PATH": "/usr/bin:" + env.get("PATH", ""),
            "RUSTC_BOOTSTRAP": "1",
            f"CARGO_TARGET_{var}_LINKER": f"{triplet}-gcc",
            "LIBNFTNL_LIB_DIR": str(libs),
            "LIBMNL_LIB_DIR": str(libs),
        })
        cmd.insert(2, "-Zbuild-std=std,panic_unwind")
        if not Path("/usr/bin/cargo").exists() or not shutil.which(f"{triplet}-gcc"):
            die(f"building for {arch} needs Debian's rustc-web, cargo-web, rust-web-src and gcc-{triplet} "
                "(scripts/install-deps.sh installs them)")
    if rustflags:
        env[f"CARGO_TARGET_{var}_RUSTFLAGS"] = " ".join(rustflags)
    log(f"building skiff-agent for {target} ({' '.join(cmd[1:])})")
    r = subprocess.run(cmd, cwd=REPO, env=env)
    if r.returncode != 0:
        die(f"cargo build for {target} failed")
    return REPO / "target" / target / "release" / "skiff-agent"


WSL_CONF = """# Skiff's WSL 2 distribution: the engine is started by the Skiff app (no systemd, no init of ours).
[boot]
systemd=false
[automount]
enabled=true
root=/mnt/
[interop]
appendWindowsPath=false
[user]
default=root
"""


def build_fsnotify_module(arch: str, buildroot: Path, kver: str, work: Path) -> Path:
    """vm-image/fsnotify/skiff_fsnotify.ko for kernel `kver`, with kbuild from the pinned headers
    packages (extracted into `buildroot`) and gcc-12, the kernel's own compiler (the cross one for
    another architecture). The headers' Makefile names its common tree by absolute path: it is
    pointed at the extracted one."""
    src_root = buildroot / "usr" / "src"
    headers = src_root / f"linux-headers-{kver}"
    common = next(src_root.glob("linux-headers-*-common"), None)
    if not headers.is_dir() or common is None:
        die(f"the kernel headers for {kver} are missing: pin linux-headers-{kver} and its -common "
            "package as build:ARCH / build:all lines in packages.lock")
    (headers / "Makefile").write_text(f"include {common}/Makefile\n")
    src = work / "fsnotify"
    shutil.copytree(HERE / "fsnotify", src)
    cmd = ["make", "-s", "-C", str(headers), f"M={src}", "modules"]
    if arch != host_arch():
        cmd.append(f"CROSS_COMPILE={ARCHES[arch]['triplet']}-")
    log(f"building skiff_fsnotify.ko for {kver}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    ko = src / "skiff_fsnotify.ko"
    if r.returncode != 0 or not ko.exists():
        die(f"building vm-image/fsnotify failed:\n{r.stdout}{r.stderr}")
    return ko


def write_wsl_rootfs(stage: Path, dest: Path) -> None:
    """The guest's files as a root file system tar for `wsl --import` (Windows hosts): the agent at
    /usr/local/bin/skiff-agent (WSL brings its own /init and kernel, so no modules), the emulators,
    the CA bundle, and what WSL itself reads (/etc/passwd for `-u root`, /etc/wsl.conf)."""
    def info(name: str, mode: int, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        t = tarfile.TarInfo(name)
        t.mode, t.size, t.type, t.mtime, t.uname, t.gname = mode, size, kind, 0, "root", "root"
        return t

    extra = {
        "etc/passwd": b"root:x:0:0:root:/root:/usr/local/bin/skiff-agent\n",
        "etc/group": b"root:x:0:\n",
        "etc/wsl.conf": WSL_CONF.encode(),
    }
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        for d in ["root", "mnt", "usr", "usr/local", "usr/local/bin"]:
            tar.addfile(info(d, 0o755, kind=tarfile.DIRTYPE))
        for p in sorted(stage.rglob("*")):
            rel = p.relative_to(stage).as_posix()
            if rel == "init" or rel == "lib/modules" or rel.startswith("lib/modules/") or rel in extra:
                continue
            if p.is_symlink():
                t = info(rel, 0o777, kind=tarfile.SYMTYPE)
                t.linkname = os.readlink(p)
                tar.addfile(t)
            elif p.is_dir():
                tar.addfile(info(rel, 0o755, kind=tarfile.DIRTYPE))
            else:
                with p.open("rb") as f:
                    tar.addfile(info(rel, p.stat().st_mode & 0o7777, p.stat().st_size), f)
        with (stage / "init").open("rb") as f:
            tar.addfile(info("usr/local/bin/skiff-agent", 0o755, (stage / "init").stat().st_size), f)
        for name, data in extra.items():
            tar.addfile(info(name, 0o644, len(data)), io.BytesIO(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default=host_arch(), choices=sorted(ARCHES))
    ap.add_argument("--out", help="default: target/vm-image for the host's architecture, "
                                  "target/vm-image/ARCH for another (where `skiff start --arch` looks)")
    ap.add_argument("--offline", action="store_true", help="fail instead of downloading a missing .deb")
    ap.add_argument("--agent", help="use this skiff-agent binary instead of building one")
    args = ap.parse_args()
    arch, facts = args.arch, ARCHES[args.arch]
    default_out = REPO / "target" / "vm-image" / ("" if arch == host_arch() else arch)
    out = Path(args.out or default_out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    pkgs = read_lock(arch)
    debs = fetch_debs(pkgs, out / "debs", args.offline)

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        pkgroot, buildroot = work / "pkgs", work / "build"
        for p in pkgs:
            extract(debs[p["name"]], pkgroot if p["role"] == "guest" else buildroot)
        agent = build_agent(arch, args.agent, pkgroot, work)
        kver = next(p.name for p in (pkgroot / "lib" / "modules").iterdir())
        decompress_kernel(pkgroot / "boot" / facts["kernel_file"].format(ver=kver), out / "vmlinux.tmp", arch)

        stage = work / "stage"
        for d in ["dev", "proc", "sys", "run", "tmp", "etc", "sbin", "var/lib/skiff", f"lib/{facts['triplet']}"]:
            (stage / d).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(agent, stage / "init")
        os.chmod(stage / "init", 0o755)

        # Kernel modules and a modules.dep in depmod's format (paths relative to the module dir).
        wanted = [w.split("#", 1)[0].strip() for w in (HERE / "modules.txt").read_text().splitlines()]
        mods = select_modules(pkgroot / "lib" / "modules" / kver, [w for w in wanted if w])
        moddir = stage / "lib" / "modules" / kver
        dep_lines = []
        for name in sorted(mods):
            src, deps = mods[name]
            rel = src.relative_to(pkgroot / "lib" / "modules" / kver)
            (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, moddir / rel)
            os.chmod(moddir / rel, 0o644)

            def closure(n: str, seen: list[str]) -> list[str]:
                for d in mods[n][1]:
                    if d in mods and d not in seen:
                        seen.append(d)
                        closure(d, seen)
                return seen

            deps_rel = [mods[d][0].relative_to(pkgroot / "lib" / "modules" / kver).as_posix()
                        for d in closure(name, [])]
            dep_lines.append(f"{rel.as_posix()}: {' '.join(deps_rel)}".rstrip())
        # Our own module, built against the pinned kernel's headers.
        fsnotify_ko = build_fsnotify_module(arch, buildroot, kver, work)
        (moddir / "extra").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fsnotify_ko, moddir / "extra" / "skiff_fsnotify.ko")
        os.chmod(moddir / "extra" / "skiff_fsnotify.ko", 0o644)
        dep_lines.append("extra/skiff_fsnotify.ko:")
        mods["skiff_fsnotify"] = (fsnotify_ko, [])
        (moddir / "modules.dep").write_text("\n".join(dep_lines) + "\n")
        shutil.copyfile(pkgroot / "lib" / "modules" / kver / "modules.builtin", moddir / "modules.builtin")

        # e2fsprogs and its libraries, from the pinned packages (not from the build host).
        for tool in TOOLS:
            shutil.copyfile(pkgroot / tool, stage / tool)
            os.chmod(stage / tool, 0o755)
        for link, target in TOOL_LINKS.items():
            os.symlink(target, stage / link)
        libdirs = [pkgroot / "lib" / facts["triplet"], pkgroot / "usr" / "lib" / facts["triplet"]]
        for lib in LIBS:
            src = next((d / lib for d in libdirs if (d / lib).exists()), None)
            if src is None:
                die(f"{lib} is in none of the pinned packages")
            shutil.copyfile(src.resolve(), stage / "lib" / facts["triplet"] / lib)
        # Everything the agent and these libraries load must be in the image.
        have = set(LIBS) | {Path(facts["loader"][0]).name}
        for elf in [stage / "init", *(stage / "lib" / facts["triplet"] / lib for lib in LIBS)]:
            missing = [n for n in needed(elf) if n not in have]
            if missing:
                die(f"{elf.name} needs {', '.join(missing)}: add them (and their packages) to LIBS and packages.lock")
        loader_link, loader_file = facts["loader"]
        shutil.copyfile((pkgroot / loader_file).resolve(), stage / loader_file)
        os.chmod(stage / loader_file, 0o755)
        (stage / loader_link).parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/" + loader_file, stage / loader_link)
        # Emulators (static binaries) where the agent looks for them (vm-agent/src/runtime/binfmt.rs).
        for emu in facts.get("emulators", []):
            dst = stage / "usr" / "libexec" / "skiff" / f"qemu-{emu}-static"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pkgroot / "usr" / "bin" / f"qemu-{emu}-static", dst)
            os.chmod(dst, 0o755)
        shutil.copyfile(pkgroot / "etc" / "mke2fs.conf", stage / "etc" / "mke2fs.conf")
        # The CA bundle registries' TLS is checked against (update-ca-certificates' output: the
        # Mozilla set of the pinned ca-certificates package, concatenated).
        certs = sorted((pkgroot / "usr" / "share" / "ca-certificates" / "mozilla").glob("*.crt"))
        if not certs:
            die("the pinned ca-certificates package has no certificates")
        (stage / "etc" / "ssl" / "certs").mkdir(parents=True, exist_ok=True)
        (stage / "etc" / "ssl" / "certs" / "ca-certificates.crt").write_bytes(
            b"".join(c.read_bytes().rstrip(b"\n") + b"\n" for c in certs))
        (stage / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
        (stage / "etc" / "nsswitch.conf").write_text("hosts: files dns\n")
        for p in stage.rglob("*"):
            if not p.is_symlink():
                os.chmod(p, (p.stat().st_mode & 0o7777) | (0o755 if p.is_dir() else 0))

        cpio = Cpio()
        cpio.add_tree(stage)
        cpio.add_char_device("dev/console", 0o600, 5, 1)
        (out / "initramfs.img.tmp").write_bytes(cpio.finish())
        write_wsl_rootfs(stage, out / "wsl-rootfs.tar.tmp")

    os.replace(out / "vmlinux.tmp", out / "vmlinux")
    os.replace(out / "initramfs.img.tmp", out / "initramfs.img")
    os.replace(out / "wsl-rootfs.tar.tmp", out / "wsl-rootfs.tar")
    manifest = {
        "arch": arch,
        "kernel": kver,
        "packages": {p["name"]: {"version": p["version"], "sha256": p["sha256"]} for p in pkgs},
        "modules": sorted(mods),
        "files": {n: {"bytes": (out / n).stat().st_size, "sha256": sha256_file(out / n)}
                  for n in ("vmlinux", "initramfs.img", "wsl-rootfs.tar")},
        "agent_bytes": agent.stat().st_size,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    mib = lambda n: manifest["files"][n]["bytes"] / 2**20  # noqa: E731
    log(f"{out}/vmlinux {mib('vmlinux'):.1f} MiB, initramfs.img {mib('initramfs.img'):.1f} MiB "
        f"(agent {manifest['agent_bytes'] / 2**20:.1f} MiB, {len(mods)} modules), kernel {kver}")


if __name__ == "__main__":
    main()
