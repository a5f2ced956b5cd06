//! Worker processes supervised by a parent: the slot processes of a
//! multi-slot `sigsweep worker`, and the local workers of `sigsweep run`.
//!
//! A [`Pool`] runs one task per process: it starts the process, restarts it
//! when it dies (within a restart budget), and on shutdown sends SIGTERM (the
//! worker drains its running trial) and, if asked, kills it after a grace
//! period. On Linux every child also gets SIGTERM from the kernel if the
//! parent dies, so a `kill -9` of the parent drains its workers instead of
//! orphaning them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::Command;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// When a process is started again.
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// Give up on the process after this many restarts in a row without
    /// progress ([`Pool::note_progress`]): a process that cannot start is
    /// given up on, one killed now and then by what it runs (a trial that
    /// takes all its memory) is not.
    pub max: u32,
    /// Restart it after a clean exit too (local workers are not meant to
    /// exit); otherwise a clean exit (idle exit, drained) ends its task.
    pub on_clean_exit: bool,
    /// On shutdown, kill the process if it has not exited this long after
    /// SIGTERM (`None`: wait for it to drain).
    pub kill_after: Option<Duration>,
}

/// Supervised processes.
pub struct Pool {
    tasks: JoinSet<Result<(), String>>,
    shutdown: CancellationToken,
    progress: Arc<AtomicU64>,
}

impl Pool {
    /// Starts one supervised task per `(name, command)`.
    pub fn start(commands: Vec<(String, Command)>, policy: Restart) -> Self {
        let shutdown = CancellationToken::new();
        let progress = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for (name, mut cmd) in commands {
            #[cfg(target_os = "linux")]
            drain_when_parent_dies(&mut cmd);
            cmd.kill_on_drop(true);
            let watch = Progress {
                shared: progress.clone(),
                seen: 0,
            };
            tasks.spawn(supervise(name, cmd, policy, shutdown.clone(), watch));
        }
        Self {
            tasks,
            shutdown,
            progress,
        }
    }

    /// The processes' work moved on (a trial finished or failed): each
    /// process's restarts count from zero again.
    pub fn note_progress(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until a process has exhausted its restarts (pending forever if
    /// none does); returns why.
    pub async fn next_failure(&mut self) -> String {
        loop {
            match self.tasks.join_next().await {
                Some(Ok(Err(e))) => return e,
                Some(Err(e)) => return format!("a supervisor task failed: {e}"),
                Some(Ok(Ok(()))) => {}
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Stops every process (SIGTERM, then the policy's kill) and waits for
    /// them; true when every process ended without exhausting its restarts.
    pub async fn stop(mut self) -> bool {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits for every task to end (each ends on a clean exit, after its
    /// restarts, or at shutdown); true when none failed.
    pub async fn wait(&mut self) -> bool {
        let mut ok = true;
        while let Some(r) = self.tasks.join_next().await {
            if let Ok(Err(e)) = &r {
                tracing::error!(error = %e, "worker process gave up");
            }
            ok &= matches!(r, Ok(Ok(())));
        }
        ok
    }

    /// The token that stops the pool (cancel it from a signal handler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// A process's view of [`Pool::note_progress`].
struct Progress {
    shared: Arc<AtomicU64>,
    seen: u64,
}

impl Progress {
    /// Whether there was progress since the last call.
    fn moved(&mut self) -> bool {
        let now = self.shared.load(Ordering::Relaxed);
        std::mem::replace(&mut self.seen, now) != now
    }
}

async fn supervise(
    name: String,
    mut cmd: Command,
    policy: Restart,
    shutdown: CancellationToken,
    mut progress: Progress,
) -> Result<(), String> {
    let mut restarts = 0u32;
    loop {
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        tracing::debug!(process = %name, pid = child.id(), "worker process started");
        let status = tokio::select! {
            s = child.wait() => s,
            () = shutdown.cancelled() => {
                if let Some(pid) = child.id() {
                    terminate(pid);
                }
                match policy.kill_after {
                    Some(grace) => match tokio::time::timeout(grace, child.wait()).await {
                        Ok(s) => s,
                        Err(_) => {
                            let _ = child.kill().await;
                            child.wait().await
                        }
                    },
                    None => child.wait().await,
                }
            }
        }
        .map_err(|e| format!("{name}: {e}"))?;
        if shutdown.is_cancelled() || (status.success() && !policy.on_clean_exit) {
            return Ok(());
        }
        if progress.moved() {
            restarts = 0;
        }
        restarts += 1;
        if restarts > policy.max {
            return Err(format!(
                "{name} exited with {status} {restarts} times in a row with no trial finished in \
                 between; giving up"
            ));
        }
        tracing::warn!(process = %name, %status, restarts, "worker process exited; starting it again");
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Makes the kernel send SIGTERM to the child when its parent dies.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn drain_when_parent_dies(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl,
    // which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends SIGTERM to a child (it drains its running trial).
#[allow(unsafe_code)]
fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; `pid` is our own
    // child, not yet reaped (we still hold its handle).
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

#[cfg(test)]
mod tests {
    use super::{Pool, Restart};
    use std::time::Duration;

    fn sh(script: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[tokio::test]
    async fn a_crashing_process_is_restarted_then_given_up() {
        let policy = Restart {
            max: 2,
            on_clean_exit: false,
            kill_after: Some(Duration::from_secs(1)),
        };
        let mut pool = Pool::start(vec![("crash".into(), sh("exit 3"))], policy);
        let why = pool.next_failure().await;
        assert!(
            why.contains("crash") && why.contains("3 times in a row"),
            "{why}"
        );
    }

    /// Restarts are counted in a row without progress: a worker killed
    /// now and then while trials still finish is restarted every time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_between_exits_resets_the_restart_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (started, go) = (dir.path().join("started"), dir.path().join("go"));
        let policy = Restart {
            max: 1,
            on_clean_exit: true,
            kill_after: Some(Duration::from_secs(1)),
        };
        // Each run says it started, then exits (status 3) once it has taken
        // a `go` file.
        let script = format!(
            "touch {0}; while [ ! -e {1} ]; do sleep 0.02; done; rm {1}; exit 3",
            started.display(),
            go.display()
        );
        let mut pool = Pool::start(vec![("flaky".into(), sh(&script))], policy);
        let wait_until = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}: given up");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // One run: progress (or none) while it runs, then its exit.
        let exit_once = |progress: bool| {
            wait_until("not restarted", &|| started.exists());
            std::fs::remove_file(&started).expect("started");
            if progress {
                pool.note_progress();
            }
            std::fs::write(&go, "").expect("go");
            wait_until("go not taken", &|| !go.exists());
        };
        // Four exits, progress before each: far past `max`, still restarted.
        for _ in 0..4 {
            exit_once(true);
        }
        // Then one without progress: with the last one, two in a row.
        exit_once(false);
        let why = pool.next_failure().await;
        assert!(why.contains("2 times in a row"), "{why}");
    }

    #[tokio::test]
    async fn stop_terminates_and_a_clean_exit_ends_the_task() {
        let policy = Restart {
            max: 0,
            on_clean_exit: false,
            kill_after: Some(Duration::from_secs(5)),
        };
        let pool = Pool::start(
            vec![
                ("sleeper".into(), sh("sleep 30")),
                ("done".into(), sh("exit 0")),
            ],
            policy,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = std::time::Instant::now();
        assert!(pool.stop().await);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "SIGTERM, not the kill"
        );
    }
}
