//! Networks as Docker has them: the built-in `bridge`, `host` and `none`, and user-defined bridge
//! networks (`<root>/networks/<id>.json`, with their address allocations). A bridge network's
//! device and nftables table exist while the engine runs and the network does: set up on first
//! use, removed with the network and when the engine stops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::filters::Filters;
use super::EngineError;
use crate::net::ipam::{default_pools, overlaps, Ipam};
use crate::net::link::Links;
use crate::net::{firewall, host_forward, NetConfig};
use crate::store::atomic;

/// Docker's drivers, as far as we have them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// A Linux bridge with NAT.
    Bridge,
    /// The engine's own network namespace.
    Host,
    /// Loopback only.
    Null,
}

impl Driver {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Host => "host",
            Self::Null => "null",
        }
    }
}

/// One network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRecord {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// Driver.
    pub driver: Driver,
    /// `bridge`, `host` and `none`: cannot be removed.
    pub builtin: bool,
    /// The bridge device (bridge driver).
    #[serde(default)]
    pub bridge: Option<String>,
    /// Addresses (bridge driver; chosen at first use for the default bridge).
    #[serde(default)]
    pub ipam: Option<Ipam>,
    /// No traffic in or out.
    #[serde(default)]
    pub internal: bool,
    /// `Attachable`, as given.
    #[serde(default)]
    pub attachable: bool,
    /// User labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options, as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl NetworkRecord {
    /// Whether containers on it resolve each other by name (user-defined bridges).
    pub fn has_dns(&self) -> bool {
        self.driver == Driver::Bridge && !self.builtin
    }
}

/// What `POST /networks/create` asks for.
#[derive(Debug, Default)]
pub struct CreateRequest {
    /// Name.
    pub name: String,
    /// Driver (empty: bridge).
    pub driver: String,
    /// Subnet, gateway and range, as strings.
    pub subnet: Option<String>,
    /// Gateway.
    pub gateway: Option<String>,
    /// IP range.
    pub ip_range: Option<String>,
    /// Named addresses to keep out of allocation (`--aux-address`).
    pub aux_addresses: BTreeMap<String, String>,
    /// Internal.
    pub internal: bool,
    /// Attachable.
    pub attachable: bool,
    /// IPv6 asked for.
    pub enable_ipv6: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Options.
    pub options: BTreeMap<String, String>,
}

/// The networks service.
#[derive(Debug)]
pub struct Networks {
    dir: PathBuf,
    records: Mutex<BTreeMap<String, NetworkRecord>>,
    up: Mutex<HashSet<String>>,
    links: tokio::sync::OnceCell<Links>,
    /// Serialises create/remove/set-up (subnet choice must see every other network).
    changes: tokio::sync::Mutex<()>,
    /// Settings.
    pub config: NetConfig,
}

/// dockerd takes any name (`test 01` included) but an empty one; a `/` would not survive a URL
/// path and control characters no terminal.
fn valid_name(n: &str) -> bool {
    !n.trim().is_empty() && n.len() <= 255 && !n.contains('/') && !n.chars().any(char::is_control)
}

/// A network device name: letters, digits, `_.-`, a letter or digit first.
fn valid_device_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn parse_net(s: &str, what: &str) -> Result<Ipv4Net, EngineError> {
    if s.contains(':') {
        return Err(EngineError::InvalidArgument(format!("IPv6 {what} {s}: IPv6 networks are not supported yet")));
    }
    s.parse::<Ipv4Net>()
        .or_else(|_| s.parse::<Ipv4Addr>().map(|a| Ipv4Net::new(a, 32).unwrap_or_default()))
        .map_err(|_| EngineError::InvalidArgument(format!("invalid {what}: {s}")))
}

