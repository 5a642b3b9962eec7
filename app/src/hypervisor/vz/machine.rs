//! A running Virtualization.framework machine (macOS only; type-checked in CI, never run here):
//! the `VZVirtualMachine` lives on its own dispatch queue, and every call to it is made there;
//! results come back through channels. vsock: host→guest with `connectToPort`, guest→host through
//! a `VZVirtioSocketListener` whose delegate hands each accepted connection's socket to
//! [`HostListener`](crate::vsock::HostListener). Each connection's descriptor is duplicated, so
//! the stream outlives the framework's connection object.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use block2::RcBlock;
use dispatch2::{DispatchQueue, DispatchRetained};
use objc2::rc::Retained;
use objc2::runtime::{NSObject, NSObjectProtocol, ProtocolObject};
use objc2::{define_class, msg_send, AllocAnyThread, DefinedClass};
use objc2_foundation::NSError;
use objc2_virtualization::{
    VZVirtioSocketConnection, VZVirtioSocketDevice, VZVirtioSocketListener, VZVirtioSocketListenerDelegate,
    VZVirtualMachine, VZVirtualMachineState,
};
use tokio::sync::{mpsc, oneshot};

use super::native::{configuration, host_facts};
use super::plan::plan;
use crate::hypervisor::{Exit, Hypervisor, RunningVm, VmError, VmSpec};
use crate::vsock::{GuestStream, Vsock};

/// An Objective-C object that is only ever touched on the VM's queue: moving it into a closure
/// that runs there is sound although the type is not `Send`.
#[derive(Debug)]
struct OnQueue<T>(T);
// SAFETY: see the type's documentation; every use is inside `queue.exec_async`.
unsafe impl<T> Send for OnQueue<T> {}
// SAFETY: as above; shared references are only dereferenced on the queue.
unsafe impl<T> Sync for OnQueue<T> {}

impl<T> OnQueue<T> {
    /// The object (a method, so closures capture the wrapper, not its field).
    fn get(&self) -> &T {
        &self.0
    }
}

fn describe(err: *mut NSError) -> String {
    // SAFETY: the framework passes either null or a valid NSError for the duration of the call.
    match unsafe { err.as_ref() } {
        Some(e) => e.localizedDescription().to_string(),
        None => "unknown error".into(),
    }
}

/// Runs `f` with the machine on its queue and returns its result.
async fn on_queue<R: Send + 'static>(
    queue: &DispatchQueue,
    vm: &Arc<OnQueue<Retained<VZVirtualMachine>>>,
    f: impl FnOnce(&VZVirtualMachine) -> R + Send + 'static,
) -> Result<R, VmError> {
    let (tx, rx) = oneshot::channel();
    let vm = vm.clone();
    queue.exec_async(move || {
        let _ = tx.send(f(&vm.0));
    });
    rx.await.map_err(|_| VmError::Failed("the VM's queue dropped a request".into()))
}

/// A completion handler that sends its outcome once.
fn completion(tx: oneshot::Sender<Result<(), String>>) -> RcBlock<dyn Fn(*mut NSError)> {
    let tx = Mutex::new(Some(tx));
    RcBlock::new(move |err: *mut NSError| {
        let outcome = if err.is_null() { Ok(()) } else { Err(describe(err)) };
        if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(outcome);
        }
    })
}

