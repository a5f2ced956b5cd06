//! The training program's processes: started in their own process group
//! under a small `sh` guard, their output copied to the trial's log file,
//! and stopped as a group.
//!
//! The guard is the worker's direct child and the leader of the group. It
//! runs the program in the background and waits for it; a watcher subshell
//! reads the guard's stdin, a pipe whose only writer is the worker. When the
//! worker dies, however it dies (`kill -9` included), the pipe closes and the
//! watcher sends SIGTERM and then SIGKILL to the whole group: the program and
//! every child it started in its group never outlive their worker.
//! Stopping a trial (cancel, drain, lost lease) sends SIGTERM to the group,
//! then SIGKILL after a grace period. When the guard exits (the program
//! ended, or the guard itself was killed), whatever is left in the group is
//! killed: a child the program left running would otherwise hold the
//! output pipes open, and the trial would wait for it forever.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The guard script: `$@` is the program and its arguments.
/// (A background list's stdin is /dev/null unless redirected: the watcher
/// reads the lifeline through fd 3.)
const GUARD: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
program=$!
( trap '' TERM; while read -r _ <&3; do :; done; kill -TERM 0 2>/dev/null; sleep 5; kill -KILL 0 2>/dev/null ) &
watcher=$!
wait "$program"
status=$?
kill -KILL "$watcher" 2>/dev/null
exit "$status""#;

/// Lines of stderr kept for a failure's reason.
pub const STDERR_TAIL: usize = 20;
/// Longest output line kept whole (longer ones are cut).
const MAX_LINE: usize = 64 * 1024;
/// Most bytes of output written to one trial's log file (more is dropped,
/// with a note).
const MAX_LOG_FILE: u64 = 256 * 1024 * 1024;

/// A log file shared by the stdout and stderr readers, bounded.
struct Log {
    file: File,
    written: u64,
    full: bool,
}

impl Log {
    fn line(&mut self, prefix: &str, line: &str) {
        if self.full {
            return;
        }
        let n = (prefix.len() + line.len() + 1) as u64;
        if self.written + n > MAX_LOG_FILE {
            self.full = true;
            let _ = writeln!(
                self.file,
                "[sigsweep: log limit of {MAX_LOG_FILE} bytes reached; further output is dropped]"
            );
            return;
        }
        self.written += n;
        let _ = writeln!(self.file, "{prefix}{line}");
    }
}

/// A running program.
pub struct Program {
    child: Child,
    pgid: libc::pid_t,
    /// The pipe whose closing tells the guard that the worker is gone.
    _lifeline: ChildStdin,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Lines the program printed on stdout (for `metrics_regex`).
    pub stdout_lines: Option<mpsc::Receiver<String>>,
    status: Option<ExitStatus>,
}

/// What to start.
pub struct Launch<'a> {
    pub argv: &'a [String],
    pub workdir: Option<&'a Path>,
    pub env: Vec<(String, String)>,
    pub log: &'a Path,
    /// Send stdout lines to [`Program::stdout_lines`] as well as the log.
    pub capture_stdout: bool,
    /// A header line written to the log before the program's output.
    pub header: String,
}

