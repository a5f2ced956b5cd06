//! Shutdown on SIGINT/SIGTERM: the first signal cancels a token (orderly
//! shutdown: drain, resign, stop serving), a second one exits at once.

use tokio_util::sync::CancellationToken;

/// Resolves on the next SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// A token cancelled by the first signal; the second exits with status 130.
/// `what` says what the first one does ("draining", "shutting down").
pub fn shutdown_token(what: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("signal received: {what} (send again to exit now)");
        cancel.cancel();
        signal().await;
        std::process::exit(130);
    });
    token
}
