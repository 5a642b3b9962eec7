//! Networks as Docker has them: the built-in `bridge`, `host` and `none`, and user-defined bridge
//! networks (`<root>/networks/<id>.json`, with their address allocations). A bridge network's
//! device and nftables table exist while the engine runs and the network does: set up on first
//! use, removed with the network and when the engine stops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::filters::Filters;
use super::EngineError;
use crate::net::ipam::{default_pools, overlaps, random_ula, Family, Ipam};
use crate::net::link::Links;
use crate::net::netns_pool::NetnsPool;
use crate::net::{firewall, host_forward, NetConfig};
use crate::store::atomic;
use crate::store::lazy_sync::LazySync;

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
    /// A swarm-scoped network (`docker network create -d overlay` in swarm mode): on a
    /// one-node swarm, a bridge like the others, shown as swarm's.
    Overlay,
}

impl Driver {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Host => "host",
            Self::Null => "null",
            Self::Overlay => "overlay",
        }
    }

    /// Whether the network is a Linux bridge of ours.
    pub fn is_bridge(self) -> bool {
        matches!(self, Self::Bridge | Self::Overlay)
    }

    /// `local` or `swarm`.
    pub fn scope(self) -> &'static str {
        if self == Self::Overlay {
            "swarm"
        } else {
            "local"
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
    pub ipam: Option<Ipam<Ipv4Addr>>,
    /// IPv6 addresses, when the network has IPv6 (`--ipv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam6: Option<Ipam<Ipv6Addr>>,
    /// No traffic in or out.
    #[serde(default)]
    pub internal: bool,
    /// `Attachable`, as given.
    #[serde(default)]
    pub attachable: bool,
    /// The swarm's routing-mesh network (`--ingress`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ingress: bool,
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
        self.driver.is_bridge() && !self.builtin
    }
}

/// What `POST /networks/create` asks for.
#[derive(Debug, Default)]
pub struct CreateRequest {
    /// Name.
    pub name: String,
    /// Driver (empty: bridge).
    pub driver: String,
    /// `IPAM.Config`: at most one IPv4 and one IPv6 pool.
    pub pools: Vec<PoolRequest>,
    /// Internal.
    pub internal: bool,
    /// Attachable.
    pub attachable: bool,
    /// The swarm's ingress network.
    pub ingress: bool,
    /// The engine is in a swarm (overlay networks can be made).
    pub swarm: bool,
    /// IPv6 asked for.
    pub enable_ipv6: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Options.
    pub options: BTreeMap<String, String>,
}

/// One `IPAM.Config` entry, as strings.
#[derive(Debug, Default, Clone)]
pub struct PoolRequest {
    /// Subnet (`None`: one from the default pools).
    pub subnet: Option<String>,
    /// Gateway.
    pub gateway: Option<String>,
    /// IP range.
    pub ip_range: Option<String>,
    /// Named addresses to keep out of allocation (`--aux-address`).
    pub aux_addresses: BTreeMap<String, String>,
}