impl Program {
    /// Starts the program under the guard.
    pub fn start(launch: Launch<'_>) -> Result<Self, String> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log)
            .map_err(|e| format!("cannot open the trial log {}: {e}", launch.log.display()))?;
        let written = log.metadata().map_or(0, |m| m.len());
        let _ = writeln!(log, "{}", launch.header);
        let log = Arc::new(Mutex::new(Log {
            file: log,
            written,
            full: written > MAX_LOG_FILE,
        }));
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(GUARD)
            .arg("sigsweep-program")
            .args(launch.argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = launch.workdir {
            cmd.current_dir(dir);
        }
        // The worker's own settings (its token file, its coordinator) are
        // not the program's business.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("SIGSWEEP_")) {
                cmd.env_remove(&key);
            }
        }
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        own_process_group(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start the program `{}`: {e}",
                launch.argv.first().map_or("", String::as_str)
            )
        })?;
        let pgid = libc::pid_t::try_from(child.id())
            .map_err(|_| "the program's process id is out of range".to_string())?;
        let lifeline = child
            .stdin
            .take()
            .ok_or_else(|| "the program has no lifeline pipe".to_string())?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let mut readers = Vec::new();
        let mut stdout_lines = None;
        if let Some(out) = child.stdout.take() {
            let (tx, rx) = mpsc::channel();
            let tx = launch.capture_stdout.then_some(tx);
            if launch.capture_stdout {
                stdout_lines = Some(rx);
            }
            let log = log.clone();
            readers.push(spawn_reader("stdout", out, move |line| {
                lock(&log).line("", line);
                if let Some(tx) = &tx {
                    let _ = tx.send(line.to_string());
                }
            })?);
        }
        if let Some(err) = child.stderr.take() {
            let tail = stderr_tail.clone();
            readers.push(spawn_reader("stderr", err, move |line| {
                lock(&log).line("", line);
                let mut t = lock(&tail);
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line.to_string());
            })?);
        }
        Ok(Self {
            child,
            pgid,
            _lifeline: lifeline,
            stderr_tail,
            readers,
            stdout_lines,
            status: None,
        })
    }

    /// The exit status, once the program has ended.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, String> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| format!("cannot wait for the program: {e}"))?;
            if self.status.is_some() {
                // Whatever is left in the group (children the program left
                // running, or the program itself when the guard was killed)
                // would outlive the trial and hold the output pipes open:
                // the readers would never reach the end.
                signal_group(self.pgid, libc::SIGKILL);
                self.join_readers();
            }
        }
        Ok(self.status)
    }

    /// The last [`STDERR_TAIL`] lines the program wrote to stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        lock(&self.stderr_tail).iter().cloned().collect()
    }

    /// Stops the program's process group: SIGTERM, then SIGKILL if it is
    /// still there after `grace`. Returns once the guard has exited.
    pub fn stop(&mut self, grace: Duration) {
        if self.status.is_some() {
            // The guard is gone; kill whatever it left in its group.
            signal_group(self.pgid, libc::SIGKILL);
            return;
        }
        signal_group(self.pgid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            // Reap the guard, so that the group's probe does not see it.
            if self.status.is_none() {
                self.status = self.child.try_wait().ok().flatten();
            }
            if self.status.is_some() && group_is_empty(self.pgid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(self.pgid, libc::SIGKILL);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        self.join_readers();
    }

    /// Waits for the output readers to reach the end of the program's
    /// output, up to [`READERS_GRACE`]: a process that left the group
    /// (`setsid`) may still hold a pipe, and its reader is then left to end
    /// on its own rather than hold the trial.
    fn join_readers(&mut self) {
        let deadline = Instant::now() + READERS_GRACE;
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for r in self.readers.drain(..) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

/// How long the output readers may take to finish once the program's group
/// is gone ([`Program::join_readers`]).
const READERS_GRACE: Duration = Duration::from_secs(5);

impl Drop for Program {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads `source` line by line (lossy UTF-8, lines cut at [`MAX_LINE`]) on
/// its own thread.
fn spawn_reader<R: Read + Send + 'static>(
    name: &str,
    source: R,
    mut each: impl FnMut(&str) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(format!("program-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(source);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut buf)
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        each(text.trim_end_matches(['\n', '\r']));
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the {name} reader: {e}"))
}

/// Puts the child in a process group of its own (it leads it).
#[allow(unsafe_code)]
fn own_process_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls
    // setpgid, which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[allow(unsafe_code)]
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a negative pid names
    // the process group the guard leads.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Whether no process of the group is left (signal 0 probes).
#[allow(unsafe_code)]
fn group_is_empty(pgid: libc::pid_t) -> bool {
    // SAFETY: as in `signal_group`; signal 0 only checks existence.
    unsafe { libc::kill(-pgid, 0) != 0 }
}

/// The last `max` bytes of the file at `path` (from a line start where
/// possible), for the coordinator's copy of a trial's log.
pub fn tail(path: &Path, max: usize) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(max as u64);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::with_capacity(max.min(len as usize));
    f.take(max as u64).read_to_end(&mut buf).ok()?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0
        && let Some(i) = text.find('\n')
    {
        text.drain(..=i);
    }
    // Lossy decoding may have grown it past the limit.
    while text.len() > max {
        let cut = text.ceil_char_boundary(text.len() - max);
        text.drain(..cut);
    }
    Some(text)
}

/// `PATH`-less check that a program named by a path exists (relative to
/// `workdir`), for an early, clear error.
pub fn resolve_hint(program: &str, workdir: Option<&Path>) -> Option<PathBuf> {
    if !program.contains('/') {
        return None;
    }
    let p = Path::new(program);
    Some(match (p.is_absolute(), workdir) {
        (false, Some(dir)) => dir.join(p),
        _ => p.to_path_buf(),
    })
}
