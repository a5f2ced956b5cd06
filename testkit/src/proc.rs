//! Child processes of the integration tests: output appended to a log file
//! (shown when an assertion fails), SIGKILLed and reaped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `sigsweep` binary under test: `$SIGSWEEP_BIN`, else `sigsweep` in
/// the target directory of the running test (`target/<profile>/`, the
/// parent of the test's `deps/`).
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SIGSWEEP_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable");
    let dir = exe.parent().expect("deps/");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>")
    } else {
        dir
    };
    dir.join("sigsweep")
}

pub struct Proc {
    child: Option<Child>,
    /// The log file (stdout and stderr).
    pub log_path: PathBuf,
    /// What the process is, for messages ("coordinator", "w1", …).
    pub what: String,
}

impl Proc {
    /// Starts `command` with info logging, its output appended to
    /// `dir/<what>.log`.
    pub fn start(what: &str, dir: &Path, mut command: Command) -> Self {
        let log_path = dir.join(format!("{what}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let child = command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("MATMUL_NUM_THREADS", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Self {
            child: Some(child),
            log_path,
            what: what.to_string(),
        }
    }

    /// Starts `sigsweep ARGS` with extra environment variables.
    pub fn spawn(what: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(bin());
        command.args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        Self::start(what, dir, command)
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last 40 lines of the log, under a header naming the process.
    pub fn log(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} ({}) ---\n{}",
            self.what,
            self.log_path.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Waits until the log has a line containing `needle`; panics with the
    /// log if the process exits or `limit` passes first.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log_text().contains(needle) {
            if let Some(status) = self.exited() {
                panic!("{} exited with {status}\n{}", self.what, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in the log of {} after {limit:?}\n{}",
                self.what,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}