impl PoolRequest {
    /// Whether the pool is an IPv6 one (its subnet, or else its gateway, says so).
    fn is_v6(&self) -> bool {
        self.subnet.as_deref().or(self.gateway.as_deref()).is_some_and(|s| s.contains(':'))
    }
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
    /// Address allocations (every container start and exit) reach the disk a moment later.
    sync: Arc<LazySync>,
    /// Containers' namespaces, one made ahead.
    pub netns_pool: Arc<NetnsPool>,
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

/// A subnet or range of family `A` (`a.b.c.d/n`); `what` names it in errors.
fn parse_net<A: Family + std::str::FromStr>(s: &str, what: &str) -> Result<A::Net, EngineError>
where
    A::Net: std::str::FromStr,
{
    s.parse::<A::Net>().map_err(|_| EngineError::InvalidArgument(format!("invalid {} {what}: {s}", A::NAME)))
}

/// An address of family `A`.
fn parse_addr<A: Family + std::str::FromStr>(s: &str, what: &str) -> Result<A, EngineError> {
    s.parse::<A>().map_err(|_| EngineError::InvalidArgument(format!("invalid {} {what}: {s}", A::NAME)))
}

/// The allocation state of one requested pool of family `A` (subnet already chosen).
fn pool_ipam<A: Family + std::str::FromStr>(subnet: A::Net, pool: &PoolRequest) -> Result<Ipam<A>, EngineError>
where
    A::Net: std::str::FromStr,
{
    let gateway =
        pool.gateway.as_deref().filter(|g| !g.is_empty()).map(|g| parse_addr::<A>(g, "gateway")).transpose()?;
    let range =
        pool.ip_range.as_deref().filter(|r| !r.is_empty()).map(|r| parse_net::<A>(r, "ip-range")).transpose()?;
    let mut ipam = Ipam::<A>::new(subnet, gateway, range)?;
    let mut aux = BTreeMap::new();
    for (name, ip) in &pool.aux_addresses {
        let ip = ip
            .parse::<A>()
            .map_err(|_| EngineError::InvalidArgument(format!("invalid auxiliary address {name}={ip}")))?;
        aux.insert(name.clone(), ip);
    }
    ipam.reserve(aux)?;
    Ok(ipam)
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
                        if let Some(ipam) = r.ipam6.as_mut() {
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
            sync: LazySync::new(dir.to_path_buf()),
            netns_pool: NetnsPool::new(),
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
                    ipam6: None,
                    internal: false,
                    attachable: false,
                    ingress: false,
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
    /// What changes this way (addresses taken and given back, the default bridge's subnet) may
    /// reach the disk a moment later: no container runs after a machine stop, and the engine frees
    /// every address when it opens.
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
        atomic::replace_json(&self.dir.join(format!("{}.json", rec.id)), &rec)
            .map_err(|e| EngineError::Internal(format!("saving network {}: {e}", rec.name)))?;
        self.sync.request();
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
        if !rec.driver.is_bridge() || self.up.lock().unwrap_or_else(|p| p.into_inner()).contains(&rec.id) {
            return Ok(rec);
        }
        if rec.ipam.is_none() {
            let subnet = match self.config.bridge_subnet {
                Some(s) => s,
                None => self.pick_subnet(Some(&rec.id)).await?,
            };
            let ipam = Ipam::<Ipv4Addr>::new(subnet, None, None)?;
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
            let v6 = rec.ipam6.as_ref().map(|i| (i.gateway, i.subnet.prefix_len()));
            links.ensure_bridge(bridge, (ipam.gateway, ipam.subnet.prefix_len()), v6).await?;
            let rules = firewall::BridgeRules {
                bridge: bridge.clone(),
                subnet: ipam.subnet,
                subnet6: rec.ipam6.as_ref().map(|i| i.subnet),
                internal: rec.internal,
            };
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
        let driver = match req.driver.as_str() {
            "" | "bridge" => Driver::Bridge,
            "overlay" if req.swarm => Driver::Overlay,
            "overlay" => return Err(EngineError::Unavailable(crate::engine::swarm::NOT_A_MANAGER.into())),
            "host" | "null" => {
                return Err(EngineError::Forbidden(format!(
                    "only one instance of \"{}\" network is allowed",
                    req.driver
                )))
            }
            other => return Err(EngineError::NotFound(format!("plugin \"{other}\" not found"))),
        };
        if req.ingress && driver != Driver::Overlay {
            return Err(EngineError::InvalidArgument("only an overlay network can be the ingress network".into()));
        }
        let (v6_pools, v4_pools): (Vec<&PoolRequest>, Vec<&PoolRequest>) = req.pools.iter().partition(|p| p.is_v6());
        if v4_pools.len() > 1 || v6_pools.len() > 1 {
            return Err(EngineError::InvalidArgument(
                "a network has at most one IPv4 and one IPv6 subnet (IPAM.Config)".into(),
            ));
        }
        if !v6_pools.is_empty() && !req.enable_ipv6 {
            return Err(EngineError::InvalidArgument(
                "an IPv6 subnet needs IPv6 enabled on the network (--ipv6, EnableIPv6)".into(),
            ));
        }
        let _changes = self.changes.lock().await;
        if self.all().iter().any(|r| r.name == req.name) {
            return Err(EngineError::Conflict(format!("network with name {} already exists", req.name)));
        }
        if req.ingress {
            if let Some(other) = self.all().iter().find(|r| r.ingress) {
                return Err(EngineError::Forbidden(format!("ingress network {} already exists", other.name)));
            }
        }
        let id = random_id();
        let overlap = || {
            EngineError::Forbidden("invalid pool request: Pool overlaps with other one on this address space".into())
        };
        let v4 = v4_pools.first().copied().cloned().unwrap_or_default();
        let subnet = match v4.subnet.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let subnet = parse_net::<Ipv4Addr>(s, "subnet")?.trunc();
                if self.all().iter().filter_map(|r| r.ipam.as_ref()).any(|i| overlaps(&i.subnet, &subnet)) {
                    return Err(overlap());
                }
                subnet
            }
            None if v4.gateway.is_some() || v4.ip_range.is_some() => {
                return Err(EngineError::InvalidArgument("a gateway or ip-range needs a subnet".into()));
            }
            None => self.pick_subnet(None).await?,
        };
        let ipam = pool_ipam::<Ipv4Addr>(subnet, &v4)?;
        let ipam6 = if req.enable_ipv6 {
            let v6 = v6_pools.first().copied().cloned().unwrap_or_default();
            let others: Vec<Ipv6Net> = self.all().iter().filter_map(|r| r.ipam6.as_ref().map(|i| i.subnet)).collect();
            let subnet = match v6.subnet.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => {
                    let subnet = parse_net::<Ipv6Addr>(s, "subnet")?.trunc();
                    if others.iter().any(|o| Ipv6Addr::nets_overlap(o, &subnet)) {
                        return Err(overlap());
                    }
                    subnet
                }
                None if v6.gateway.is_some() || v6.ip_range.is_some() => {
                    return Err(EngineError::InvalidArgument("a gateway or ip-range needs a subnet".into()));
                }
                // 2^40 global ids: a clash is as good as impossible, but checked all the same.
                None => std::iter::repeat_with(random_ula)
                    .take(16)
                    .find(|n| !others.iter().any(|o| Ipv6Addr::nets_overlap(o, n)))
                    .ok_or_else(|| EngineError::Internal("no free IPv6 unique local subnet".into()))?,
            };
            Some(pool_ipam::<Ipv6Addr>(subnet, &v6)?)
        } else {
            None
        };
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
            driver,
            builtin: false,
            bridge: Some(bridge),
            ipam: Some(ipam),
            ipam6,
            internal: req.internal,
            attachable: req.attachable,
            ingress: req.ingress,
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

