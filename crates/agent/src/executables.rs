//! The service's executables (dump, cleanup, identifier, restore): command lines split on
//! spaces as the original did, run with the agent's environment in their own process
//! group, their output logged line by line with bounds (inside the run's span, so with its
//! `backup_guid` and `identifier`), stopped with SIGTERM then SIGKILL when the run is
//! cancelled.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use service_backup_core::{Error, ErrorKind, Result};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// How long an executable has to exit after SIGTERM before it is killed.
pub const GRACE: Duration = Duration::from_secs(5);
/// The longest line logged; longer lines are cut.
const MAX_LINE: usize = 2048;
/// Lines logged per stream of one executable; the rest are counted, not logged.
const MAX_LINES: u64 = 1000;
/// The most stdout kept for an identifier.
const MAX_CAPTURE: usize = 4096;
/// The last lines of output kept for a failure's reason (both streams together).
const TAIL_LINES: usize = 10;

/// Where an executable runs, when not where the agent runs: its working folder and
/// variables added to the agent's environment.
#[derive(Debug, Clone, Default)]
pub struct Place {
    /// The working folder.
    pub dir: Option<PathBuf>,
    /// Variables added to the environment.
    pub env: Vec<(&'static str, OsString)>,
}

/// How an executable that ran to its end ended, and its last lines of output.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its last lines of output (stdout and stderr as they came, each cut at 2 KiB).
    pub tail: Vec<String>,
}

/// The last lines of an executable's output, shared by its two streams.
type Tail = Arc<Mutex<VecDeque<String>>>;

/// Splits a command line on spaces, as the original release did.
pub fn tokens(command_line: &str) -> Vec<String> {
    command_line
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn spawn(what: &str, command_line: &str, place: &Place) -> Result<(Child, String)> {
    let tokens = tokens(command_line);
    let Some((program, args)) = tokens.split_first() else {
        return Err(Error::new(
            ErrorKind::Config,
            format!("the {what}'s command line is empty"),
        ));
    };
    let mut command = Command::new(program);
    if let Some(dir) = &place.dir {
        command.current_dir(dir);
    }
    command.envs(place.env.iter().map(|(k, v)| (*k, v)));
    let child = command
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot run the {what} {program}: {}", plain(&e)),
            )
            .with_hint("check the path in the configuration and that the file is executable")
        })?;
    Ok((child, program.clone()))
}

