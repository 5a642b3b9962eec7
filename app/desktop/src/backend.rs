//! What the front end can ask for, independent of how it asks (Tauri IPC in the window, HTTP in
//! the browser test mode): one `call` per request/response command. Containers, images and
//! volumes go to the Docker API through `bollard`; the VM goes to the Skiff daemon.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListVolumesOptions,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker};
use serde_json::{json, Value};

use crate::vm::Vm;

/// The API version we speak (the engine serves up to 1.51).
const API: ClientVersion = ClientVersion { major_version: 1, minor_version: 50 };

/// Shared by every request.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The Docker endpoint: a Unix socket's path, or on Windows a named pipe's (`\\.\pipe\…`).
    pub socket: PathBuf,
    /// The VM, when this app manages one (`None` against a native engine).
    pub vm: Option<Vm>,
}

/// An error for the front end: the engine's own message when it sent one.
pub fn message(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    // bollard: "Docker responded with status code 409: <message>"
    match s.split_once(": ") {
        Some((head, rest)) if head.starts_with("Docker responded with status code") => rest.to_string(),
        _ => s,
    }
}

fn arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, String> {
    args.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| format!("missing argument {key:?}"))
}

fn strings(args: &Value, key: &str) -> Vec<String> {
    args.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter().filter_map(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        })
        .unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: T) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

/// Splits a command line the way a user types it: spaces separate, quotes group.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let (mut out, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None::<char>, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote in the command".into());
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// `-p` syntax from the run dialog: `[ip:]host:container[/proto]` or `container[/proto]`.
fn port_bindings(specs: &[String]) -> Result<HashMap<String, Option<Vec<PortBinding>>>, String> {
    let mut out: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for spec in specs {
        let (addr, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
        let parts: Vec<&str> = addr.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [i, h, c] => (*i, *h, *c),
            _ => return Err(format!("invalid port mapping {spec:?}: use [ip:]host:container[/tcp|udp]")),
        };
        if container.parse::<u16>().is_err() || (!host.is_empty() && host.parse::<u16>().is_err()) {
            return Err(format!("invalid port mapping {spec:?}: ports are numbers"));
        }
        out.entry(format!("{container}/{proto}"))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip: Some(ip.to_string()), host_port: Some(host.to_string()) });
    }
    Ok(out)
}

impl Backend {
    /// A client for this call (the socket appears and disappears with the VM).
    pub fn docker(&self) -> Result<Docker, String> {
        #[cfg(unix)]
        let docker = Docker::connect_with_unix(&self.socket.display().to_string(), 120, &API);
        #[cfg(windows)]
        let docker = Docker::connect_with_named_pipe(&self.socket.display().to_string(), 120, &API);
        docker.map_err(message)
    }