    /// Takes an IPv6 address on network `id` for `owner`, when the network has IPv6.
    pub fn allocate6(
        &self,
        id: &str,
        owner: &str,
        wanted: Option<Ipv6Addr>,
    ) -> Result<Option<(Ipv6Addr, Ipv6Net, Ipv6Addr)>, EngineError> {
        let id = self.get(id)?.id;
        self.update(&id, |rec| {
            let Some(ipam) = rec.ipam6.as_mut() else {
                return match wanted {
                    Some(ip) => Err(EngineError::InvalidArgument(format!(
                        "invalid IPv6 address {ip}: network {} has no IPv6 (create it with --ipv6)",
                        rec.name
                    ))),
                    None => Ok(None),
                };
            };
            let ip = ipam.allocate(owner, wanted)?;
            Ok(Some((ip, ipam.subnet, ipam.gateway)))
        })
    }

    /// Gives back what `owner` holds on network `id`.
    pub fn release(&self, id: &str, owner: &str) {
        let Some(rec) = self.find(id) else { return };
        let released = self.update(&rec.id, |rec| {
            let before = rec.ipam.as_ref().map_or(0, |i| i.allocated.len())
                + rec.ipam6.as_ref().map_or(0, |i| i.allocated.len());
            rec.ipam.iter_mut().for_each(|i| i.release_owner(owner));
            rec.ipam6.iter_mut().for_each(|i| i.release_owner(owner));
            let after = rec.ipam.as_ref().map_or(0, |i| i.allocated.len())
                + rec.ipam6.as_ref().map_or(0, |i| i.allocated.len());
            Ok((after != before).then_some(()))
        });
        if let Err(e) = released {
            tracing::warn!(error = %e, "saving released addresses");
        }
    }

