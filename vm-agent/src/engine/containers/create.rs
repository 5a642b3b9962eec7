//! `POST /containers/create`: the request merged with the image's defaults, validated, recorded.

use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, ContainerCreateBody};

use super::host_config::{check_realtime, limits_of, unenforceable, validate_host_config};
use super::record::{ContainerRecord, State};
use super::remove::remove_anonymous_volumes;
use super::{event, health, mounts, names, network, new_container};
use crate::engine::{images, now_rfc3339, Engine, EngineError};
use crate::store::atomic;

/// Merges the request with the image's defaults, as Docker does.
fn effective_config(body: &ContainerCreateBody, image: &crate::store::StoredImage) -> (ContainerConfig, Vec<String>) {
    let img = image.config.config.clone().unwrap_or_default();
    let mut env: Vec<String> = img.env.clone().unwrap_or_default();
    for e in body.env.iter().flatten() {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let entrypoint = match &body.entrypoint {
        Some(ep) => ep.clone(),
        None => img.entrypoint.clone().unwrap_or_default(),
    };
    // An explicit entrypoint resets the image's cmd (Docker's rule).
    let cmd = match (&body.cmd, &body.entrypoint) {
        (Some(c), _) if !c.is_empty() => c.clone(),
        (_, Some(_)) => Vec::new(),
        _ => img.cmd.clone().unwrap_or_default(),
    };
    let mut labels = img.labels.clone().unwrap_or_default();
    labels.extend(body.labels.clone().unwrap_or_default());
    let config = ContainerConfig {
        hostname: body.hostname.clone(),
        domainname: body.domainname.clone(),
        user: body.user.clone().filter(|u| !u.is_empty()).or(img.user.clone()),
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        exposed_ports: body.exposed_ports.clone().or(img.exposed_ports.clone()),
        tty: body.tty,
        open_stdin: body.open_stdin,
        stdin_once: body.stdin_once,
        env: Some(env),
        cmd: Some(cmd.clone()),
        healthcheck: body.healthcheck.clone().or(img.healthcheck.clone()),
        image: body.image.clone(),
        // The image's volumes and the request's, each mount point once.
        volumes: match (body.volumes.clone(), img.volumes.clone()) {
            (None, None) => None,
            (a, b) => {
                let mut all: Vec<String> = a.unwrap_or_default().into_iter().chain(b.unwrap_or_default()).collect();
                all.sort();
                all.dedup();
                Some(all)
            }
        },
        working_dir: body.working_dir.clone().filter(|w| !w.is_empty()).or(img.working_dir.clone()),
        entrypoint: Some(entrypoint.clone()),
        labels: Some(labels),
        stop_signal: body.stop_signal.clone().or(img.stop_signal.clone()),
        stop_timeout: body.stop_timeout,
        ..Default::default()
    };
    let args = entrypoint.into_iter().chain(cmd).collect();
    (config, args)
}

/// `POST /containers/create`.
pub async fn create(
    engine: &Arc<Engine>,
    name: Option<&str>,
    platform: Option<&str>,
    body: ContainerCreateBody,
) -> Result<(String, Vec<String>), EngineError> {
    let image_name = body
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| EngineError::InvalidArgument("config.Image is required".into()))?;
    let mut image = images::resolve(engine, &image_name)?;
    // Another stored platform of a multi-platform image serves `--platform` without a pull.
    if let Some(wanted) =
        platform.filter(|p| !p.is_empty()).map(crate::engine::platform::Platform::parse).transpose()?
    {
        if let Some(m) = crate::engine::platform_group::for_platform(&engine.store, &image, &wanted) {
            image = m;
        }
    }
    let platform_warning = check_platform(&image_name, &image.config, platform.filter(|p| !p.is_empty()))?;
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) => {
            let n = n.strip_prefix('/').unwrap_or(n);
            if !names::valid(n) {
                return Err(EngineError::InvalidArgument(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            n.to_string()
        }
        None => loop {
            let n = names::random();
            if engine.containers.get(&n).is_err() {
                break n;
            }
        },
    };
    let mut host = body.host_config.clone().unwrap_or_default();
    super::host_paths::translate(&mut host, engine.config.host_paths);
    validate_host_config(&host)?;
    health::validate(body.healthcheck.as_ref())?;
    mounts::validate(&host)?;
    super::links::validate(engine, host.links.as_deref().unwrap_or_default())?;
    let (config, args) = effective_config(&body, &image);
    if args.is_empty() {
        return Err(EngineError::InvalidArgument("no command specified".into()));
    }
    if let Some(other) = engine.containers.all().into_iter().find(|c| c.with_record(|r| r.name == name)) {
        return Err(name_conflict(&name, &other.id));
    }
    network::check_hostname(&config)?;
    let task = body.labels.as_ref().is_some_and(|l| l.contains_key("com.docker.swarm.task.id"));
    let networks = network::endpoints_at_create(engine, &name, task, &host, body.networking_config.as_ref())?;
    let mounts = mounts::resolve(engine, &config, &host)?;
    check_realtime(&engine.cgroups, &limits_of(&host))?;
    let mut warnings = unenforceable(&engine.cgroups, &limits_of(&host));
    warnings.extend(platform_warning);
    let id = hex::encode(rand::random::<[u8; 32]>());
    let record = ContainerRecord {
        id: id.clone(),
        name: name.clone(),
        created: now_rfc3339(),
        image: image_name,
        image_id: image.record.id.clone(),
        args,
        config,
        host_config: host,
        state: State::default(),
        restart_count: 0,
        stopped_by_user: false,
        was_running: false,
        mounts,
        networks,
        ports: Vec::new(),
    };
    let dir = engine.containers.dir.join(&id);
    {
        let mut map = engine.containers.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(other) = map.values().find(|c| c.record().name == name) {
            let err = name_conflict(&name, &other.id);
            drop(map);
            remove_anonymous_volumes(engine, &record, None);
            return Err(err);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::Internal(format!("creating container directory: {e}")))?;
        atomic::replace_json(&dir.join("container.json"), &record)
            .map_err(|e| EngineError::Internal(format!("saving container: {e}")))?;
        engine.containers.sync.request();
        let c = Arc::new(new_container(dir, record.clone(), engine.containers.sync.clone()));
        super::early_cgroup::prepare(engine, &c);
        map.insert(id.clone(), c);
    }
    event(engine, "create", &record, &[]);
    Ok((id, warnings))
}

fn name_conflict(name: &str, other: &str) -> EngineError {
    EngineError::Conflict(format!(
        "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

/// `--platform`: the image must be of the platform asked for. A mismatch is a 404, as in dockerd,
/// so the docker CLI pulls the right one and tries again. Without `--platform`, an image of
/// another architecture than the engine's gets dockerd's warning (it runs through an emulator).
fn check_platform(
    name: &str,
    config: &crate::store::model::ImageConfigFile,
    wanted: Option<&str>,
) -> Result<Option<String>, EngineError> {
    use crate::engine::platform::{self, Platform};
    let actual = platform::of_image(config);
    let Some(wanted) = wanted else {
        let host = Platform::host();
        return Ok((!config.architecture.is_empty() && !host.matches(config)).then(|| {
            format!(
                "The requested image's platform ({actual}) does not match the detected host platform ({}) and no specific platform was requested",
                host.text()
            )
        }));
    };
    if Platform::parse(wanted)?.matches(config) {
        Ok(None)
    } else {
        Err(EngineError::NotFound(format!(
            "image with reference {name} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
        )))
    }
}
