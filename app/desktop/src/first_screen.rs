//! The first screen, drawn by the backend: when the window opens on the container list and the
//! engine is up, `index.html` is served with that list already in it, so WebKit paints it as it
//! parses the page, the way a static page is painted, instead of after the page's scripts have
//! loaded, asked for the list and built it (bench/desktop.sh: the first render). The markup is
//! ui/containers.js's, row for row; the tests below run that module under Node and require the
//! two to be identical. app.js then takes the list over from the same `boot` answer.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;
use tauri::utils::assets::{AssetKey, AssetsIter, CspHash};
use tauri::{Assets, Runtime};

/// How long the page's request may wait for the engine's first answer: the main thread waits
/// with it, and past this the page draws the list itself, as it does without this module.
const WAIT: Duration = Duration::from_millis(200);

/// The early `boot` answer, handed from the task that asks the engine to the page's first request.
pub struct FirstScreen {
    view: String,
    boot: Mutex<Slot>,
    ready: Condvar,
}

enum Slot {
    Waiting,
    Ready(Option<Value>),
    Taken,
}

impl FirstScreen {
    /// For a window that opens on `view`.
    pub fn new(view: &str) -> Self {
        Self { view: view.to_string(), boot: Mutex::new(Slot::Waiting), ready: Condvar::new() }
    }

    /// The engine's `boot` answer (`None` when it failed).
    pub fn offer(&self, boot: Option<Value>) {
        if let Ok(mut slot) = self.boot.lock() {
            if matches!(*slot, Slot::Waiting) {
                *slot = Slot::Ready(boot);
            }
        }
        self.ready.notify_all();
    }

    /// The answer for the first page load, waiting up to `wait` for it; later loads (a reload
    /// would show a stale list) and an answer that comes too late get `None`.
    fn take(&self, wait: Duration) -> Option<Value> {
        let slot = self.boot.lock().ok()?;
        let (mut slot, _) = self.ready.wait_timeout_while(slot, wait, |s| matches!(s, Slot::Waiting)).ok()?;
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Ready(boot) => boot,
            Slot::Waiting | Slot::Taken => None,
        }
    }
}

/// Makes the app's first `index.html` the one [`page`] draws.
pub fn serve<R: Runtime>(context: &mut tauri::Context<R>, first: Arc<FirstScreen>) {
    let assets = context.set_assets(Box::new(NoAssets));
    context.set_assets(Box::new(WithFirstScreen { assets, first }));
}

/// Tauri's embedded assets, with the first `index.html` drawn by [`page`].
struct WithFirstScreen<R: Runtime> {
    assets: Box<dyn Assets<R>>,
    first: Arc<FirstScreen>,
}

/// Stands in for the embedded assets while [`serve`] moves them into [`WithFirstScreen`].
struct NoAssets;

impl<R: Runtime> Assets<R> for NoAssets {
    fn get(&self, _: &AssetKey) -> Option<Cow<'_, [u8]>> {
        None
    }

    fn iter(&self) -> Box<AssetsIter<'_>> {
        Box::new(std::iter::empty())
    }

    fn csp_hashes(&self, _: &AssetKey) -> Box<dyn Iterator<Item = CspHash<'_>> + '_> {
        Box::new(std::iter::empty())
    }
}

impl<R: Runtime> Assets<R> for WithFirstScreen<R> {
    fn get(&self, key: &AssetKey) -> Option<Cow<'_, [u8]>> {
        let asset = self.assets.get(key)?;
        if key.as_ref() != "/index.html" {
            return Some(asset);
        }
        let boot = self.first.take(WAIT);
        tracing::debug!(ready = boot.is_some(), "the first index.html");
        let drawn = boot.and_then(|boot| {
            let html = std::str::from_utf8(&asset).ok()?;
            page(html, &self.first.view, &boot)
        });
        Some(drawn.map_or(asset, |html| Cow::Owned(html.into_bytes())))
    }

    fn iter(&self) -> Box<AssetsIter<'_>> {
        self.assets.iter()
    }

    fn csp_hashes(&self, html_path: &AssetKey) -> Box<dyn Iterator<Item = CspHash<'_>> + '_> {
        self.assets.csp_hashes(html_path)
    }
}

/// `index.html` with the container list of `boot` in it, shown as app.js would show it; `None`
/// when the window opens elsewhere, the engine is down or there is no container to list (the
/// page's own script draws those screens). The page is as Tauri embeds it (its HTML serialiser
/// may write `hidden` as `hidden=""`): the elements are found by their ids.
pub fn page(html: &str, view: &str, boot: &Value) -> Option<String> {
    let engine = boot.get("engine")?;
    let containers = boot.get("containers")?.as_array()?;
    if view != "containers" || engine.get("up") != Some(&Value::Bool(true)) || containers.is_empty() {
        return None;
    }
    let drawn = draw(html, engine, containers);
    if drawn.is_none() {
        tracing::warn!("index.html has changed: the first list is left to the page");
    }
    drawn
}

