//! Container networking natively, through the real docker CLI: published ports (TCP and UDP),
//! user-defined networks with DNS and isolation, NAT to another network namespace,
//! `host.docker.internal`, the network modes, and that nothing is left behind (veths, bridges,
//! nftables tables, listeners) after failures, removals and an engine stop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_tests::{free_port, Agent};

fn agent_with(fixtures: &[&str]) -> Agent {
    let a = Agent::start();
    for f in fixtures {
        a.load(f);
    }
    a
}

/// `ip`'s view of links enslaved to `bridge` (the veths of this agent's containers).
fn ports_of(bridge: &str) -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show", "master", bridge]).output().expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .collect()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).output().is_ok_and(|o| o.status.success())
}

fn table_exists(bridge: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", &format!("skiff-{bridge}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const UDP_ECHO: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',53))\nwhile True:\n    d,a=s.recvfrom(2048)\n    s.sendto(b'echo:'+d,a)\n";

#[test]
fn published_tcp_and_udp_ports_answer_on_the_host_and_are_released() {
    let a = agent_with(&["python.tar"]);
    let (web, dns) = (free_port(), free_port());
    let script = format!("python3 -m http.server 80 & python3 -c \"{UDP_ECHO}\"");
    a.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("{web}:80"),
        "-p",
        &format!("127.0.0.1:{dns}:53/udp"),
        "skiff-test/python:bookworm",
        "sh",
        "-c",
        &script,
    ]);
    let page = wait_for("the published web server", || http_get(web).filter(|b| b.contains("200 OK")));
    assert!(page.contains("Directory listing"), "{page}");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let echoed = wait_for("the published UDP port", || {
        udp.send_to(b"ping", ("127.0.0.1", dns)).ok()?;
        let mut buf = [0u8; 64];
        let n = udp.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    });
    assert_eq!(echoed, "echo:ping");
    let port = a.ok(&["port", "web"]);
    assert!(port.contains(&format!("80/tcp -> 0.0.0.0:{web}")), "{port}");
    assert!(port.contains(&format!("53/udp -> 127.0.0.1:{dns}")), "{port}");
    let ps = a.ok(&["ps", "--format", "{{.Ports}}", "--filter", &format!("publish={web}")]);
    assert!(ps.contains(&format!("0.0.0.0:{web}->80/tcp")), "{ps}");

    // A taken host port: a clear error at run, and nothing half set up.
    let before = ports_of(&a.bridge());
    let err = a.fails(&[
        "run",
        "-d",
        "--name",
        "clash",
        "-p",
        &format!("{web}:80"),
        "skiff-test/python:bookworm",
        "sleep",
        "60",
    ]);
    assert!(err.contains(&format!("Bind for 0.0.0.0:{web} failed: port is already allocated")), "{err}");
    assert_eq!(a.ok(&["inspect", "-f", "{{.State.Status}} {{.NetworkSettings.IPAddress}}", "clash"]).trim(), "created");
    assert_eq!(ports_of(&a.bridge()), before, "a failed start must not leave a veth behind");
    a.ok(&["rm", "clash"]);

    // `docker rm -f` frees the ports and the veth.
    a.ok(&["rm", "-f", "web"]);
    wait_for("the host port to be free", || TcpListener::bind(("0.0.0.0", web)).ok());
    wait_for("the UDP port to be free", || UdpSocket::bind(("127.0.0.1", dns)).ok());
    assert!(ports_of(&a.bridge()).is_empty(), "veths left: {:?}", ports_of(&a.bridge()));

    // -P publishes every exposed port on some free port.
    a.ok(&[
        "run",
        "-d",
        "--name",
        "all",
        "--expose",
        "80",
        "-P",
        "skiff-test/python:bookworm",
        "python3",
        "-m",
        "http.server",
        "80",
    ]);
    let mapped = a.ok(&["port", "all", "80/tcp"]);
    let host_port: u16 =
        mapped.lines().next().and_then(|l| l.rsplit(':').next()).and_then(|p| p.trim().parse().ok()).expect("a port");
    wait_for("the -P port", || http_get(host_port).filter(|b| b.contains("200 OK")));
    a.ok(&["rm", "-f", "all"]);
}

