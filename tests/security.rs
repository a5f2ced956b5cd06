//! Who may talk to a coordinator, with real processes: mutual TLS, plaintext
//! only on loopback unless `--insecure`, the bearer token on every call (and
//! every scrape of the metrics port), and
//! layered configuration (defaults, file, environment, flags).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::cluster::*;
use common::proc::{BIN, free_port};
use sigsweep_proto::v1 as pb;

#[test]
fn mutual_tls_admits_clients_with_a_certificate_and_refuses_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let port = free_port();
    let store = format!("embedded:{}", dir.path().join("state").display());
    let p = |p: &PathBuf| p.to_str().expect("utf8").to_string();
    let (ca, cert, key, ccert, ckey) = (
        p(&pki.ca),
        p(&pki.server_cert),
        p(&pki.server_key),
        p(&pki.client_cert),
        p(&pki.client_key),
    );
    let coord = coordinator(
        dir.path(),
        "coordinator",
        port,
        &store,
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca],
    );
    let https = format!("https://localhost:{port}");
    let out = status_until_ok(
        &[
            "status",
            "--coordinator",
            &https,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &ccert,
            "--tls-key",
            &ckey,
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "TLS client with a certificate: {}\n{}",
        text(&out),
        coord.log()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no sweeps"),
        "{}",
        text(&out)
    );

    // No client certificate: the handshake fails (mutual TLS required).
    let out = sigsweep(&["status", "--coordinator", &https, "--tls-ca", &ca]);
    assert!(
        !out.status.success(),
        "TLS client without a certificate must fail: {}",
        text(&out)
    );
    // Plaintext to a TLS port fails.
    let out = sigsweep(&[
        "status",
        "--coordinator",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert!(
        !out.status.success(),
        "plaintext client must fail: {}",
        text(&out)
    );
    // https without a CA is refused up front, with a message saying why.
    let out = sigsweep(&["status", "--coordinator", &https]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--tls-ca"),
        "{}",
        text(&out)
    );
}

#[test]
fn plaintext_on_a_non_loopback_address_needs_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().join("state").display());
    let out = sigsweep(&["coordinator", "--listen", "0.0.0.0:0", "--store", &store]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure"),
        "{}",
        text(&out)
    );
    // Clients refuse plaintext to a non-loopback host unless told otherwise.
    let out = sigsweep(&["status", "--coordinator", "http://192.0.2.1:50051"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure"),
        "{}",
        text(&out)
    );
}

/// A coordinator that accepts training programs without a token or mutual
/// TLS says at start that whoever reaches its port may run code on the
/// workers; with a token it does not.
#[test]
fn allow_command_without_a_token_warns_who_may_run_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken\n").expect("token");
    let token_s = token_file.to_str().expect("utf8");
    for (name, extra, warns) in [
        ("open", &["--allow-command"][..], true),
        (
            "token",
            &["--allow-command", "--token-file", token_s][..],
            false,
        ),
    ] {
        let store = format!("embedded:{}", dir.path().join(name).display());
        let coord = coordinator(dir.path(), name, free_port(), &store, extra);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // The check is made before the gRPC port is bound.
        while !coord.log_text().contains("what=\"grpc\"") {
            assert!(std::time::Instant::now() < deadline, "{}", coord.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            coord.log_text().contains("may run code on the workers"),
            warns,
            "{}",
            coord.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_for_every_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token");
    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, "not-it").expect("token");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{}", free_port());
    let store = format!("embedded:{}", dir.path().join("state").display());
    let coord = coordinator(
        dir.path(),
        "coordinator",
        port,
        &store,
        &[
            "--token-file",
            token_file.to_str().expect("utf8"),
            "--metrics-listen",
            &metrics,
        ],
    );
    let sweep = sweep_file(dir.path(), "tok", 1, 1, 64, "modality_hidden = [2, 8]", "");
    let source = std::fs::read_to_string(&sweep).expect("sweep");
    let request = || pb::SubmitSweepRequest {
        sweep_toml: source.clone(),
        source_name: "tok.toml".into(),
    };

    // Reads need the token too: sweep files name private data paths and
    // results are unpublished work.
    let token_s = token_file.to_str().expect("utf8");
    let out = status_until_ok(
        &["status", "--coordinator", &url, "--token-file", token_s],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}\n{}", text(&out), coord.log());
    let out = sigsweep(&["status", "--coordinator", &url]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bearer token"),
        "{}",
        text(&out)
    );

    let mut c = client(&url).await;
    let missing = c.submit_sweep(request()).await.expect_err("no token");
    assert_eq!(missing.code(), tonic::Code::Unauthenticated, "{missing}");
    let mut wrong = tonic::Request::new(request());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().expect("header"));
    let e = c.submit_sweep(wrong).await.expect_err("wrong token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let mut right = tonic::Request::new(request());
    right.metadata_mut().insert(
        "authorization",
        "Bearer s3cret-token".parse().expect("header"),
    );
    let id = c
        .submit_sweep(right)
        .await
        .expect("right token")
        .into_inner()
        .sweep_id;

    // The CLI sends the token from --token-file.
    let sweep_s = sweep.to_str().expect("utf8");
    let out = sigsweep(&["submit", sweep_s, "--coordinator", &url]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = sigsweep(&[
        "submit",
        sweep_s,
        "--coordinator",
        &url,
        "--token-file",
        wrong_file.to_str().expect("utf8"),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = sigsweep(&[
        "submit",
        sweep_s,
        "--coordinator",
        &url,
        "--token-file",
        token_file.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    // Every reading command takes --token-file too.
    for args in [
        &["results", id.as_str(), "--coordinator", url.as_str()][..],
        &[
            "report",
            id.as_str(),
            "--coordinator",
            url.as_str(),
            "--format",
            "json",
        ][..],
    ] {
        let out = sigsweep(args);
        assert!(
            !out.status.success(),
            "{args:?} without the token: {}",
            text(&out)
        );
        let mut with = args.to_vec();
        with.extend(["--token-file", token_s]);
        let out = sigsweep(&with);
        assert!(out.status.success(), "{with:?}: {}", text(&out));
    }
    let e = c
        .cancel_sweep(pb::CancelSweepRequest {
            sweep_id: id.clone(),
        })
        .await
        .expect_err("cancel without token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let out = sigsweep(&[
        "cancel",
        &id,
        "--coordinator",
        &url,
        "--token-file",
        token_file.to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("cancelled"),
        "{}",
        text(&out)
    );
    // The metrics port too: the counts are state like any other.
    for authorization in [None, Some("Bearer not-it"), Some("s3cret-token")] {
        let answer = http_get_as(&metrics, "/metrics", authorization).expect("metrics");
        assert!(
            answer.starts_with("HTTP/1.1 401 ") && !answer.contains("sigsweep_"),
            "{authorization:?}: {answer}"
        );
    }
    let answer = http_get_as(&metrics, "/metrics", Some("Bearer s3cret-token")).expect("metrics");
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && metric(&answer, "sigsweep_trials_queued").is_some(),
        "{answer}"
    );
    // The token never reaches the log.
    assert!(
        !std::fs::read_to_string(&coord.log_path)
            .unwrap_or_default()
            .contains("s3cret")
    );
}

// ------------------------------------------------- config, health, metrics

#[test]
fn print_config_layers_defaults_file_environment_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sigsweep.toml");
    std::fs::write(
        &file,
        "[coordinator]\nlisten = \"127.0.0.1:7001\"\nlease_ttl = \"5m\"\nstore = \"embedded:/from-file\"\nadvertise = \"file\"\n\n[worker]\nbackend = \"cpu\"\n",
    )
    .expect("config");
    let out = Command::new(BIN)
        .args([
            "coordinator",
            "--config",
            file.to_str().expect("utf8"),
            "--print-config",
            "--advertise",
            "flag",
        ])
        .env("SIGSWEEP_STORE", "embedded:/from-env")
        .env("SIGSWEEP_ADVERTISE", "env")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("listen = \"127.0.0.1:7001\""),
        "file: {printed}"
    );
    assert!(printed.contains("lease_ttl = \"5m\""), "file: {printed}");
    assert!(
        printed.contains("store = \"embedded:/from-env\""),
        "env over file: {printed}"
    );
    assert!(
        printed.contains("advertise = \"flag\""),
        "flag over env: {printed}"
    );
    assert!(
        printed.contains("election_ttl = \"10s\""),
        "default: {printed}"
    );

    std::fs::write(
        &file,
        "[coordinator]\nlisten = \"127.0.0.1:7001\"\n\nlease_tll = \"5m\"\n",
    )
    .expect("config");
    let out = sigsweep(&[
        "coordinator",
        "--config",
        file.to_str().expect("utf8"),
        "--print-config",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("sigsweep.toml")
            && err.contains("line 4")
            && err.contains("lease_tll"),
        "{}",
        text(&out)
    );
}