fn duplicate(connection: &VZVirtioSocketConnection) -> std::io::Result<tokio::net::UnixStream> {
    // SAFETY: the connection owns a valid socket descriptor while it is alive; dup gives us our own.
    let fd = unsafe { libc::dup(connection.fileDescriptor()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let std_stream = std::os::unix::net::UnixStream::from(owned);
    std_stream.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(std_stream)
}

/// What the delegate keeps: where accepted connections go.
struct ListenerIvars {
    accepted: mpsc::UnboundedSender<tokio::net::UnixStream>,
}

define_class!(
    // SAFETY: NSObject has no subclassing requirements, and this class implements no Drop.
    #[unsafe(super(NSObject))]
    #[name = "SkiffVsockListenerDelegate"]
    #[ivars = ListenerIvars]
    struct ListenerDelegate;

    unsafe impl NSObjectProtocol for ListenerDelegate {}

    unsafe impl VZVirtioSocketListenerDelegate for ListenerDelegate {
        #[unsafe(method(listener:shouldAcceptNewConnection:fromSocketDevice:))]
        fn should_accept(
            &self,
            _listener: &VZVirtioSocketListener,
            connection: &VZVirtioSocketConnection,
            _device: &VZVirtioSocketDevice,
        ) -> bool {
            match duplicate(connection) {
                Ok(stream) => self.ivars().accepted.send(stream).is_ok(),
                Err(e) => {
                    tracing::warn!(error = %e, "a guest vsock connection could not be taken over");
                    false
                }
            }
        }
    }
);

impl ListenerDelegate {
    fn new(accepted: mpsc::UnboundedSender<tokio::net::UnixStream>) -> Retained<Self> {
        let this = Self::alloc().set_ivars(ListenerIvars { accepted });
        // SAFETY: NSObject's init on a freshly allocated instance with its ivars set.
        unsafe { msg_send![super(this), init] }
    }
}

/// The machine's vsock device, reached through its queue.
pub struct VzSockets {
    queue: DispatchRetained<DispatchQueue>,
    vm: Arc<OnQueue<Retained<VZVirtualMachine>>>,
    /// Listeners and their delegates, kept alive while the machine runs (the framework holds the
    /// delegate weakly).
    listeners: Mutex<Vec<OnQueue<(Retained<VZVirtioSocketListener>, Retained<ListenerDelegate>)>>>,
}

impl std::fmt::Debug for VzSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VzSockets")
    }
}

fn socket_device(vm: &VZVirtualMachine) -> Option<Retained<VZVirtioSocketDevice>> {
    // SAFETY: called on the VM's queue, as the framework requires.
    let devices = unsafe { vm.socketDevices() };
    devices.firstObject().and_then(|d| d.downcast::<VZVirtioSocketDevice>().ok())
}

impl VzSockets {
    /// Connects to guest `port`.
    pub async fn connect(&self, port: u32) -> std::io::Result<Box<dyn GuestStream>> {
        let (tx, rx) = oneshot::channel::<std::io::Result<tokio::net::UnixStream>>();
        let vm = self.vm.clone();
        self.queue.exec_async(move || {
            let Some(device) = socket_device(&vm.0) else {
                let _ = tx.send(Err(std::io::Error::other("the VM has no vsock device")));
                return;
            };
            let tx = Mutex::new(Some(tx));
            let block = RcBlock::new(move |conn: *mut VZVirtioSocketConnection, err: *mut NSError| {
                // SAFETY: the framework passes a valid connection or null for the call's duration.
                let outcome = match unsafe { conn.as_ref() } {
                    Some(c) if err.is_null() => duplicate(c),
                    _ => Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, describe(err))),
                };
                if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(outcome);
                }
            });
            // SAFETY: on the VM's queue; the block lives until the framework releases it.
            unsafe { device.connectToPort_completionHandler(port, &block) };
        });
        let stream = rx.await.map_err(|_| std::io::Error::other("the VM's queue dropped a connect"))??;
        Ok(Box::new(stream))
    }

    /// Accepts the guest's connections to host `port`.
    pub fn listen(&self, port: u32) -> std::io::Result<mpsc::UnboundedReceiver<tokio::net::UnixStream>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let delegate = ListenerDelegate::new(tx);
        // SAFETY: a plain allocation; configured below on the VM's queue.
        let listener = unsafe { VZVirtioSocketListener::new() };
        let kept = OnQueue((listener, delegate));
        let pair = OnQueue((kept.0 .0.clone(), kept.0 .1.clone()));
        let vm = self.vm.clone();
        self.queue.exec_async(move || {
            let (listener, delegate) = pair.get();
            // SAFETY: on the VM's queue; both objects are kept alive in `listeners`.
            unsafe { listener.setDelegate(Some(ProtocolObject::from_ref(&**delegate))) };
            match socket_device(&vm.0) {
                // SAFETY: as above.
                Some(device) => unsafe { device.setSocketListener_forPort(listener, port) },
                None => tracing::error!("the VM has no vsock device: host port {port} stays closed"),
            }
        });
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(kept);
        Ok(rx)
    }
}

/// The back end.
#[derive(Debug, Default)]
pub struct Vz;