impl Networks {
    /// Loads the networks under `dir`, adding the built-in ones the first time.
    pub fn open(dir: &Path, config: NetConfig) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::Internal(format!("creating {}: {e}", dir.display())))?;
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| EngineError::Internal(e.to_string()))?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                match std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice::<NetworkRecord>(&b).map_err(|e| e.to_string()))
                {
                    Ok(mut r) => {
                        // No container runs while the engine opens: every address is free again
                        // (the search position is kept, so recent addresses are not reused first).
                        if let Some(ipam) = r.ipam.as_mut() {
                            ipam.allocated.clear();
                        }
                        records.insert(r.id.clone(), r);
                    }
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping unreadable network record"),
                }
            }
        }
        let this = Self {
            dir: dir.to_path_buf(),
            records: Mutex::new(records),
            up: Mutex::new(HashSet::new()),
            links: tokio::sync::OnceCell::new(),
            changes: tokio::sync::Mutex::new(()),
            config,
        };
        for (name, driver) in [("bridge", Driver::Bridge), ("host", Driver::Host), ("none", Driver::Null)] {
            if this.find(name).is_none() {
                let rec = NetworkRecord {
                    id: random_id(),
                    name: name.into(),
                    created: super::now_rfc3339(),
                    driver,
                    builtin: true,
                    bridge: (driver == Driver::Bridge).then(|| this.config.bridge.clone()),
                    ipam: None,
                    internal: false,
                    attachable: false,
                    labels: BTreeMap::new(),
                    options: BTreeMap::new(),
                };
                this.save(&rec)?;
            }
        }
        // The default bridge's device follows the configuration.
        if let Some(mut b) = this.find("bridge") {
            if b.bridge.as_deref() != Some(this.config.bridge.as_str()) {
                b.bridge = Some(this.config.bridge.clone());
                this.save(&b)?;
            }
        }
        Ok(this)
    }

    fn save(&self, rec: &NetworkRecord) -> Result<(), EngineError> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        self.persist(rec)?;
        records.insert(rec.id.clone(), rec.clone());
        Ok(())
    }

    fn persist(&self, rec: &NetworkRecord) -> Result<(), EngineError> {
        atomic::write_json(&self.dir.join(format!("{}.json", rec.id)), rec)
            .map_err(|e| EngineError::Internal(format!("saving network {}: {e}", rec.name)))
    }

    /// Read-modify-write of one record as a single step: the records lock is held from the read
    /// until the change is on disk, so concurrent changes (parallel starts taking addresses)
    /// never work from the same stale copy. `change` returns `None` when it changed nothing.
    fn update<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut NetworkRecord) -> Result<Option<T>, EngineError>,
    ) -> Result<Option<T>, EngineError> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let Some(current) = records.get(id) else {
            return Err(EngineError::NotFound(format!("network {id} not found")));
        };
        let mut rec = current.clone();
        let Some(out) = change(&mut rec)? else { return Ok(None) };
        self.persist(&rec)?;
        records.insert(rec.id.clone(), rec);
        Ok(Some(out))
    }

    async fn links(&self) -> Result<&Links, EngineError> {
        self.links.get_or_try_init(|| async { Links::open().map_err(EngineError::from) }).await
    }

    /// Every network.
    pub fn all(&self) -> Vec<NetworkRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// By full id, exact name, or unique id prefix.
    pub fn find(&self, key: &str) -> Option<NetworkRecord> {
        let recs = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = recs.get(key) {
            return Some(r.clone());
        }
        if let Some(r) = recs.values().find(|r| r.name == key) {
            return Some(r.clone());
        }
        let mut prefixed = recs.values().filter(|r| !key.is_empty() && r.id.starts_with(key));
        match (prefixed.next(), prefixed.next()) {
            (Some(r), None) => Some(r.clone()),
            _ => None,
        }
    }

    /// Like [`Self::find`], or Docker's 404.
    pub fn get(&self, key: &str) -> Result<NetworkRecord, EngineError> {
        self.find(key).ok_or_else(|| EngineError::NotFound(format!("network {key} not found")))
    }

    /// Subnets taken by other networks and by the host's routes.
    async fn taken_subnets(&self, except: Option<&str>) -> Result<Vec<Ipv4Net>, EngineError> {
        let mut taken: Vec<Ipv4Net> = self
            .all()
            .iter()
            .filter(|r| Some(r.id.as_str()) != except)
            .filter_map(|r| r.ipam.as_ref().map(|i| i.subnet))
            .collect();
        taken.extend(self.links().await?.routed_subnets().await?);
        Ok(taken)
    }

    async fn pick_subnet(&self, except: Option<&str>) -> Result<Ipv4Net, EngineError> {
        let taken = self.taken_subnets(except).await?;
        default_pools()
            .into_iter()
            .find(|p| !taken.iter().any(|t| overlaps(p, t)))
            .ok_or_else(|| EngineError::Internal("all predefined address pools have been fully subnetted".into()))
    }

    /// Makes sure a bridge network's device and rules are in place (first use after start).
    pub async fn ensure_up(&self, id: &str) -> Result<NetworkRecord, EngineError> {
        let _changes = self.changes.lock().await;
        let mut rec = self.get(id)?;
        if rec.driver != Driver::Bridge || self.up.lock().unwrap_or_else(|p| p.into_inner()).contains(&rec.id) {
            return Ok(rec);
        }
        if rec.ipam.is_none() {
            let subnet = match self.config.bridge_subnet {
                Some(s) => s,
                None => self.pick_subnet(Some(&rec.id)).await?,
            };
            let ipam = Ipam::new(subnet, None, None)?;
            self.update(&rec.id, |r| {
                r.ipam.get_or_insert(ipam);
                Ok(Some(()))
            })?;
            rec = self.get(&rec.id)?;
        }
        self.realize(&rec).await?;
        self.up.lock().unwrap_or_else(|p| p.into_inner()).insert(rec.id.clone());
        Ok(rec)
    }

    async fn realize(&self, rec: &NetworkRecord) -> Result<(), EngineError> {
        let (Some(bridge), Some(ipam)) = (&rec.bridge, &rec.ipam) else {
            return Err(EngineError::Internal(format!("network {} has no bridge", rec.name)));
        };
        if let Some(ready) = &self.config.kernel_ready {
            let mut ready = ready.clone();
            let state = ready.wait_for(Option::is_some).await.map(|s| s.clone()).ok().flatten();
            if let Some(Err(e)) = state {
                return Err(EngineError::Internal(format!("container networking is unavailable: {e}")));
            }
        }
        let links = self.links().await?;
        let result = async {
            links.ensure_bridge(bridge, ipam.gateway, ipam.subnet.prefix_len()).await?;
            let rules = firewall::BridgeRules { bridge: bridge.clone(), subnet: ipam.subnet, internal: rec.internal };
            tokio::task::spawn_blocking(move || {
                firewall::apply(&rules)?;
                // Best effort: without them only a host whose FORWARD policy drops is affected.
                if let Err(e) = host_forward::allow(&rules.bridge) {
                    tracing::warn!(bridge = %rules.bridge, error = %e, "no FORWARD accept rules: a host firewall may drop containers' traffic");
                }
                Ok::<_, crate::net::NetError>(())
            })
            .await??;
            Ok::<_, EngineError>(())
        }
        .await;
        if result.is_err() {
            self.unrealize(rec).await;
        }
        result
    }

    async fn unrealize(&self, rec: &NetworkRecord) {
        let Some(bridge) = rec.bridge.clone() else { return };
        if let Ok(links) = self.links().await {
            if let Err(e) = links.delete(&bridge).await {
                tracing::warn!(bridge = %bridge, error = %e, "removing a bridge");
            }
        }
        let b = bridge.clone();
        match tokio::task::spawn_blocking(move || {
            host_forward::revoke(&b);
            firewall::remove(&b)
        })
        .await
        {
            Ok(Err(e)) => tracing::warn!(bridge = %bridge, error = %e, "removing a network's rules"),
            Err(e) => tracing::warn!(error = %e, "removing a network's rules"),
            Ok(Ok(())) => {}
        }
        self.up.lock().unwrap_or_else(|p| p.into_inner()).remove(&rec.id);
    }

    /// `POST /networks/create`.
    pub async fn create(&self, req: CreateRequest) -> Result<NetworkRecord, EngineError> {
        if !valid_name(&req.name) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid network name {:?}: it must not be empty nor contain '/' or control characters",
                req.name
            )));
        }
        match req.driver.as_str() {
            "" | "bridge" => {}
            "host" | "null" => {
                return Err(EngineError::Forbidden(format!(
                    "only one instance of \"{}\" network is allowed",
                    req.driver
                )))
            }
            other => return Err(EngineError::NotFound(format!("plugin \"{other}\" not found"))),
        }
        if req.enable_ipv6 {
            return Err(EngineError::InvalidArgument("IPv6 networks are not supported yet".into()));
        }
        let _changes = self.changes.lock().await;
        if self.all().iter().any(|r| r.name == req.name) {
            return Err(EngineError::Conflict(format!("network with name {} already exists", req.name)));
        }
        let id = random_id();
        let subnet = match &req.subnet {
            Some(s) => {
                let subnet = parse_net(s, "subnet")?.trunc();
                let others: Vec<Ipv4Net> =
                    self.all().iter().filter_map(|r| r.ipam.as_ref().map(|i| i.subnet)).collect();
                if others.iter().any(|o| overlaps(o, &subnet)) {
                    return Err(EngineError::Forbidden(
                        "invalid pool request: Pool overlaps with other one on this address space".into(),
                    ));
                }
                subnet
            }
            None if req.gateway.is_some() || req.ip_range.is_some() => {
                return Err(EngineError::InvalidArgument("a gateway or ip-range needs a subnet".into()));
            }
            None => self.pick_subnet(None).await?,
        };
        let gateway = req.gateway.as_deref().map(|g| parse_net(g, "gateway").map(|n| n.addr())).transpose()?;
        let range = req.ip_range.as_deref().map(|r| parse_net(r, "ip-range")).transpose()?;
        let mut ipam = Ipam::new(subnet, gateway, range)?;
        let mut aux = BTreeMap::new();
        for (name, ip) in &req.aux_addresses {
            let ip: std::net::Ipv4Addr = ip
                .parse()
                .map_err(|_| EngineError::InvalidArgument(format!("invalid auxiliary address {name}={ip}")))?;
            aux.insert(name.clone(), ip);
        }
        ipam.reserve(aux)?;
        let bridge = match req.options.get("com.docker.network.bridge.name") {
            Some(b) if b.len() <= 15 && b.starts_with(firewall::BRIDGE_PREFIX) && valid_device_name(b) => b.clone(),
            Some(b) => {
                return Err(EngineError::InvalidArgument(format!(
                    "bridge name {b:?} must start with \"{}\" and be at most 15 characters",
                    firewall::BRIDGE_PREFIX
                )))
            }
            None => format!("skiff-{}", &id[..9]),
        };
        if self.all().iter().any(|r| r.bridge.as_deref() == Some(bridge.as_str())) {
            return Err(EngineError::Conflict(format!("bridge {bridge} is used by another network")));
        }
        let rec = NetworkRecord {
            id,
            name: req.name,
            created: super::now_rfc3339(),
            driver: Driver::Bridge,
            builtin: false,
            bridge: Some(bridge),
            ipam: Some(ipam),
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels,
            options: req.options,
        };
        // Set up first, record after: a failure leaves nothing behind.
        self.realize(&rec).await?;
        if let Err(e) = self.save(&rec) {
            self.unrealize(&rec).await;
            return Err(e);
        }
        self.up.lock().unwrap_or_else(|p| p.into_inner()).insert(rec.id.clone());
        Ok(rec)
    }

    /// Removes a user-defined network that no running container uses (`in_use` says which do).
    pub async fn remove(&self, key: &str, in_use: impl Fn(&str) -> Vec<String>) -> Result<NetworkRecord, EngineError> {
        let _changes = self.changes.lock().await;
        let rec = self.get(key)?;
        if rec.builtin {
            return Err(EngineError::Forbidden(format!("{} is a pre-defined network and cannot be removed", rec.name)));
        }
        let users = in_use(&rec.id);
        if !users.is_empty() {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints ({})",
                rec.name,
                rec.id,
                users.join(", ")
            )));
        }
        self.unrealize(&rec).await;
        std::fs::remove_file(self.dir.join(format!("{}.json", rec.id)))
            .map_err(|e| EngineError::Internal(format!("removing network {}: {e}", rec.name)))?;
        self.records.lock().unwrap_or_else(|p| p.into_inner()).remove(&rec.id);
        Ok(rec)
    }

    /// Takes an address on network `id` for `owner`.
    pub fn allocate(
        &self,
        id: &str,
        owner: &str,
        wanted: Option<Ipv4Addr>,
    ) -> Result<(Ipv4Addr, Ipv4Net, Ipv4Addr), EngineError> {
        let id = self.get(id)?.id;
        let taken = self.update(&id, |rec| {
            let name = rec.name.clone();
            let ipam =
                rec.ipam.as_mut().ok_or_else(|| EngineError::Internal(format!("network {name} has no addresses")))?;
            let ip = ipam.allocate(owner, wanted)?;
            Ok(Some((ip, ipam.subnet, ipam.gateway)))
        })?;
        taken.ok_or_else(|| EngineError::Internal("address allocation changed nothing".into()))
    }

    /// Gives back what `owner` holds on network `id`.
    pub fn release(&self, id: &str, owner: &str) {
        let Some(rec) = self.find(id) else { return };
        let released = self.update(&rec.id, |rec| {
            let Some(ipam) = rec.ipam.as_mut() else { return Ok(None) };
            let before = ipam.allocated.len();
            ipam.release_owner(owner);
            Ok((ipam.allocated.len() != before).then_some(()))
        });
        if let Err(e) = released {
            tracing::warn!(error = %e, "saving released addresses");
        }
    }

    /// Deletes a link in the engine's namespace (a container's veth on disconnect).
    pub async fn delete_link(&self, name: &str) -> Result<(), EngineError> {
        Ok(self.links().await?.delete(name).await?)
    }

    /// Creates a veth pair: `host` on the network's bridge, `peer` in `netns`.
    pub async fn add_veth(
        &self,
        rec: &NetworkRecord,
        host: &str,
        peer: &str,
        netns: &crate::net::netns::Netns,
    ) -> Result<(), EngineError> {
        let bridge = rec.bridge.as_deref().ok_or_else(|| EngineError::Internal("not a bridge network".into()))?;
        Ok(self.links().await?.add_veth(host, peer, bridge, netns).await?)
    }

    /// Removes every bridge and table this engine set up (it is stopping).
    pub async fn shut_down(&self) {
        let up: Vec<String> = self.up.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        for id in up {
            if let Some(rec) = self.find(&id) {
                self.unrealize(&rec).await;
            }
        }
    }
}

