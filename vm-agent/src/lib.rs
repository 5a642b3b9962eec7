//! `skiff-agent`: Skiff's container engine. It serves the Docker Engine API and implements the image
//! store (and, in later issues, the runtime, networks and volumes) itself. It runs natively on Linux
//! (`skiff-agent serve`) and as PID 1 of the Skiff VM.
//!
//! Data flow: `api` (HTTP decode/encode) → `engine` (services, typed errors) → `store` (disk)
//! and `runtime` (namespaces, mounts, processes).

pub mod allocator;
pub mod api;
pub mod dial_stdio;
pub mod engine;
pub mod init;
pub mod net;
pub mod pid_file;
pub mod runtime;
pub mod store;
pub mod transport;
