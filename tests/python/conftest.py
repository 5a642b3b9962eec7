"""pytest fixtures for driving a real `skiff-agent serve` with docker-py 7.

Mirrors tests/src/lib.rs: every agent gets a private socket and state directory, every registry
is Debian's docker-registry started through scripts/registry.sh; all of it is stopped and removed
on teardown.
"""

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import docker
import pytest

_BRIDGES = itertools.count()

REPO = Path(__file__).resolve().parents[2]
REGISTRY_SH = REPO / "scripts" / "registry.sh"


def agent_bin() -> Path:
    """The agent binary (`SKIFF_AGENT_BIN`, else `target/debug/skiff-agent`)."""
    return Path(os.environ.get("SKIFF_AGENT_BIN") or REPO / "target" / "debug" / "skiff-agent")


def fixture_path(name: str) -> Path:
    """A fixture file (`SKIFF_FIXTURES`, else `target/fixtures`)."""
    base = Path(os.environ.get("SKIFF_FIXTURES") or REPO / "target" / "fixtures")
    path = base / name
    if not path.exists():
        # scripts/test.sh builds every fixture first: a missing one is a broken setup, not a reason
        # to pass quietly.
        pytest.fail(f"fixture {path} missing (build it with tests/fixtures/build_fixtures.py)")
    return path


@pytest.fixture(name="fixture_path")
def _fixture_path():
    return fixture_path


class Agent:
    """A running agent with its own socket and state."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="skiff-pytest-"))
        self.socket = self.dir / "docker.sock"
        self.root = self.dir / "root"
        self.log_path = self.dir / "agent.log"
        self.proc = None
        self.client = None
        # A bridge of its own: parallel test agents must not share one.
        self.bridge = f"skiffP{os.getpid() % 10000}x{next(_BRIDGES)}"

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def start(self):
        binary = agent_bin()
        if not binary.exists():
            pytest.fail(f"agent binary {binary} not found (set SKIFF_AGENT_BIN)")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "serve", "--shutdown-timeout", "2", "--socket", str(self.socket), "--root", str(self.root),
                 "--bridge", self.bridge],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"agent exited with {self.proc.returncode}; log:\n{self.log()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.socket))
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"agent did not start in 20 s; log:\n{self.log()}")
                time.sleep(0.02)
        # Keep docker-py away from the user's ~/.docker/config.json (credentials, proxies).
        os.environ["DOCKER_CONFIG"] = str(self.dir / "docker-config")
        self.client = docker.DockerClient(base_url=self.base_url, timeout=60)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def load(self, name: str):
        """Loads a fixture through docker-py; returns the Image objects."""
        with open(fixture_path(name), "rb") as f:
            return self.client.images.load(f)

    def stop(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        """Kills the engine with SIGKILL (no cleanup), as a crash would."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pid(self) -> int:
        return self.proc.pid

    def restart(self):
        """Stops the engine and starts it again on the same state."""
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def agent(request):
    """A fresh agent; on failure its log is attached to the report."""
    a = Agent().start()
    yield a
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n--- agent log ({a.dir}) ---\n{a.log()}")
    a.cleanup()


@pytest.fixture
def agent_factory(request):
    """Starts extra agents on demand (for round trips between two engines)."""
    started = []

    def make():
        a = Agent().start()
        started.append(a)
        return a

    yield make
    for a in started:
        a.cleanup()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _registry(mode: str):
    d = tempfile.mkdtemp(prefix="skiff-registry-")
    port = free_port()
    subprocess.run([str(REGISTRY_SH), mode, str(port), d], check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(REGISTRY_SH), "stop", str(port), d], stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def registry():
    """A plain-HTTP registry; yields `127.0.0.1:PORT`."""
    yield from _registry("start")


@pytest.fixture
def auth_registry():
    """A registry with htpasswd auth (skiff / skiffpass); yields `127.0.0.1:PORT`."""
    yield from _registry("start-auth")