    /// `GET path` on the engine's socket, for the few answers bollard's models do not fit.
    async fn raw_get(&self, path: &str) -> Result<Value, String> {
        use std::io::{Read, Write};
        let (socket, path) = (self.socket.clone(), path.to_string());
        tokio::task::spawn_blocking(move || {
            #[cfg(unix)]
            let mut s = {
                let s = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| e.to_string())?;
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(60)));
                s
            };
            // A named pipe opens as a file; its end reads as the end of the answer.
            #[cfg(windows)]
            let mut s = std::fs::OpenOptions::new().read(true).write(true).open(&socket).map_err(|e| e.to_string())?;
            s.write_all(format!("GET /v1.50{path} HTTP/1.0\r\nHost: skiff\r\n\r\n").as_bytes())
                .map_err(|e| e.to_string())?;
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&resp);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
            serde_json::from_str(body).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// One request/response command.
    pub async fn call(&self, cmd: &str, args: &Value) -> Result<Value, String> {
        let started = std::time::Instant::now();
        let answer = self.dispatch(cmd, args).await;
        tracing::debug!(cmd, ms = started.elapsed().as_secs_f64() * 1000.0, ok = answer.is_ok(), "call");
        answer
    }

    async fn dispatch(&self, cmd: &str, args: &Value) -> Result<Value, String> {
        match cmd {
            "boot" => self.boot().await,
            "engine" => self.engine().await,
            "containers" => self.containers().await,
            "container_inspect" => {
                to_json(self.docker()?.inspect_container(arg(args, "id")?, None).await.map_err(message)?)
            }
            "container_action" => self.container_action(arg(args, "id")?, arg(args, "action")?).await,
            "run" => self.run(args).await,
            "images" => {
                let opts = ListImagesOptionsBuilder::default().all(false).build();
                to_json(self.docker()?.list_images(Some(opts)).await.map_err(message)?)
            }
            "image_remove" => {
                let opts = RemoveImageOptionsBuilder::default()
                    .force(args.get("force").and_then(Value::as_bool).unwrap_or(false))
                    .build();
                to_json(self.docker()?.remove_image(arg(args, "id")?, Some(opts), None).await.map_err(message)?)
            }
            "images_prune" => {
                let opts = bollard::query_parameters::PruneImagesOptionsBuilder::default().build();
                to_json(self.docker()?.prune_images(Some(opts)).await.map_err(message)?)
            }
            "volumes" => self.volumes().await,
            "volume_create" => {
                let req = VolumeCreateRequest { name: Some(arg(args, "name")?.to_string()), ..Default::default() };
                to_json(self.docker()?.create_volume(req).await.map_err(message)?)
            }
            "volume_remove" => {
                let opts = RemoveVolumeOptionsBuilder::default().build();
                self.docker()?.remove_volume(arg(args, "name")?, Some(opts)).await.map_err(message)?;
                Ok(Value::Null)
            }
            "vm_status" => self.vm()?.status().await,
            "vm_start" => self.vm()?.start().await,
            "vm_stop" => self.vm()?.stop().await,
            "vm_restart" => {
                let vm = self.vm()?;
                vm.stop().await?;
                vm.start().await
            }
            "vm_settings" => self.vm()?.settings(),
            "vm_save_settings" => self.vm()?.save_settings(args),
            "vm_console" => self.vm()?.console_tail(),
            "vm_reset" => self.vm()?.reset().await,
            // The front end's first container list is on screen (bench/desktop.sh measures it).
            "ui_rendered" => {
                let ms = crate::STARTED.get().map(|t| t.elapsed().as_millis()).unwrap_or(0);
                if std::env::var_os("SKIFF_DESKTOP_BENCH").is_some() {
                    use std::io::Write;
                    let n = args.get("containers").and_then(Value::as_u64).unwrap_or(0);
                    // Where the time went: process start → the page's navigation start → render.
                    let page_ms = args.get("page_ms").and_then(Value::as_f64).unwrap_or(0.0);
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis())
                        .unwrap_or(0);
                    // The page's own clock at its first frame, and this message's trip to here.
                    let page_epoch = args.get("epoch_ms").and_then(Value::as_f64).unwrap_or(now as f64);
                    let _ = writeln!(
                        std::io::stdout(),
                        "first-render-ms {ms} containers {n} page-start-ms {:.0} page-to-render-ms {page_ms:.0} ipc-ms {:.0} list-from {} rendered-epoch-ms {now}",
                        ms as f64 - page_ms,
                        now as f64 - page_epoch,
                        // drawn into index.html by first_screen.rs, or by the page's script
                        if args.get("prerendered") == Some(&Value::Bool(true)) { "backend" } else { "page" },
                    );
                }
                Ok(json!({"ms": ms}))
            }
            other => Err(format!("unknown command {other:?}")),
        }
    }

    fn vm(&self) -> Result<&Vm, String> {
        self.vm.as_ref().ok_or_else(|| "this window drives a native engine: there is no VM to manage".into())
    }

    /// The first screen in one answer: the engine's state and, when it is up, every container;
    /// with `since`, where the front end's event stream starts its replay so that no change after
    /// this answer is missed (a second early, for a VM clock a little behind the host's).
    async fn boot(&self) -> Result<Value, String> {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() - 1.0)
            .unwrap_or(0.0);
        let engine = self.engine().await?;
        let containers = match engine.get("up") {
            Some(Value::Bool(true)) => self.containers().await.ok(),
            _ => None,
        };
        Ok(json!({"engine": engine, "containers": containers, "since": format!("{since:.3}")}))
    }

    async fn containers(&self) -> Result<Value, String> {
        let opts = ListContainersOptionsBuilder::default().all(true).build();
        to_json(self.docker()?.list_containers(Some(opts)).await.map_err(message)?)
    }

    async fn engine(&self) -> Result<Value, String> {
        match self.docker() {
            Ok(d) => match d.version().await {
                Ok(v) => Ok(
                    json!({"up": true, "version": v.version, "api": v.api_version, "socket": self.socket, "vm": self.vm.is_some()}),
                ),
                Err(e) => Ok(json!({"up": false, "error": message(e), "socket": self.socket, "vm": self.vm.is_some()})),
            },
            Err(e) => Ok(json!({"up": false, "error": e, "socket": self.socket, "vm": self.vm.is_some()})),
        }
    }

    async fn container_action(&self, id: &str, action: &str) -> Result<Value, String> {
        let d = self.docker()?;
        match action {
            "start" => d.start_container(id, None).await,
            "stop" => d.stop_container(id, Some(StopContainerOptionsBuilder::default().t(5).build())).await,
            "restart" => d.restart_container(id, None).await,
            "pause" => d.pause_container(id).await,
            "unpause" => d.unpause_container(id).await,
            "remove" => {
                d.remove_container(id, Some(RemoveContainerOptionsBuilder::default().force(true).build())).await
            }
            other => return Err(format!("unknown container action {other:?}")),
        }
        .map_err(message)?;
        Ok(Value::Null)
    }

    /// The run dialog: create (with name, ports, env, volumes, command) and start.
    async fn run(&self, args: &Value) -> Result<Value, String> {
        let image = arg(args, "image")?.to_string();
        let cmd = match args.get("command").and_then(Value::as_str).map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) => Some(split_command(c)?),
            None => None,
        };
        let ports = port_bindings(&strings(args, "ports"))?;
        let exposed: Vec<String> = ports.keys().cloned().collect();
        let body = ContainerCreateBody {
            image: Some(image),
            cmd,
            env: Some(strings(args, "env")),
            tty: Some(true),
            open_stdin: Some(true),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(HostConfig {
                binds: Some(strings(args, "volumes")),
                port_bindings: (!ports.is_empty()).then_some(ports),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut opts = CreateContainerOptionsBuilder::default();
        if let Some(name) = args.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty()) {
            opts = opts.name(name);
        }
        let d = self.docker()?;
        let created = d.create_container(Some(opts.build()), body).await.map_err(message)?;
        if let Err(e) = d.start_container(&created.id, None).await {
            // Keep what the user made (they can read why it failed), as `docker run` does.
            return Err(message(e));
        }
        Ok(json!({"id": created.id}))
    }

    /// Volumes with the containers using each.
    async fn volumes(&self) -> Result<Value, String> {
        let d = self.docker()?;
        let list = d.list_volumes(None::<ListVolumesOptions>).await.map_err(message)?;
        let containers = d
            .list_containers(Some(ListContainersOptionsBuilder::default().all(true).build()))
            .await
            .map_err(message)?;
        let mut users: HashMap<String, Vec<String>> = HashMap::new();
        for c in &containers {
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            for m in c.mounts.iter().flatten() {
                if let Some(v) = &m.name {
                    users.entry(v.clone()).or_default().push(name.clone());
                }
            }
        }
        // Sizes come from /system/df in the API version we speak (bollard models a newer shape).
        let df = self.raw_get("/system/df").await.unwrap_or(Value::Null);
        let sizes: HashMap<String, i64> = df
            .get("Volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v.get("Name")?.as_str()?.to_string(), v.get("UsageData")?.get("Size")?.as_i64()?)))
            .collect();
        let out: Vec<Value> = list
            .volumes
            .into_iter()
            .flatten()
            .map(|v| {
                json!({
                    "name": v.name,
                    "driver": v.driver,
                    "mountpoint": v.mountpoint,
                    "created": v.created_at,
                    "labels": v.labels,
                    "size": sizes.get(&v.name),
                    "usedBy": users.get(&v.name).cloned().unwrap_or_default(),
                })
            })
            .collect();
        Ok(Value::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_commands_like_a_shell() -> Result<(), String> {
        assert_eq!(split_command("sh -c 'echo hi; sleep 1'")?, ["sh", "-c", "echo hi; sleep 1"]);
        assert_eq!(split_command("  a  \"b c\" '' ")?, ["a", "b c", ""]);
        assert!(split_command("echo 'oops").is_err());
        Ok(())
    }

    #[test]
    fn parses_port_mappings() -> Result<(), String> {
        let p = port_bindings(&["8080:80".into(), "127.0.0.1:53:53/udp".into(), "9000".into()])?;
        assert_eq!(p["80/tcp"].as_ref().map(|v| v[0].host_port.clone()), Some(Some("8080".into())));
        assert_eq!(p["53/udp"].as_ref().map(|v| v[0].host_ip.clone()), Some(Some("127.0.0.1".into())));
        assert!(p.contains_key("9000/tcp"));
        assert!(port_bindings(&["a:b".into()]).is_err());
        Ok(())
    }

    #[test]
    fn engine_errors_lose_the_client_prefix() {
        assert_eq!(message("Docker responded with status code 409: name in use"), "name in use");
        assert_eq!(message("plain"), "plain");
    }
}
