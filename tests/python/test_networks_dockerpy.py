"""Networks through docker-py 7 and docker-compose 1.29 against a real `skiff-agent serve`: the
networks API (create/list/get/connect/disconnect/remove/prune), published ports, and a two-service
compose project whose client calls the web server by its service name."""

import os
import socket
import subprocess
import textwrap
import time
import urllib.request

import pytest
from docker.errors import APIError, NotFound

from conftest import REPO, free_port

PYTHON = "skiff-test/python:bookworm"


@pytest.fixture
def client(agent):
    agent.load("busybox.tar")
    c = agent.client
    yield c
    for ctr in c.containers.list(all=True):
        ctr.remove(force=True, v=True)
    c.networks.prune()


def wait_http(port, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def port_free(port, timeout=10):
    """Whether a server could listen on `port` again (as servers do, with SO_REUSEADDR)."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        finally:
            s.close()


def test_network_api_create_list_get_connect_disconnect_remove_prune(client):
    net = client.networks.create("app", labels={"team": "a"}, ipam=None)
    assert net.attrs["Driver"] == "bridge" and net.attrs["Labels"] == {"team": "a"}
    subnet = net.attrs["IPAM"]["Config"][0]["Subnet"]
    assert subnet.endswith("/16") or subnet.endswith("/20"), subnet
    assert [n.name for n in client.networks.list(names=["app"])] == ["app"]
    assert [n.name for n in client.networks.list(filters={"label": "team=a"})] == ["app"]
    assert {n.name for n in client.networks.list(filters={"type": "builtin"})} == {"bridge", "host", "none"}
    with pytest.raises(NotFound):
        client.networks.get("nope")

    web = client.containers.run("busybox", ["httpd", "-f", "-p", "80", "-h", "/etc"], name="web",
                                network="app", detach=True)
    other = client.containers.run("busybox", ["sleep", "60"], name="other", detach=True)
    net.connect(other, aliases=["helper"])
    net.reload()
    assert set(c.name for c in net.containers) == {"web", "other"}
    other.reload()
    ep = other.attrs["NetworkSettings"]["Networks"]["app"]
    assert ep["IPAddress"] and "helper" in ep["Aliases"]
    code, out = other.exec_run(["wget", "-qO-", "http://web/hostname"])
    assert code == 0 and out.decode().strip() == web.attrs["Config"]["Hostname"]
    code, out = web.exec_run(["nslookup", "helper"])
    assert code == 0 and ep["IPAddress"] in out.decode()
    net.disconnect(other)
    other.reload()
    assert "app" not in other.attrs["NetworkSettings"]["Networks"]

    with pytest.raises(APIError) as e:
        net.remove()
    assert e.value.status_code == 403 and "active endpoints" in str(e.value)
    web.remove(force=True)
    net.remove()
    with pytest.raises(NotFound):
        client.networks.get("app")
    client.networks.create("unused")
    assert client.networks.prune()["NetworksDeleted"] == ["unused"]


def test_published_ports_and_inspect(client, agent):
    agent.load("python.tar")
    port = free_port()
    c = client.containers.run(PYTHON, ["python3", "-m", "http.server", "80"], detach=True,
                              ports={"80/tcp": port})
    assert "Directory listing" in wait_http(port)
    c.reload()
    assert c.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert c.attrs["NetworkSettings"]["IPAddress"].count(".") == 3
    with pytest.raises(APIError) as e:
        client.containers.run("busybox", ["true"], ports={"80/tcp": port})
    assert "port is already allocated" in str(e.value)
    c.remove(force=True)
    assert port_free(port)


def compose_bin():
    venv = REPO / "target" / "venv-compose" / "bin" / "docker-compose"
    if not venv.exists():
        pytest.fail(f"{venv} missing: scripts/install-deps.sh installs docker-compose 1.29")
    return str(venv)


def test_compose_two_services_find_each_other_by_name(agent, tmp_path):
    agent.load("busybox.tar")
    agent.load("python.tar")
    port = free_port()
    (tmp_path / "docker-compose.yml").write_text(textwrap.dedent(f"""\
        version: "3.8"
        services:
          web:
            image: {PYTHON}
            command: ["python3", "-m", "http.server", "8000"]
            ports: ["{port}:8000"]
          client:
            image: busybox
            depends_on: [web]
            command: ["sh", "-c", "until wget -qO- http://web:8000/ >/tmp/page; do sleep 0.2; done; grep -c 'Directory listing' /tmp/page; echo client-done; sleep 600"]
        """))
    env = dict(os.environ, DOCKER_HOST=agent.base_url, COMPOSE_PROJECT_NAME="ctest")

    def compose(*args, check=True):
        r = subprocess.run([compose_bin(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        if check and r.returncode != 0:
            pytest.fail(f"docker-compose {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}\nagent log:\n{agent.log()[-3000:]}")
        return r.stdout + r.stderr

    compose("up", "-d")
    deadline = time.monotonic() + 60
    while "client-done" not in (logs := compose("logs", "client")):
        assert time.monotonic() < deadline, logs
        time.sleep(0.5)
    assert "1\n" in logs or " 1" in logs, logs
    assert "Directory listing" in wait_http(port)
    nets = agent.client.networks.list(names=["ctest_default"])
    assert len(nets) == 1 and nets[0].attrs["Labels"]["com.docker.compose.project"] == "ctest"
    ps = compose("ps")
    assert "ctest_web_1" in ps and "ctest_client_1" in ps
    compose("down")
    assert agent.client.containers.list(all=True) == []
    assert agent.client.networks.list(names=["ctest_default"]) == []
    assert port_free(port)


def test_legacy_links_give_hosts_env_names_and_can_be_removed(agent):
    agent.load("busybox.tar")
    c = agent.client
    db = c.containers.run("busybox", ["sleep", "600"], detach=True, name="db", environment={"FOO": "1"})
    c.api.create_container("busybox", "true", name="idle")  # not running: cannot be linked at start
    web = c.containers.run(
        "busybox", ["sh", "-c", "env; cat /etc/hosts"], detach=True, name="web",
        links={"db": "my-db"}, network_mode="bridge")
    assert web.wait(timeout=30)["StatusCode"] == 0
    out = web.logs().decode()
    db_ip = c.api.inspect_container("db")["NetworkSettings"]["IPAddress"]
    assert "MY_DB_NAME=/web/my-db" in out and "MY_DB_ENV_FOO=1" in out, out
    assert f"{db_ip}\tmy-db {db.id[:12]} db" in out, out
    names = {x["Names"][0]: x["Names"] for x in c.api.containers(all=True)}
    assert "/web/my-db" in names["/db"]
    # A link to a container that does not exist fails at create; one that is stopped, at start.
    with pytest.raises(NotFound):
        c.api.create_container("busybox", "true", host_config=c.api.create_host_config(links={"nosuch": "x"}))
    bad = c.api.create_container("busybox", "true", host_config=c.api.create_host_config(links={"idle": "x"}))
    with pytest.raises(APIError) as e:
        c.api.start(bad)
    assert "Cannot link to a non running container" in str(e.value)
    # `docker rm --link`: the link goes, both containers stay.
    c.api.remove_container("web/my-db", link=True)
    names = {x["Names"][0]: x["Names"] for x in c.api.containers(all=True)}
    assert names["/db"] == ["/db"] and "/web" in names
    for x in c.containers.list(all=True):
        x.remove(force=True)


def test_endpoint_links_driver_options_mac_and_free_network_names(agent):
    agent.load("busybox.tar")
    c = agent.client
    net = c.networks.create("my net 01")
    assert c.networks.get("my net 01").name == "my net 01"
    box = c.api.create_container(
        "busybox", "sleep 600", host_config=c.api.create_host_config(network_mode="my net 01"),
        networking_config=c.api.create_networking_config({"my net 01": c.api.create_endpoint_config(
            links=[("target", "bar")], driver_opt={"com.example.opt": "on"})}))
    c.api.start(box)
    c.containers.run("busybox", ["sleep", "600"], name="target", network="my net 01", detach=True)
    ep = c.api.inspect_container(box)["NetworkSettings"]["Networks"]["my net 01"]
    assert ep["Links"] == ["target:bar"] and ep["DriverOpts"] == {"com.example.opt": "on"}
    target_ip = c.api.inspect_container("target")["NetworkSettings"]["Networks"]["my net 01"]["IPAddress"]
    exec_id = c.api.exec_create(box, ["nslookup", "bar", "127.0.0.11"])
    assert target_ip in c.api.exec_start(exec_id).decode()
    # A MAC asked for at connect shows before the container runs.
    other = c.api.create_container("busybox", "true")
    c.api.connect_container_to_network(other, "my net 01", mac_address="02:42:ac:11:00:02")
    assert c.api.inspect_container(other)["NetworkSettings"]["Networks"]["my net 01"]["MacAddress"] == "02:42:ac:11:00:02"
    for x in c.containers.list(all=True):
        x.remove(force=True)
    net.remove()


def test_ipam_auxiliary_addresses_are_shown_and_never_handed_out(agent):
    agent.load("busybox.tar")
    c = agent.client
    from docker.types import IPAMConfig, IPAMPool
    pool = IPAMPool(subnet="172.29.9.0/29", gateway="172.29.9.1",
                    aux_addresses={"a": "172.29.9.2", "b": "172.29.9.3", "c": "172.29.9.4"})
    net = c.networks.create("auxnet", ipam=IPAMConfig(pool_configs=[pool]))
    cfg = c.api.inspect_network(net.id)["IPAM"]["Config"]
    assert cfg == [{"Subnet": "172.29.9.0/29", "Gateway": "172.29.9.1",
                    "AuxiliaryAddresses": {"a": "172.29.9.2", "b": "172.29.9.3", "c": "172.29.9.4"}}]
    got = []
    for i in range(2):
        x = c.containers.run("busybox", ["sleep", "600"], network="auxnet", detach=True)
        got.append(c.api.inspect_container(x.id)["NetworkSettings"]["Networks"]["auxnet"]["IPAddress"])
    assert sorted(got) == ["172.29.9.5", "172.29.9.6"], got
    with pytest.raises(APIError):
        c.networks.create("badaux", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="172.29.10.0/24", aux_addresses={"x": "10.0.0.1"})]))
    for x in c.containers.list(all=True):
        x.remove(force=True)
    net.remove()


def test_link_local_ips_are_configured_and_shown(agent):
    agent.load("busybox.tar")
    c = agent.client
    cid = c.api.create_container(
        "busybox", ["ip", "-4", "addr", "show", "eth0"],
        networking_config=c.api.create_networking_config({"bridge": c.api.create_endpoint_config(link_local_ips=["169.254.8.8"])}),
        host_config=c.api.create_host_config(network_mode="bridge"))["Id"]
    c.api.start(cid)
    c.api.wait(cid)
    assert "169.254.8.8/16" in c.api.logs(cid).decode()
    assert c.api.inspect_container(cid)["NetworkSettings"]["Networks"]["bridge"]["IPAMConfig"]["LinkLocalIPs"] == ["169.254.8.8"]
    with pytest.raises(APIError):
        c.api.create_container("busybox", "true", networking_config=c.api.create_networking_config(
            {"bridge": c.api.create_endpoint_config(link_local_ips=["10.0.0.1"])}))
    c.api.remove_container(cid, force=True)


def cli(agent, *args):
    """The real docker CLI against the agent."""
    r = subprocess.run(["docker", *args], env=dict(os.environ, DOCKER_HOST=agent.base_url),
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def test_ipv6_networks_carry_traffic_names_and_fixed_addresses(agent):
    agent.load("busybox.tar")
    c = agent.client
    rc, out = cli(agent, "network", "create", "--ipv6", "--subnet", "fd00:db8:7::/64", "v6net")
    assert rc == 0, out
    rc, out = cli(agent, "run", "-d", "--name", "v6server", "--network", "v6net", "--ip6", "fd00:db8:7::f00d",
                  "busybox", "sh", "-c", "echo hello-v6 > /tmp/i && httpd -f -p 8080 -h /tmp")
    assert rc == 0, out
    # The address, the default route, the server by address, its name as an AAAA record, and ping by name.
    rc, out = cli(agent, "run", "--rm", "--network", "v6net", "busybox", "sh", "-c",
                  "ip -6 route; wget -q -O- 'http://[fd00:db8:7::f00d]:8080/i';"
                  "nslookup -type=aaaa v6server 127.0.0.11; ping -6 -c1 -W5 v6server")
    assert rc == 0, out
    assert "default via fd00:db8:7::1" in out and "hello-v6" in out, out
    assert "Address: fd00:db8:7::f00d" in out and "1 packets received" in out, out
    ep = c.api.inspect_container("v6server")["NetworkSettings"]["Networks"]["v6net"]
    assert ep["IPAMConfig"] == {"IPv6Address": "fd00:db8:7::f00d"}
    assert (ep["GlobalIPv6Address"], ep["GlobalIPv6PrefixLen"], ep["IPv6Gateway"]) == ("fd00:db8:7::f00d", 64, "fd00:db8:7::1")
    net = c.api.inspect_network("v6net")
    assert net["EnableIPv6"] is True
    assert {"Subnet": "fd00:db8:7::/64", "Gateway": "fd00:db8:7::1"} in net["IPAM"]["Config"]
    assert [m["IPv6Address"] for m in net["Containers"].values()] == ["fd00:db8:7::f00d/64"]
    # Connect with a fixed address (docker-py), and --ipv6 without a subnet: a unique local /64.
    other = c.containers.run("busybox", ["sleep", "600"], detach=True)
    c.api.connect_container_to_network(other.id, "v6net", ipv6_address="fd00:db8:7::beef")
    assert c.api.inspect_container(other.id)["NetworkSettings"]["Networks"]["v6net"]["GlobalIPv6Address"] == "fd00:db8:7::beef"
    rc, out = cli(agent, "network", "create", "--ipv6", "auto6")
    assert rc == 0, out
    v6 = [p for p in c.api.inspect_network("auto6")["IPAM"]["Config"] if ":" in p["Subnet"]]
    assert len(v6) == 1 and v6[0]["Subnet"].startswith("fd") and v6[0]["Subnet"].endswith("::/64"), v6
    # Clear errors: an address outside the subnet, IPv6 on a network without it, a v6 subnet without --ipv6.
    for args, msg in [(["run", "--rm", "--network", "v6net", "--ip6", "fd00:db8:9::1", "busybox", "true"], "not in network"),
                      (["run", "--rm", "--ip6", "fd00:db8:9::1", "busybox", "true"], "has no IPv6"),
                      (["network", "create", "--subnet", "fd00:db8:8::/64", "nov6"], "needs IPv6 enabled")]:
        rc, out = cli(agent, *args)
        assert rc != 0 and msg in out, out
    for x in c.containers.list(all=True):
        x.remove(force=True)
    c.networks.prune()
    # The network's ip and ip6 tables went with it.
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert not any(n in tables for n in [net["Id"][:9]]), tables
