"""Swarm mode on one node through the real docker CLI (swarm, service, stack, secret commands) and
docker-py: a stack whose services find each other by name, read a secret and publish a port;
scaling, a stop-first update and its rollback, jobs, restart policies, service logs, the state
surviving an engine restart, and leaving the swarm cleaning everything up."""

import os
import subprocess
import textwrap
import time
import urllib.request

import pytest
from docker.errors import APIError

from conftest import free_port

NOISE = ("could not be accessed on a registry", "its digest", "independently", "versions of the image")


def cli(agent, *args, cwd=None, check=True):
    r = subprocess.run(["docker", *args], env=dict(os.environ, DOCKER_HOST=agent.base_url), cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    out = "\n".join(l for l in (r.stdout + r.stderr).splitlines() if not any(n in l for n in NOISE))
    if check:
        assert r.returncode == 0, f"docker {' '.join(args)}: {out}"
    return out


def wait_until(what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def http(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
            return r.read().decode()
    except OSError:
        return None


def tasks(agent, service, state=None):
    out = cli(agent, "service", "ps", service, "--format", "{{.Name}} {{.DesiredState}} {{.CurrentState}}")
    rows = [l.split()[:3] for l in out.splitlines() if l.strip()]
    return [r for r in rows if state is None or r[2] == state]


def test_outside_a_swarm_answers_as_dockerd_and_join_is_refused_clearly(agent):
    c = agent.client
    with pytest.raises(APIError) as e:
        c.api.inspect_swarm()
    assert e.value.response.status_code == 503 and "not a swarm manager" in str(e.value)
    with pytest.raises(APIError) as e:
        c.api.create_network("ov", driver="overlay")
    assert e.value.response.status_code == 503
    with pytest.raises(APIError) as e:
        c.api.join_swarm(["10.0.0.1:2377"], "SWMTKN-1-x")
    assert e.value.response.status_code == 501 and "one-node swarm" in str(e.value)
    assert c.info()["Swarm"]["LocalNodeState"] == "inactive"


def test_a_stack_runs_finds_its_services_by_name_reads_secrets_and_publishes_ports(agent, tmp_path):
    agent.load("busybox.tar")
    port = free_port()
    (tmp_path / "token.txt").write_text("stack-token\n")
    (tmp_path / "compose.yml").write_text(textwrap.dedent(f"""\
        version: "3.8"
        services:
          web:
            image: busybox
            command: ["sh", "-c", "cat /run/secrets/token > /tmp/index.html; httpd -f -p 8080 -h /tmp"]
            ports: ["{port}:8080"]
            secrets: [token]
          probe:
            image: busybox
            command: ["sh", "-c", "until wget -q -O- http://web:8080/; do sleep 0.5; done; sleep 600"]
        secrets:
          token:
            file: ./token.txt
        """))
    assert "Swarm initialized" in cli(agent, "swarm", "init")
    info = agent.client.info()["Swarm"]
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"] is True and info["Nodes"] == 1
    cli(agent, "stack", "deploy", "-c", "compose.yml", "app", cwd=tmp_path)
    assert "app  " in cli(agent, "stack", "ls") or "app" in cli(agent, "stack", "ls").split()
    assert wait_until(lambda: http(port)) == "stack-token\n"
    # The probe reached web by its service name on the stack's overlay network.
    logs = wait_until(lambda: (lambda l: "stack-token" in l and l)(cli(agent, "service", "logs", "app_probe")))
    assert logs.startswith("app_probe.1.") and "@" in logs.split("|")[0], logs
    services = cli(agent, "stack", "services", "app", "--format", "{{.Name}} {{.Replicas}} {{.Ports}}")
    assert f"app_web 1/1 *:{port}->8080/tcp" in services, services
    cli(agent, "stack", "rm", "app")
    wait_until(lambda: not agent.client.containers.list(all=True))
    assert "app_default" not in cli(agent, "network", "ls")
    assert not agent.client.api.secrets()


def test_scale_update_stop_first_rollback_and_logs(agent):
    agent.load("busybox.tar")
    port = free_port()
    cli(agent, "swarm", "init")
    since = str(int(time.time()) - 1)
    cli(agent, "service", "create", "-d", "--name", "web", "-p", f"{port}:8080", "--env", "MSG=one", "busybox",
        "sh", "-c", "echo $MSG > /tmp/index.html; echo serving $MSG; exec httpd -f -p 8080 -h /tmp")
    assert wait_until(lambda: http(port)) == "one\n"
    # An update replaces the task, stopping the old one first (it holds the port).
    cli(agent, "service", "update", "-d", "--env-add", "MSG=two", "web")
    assert wait_until(lambda: http(port) == "two\n" and http(port))
    states = tasks(agent, "web")
    assert ["web.1", "Running", "Running"] in states and any(s[1] == "Shutdown" for s in states), states
    svc = agent.client.api.inspect_service("web")
    assert "MSG=one" in svc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    cli(agent, "service", "rollback", "-d", "web")
    assert wait_until(lambda: http(port) == "one\n" and http(port))
    logs = cli(agent, "service", "logs", "web")
    assert "serving one" in logs and "serving two" in logs, logs
    events = cli(agent, "events", "--since", since, "--until", str(int(time.time()) + 1), "--filter", "service=web",
                 "--format", "{{.Type}} {{.Action}} {{.Scope}} {{.Actor.Attributes.name}}")
    assert events.splitlines()[:2] == ["service create swarm web", "service update swarm web"], events
    # Scaling a service without published ports: three running tasks, then one.
    cli(agent, "service", "create", "-d", "--name", "idle", "busybox", "sleep", "600")
    cli(agent, "service", "scale", "-d", "idle=3")
    wait_until(lambda: len(tasks(agent, "idle", "Running")) == 3)
    assert len(agent.client.containers.list(filters={"label": "com.docker.swarm.service.name=idle"})) == 3
    cli(agent, "service", "scale", "-d", "idle=1")
    wait_until(lambda: len(agent.client.containers.list(filters={"label": "com.docker.swarm.service.name=idle"})) == 1)
    listed = cli(agent, "service", "ls", "--format", "{{.Name}} {{.Replicas}}")
    assert "idle 1/1" in listed and "web 1/1" in listed, listed


def test_jobs_complete_restart_policies_apply_and_bad_specs_are_refused(agent):
    agent.load("busybox.tar")
    c = agent.client
    # The swarm's task defaults give tasks a log driver their service does not name.
    import docker
    c.api.init_swarm(swarm_spec=c.api.create_swarm_spec(log_driver=docker.types.DriverConfig("none")))
    quiet = c.services.create("busybox", ["sleep", "600"], name="quiet")
    cid = wait_until(lambda: [t["Status"].get("ContainerStatus", {}).get("ContainerID") for t in quiet.tasks()
                               if t["Status"]["State"] == "running"])[0]
    assert c.api.inspect_container(cid)["HostConfig"]["LogConfig"]["Type"] == "none"
    job = c.services.create("busybox", ["sh", "-c", "echo done"], name="job",
                            mode={"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 4}})
    wait_until(lambda: sum(t["Status"]["State"] == "complete" for t in job.tasks()) == 4)
    time.sleep(1.5)
    assert len(job.tasks()) == 4  # a finished job starts nothing more
    status = c.api.services(filters={"name": "job"}, status=True)[0]["ServiceStatus"]
    assert status["CompletedTasks"] == 4 and status["DesiredTasks"] == 0
    # Condition none: a failed task stays failed.
    once = c.services.create("busybox", ["sh", "-c", "exit 3"], name="once",
                             restart_policy={"Condition": "none"})
    wait_until(lambda: [t["Status"]["State"] for t in once.tasks()] == ["failed"])
    time.sleep(1.5)
    t = once.tasks()
    assert len(t) == 1 and t[0]["Status"]["ContainerStatus"]["ExitCode"] == 3
    # MaxAttempts counts restarts: the first run and two more, then the slot stays failed.
    limited = c.services.create("busybox", ["sh", "-c", "exit 1"], name="limited",
                                restart_policy={"Condition": "on-failure", "Delay": 0, "MaxAttempts": 2})
    wait_until(lambda: [t["Status"]["State"] for t in limited.tasks()] == ["failed"] * 3)
    time.sleep(2.5)
    assert len(limited.tasks()) == 3
    # Errors a client can act on.
    with pytest.raises(APIError) as e:
        c.services.create("busybox", ["true"], name="once")
    assert e.value.response.status_code == 409
    with pytest.raises(APIError) as e:
        c.api.create_service({"ContainerSpec": {"Image": "busybox"}}, name="bad name")
    assert e.value.response.status_code == 400
    net = c.networks.create("local-only")
    with pytest.raises(APIError) as e:
        c.services.create("busybox", ["true"], name="n", networks=[net.id])
    assert "swarm-scoped" in str(e.value)
    svc = c.api.inspect_service("once")
    with pytest.raises(APIError) as e:
        c.api.update_service("once", svc["Version"]["Index"] - 1, {"ContainerSpec": {"Image": "busybox"}}, name="once")
    assert "update out of sequence" in str(e.value)
    secret = c.secrets.create(name="s1", data=b"x")
    c.services.create("busybox", ["sleep", "600"], name="uses", secrets=[
        __import__("docker").types.SecretReference(secret.id, "s1")])
    with pytest.raises(APIError) as e:
        secret.remove()
    assert "in use by the following service: uses" in str(e.value)


def test_services_survive_an_engine_restart_and_leave_cleans_up(agent):
    agent.load("busybox.tar")
    c = agent.client
    c.swarm.init()
    svc = c.services.create("busybox", ["sleep", "600"], name="keep")
    wait_until(lambda: any(t["Status"]["State"] == "running" for t in svc.tasks()))
    node = c.nodes.list()[0].id
    agent.restart()
    c = agent.client
    assert c.swarm.attrs["ID"] and c.nodes.list()[0].id == node
    # The task's container ended with the old engine: the restart policy brings a new one.
    wait_until(lambda: len(c.containers.list(filters={"label": "com.docker.swarm.service.name=keep"})) == 1, 40)
    c.networks.create("ov", driver="overlay", attachable=True)
    plain = c.containers.run("busybox", ["sleep", "600"], network="ov", detach=True)
    plain.remove(force=True)
    assert c.swarm.leave(force=True)
    assert not c.containers.list(all=True)
    names = [n.name for n in c.networks.list()]
    assert "ov" not in names and "ingress" not in names
    with pytest.raises(APIError):
        c.api.inspect_swarm()
