//! A container start as a transaction: its steps in order, and a failure at any step undoes the
//! steps before it in reverse order, each exactly once. A step that fails leaves nothing behind
//! itself (it cleans its own partial work), so the runner never undoes the failing step.
//!
//! The steps are an interface ([`StartSteps`]): the engine implements it with the real thing
//! (`start.rs`), the unit tests below with a recording double that can fail at any step.

/// One step of a container start, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The bundle's root, upper and work directories; the image's layers as the overlay's lower
    /// directories (the overlay itself is mounted inside the container's mount namespace).
    Layers,
    /// The container's cgroup(s) with its limits.
    Cgroup,
    /// Pipes and the output hub (attach clients, the log) for a container without a terminal.
    Stdio,
    /// The runtime child, started early: it joins the cgroups (which can wait for an RCU grace
    /// period) while the next steps run, then waits for the process step.
    Launch,
    /// Network namespace, endpoints (addresses, the veths planned), published ports, embedded DNS.
    Network,
    /// `/etc/hosts`, `resolv.conf` and `hostname` in the bundle.
    EtcFiles,
    /// Option volumes mounted (reference-counted between containers), image content copied
    /// into new volumes.
    Volumes,
    /// The OCI runtime spec in `config.json`.
    Bundle,
    /// The go: the runtime child makes the container's namespaces and PID 1 from the bundle, and
    /// that process builds the container's root, then waits for the process step.
    Build,
    /// The network's veth pairs, addresses and routes, made while the container's root is built.
    Wiring,
    /// The container's command runs (and its terminal's hub starts).
    Process,
    /// The record says running; the exit monitor and health checks watch it.
    Running,
}

impl Step {
    /// Every step, in the order a start runs them.
    pub const ALL: [Step; 12] = [
        Step::Layers,
        Step::Cgroup,
        Step::Stdio,
        Step::Launch,
        Step::Network,
        Step::EtcFiles,
        Step::Volumes,
        Step::Bundle,
        Step::Build,
        Step::Wiring,
        Step::Process,
        Step::Running,
    ];
}

/// The steps of a start: `apply` does one (and undoes its own partial work if it fails), `undo`
/// reverses one that succeeded.
pub(crate) trait StartSteps {
    /// Why a step failed.
    type Error;
    /// Does `step`.
    async fn apply(&mut self, step: Step) -> Result<(), Self::Error>;
    /// Reverses `step`, which succeeded earlier in this start.
    async fn undo(&mut self, step: Step);
}

/// Runs every step; on a failure, undoes the completed steps in reverse and returns the step
/// that failed with its error.
pub(crate) async fn run<S: StartSteps>(steps: &mut S) -> Result<(), (Step, S::Error)> {
    let mut done: Vec<Step> = Vec::with_capacity(Step::ALL.len());
    for step in Step::ALL {
        let started = std::time::Instant::now();
        let applied = steps.apply(step).await;
        // Where a start's time goes (`SKIFF_LOG=skiff_agent::engine::containers=debug`).
        tracing::debug!(?step, ms = started.elapsed().as_secs_f64() * 1000.0, "start step");
        if let Err(e) = applied {
            while let Some(earlier) = done.pop() {
                steps.undo(earlier).await;
            }
            return Err((step, e));
        }
        done.push(step);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call; fails at one step.
    #[derive(Default)]
    struct Recording {
        fail_at: Option<Step>,
        calls: Vec<(&'static str, Step)>,
    }

    impl StartSteps for Recording {
        type Error = String;

        async fn apply(&mut self, step: Step) -> Result<(), String> {
            self.calls.push(("apply", step));
            if self.fail_at == Some(step) {
                return Err(format!("{step:?} failed"));
            }
            Ok(())
        }

        async fn undo(&mut self, step: Step) {
            self.calls.push(("undo", step));
        }
    }

    #[tokio::test]
    async fn a_start_that_succeeds_undoes_nothing() {
        let mut r = Recording::default();
        assert_eq!(run(&mut r).await, Ok(()));
        let expected: Vec<_> = Step::ALL.iter().map(|s| ("apply", *s)).collect();
        assert_eq!(r.calls, expected);
    }

    #[tokio::test]
    async fn a_failure_at_each_step_undoes_exactly_the_earlier_steps_in_reverse_once() {
        for (k, failing) in Step::ALL.iter().enumerate() {
            let mut r = Recording { fail_at: Some(*failing), ..Default::default() };
            let result = run(&mut r).await;
            assert_eq!(result, Err((*failing, format!("{failing:?} failed"))));
            let mut expected: Vec<_> = Step::ALL[..=k].iter().map(|s| ("apply", *s)).collect();
            expected.extend(Step::ALL[..k].iter().rev().map(|s| ("undo", *s)));
            assert_eq!(r.calls, expected, "failing at {failing:?}");
            // The failing step is never undone by the runner: it cleaned up after itself.
            assert!(!r.calls.contains(&("undo", *failing)), "failing at {failing:?}");
        }
    }
}
