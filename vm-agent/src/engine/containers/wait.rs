//! `POST /containers/{id}/wait`: exit counts and conditions.

use std::sync::Arc;

use super::Container;

/// Waits until the container has exited at least `after + 1` times.
pub(crate) async fn wait_exit_count(c: &Container, after: u64) -> i32 {
    let mut rx = c.exits.subscribe();
    let code = rx.wait_for(|(n, _)| *n > after).await.map(|v| v.1);
    code.unwrap_or_else(|_| c.record().state.exit_code)
}

/// The `condition` of `POST /containers/{id}/wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Return at once if not running, else at exit.
    NotRunning,
    /// The next exit, even if not running now.
    NextExit,
    /// When the container is removed.
    Removed,
}

/// Resolves to the exit code when `cond` is met.
pub async fn wait(c: Arc<Container>, cond: WaitCondition) -> i32 {
    let before = c.exits.borrow().0;
    match cond {
        WaitCondition::NotRunning if !c.is_running() => c.record().state.exit_code,
        WaitCondition::NotRunning | WaitCondition::NextExit => wait_exit_count(&c, before).await,
        WaitCondition::Removed => {
            let mut rx = c.removed.subscribe();
            let _ = rx.wait_for(|r| *r).await;
            c.exits.borrow().1
        }
    }
}