#[test]
fn user_networks_resolve_names_and_aliases_and_are_isolated() {
    let a = agent_with(&["busybox.tar"]);
    a.ok(&["network", "create", "--label", "team=a", "app"]);
    a.ok(&["network", "create", "--subnet", "10.213.0.0/24", "other"]);
    let bridge = a.ok(&["network", "inspect", "-f", "{{.Id}}", "app"]).trim()[..9].to_string();
    let bridge = format!("skiff-{bridge}");
    assert!(link_exists(&bridge) && table_exists(&bridge));
    a.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "app",
        "--network-alias",
        "www",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let ip = a.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", "web"]).trim().to_string();
    assert!(!ip.is_empty());
    let hostname = a.ok(&["inspect", "-f", "{{.Config.Hostname}}", "web"]).trim().to_string();
    for name in ["web", "www", "web.app"] {
        let out =
            a.ok(&["run", "--rm", "--network", "app", "busybox", "wget", "-qO-", &format!("http://{name}/hostname")]);
        assert_eq!(out.trim(), hostname, "{name}");
    }
    let looked_up = a.ok(&["run", "--rm", "--network", "app", "busybox", "nslookup", "web"]);
    assert!(looked_up.contains(&ip), "{looked_up}");
    // From another network: neither the name nor the address.
    let out = a.docker(&["run", "--rm", "--network", "other", "busybox", "nslookup", "web"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&ip), "{out:?}");
    let probe = format!("echo x | nc -w 2 {ip} 80 && echo reached || echo blocked");
    assert_eq!(a.ok(&["run", "--rm", "--network", "other", "busybox", "sh", "-c", &probe]).trim(), "blocked");
    // Connected to both, a container reaches it.
    a.ok(&["create", "--name", "both", "--network", "other", "busybox", "wget", "-qO-", "http://www/hostname"]);
    a.ok(&["network", "connect", "--alias", "bridgehead", "app", "both"]);
    a.ok(&["start", "-a", "both"]);
    let inspected = a.ok(&["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "app"]);
    assert!(inspected.contains("web"), "{inspected}");
    a.ok(&["network", "disconnect", "app", "both"]);
    a.ok(&["rm", "both"]);

    // Bad input: clear errors, nothing created.
    let err = a.fails(&["network", "create", "--subnet", "10.213.0.128/25", "clash"]);
    assert!(err.contains("Pool overlaps with other one on this address space"), "{err}");
    let err = a.fails(&["network", "create", "app"]);
    assert!(err.contains("already exists"), "{err}");
    let err = a.fails(&["run", "--rm", "--network", "app", "--network-alias", "bad name!", "busybox", "true"]);
    assert!(err.contains("not a valid DNS name"), "{err}");
    let long = "x".repeat(64);
    let err = a.fails(&["run", "--rm", "--name", &long, "--network", "app", "busybox", "true"]);
    assert!(err.contains("not a valid DNS name"), "{err}");
    let err = a.fails(&["run", "--rm", "--network", "nosuch", "busybox", "true"]);
    assert!(err.contains("network nosuch not found"), "{err}");
    let err = a.fails(&["network", "rm", "app"]);
    assert!(err.contains("has active endpoints"), "{err}");
    let err = a.fails(&["network", "rm", "bridge"]);
    assert!(err.contains("pre-defined network"), "{err}");
    assert!(a.ok(&["network", "ls", "--filter", "label=team=a", "--format", "{{.Name}}"]).trim() == "app");

    a.ok(&["rm", "-f", "web"]);
    a.ok(&["network", "rm", "app"]);
    assert!(!link_exists(&bridge) && !table_exists(&bridge), "the network's bridge and rules must go with it");
    let pruned = a.ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("other"), "{pruned}");
    assert_eq!(
        a.ok(&["network", "ls", "--format", "{{.Name}}"]).split_whitespace().collect::<Vec<_>>(),
        ["bridge", "host", "none"]
    );
}

/// A network namespace with a server in it, reachable from the host through a veth: "the outside
/// world" for NAT, without a public address.
struct Outside {
    ns: String,
    host_if: String,
}

impl Outside {
    fn new(tag: &str, subnet: u8) -> Self {
        let ns = format!("skiff-out-{tag}");
        let (host_if, peer) = (format!("out{tag}h"), format!("out{tag}o"));
        let sh = format!(
            "ip netns add {ns} && ip link add {host_if} type veth peer name {peer} && ip link set {peer} netns {ns} \
             && ip addr add 10.{subnet}.0.1/24 dev {host_if} && ip link set {host_if} up \
             && ip -n {ns} addr add 10.{subnet}.0.2/24 dev {peer} && ip -n {ns} link set {peer} up && ip -n {ns} link set lo up"
        );
        assert!(Command::new("sh").args(["-c", &sh]).status().expect("sh").success(), "setting up {ns}");
        Self { ns, host_if }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn containers_reach_other_networks_through_nat_and_the_host_by_name() {
    let a = agent_with(&["busybox.tar"]);
    let out = Outside::new(&format!("{}", std::process::id() % 1000), 201);
    // The server answers with the address it sees the client coming from.
    let mut server = Command::new("ip")
        .args(["netns", "exec", &out.ns, "python3", "-c"])
        .arg("import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('10.201.0.2',9000))\ns.listen()\nwhile True:\n    c,a=s.accept()\n    c.sendall(('from '+a[0]+'\\n').encode())\n    c.close()\n")
        .spawn()
        .expect("server");
    let seen = wait_for("the outside server", || {
        let o = a.docker(&["run", "--rm", "busybox", "nc", "-w", "3", "10.201.0.2", "9000"]);
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        s.starts_with("from").then_some(s)
    });
    assert_eq!(seen.trim(), "from 10.201.0.1", "traffic must leave masqueraded as the host");
    // An internal network has no way out.
    a.ok(&["network", "create", "--internal", "sealed"]);
    let o = a.docker(&["run", "--rm", "--network", "sealed", "busybox", "nc", "-w", "2", "10.201.0.2", "9000"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("from"), "{o:?}");
    let _ = server.kill();
    let _ = server.wait();

    // host.docker.internal is the host.
    let (port, greeter) = skiff_tests::greet_once("0.0.0.0", b"hello from the host\n");
    let got = a.ok(&["run", "--rm", "busybox", "nc", "-w", "3", "host.docker.internal", &port.to_string()]);
    assert_eq!(got, "hello from the host\n");
    let _ = greeter.join();
    let hosts = a.ok(&["run", "--rm", "--add-host", "gw:host-gateway", "busybox", "cat", "/etc/hosts"]);
    let gw =
        a.ok(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", "bridge"]).trim().to_string();
    assert!(
        hosts.contains(&format!("{gw}\tgw\n")) && hosts.contains(&format!("{gw}\thost.docker.internal\n")),
        "{hosts}"
    );
}

#[test]
fn network_modes_hostname_dns_and_a_clean_stop() {
    let mut a = agent_with(&["busybox.tar"]);
    let none = a.ok(&["run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"]);
    assert_eq!(none.lines().count(), 1, "only lo: {none}");
    let host = a.ok(&["run", "--rm", "--network", "host", "busybox", "ip", "-o", "link"]);
    assert!(host.contains(&a.bridge()) || host.lines().count() > 1, "{host}");
    a.ok(&["run", "-d", "--name", "base", "--hostname", "base-host", "busybox", "sleep", "60"]);
    let ip = a.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "base"]).trim().to_string();
    let shared =
        a.ok(&["run", "--rm", "--network", "container:base", "busybox", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(shared.contains(&ip), "{shared}");
    let files = a.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "corp.example",
        "busybox",
        "sh",
        "-c",
        "hostname; cat /etc/hosts /etc/resolv.conf",
    ]);
    assert!(files.starts_with("box\n"), "{files}");
    assert!(
        files.contains("10.1.2.3\tdb")
            && files.contains("nameserver 10.9.9.9")
            && files.contains("search corp.example"),
        "{files}"
    );
    let err = a.fails(&["run", "--rm", "--hostname", "bad_host!", "busybox", "true"]);
    assert!(err.contains("invalid hostname"), "{err}");
    // Addresses are not handed out twice, also across an engine restart.
    a.ok(&["run", "-d", "--name", "second", "busybox", "sleep", "60"]);
    let second = a.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "second"]).trim().to_string();
    assert_ne!(ip, second);
    a.ok(&["network", "create", "kept"]);
    a.stop();
    assert!(!link_exists(&a.bridge()) && !table_exists(&a.bridge()), "a stopped engine leaves no bridge or rules");
    a.restart();
    a.ok(&["start", "base", "second"]);
    let after: Vec<String> = ["base", "second"]
        .iter()
        .map(|c| a.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", c]).trim().to_string())
        .collect();
    assert_ne!(after[0], after[1]);
    assert!(a.ok(&["network", "ls", "--format", "{{.Name}}"]).contains("kept"));
    a.ok(&["rm", "-f", "base", "second"]);
}

/// Compose v2 starts services in parallel: every container gets its own address, and every
/// name resolves to its own container.
#[test]
fn parallel_starts_on_one_network_get_unique_addresses_and_names() {
    let a = agent_with(&["busybox.tar"]);
    a.ok(&["network", "create", "par"]);
    let names: Vec<String> = (0..20).map(|i| format!("par{i}")).collect();
    std::thread::scope(|s| {
        for n in &names {
            let a = &a;
            s.spawn(move || a.ok(&["run", "-d", "--name", n, "--network", "par", "busybox", "sleep", "600"]));
        }
    });
    let ips: Vec<String> = names
        .iter()
        .map(|n| a.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.par.IPAddress}}", n]).trim().to_string())
        .collect();
    let unique: std::collections::HashSet<&String> = ips.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicate addresses: {ips:?}");
    let inspected = a.ok(&["network", "inspect", "-f", "{{range .Containers}}{{.IPv4Address}} {{end}}", "par"]);
    assert_eq!(inspected.split_whitespace().count(), names.len(), "{inspected}");
    let script: String = names.iter().map(|n| format!("echo '== {n}'; nslookup {n};")).collect();
    let answers = a.ok(&["exec", "par0", "sh", "-c", &script]);
    for (section, (name, ip)) in answers.split("== ").skip(1).zip(names.iter().zip(&ips)) {
        assert!(section.starts_with(name.as_str()), "{answers}");
        let addrs: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("Address:").or_else(|| l.strip_prefix("Address 1:")))
            .map(str::trim)
            .filter(|addr| !addr.starts_with("127.0.0.11"))
            .collect();
        assert_eq!(addrs, [ip.as_str()], "{name} must resolve to its own address only: {section}");
    }
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    a.ok(&[&["rm", "-f"], all.as_slice()].concat());
}