    /// Deletes a link in the engine's namespace (a container's veth on disconnect).
    pub async fn delete_link(&self, name: &str) -> Result<(), EngineError> {
        Ok(self.links().await?.delete(name).await?)
    }

    /// Creates a veth pair: `host` on the network's bridge, `peer` (with `peer_mac`, up) in
    /// `netns`.
    pub async fn add_veth(
        &self,
        rec: &NetworkRecord,
        host: &str,
        peer: &str,
        peer_mac: [u8; 6],
        netns: &crate::net::netns::Netns,
    ) -> Result<(), EngineError> {
        let bridge = rec.bridge.as_deref().ok_or_else(|| EngineError::Internal("not a bridge network".into()))?;
        Ok(self.links().await?.add_veth(host, peer, peer_mac, bridge, netns).await?)
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

/// A running container on a network, as the network's inspect shows it.
#[derive(Debug, Clone, Default)]
pub struct Member {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Its endpoint's id.
    pub endpoint_id: String,
    /// Its MAC address.
    pub mac: String,
    /// `address/prefix`, IPv4.
    pub ipv4: String,
    /// `address/prefix`, IPv6 (empty without).
    pub ipv6: String,
}

/// One `IPAM.Config` entry of inspect.
fn pool_json<A: Family>(i: &Ipam<A>) -> serde_json::Value {
    let mut c = json!({"Subnet": i.subnet.to_string(), "Gateway": i.gateway.to_string()});
    if i.range != i.subnet {
        c["IPRange"] = json!(i.range.to_string());
    }
    if !i.aux.is_empty() {
        c["AuxiliaryAddresses"] =
            json!(i.aux.iter().map(|(k, v)| (k.clone(), v.to_string())).collect::<BTreeMap<_, _>>());
    }
    c
}

/// Docker's network JSON (`GET /networks/{id}`), with the running containers on it.
pub fn to_json(rec: &NetworkRecord, containers: &[Member]) -> serde_json::Value {
    let config: Vec<serde_json::Value> =
        rec.ipam.iter().map(pool_json).chain(rec.ipam6.iter().map(pool_json)).collect();
    let mut options: BTreeMap<String, String> = rec.options.clone();
    if rec.builtin && rec.driver == Driver::Bridge {
        options.insert("com.docker.network.bridge.default_bridge".into(), "true".into());
        options.insert("com.docker.network.bridge.enable_ip_masquerade".into(), "true".into());
        options.insert("com.docker.network.bridge.name".into(), rec.bridge.clone().unwrap_or_default());
    }
    let containers: HashMap<&str, serde_json::Value> = containers
        .iter()
        .map(|m| {
            (
                m.id.as_str(),
                json!({"Name": m.name, "EndpointID": m.endpoint_id, "MacAddress": m.mac,
                       "IPv4Address": m.ipv4, "IPv6Address": m.ipv6}),
            )
        })
        .collect();
    json!({
        "Name": rec.name,
        "Id": rec.id,
        "Created": rec.created,
        "Scope": rec.driver.scope(),
        "Driver": rec.driver.as_str(),
        "EnableIPv4": true,
        "EnableIPv6": rec.ipam6.is_some(),
        "IPAM": {"Driver": "default", "Options": null, "Config": config},
        "Internal": rec.internal,
        "Attachable": rec.attachable,
        "Ingress": rec.ingress,
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
        && any("scope", &|v| v == rec.driver.scope())
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
            ipam6: None,
            internal: false,
            attachable: false,
            ingress: false,
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
