//! One network namespace made ahead, its loopback up: a container start takes it instead of
//! waiting for the kernel to build one (`unshare(CLONE_NEWNET)` and bringing `lo` up cost a few
//! milliseconds, more while another namespace is being torn down). The next one is made in the
//! background once that start is over ([`NetnsPool::refill`]): made during it, it would hold the
//! kernel's network lock (RTNL) the start's own veth and addresses wait for, and take one of the
//! CPUs it runs on. An engine that starts no container holds none.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::link::loopback_up;
use super::netns::Netns;
use super::NetError;

/// At most one ready namespace, refilled after each take.
#[derive(Debug, Default)]
pub struct NetnsPool {
    ready: Mutex<Option<Netns>>,
    filling: AtomicBool,
    taken: AtomicBool,
}

impl NetnsPool {
    /// An empty pool: the first take makes its namespace itself.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new namespace of its own with `lo` up: the one made ahead, or a fresh one. Blocking.
    /// The taker calls [`NetnsPool::refill`] when it is done.
    pub fn take(self: &Arc<Self>) -> Result<Netns, NetError> {
        self.taken.store(true, Ordering::SeqCst);
        let ready = self.ready.lock().unwrap_or_else(|p| p.into_inner()).take();
        match ready {
            Some(ns) => Ok(ns),
            None => fresh(),
        }
    }

    /// After a take: makes the next namespace on a thread of its own, unless one is being made.
    pub fn refill(self: &Arc<Self>) {
        if !self.taken.swap(false, Ordering::SeqCst) {
            return;
        }
        if self.filling.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("netns-pool".into()).spawn(move || {
            match fresh() {
                Ok(ns) => *me.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some(ns),
                Err(e) => tracing::debug!(error = %e, "making a network namespace ahead"),
            }
            me.filling.store(false, Ordering::SeqCst);
        });
        if spawned.is_err() {
            self.filling.store(false, Ordering::SeqCst);
        }
    }
}

fn fresh() -> Result<Netns, NetError> {
    let ns = Netns::create().map_err(|e| NetError::Internal(format!("creating a network namespace: {e}")))?;
    loopback_up(&ns)?;
    Ok(ns)
}