fn draw(html: &str, engine: &Value, containers: &[Value]) -> Option<String> {
    let mut edits = vec![
        // The view is shown,
        edit_tag(html, r#"<section id="containers" "#, |tag| {
            tag.replacen(r#" hidden="""#, "", 1).replacen(" hidden", "", 1)
        })?,
        // its button in the nav is the current one,
        edit_tag(html, r#"<button class="nav-item" data-view="containers" "#, |tag| {
            format!(r#"{} aria-current="page">"#, &tag[..tag.len() - 1])
        })?,
        // the list is in it, marked for the page's last script and app.js,
        edit_tag(html, r#"<div id="container-list" "#, |tag| {
            format!("{} data-prerendered>{}", &tag[..tag.len() - 1], container_groups(containers))
        })?,
    ];
    // and the engine's version is in the nav.
    let (_, state_end) = find_tag(html, r#"<div id="engine-state" "#)?;
    let text_end = state_end + html[state_end..].find("</div>")?;
    let version = format!("Engine {} · API {}", esc_field(engine, "version"), esc_field(engine, "api"));
    edits.push((state_end..text_end, version));
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = html.to_string();
    for (range, text) in edits {
        out.replace_range(range, &text);
    }
    Some(out)
}

/// Where the tag that starts with `opening` is: its start, and the end of its `>`.
fn find_tag(html: &str, opening: &str) -> Option<(usize, usize)> {
    let start = html.find(opening)?;
    let end = start + html[start..].find('>')? + 1;
    Some((start, end))
}

/// The tag that starts with `opening`, rewritten by `rewrite` (given the whole tag).
fn edit_tag(html: &str, opening: &str, rewrite: impl Fn(&str) -> String) -> Option<(std::ops::Range<usize>, String)> {
    let (start, end) = find_tag(html, opening)?;
    Some((start..end, rewrite(&html[start..end])))
}

/// JavaScript's `String(v ?? "")` for the values a container list holds.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// containers.js's `esc`: what the engine says, safe in text and in quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' | '<' | '>' | '"' | '\'' => out.push_str(&format!("&#{};", ch as u32)),
            _ => out.push(ch),
        }
    }
    out
}

/// `esc(c[key])`.
fn esc_field(c: &Value, key: &str) -> String {
    esc(&text(field(c, key)))
}

/// What containers.js's `byName` orders by: case-insensitive, then exact, in JavaScript's order
/// (UTF-16 units).
fn name_key(name: &str) -> (Vec<u16>, Vec<u16>) {
    (name.to_lowercase().encode_utf16().collect(), name.encode_utf16().collect())
}

fn id_of(c: &Value) -> String {
    text(c.get("Id").unwrap_or(&Value::Null))
}

/// The first 12 characters of an id (hex digits: JavaScript's `slice(0, 12)`).
fn short_id(c: &Value) -> String {
    id_of(c).chars().take(12).collect()
}

/// containers.js's `containerName`.
fn container_name(c: &Value) -> String {
    let first = c.get("Names").and_then(|n| n.get(0)).map(text).filter(|n| !n.is_empty());
    let name = first.unwrap_or_else(|| short_id(c));
    name.strip_prefix('/').map(str::to_string).unwrap_or(name)
}

fn field<'a>(c: &'a Value, key: &str) -> &'a Value {
    c.get(key).unwrap_or(&Value::Null)
}

