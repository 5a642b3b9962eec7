//! The engine's event bus: every state change is published once here and fanned out to `/events`
//! subscribers; a bounded backlog serves `since=` queries.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bollard_stubs::models::{EventActor, EventMessage, EventMessageScopeEnum, EventMessageTypeEnum};
use tokio::sync::broadcast;

const BACKLOG: usize = 1024;

/// Publishes events and keeps the recent ones.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<EventMessage>,
    backlog: Mutex<VecDeque<EventMessage>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self { tx: broadcast::channel(BACKLOG).0, backlog: Mutex::new(VecDeque::with_capacity(BACKLOG)) }
    }
}

impl EventBus {
    /// Publishes an event about object `id` of kind `typ`.
    pub fn publish(&self, typ: EventMessageTypeEnum, action: &str, id: &str, attributes: HashMap<String, String>) {
        self.publish_scoped(typ, action, id, attributes, EventMessageScopeEnum::LOCAL);
    }

    /// Publishes an event about swarm object `id` (scope `swarm`) called `name`.
    pub fn swarm(&self, typ: EventMessageTypeEnum, action: &str, id: &str, name: &str) {
        let attrs = HashMap::from([("name".to_string(), name.to_string())]);
        self.publish_scoped(typ, action, id, attrs, EventMessageScopeEnum::SWARM);
    }

    fn publish_scoped(
        &self,
        typ: EventMessageTypeEnum,
        action: &str,
        id: &str,
        attributes: HashMap<String, String>,
        scope: EventMessageScopeEnum,
    ) {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or(0);
        let msg = EventMessage {
            typ: Some(typ),
            action: Some(action.to_string()),
            actor: Some(EventActor { id: Some(id.to_string()), attributes: Some(attributes) }),
            scope: Some(scope),
            time: Some(now.timestamp()),
            time_nano: Some(nanos),
        };
        {
            let mut b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
            if b.len() == BACKLOG {
                b.pop_front();
            }
            b.push_back(msg.clone());
        }
        let _ = self.tx.send(msg);
    }

    /// Publishes an image event; `name` becomes the `name` attribute Docker sets.
    pub fn image(&self, action: &str, id: &str, name: &str) {
        let attrs = HashMap::from([("name".to_string(), name.to_string())]);
        self.publish(EventMessageTypeEnum::IMAGE, action, id, attrs);
    }

    /// Subscribes to future events, returning the backlog recorded at or after `since_nanos`.
    pub fn subscribe(&self, since_nanos: Option<i64>) -> (Vec<EventMessage>, broadcast::Receiver<EventMessage>) {
        let b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let past = match since_nanos {
            Some(since) => b.iter().filter(|m| m.time_nano.unwrap_or(0) >= since).cloned().collect(),
            None => Vec::new(),
        };
        (past, rx)
    }
}

/// Publishes a network event (`create`, `destroy`, `connect`, `disconnect`).
pub fn network_event(
    engine: &super::Engine,
    action: &str,
    net: &super::networks::NetworkRecord,
    container: Option<&str>,
) {
    let mut attrs = HashMap::from([("name".to_string(), net.name.clone()), ("type".to_string(), "bridge".to_string())]);
    if let Some(c) = container {
        attrs.insert("container".into(), c.to_string());
    }
    engine.events.publish(EventMessageTypeEnum::NETWORK, action, &net.id, attrs);
}

/// Publishes a volume event (`create`, `destroy`).
pub fn volume_event(engine: &super::Engine, action: &str, name: &str) {
    let attrs = HashMap::from([("driver".to_string(), "local".to_string())]);
    engine.events.publish(EventMessageTypeEnum::VOLUME, action, name, attrs);
}