/// Docker's network JSON (`GET /networks/{id}`); `containers` maps ids to (name, endpoint id,
/// MAC, address/prefix).
pub fn to_json(rec: &NetworkRecord, containers: &[(String, String, String, String, String)]) -> serde_json::Value {
    let config: Vec<serde_json::Value> = rec
        .ipam
        .iter()
        .map(|i| {
            let mut c = json!({"Subnet": i.subnet.to_string(), "Gateway": i.gateway.to_string()});
            if i.range != i.subnet {
                c["IPRange"] = json!(i.range.to_string());
            }
            if !i.aux.is_empty() {
                c["AuxiliaryAddresses"] =
                    json!(i.aux.iter().map(|(k, v)| (k.clone(), v.to_string())).collect::<BTreeMap<_, _>>());
            }
            c
        })
        .collect();
    let mut options: BTreeMap<String, String> = rec.options.clone();
    if rec.builtin && rec.driver == Driver::Bridge {
        options.insert("com.docker.network.bridge.default_bridge".into(), "true".into());
        options.insert("com.docker.network.bridge.enable_ip_masquerade".into(), "true".into());
        options.insert("com.docker.network.bridge.name".into(), rec.bridge.clone().unwrap_or_default());
    }
    let containers: HashMap<&str, serde_json::Value> = containers
        .iter()
        .map(|(id, name, ep, mac, ip)| {
            (
                id.as_str(),
                json!({"Name": name, "EndpointID": ep, "MacAddress": mac, "IPv4Address": ip, "IPv6Address": ""}),
            )
        })
        .collect();
    json!({
        "Name": rec.name,
        "Id": rec.id,
        "Created": rec.created,
        "Scope": "local",
        "Driver": rec.driver.as_str(),
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": config},
        "Internal": rec.internal,
        "Attachable": rec.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": rec.labels,
    })
}