/// JavaScript truthiness, for the fields containers.js tests.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// containers.js's `portLinks`.
fn port_links(c: &Value) -> String {
    let mut seen = HashSet::new();
    let mut out = String::new();
    for p in c.get("Ports").and_then(Value::as_array).into_iter().flatten() {
        let (public, kind) = (field(p, "PublicPort"), field(p, "Type"));
        if !truthy(public) || !seen.insert(format!("{}/{}", text(public), text(kind))) {
            continue;
        }
        if kind.as_str() == Some("tcp") {
            out.push_str(&format!(
                r#"<a href="http://localhost:{pub_}" data-action="link" title="Open in your browser (→ {private}/tcp)">localhost:{pub_}</a>"#,
                pub_ = esc(&text(public)),
                private = esc_field(p, "PrivatePort"),
            ));
        } else {
            out.push_str(&format!(r#"<span class="muted">{}/{}</span>"#, esc(&text(public)), esc(&text(kind))));
        }
    }
    out
}

/// containers.js's `containerActions`.
fn container_actions(c: &Value) -> String {
    let name = esc(&container_name(c));
    let state = field(c, "State").as_str();
    let (running, paused) = (state == Some("running"), state == Some("paused"));
    let button = |label: &str, action: &str, disabled: bool, danger: bool, title: Option<&str>| {
        let title = title.map_or_else(|| format!("{label} {name}"), str::to_string);
        format!(
            r#"<button data-action="{action}" title="{title}"{}{}>{label}</button>"#,
            if danger { r#" class="danger""# } else { "" },
            if disabled { " disabled" } else { "" },
        )
    };
    let buttons = [
        if running || paused {
            button("Stop", "stop", false, false, None)
        } else {
            button("Start", "start", false, false, None)
        },
        button("Restart", "restart", !running, false, None),
        if paused {
            button("Resume", "unpause", false, false, None)
        } else {
            button("Pause", "pause", !running, false, None)
        },
        button("Open", "open", false, false, Some("Logs, terminal and inspect")),
        button("Delete", "remove", false, true, None),
    ];
    format!(r#"<td class="actions">{}</td>"#, buttons.concat())
}

/// containers.js's `containerRow`, with no row selected (no drawer is open yet).
fn container_row(c: &Value) -> String {
    let name = esc(&container_name(c));
    let state = esc_field(c, "State");
    format!(
        concat!(
            r#"<tr class="row" data-id="{id}" data-name="{name}" tabindex="0">"#,
            r#"<td><div class="name">{name}</div><div class="muted small">{short}</div></td>"#,
            r#"<td><span class="badge {state}">{state}</span><div class="muted small">{status}</div></td>"#,
            r#"<td>{image}</td><td class="ports">{ports}</td><td class="cpu">–</td><td class="mem">–</td>"#,
            "{actions}</tr>"
        ),
        id = esc_field(c, "Id"),
        name = name,
        short = esc(&short_id(c)),
        state = state,
        status = esc_field(c, "Status"),
        image = esc_field(c, "Image"),
        ports = port_links(c),
        actions = container_actions(c),
    )
}

/// containers.js's `containerGroups`: one table per compose project, by name, loose containers
/// last; each sorted by name.
fn container_groups(containers: &[Value]) -> String {
    let mut groups: Vec<(String, Vec<&Value>)> = Vec::new();
    for c in containers {
        let project = c.get("Labels").and_then(|l| l.get("com.docker.compose.project")).map(text).unwrap_or_default();
        match groups.iter_mut().find(|(p, _)| *p == project) {
            Some((_, members)) => members.push(c),
            None => groups.push((project, vec![c])),
        }
    }
    groups.sort_by_cached_key(|(project, _)| (project.is_empty(), name_key(project)));
    let head = ["Name", "State", "Image", "Ports", "CPU", "Memory", ""].map(|t| format!("<th>{t}</th>")).concat();
    let mut out = String::new();
    for (project, mut members) in groups {
        members.sort_by_cached_key(|c| name_key(&container_name(c)));
        let title =
            if project.is_empty() { "Containers".to_string() } else { format!("Compose project: {}", esc(&project)) };
        let rows: String = members.into_iter().map(container_row).collect();
        out.push_str(&format!(
            r#"<div class="group" data-project="{}"><h2>{title}</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"#,
            esc(if project.is_empty() { "-" } else { &project }),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const INDEX: &str = include_str!("../../../ui/index.html");

    /// Containers that take every branch of the markup: compose projects (sorted, and loose ones
    /// last), every state's buttons, tcp links and udp ports with duplicates, a port that is not
    /// published, a name missing, and text that must be escaped.
    fn fixture() -> Value {
        let c = |id: &str, name: Option<&str>, state: &str, project: Option<&str>, ports: Value| {
            let mut c = json!({
                "Id": id, "Image": "busybox:latest", "State": state, "Status": format!("{state} for a while"),
                "Ports": ports, "Labels": {},
            });
            if let Some(name) = name {
                c["Names"] = json!([format!("/{name}")]);
            }
            if let Some(p) = project {
                c["Labels"]["com.docker.compose.project"] = json!(p);
            }
            c
        };
        let web = json!([
            {"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "0.0.0.0"},
            {"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "::"},
            {"PrivatePort": 53, "PublicPort": 5353, "Type": "udp"},
            {"PrivatePort": 9000, "Type": "tcp"},
        ]);
        json!([
            c("b2c3d4e5f6a7b8c9d0e1", Some("zeta"), "running", None, json!([])),
            c("a1b2c3d4e5f6a7b8c9d0", Some("Alpha"), "exited", None, json!(null)),
            c("c3d4e5f6a7b8c9d0e1f2", Some("web"), "running", Some("shop"), web),
            c("d4e5f6a7b8c9d0e1f2a3", Some("worker"), "paused", Some("shop"), json!([])),
            c("e5f6a7b8c9d0e1f2a3b4", None, "created", Some("Blog<&>\"'"), json!([])),
            c("f6a7b8c9d0e1f2a3b4c5", Some("alpha"), "restarting", None, json!([])),
            {"Id": "0a1b2c3d4e5f6a7b8c9d", "Names": ["/x<img src=x>"], "Image": "a\"b", "State": "dead", "Status": null},
        ])
    }

    /// ui/containers.js's markup for `list`, under Node.
    fn drawn_by_the_page(list: &Value) -> String {
        let module = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/containers.js");
        let script = format!(
            "import {{ pathToFileURL }} from 'node:url'; const m = await import(pathToFileURL({}));
             process.stdout.write(m.containerGroups({list}, null));",
            serde_json::to_string(&module.display().to_string()).unwrap_or_default(),
        );
        let out = std::process::Command::new("node")
            .args(["--input-type=module", "-e", &script])
            .output()
            .unwrap_or_else(|e| panic!("node (scripts/install-deps.sh installs it): {e}"));
        assert!(out.status.success(), "node: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap_or_default()
    }

    #[test]
    fn the_backend_draws_the_list_as_the_page_does() {
        let list = fixture();
        let ours = container_groups(list.as_array().map(Vec::as_slice).unwrap_or_default());
        assert!(ours.contains(r#"data-project="shop""#) && ours.contains("&#60;img src=x&#62;"), "{ours}");
        assert_eq!(ours, drawn_by_the_page(&list));
    }

    #[test]
    fn the_first_page_holds_the_list_and_the_engine() {
        let boot = json!({"engine": {"up": true, "version": "0.9", "api": "1.50"}, "containers": fixture()});
        let drawn = page(INDEX, "containers", &boot).expect("drawn");
        assert!(drawn.contains(r#"<section id="containers" class="view">"#));
        assert!(drawn.contains("Engine 0.9 · API 1.50"));
        assert!(drawn.contains(r#"data-prerendered><div class="group" data-project="Blog"#), "compose projects first");
        // Only what the page would show changed: the page's scripts (and so their CSP hashes) are intact.
        let scripts = |html: &str| {
            html.split("<script")
                .skip(1)
                .filter_map(|s| s.split("</script>").next())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(scripts(&drawn).len(), 3);
        assert_eq!(scripts(&drawn), scripts(INDEX));
    }

    #[test]
    fn the_page_as_tauri_embeds_it_is_drawn_too() {
        // tauri-codegen parses and re-serialises each HTML asset (adding nonces to its scripts).
        let embedded = INDEX
            .replace(" hidden>", r#" hidden="">"#)
            .replace("<script>", r#"<script nonce="__TAURI_SCRIPT_NONCE__">"#);
        let boot = json!({"engine": {"up": true, "version": "0.9", "api": "1.50"}, "containers": fixture()});
        let drawn = page(&embedded, "containers", &boot).expect("drawn");
        assert!(drawn.contains(r#"<section id="containers" class="view">"#));
        assert!(drawn.contains(r#"<section id="images" class="view" hidden="">"#));
        assert!(drawn.contains(r#"data-view="containers" title="Containers (Ctrl+1)" aria-current="page">"#));
    }

    #[test]
    fn other_screens_are_left_to_the_page() {
        let up = |containers: Value| json!({"engine": {"up": true, "version": "1", "api": "1.50"}, "containers": containers});
        assert!(page(INDEX, "images", &up(fixture())).is_none());
        assert!(page(INDEX, "containers", &up(json!([]))).is_none());
        assert!(page(INDEX, "containers", &json!({"engine": {"up": false}, "containers": null})).is_none());
        assert!(page("<html></html>", "containers", &up(fixture())).is_none());
    }

    #[test]
    fn only_the_first_load_waits_for_the_engine() {
        let first = FirstScreen::new("containers");
        assert_eq!(first.take(Duration::from_millis(10)), None, "no answer yet: the page draws");
        let first = Arc::new(FirstScreen::new("containers"));
        let offer = std::thread::spawn({
            let first = first.clone();
            move || first.offer(Some(json!({"engine": {}})))
        });
        assert_eq!(first.take(Duration::from_secs(10)), Some(json!({"engine": {}})));
        let _ = offer.join();
        assert_eq!(first.take(Duration::from_millis(10)), None, "a reload gets the page as it is");
    }
}
