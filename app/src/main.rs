//! `skiff`: start, stop and inspect Skiff's engine: in its VM on Linux and macOS, in a WSL 2
//! distribution on Windows.

#[cfg(unix)]
mod main_unix;
#[cfg(windows)]
mod main_windows;

fn main() -> std::process::ExitCode {
    #[cfg(unix)]
    let code = main_unix::main();
    #[cfg(windows)]
    let code = main_windows::main();
    code
}
