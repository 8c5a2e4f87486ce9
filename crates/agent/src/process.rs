//! What the process sets up about itself before it reads a key or a token.

/// Makes the process non-dumpable and its core size limit 0, before any key or token is
/// read: the process holds the raw encryption key and the API's tokens, which a core file
/// (or a same-user process reading `/proc/<pid>/mem` or attaching with ptrace, which a
/// non-dumpable process refuses) would otherwise give away. Failures are logged, not fatal:
/// a sandbox may forbid the calls and the agent still works.
pub fn keep_secrets_out_of_core_dumps() {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "Could not make the process non-dumpable");
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(error = %e, "Could not set the core file size limit to 0");
    }
}

/// Replaces the panic message (which may carry data) with where it happened.
pub fn report_panics_without_data() {
    std::panic::set_hook(Box::new(|info| {
        if info.payload_as_str().is_some_and(is_closed_stdout) {
            return; // main ends quietly: the reader of `… | head` took what it wanted
        }
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: service-backup stopped on an internal error{at}; please report it");
    }));
}

/// Whether a panic's message is `print!` failing on a standard output whose reader left.
pub fn is_closed_stdout(message: &str) -> bool {
    message.starts_with("failed printing to stdout") && message.contains("Broken pipe")
}

/// Whether an unwound panic is `print!` failing on a standard output whose reader left.
pub fn unwound_on_closed_stdout(payload: &(dyn std::any::Any + Send)) -> bool {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .is_some_and(is_closed_stdout)
}