fn plain(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

/// Logs each line of `stream` (cut at `MAX_LINE`, at most `MAX_LINES` lines); keeps the first
/// `MAX_CAPTURE` bytes when `keep` is set.
async fn pump(
    mut stream: impl AsyncRead + Unpin,
    what: String,
    name: &'static str,
    keep: bool,
    tail: Tail,
) -> String {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut kept = Vec::new();
    let mut logged = 0u64;
    let mut dropped = 0u64;
    let emit = |line: &mut Vec<u8>, logged: &mut u64, dropped: &mut u64| {
        let text = String::from_utf8_lossy(line);
        {
            let mut tail = tail
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text.trim_end().to_string());
        }
        if *logged < MAX_LINES {
            // The line goes in `data`, never in the message: a service's output must not be
            // able to look like one of the agent's messages that alert rules match.
            tracing::info!(executable = %what, stream = name, line = %text.trim_end(), "Executable output");
            *logged += 1;
        } else {
            *dropped += 1;
        }
        line.clear();
    };
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if keep && kept.len() < MAX_CAPTURE {
            let room = MAX_CAPTURE - kept.len();
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&mut line, &mut logged, &mut dropped);
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line, &mut logged, &mut dropped);
    }
    if dropped > 0 {
        tracing::info!(executable = %what, stream = name, lines = dropped, "More output lines were not logged");
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Runs `command_line` to completion, or until `cancel` fires (then SIGTERM to its process
/// group, SIGKILL after [`GRACE`]). Returns its standard output (at most 4 KiB) when it
/// exits 0.
pub async fn run(what: &str, command_line: &str, cancel: &CancellationToken) -> Result<String> {
    let (finished, stdout, label) = execute(what, command_line, &Place::default(), cancel).await?;
    if finished.status.success() {
        Ok(stdout.trim().to_string())
    } else {
        Err(Error::new(
            ErrorKind::Io,
            format!("the {label} failed ({})", finished.status),
        ))
    }
}

/// Runs `command_line` in `place` to completion, or until `cancel` fires (as [`run`]
/// does), and returns how it ended whatever its exit code, with its last lines of output.
pub async fn run_in(
    what: &str,
    command_line: &str,
    place: &Place,
    cancel: &CancellationToken,
) -> Result<Finished> {
    execute(what, command_line, place, cancel)
        .await
        .map(|(finished, _, _)| finished)
}

/// Runs `command_line` in `place`: how it ended, the head of its stdout, and its label.
async fn execute(
    what: &str,
    command_line: &str,
    place: &Place,
    cancel: &CancellationToken,
) -> Result<(Finished, String, String)> {
    let (mut child, program) = spawn(what, command_line, place)?;
    let tail = Tail::default();
    let label = format!("{what} {program}");
    let out = tokio::spawn(
        pump(
            child.stdout.take().expect("piped"),
            label.clone(),
            "stdout",
            true,
            tail.clone(),
        )
        .in_current_span(),
    );
    let err = tokio::spawn(
        pump(
            child.stderr.take().expect("piped"),
            label.clone(),
            "stderr",
            false,
            tail.clone(),
        )
        .in_current_span(),
    );
    let status = tokio::select! {
        status = child.wait() => status,
        () = cancel.cancelled() => {
            stop(&mut child, &label).await;
            let _ = out.await;
            let _ = err.await;
            return Err(Error::new(ErrorKind::Cancelled, format!("the {label} was stopped: the agent is shutting down")));
        }
    }
    .map_err(|e| Error::new(ErrorKind::Io, format!("cannot wait for the {label}: {e}")))?;
    let stdout = out.await.unwrap_or_default();
    let _ = err.await;
    let tail = tail
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .drain(..)
        .collect();
    Ok((Finished { status, tail }, stdout, label))
}

/// SIGTERM to the child's process group, then SIGKILL if it is still there after GRACE.
async fn stop(child: &mut Child, label: &str) {
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return;
    };
    let group = Pid::from_raw(pid);
    tracing::info!(executable = %label, "Sending SIGTERM to the executable");
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        tracing::info!(executable = %label, "The executable ignored SIGTERM; sending SIGKILL");
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    } else {
        // Children of the executable that outlived it still get the signal's end.
        let _ = killpg(group, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_on_spaces() {
        assert_eq!(
            tokens("/bin/dump  --fast x"),
            vec!["/bin/dump", "--fast", "x"]
        );
        assert!(tokens("   ").is_empty());
    }

    #[tokio::test]
    async fn failures_name_the_program_and_output_is_returned() {
        let cancel = CancellationToken::new();
        let err = run("source executable", "/nonexistent/dump --fast", &cancel)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dump"), "{err}");
        assert_eq!(err.kind(), ErrorKind::Config);
        let err = run("source executable", "false", &cancel)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
        assert_eq!(
            run("identifier", "echo  id-1 ", &cancel).await.unwrap(),
            "id-1"
        );
    }

    #[tokio::test]
    async fn run_in_gives_the_folder_the_variables_the_exit_code_and_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("check.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\npwd\necho \"dir=$DRILL_DIR\" >&2\nfor i in $(seq 1 30); do echo line-$i; done\nexit 3\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let place = Place {
            dir: Some(dir.path().to_path_buf()),
            env: vec![("DRILL_DIR", "/scratch/x".into())],
        };
        let finished = run_in(
            "check executable",
            script.to_str().unwrap(),
            &place,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(finished.status.code(), Some(3));
        let want: Vec<String> = (21..=30).map(|i| format!("line-{i}")).collect();
        assert_eq!(finished.tail, want);
        let quiet = dir.path().join("quiet.sh");
        std::fs::write(&quiet, "#!/bin/sh\npwd\necho \"dir=$DRILL_DIR\" >&2\n").unwrap();
        std::fs::set_permissions(&quiet, std::fs::Permissions::from_mode(0o755)).unwrap();
        let finished = run_in(
            "check executable",
            quiet.to_str().unwrap(),
            &place,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(finished.status.success());
        let mut tail = finished.tail;
        tail.sort();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            tail,
            [real.display().to_string(), "dir=/scratch/x".to_string()]
        );
    }

    #[tokio::test]
    async fn cancellation_stops_an_executable_that_ignores_sigterm() {
        let cancel = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("stubborn.sh");
        std::fs::write(&script, "#!/bin/sh\ntrap '' TERM\nsleep 60 &\nwait\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let started = std::time::Instant::now();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.cancel();
        });
        let err = run("source executable", script.to_str().unwrap(), &cancel)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled);
        assert!(
            started.elapsed() < GRACE + Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}