/// What dockerd does to the host when it starts: `FORWARD` policy `DROP`, bridge netfilter on.
/// Restored on drop.
struct ForwardDropped {
    nf_call: Option<String>,
}

const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

impl ForwardDropped {
    fn set() -> Self {
        let nf_call = std::fs::read_to_string(BRIDGE_NF).ok();
        if nf_call.is_some() {
            std::fs::write(BRIDGE_NF, "1").expect("bridge netfilter on");
        }
        assert!(Command::new("iptables").args(["-w", "-P", "FORWARD", "DROP"]).status().expect("iptables").success());
        Self { nf_call }
    }
}

impl Drop for ForwardDropped {
    fn drop(&mut self) {
        let _ = Command::new("iptables").args(["-w", "-P", "FORWARD", "ACCEPT"]).status();
        if let Some(v) = &self.nf_call {
            let _ = std::fs::write(BRIDGE_NF, v.trim());
        }
    }
}

fn forward_rules() -> String {
    let out = Command::new("iptables").args(["-w", "-S", "FORWARD"]).output().expect("iptables");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn containers_talk_when_another_engine_sets_forward_to_drop() {
    let mut a = agent_with(&["busybox.tar"]);
    let dropped = ForwardDropped::set();
    a.ok(&["network", "create", "fwd"]);
    let user_bridge = format!("skiff-{}", &a.ok(&["network", "inspect", "-f", "{{.Id}}", "fwd"]).trim()[..9]);
    for net in ["fwd", "bridge"] {
        let name = format!("srv-{net}");
        a.ok(&["run", "-d", "--name", &name, "--network", net, "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
        let ip = a
            .ok(&["inspect", "-f", &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"), &name])
            .trim()
            .to_string();
        let hostname = a.ok(&["inspect", "-f", "{{.Config.Hostname}}", &name]).trim().to_string();
        let got = a.ok(&[
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "timeout",
            "10",
            "wget",
            "-qO-",
            &format!("http://{ip}/hostname"),
        ]);
        assert_eq!(got.trim(), hostname, "container to container on {net} with FORWARD DROP");
    }
    let rules = forward_rules();
    assert!(
        rules.contains(&format!("skiff:{}", a.bridge())) && rules.contains(&format!("skiff:{user_bridge}")),
        "{rules}"
    );
    a.ok(&["rm", "-f", "srv-fwd", "srv-bridge"]);
    a.ok(&["network", "rm", "fwd"]);
    assert!(!forward_rules().contains(&format!("skiff:{user_bridge}")), "a removed network's rules go with it");
    a.stop();
    assert!(!forward_rules().contains(&format!("skiff:{}", a.bridge())), "the engine removes its rules on exit");
    drop(dropped);
}

#[test]
fn engines_with_different_roots_keep_their_own_bridges() {
    let one = Agent::start_default_bridge();
    let two = Agent::start_default_bridge();
    let device = |a: &Agent| {
        a.ok(&["network", "inspect", "-f", "{{index .Options \"com.docker.network.bridge.name\"}}", "bridge"])
            .trim()
            .to_string()
    };
    let (b1, b2) = (device(&one), device(&two));
    assert!(b1.starts_with("skiff") && b2.starts_with("skiff") && b1 != b2 && b1 != "skiff0", "{b1} {b2}");
    one.load("busybox.tar");
    two.load("busybox.tar");
    two.ok(&["run", "-d", "--name", "keep", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    let ip = two.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "keep"]).trim().to_string();
    one.ok(&["run", "--rm", "busybox", "true"]);
    drop(one);
    assert!(link_exists(&b2), "stopping one engine must not remove the other's bridge");
    let got = two.ok(&["run", "--rm", "busybox", "timeout", "10", "wget", "-qO-", &format!("http://{ip}/hostname")]);
    assert!(!got.trim().is_empty());
    // A second engine asking for a bridge in use is refused, with a reason.
    let spare = tempfile::tempdir().expect("temp dir");
    let out = Command::new(skiff_tests::agent_bin())
        .args(["serve", "--socket"])
        .arg(spare.path().join("docker.sock"))
        .arg("--root")
        .arg(spare.path().join("root"))
        .args(["--bridge", &b2])
        .output()
        .expect("second engine");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another Skiff engine"), "{out:?}");
    two.ok(&["rm", "-f", "keep"]);
}