/// Whether `rec` passes `GET /networks` filters (`dangling` is decided by the caller).
pub fn matches(rec: &NetworkRecord, filters: &Filters) -> bool {
    let any = |key: &str, f: &dyn Fn(&str) -> bool| {
        let v = filters.get(key);
        v.is_empty() || v.iter().any(|x| f(x))
    };
    let labels: HashMap<String, String> = rec.labels.clone().into_iter().collect();
    any("name", &|v| rec.name.contains(v))
        && any("id", &|v| rec.id.starts_with(v))
        && any("driver", &|v| v == rec.driver.as_str())
        && any("scope", &|v| v == "local")
        && any("type", &|v| (v == "builtin") == rec.builtin && (v == "builtin" || v == "custom"))
        && filters.labels_match("label", Some(&labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        // dockerd takes any name but an empty one (docker-py's suite creates "test 01").
        assert!(valid_name("app") && valid_name("ctest_default") && valid_name("a.b-c") && valid_name("test 01"));
        assert!(!valid_name("") && !valid_name("  ") && !valid_name("a/b") && !valid_name("a\nb"));
        // Bridge devices keep the kernel's stricter rule.
        assert!(valid_device_name("skiff-a.b_c") && !valid_device_name("skiff a") && !valid_device_name("-x"));
    }

    #[test]
    fn builtin_networks_exist_and_keep_their_ids() -> Result<(), EngineError> {
        let dir = tempfile::tempdir().map_err(|e| EngineError::Internal(e.to_string()))?;
        let first = Networks::open(dir.path(), NetConfig::default())?;
        let ids: Vec<String> =
            ["bridge", "host", "none"].iter().map(|n| first.get(n).map(|r| r.id)).collect::<Result<_, _>>()?;
        drop(first);
        let again = Networks::open(dir.path(), NetConfig::default())?;
        for (n, id) in ["bridge", "host", "none"].iter().zip(&ids) {
            assert_eq!(&again.get(n)?.id, id);
            assert_eq!(again.get(&id[..12])?.name, *n);
        }
        assert!(matches!(again.get("nope"), Err(EngineError::NotFound(_))));
        Ok(())
    }

    #[test]
    fn filters_select_by_name_type_and_label() -> Result<(), EngineError> {
        let rec = NetworkRecord {
            id: "ab".repeat(32),
            name: "app".into(),
            created: String::new(),
            driver: Driver::Bridge,
            builtin: false,
            bridge: None,
            ipam: None,
            internal: false,
            attachable: false,
            labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
            options: BTreeMap::new(),
        };
        let f = |s: &str| Filters::parse(Some(s), &["name", "id", "driver", "type", "label", "scope"]);
        assert!(matches(&rec, &f(r#"{"name":{"ap":true}}"#)?));
        assert!(matches(&rec, &f(r#"{"type":{"custom":true}}"#)?));
        assert!(!matches(&rec, &f(r#"{"type":{"builtin":true}}"#)?));
        assert!(matches(&rec, &f(r#"{"label":{"team=a":true}}"#)?));
        assert!(!matches(&rec, &f(r#"{"label":{"team=b":true}}"#)?));
        Ok(())
    }
}