#[async_trait::async_trait]
impl Hypervisor for Vz {
    fn name(&self) -> &'static str {
        "vz"
    }

    async fn launch(&self, spec: &VmSpec) -> Result<Box<dyn RunningVm>, VmError> {
        let plan = plan(spec, &host_facts())?;
        let queue = DispatchQueue::new("dev.skiff.vz", None);
        // The configuration is not Send: it is used up before the first await.
        let vm = {
            let config = configuration(&plan)?;
            // SAFETY: a validated configuration; the machine is used only on `queue` from now on.
            let vm =
                unsafe { VZVirtualMachine::initWithConfiguration_queue(VZVirtualMachine::alloc(), &config, &queue) };
            Arc::new(OnQueue(vm))
        };
        let (tx, rx) = oneshot::channel();
        let start = vm.clone();
        queue.exec_async(move || {
            let block = completion(tx);
            // SAFETY: on the VM's queue.
            unsafe { start.0.startWithCompletionHandler(&block) };
        });
        rx.await
            .map_err(|_| VmError::Failed("the VM's queue dropped the start".into()))?
            .map_err(|e| VmError::Failed(format!("Virtualization.framework could not start the VM: {e}")))?;
        let sockets = Arc::new(VzSockets { queue: queue.clone(), vm: vm.clone(), listeners: Mutex::new(Vec::new()) });
        Ok(Box::new(VzVm { queue, vm, sockets }))
    }
}

/// A started machine.
#[derive(Debug)]
pub struct VzVm {
    queue: DispatchRetained<DispatchQueue>,
    vm: Arc<OnQueue<Retained<VZVirtualMachine>>>,
    sockets: Arc<VzSockets>,
}

impl VzVm {
    async fn state(&self) -> Result<VZVirtualMachineState, VmError> {
        // SAFETY: the closure runs on the VM's queue.
        on_queue(&self.queue, &self.vm, |vm| unsafe { vm.state() }).await
    }

    async fn run_completion(
        &self,
        what: &'static str,
        call: fn(&VZVirtualMachine, &block2::DynBlock<dyn Fn(*mut NSError)>),
    ) -> Result<(), VmError> {
        let (tx, rx) = oneshot::channel();
        let vm = self.vm.clone();
        self.queue.exec_async(move || {
            let block = completion(tx);
            call(&vm.0, &block);
        });
        rx.await
            .map_err(|_| VmError::Failed(format!("the VM's queue dropped the {what}")))?
            .map_err(|e| VmError::Failed(format!("{what}: {e}")))
    }
}

#[async_trait::async_trait]
impl RunningVm for VzVm {
    fn vsock(&self) -> Vsock {
        Vsock::Vz(self.sockets.clone())
    }

    fn pids(&self) -> Vec<u32> {
        // The machine runs in the framework's XPC service, whose process is not ours to name.
        Vec::new()
    }

    async fn power_button(&self) -> Result<(), VmError> {
        // SAFETY: the closure runs on the VM's queue.
        on_queue(&self.queue, &self.vm, |vm| {
            unsafe { vm.requestStopWithError() }.map_err(|e| e.localizedDescription().to_string())
        })
        .await?
        .map_err(|e| VmError::Failed(format!("asking the guest to stop: {e}")))
    }

    async fn paused_reason(&self) -> Option<String> {
        match self.state().await {
            Ok(VZVirtualMachineState::Paused) => Some("paused".into()),
            Ok(VZVirtualMachineState::Error) => Some("Virtualization.framework reports an error".into()),
            _ => None,
        }
    }

    async fn resume(&self) -> Result<(), VmError> {
        // SAFETY: the call runs on the VM's queue (run_completion).
        self.run_completion("resume", |vm, block| unsafe { vm.resumeWithCompletionHandler(block) }).await
    }

    async fn kill(&self) {
        // SAFETY: as above.
        if let Err(e) = self.run_completion("stop", |vm, block| unsafe { vm.stopWithCompletionHandler(block) }).await {
            tracing::warn!(error = %e, "stopping the VM");
        }
    }

    async fn wait(&self) -> Exit {
        loop {
            match self.state().await {
                Ok(VZVirtualMachineState::Stopped) => return Exit::PoweredOff,
                Ok(VZVirtualMachineState::Error) => {
                    return Exit::Crashed("Virtualization.framework stopped the VM with an error".into())
                }
                Err(e) => return Exit::Crashed(e.to_string()),
                Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}
