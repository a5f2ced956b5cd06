//! Remote client commands: submit, status, watch, cancel, results.

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Response, Status};

use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_client::SweepServiceClient;
use sigsweep_worker::agent::{BearerAuth, Connection};

use crate::cli::{Remote, ResultsArgs, ResultsFormat, StatusArgs, SubmitArgs, SweepRef};

/// A sweep-service client sending the bearer token, if any.
pub type SweepClient = SweepServiceClient<InterceptedService<Channel, BearerAuth>>;

/// How long client commands keep retrying an unavailable coordinator
/// (restarting, or a standby answering while the leader changes).
const RETRY_FOR: Duration = Duration::from_secs(60);

impl Remote {
    /// The endpoint (TLS for https://) and bearer token these settings name.
    pub fn connection(&self) -> anyhow::Result<Connection> {
        let c = &self.credentials;
        connection(
            &self.coordinator,
            c.tls_ca.as_deref(),
            c.tls_cert.as_deref(),
            c.tls_key.as_deref(),
            c.token_file.as_deref(),
            c.insecure.unwrap_or(false),
        )
    }
}

/// Builds a connection to the coordinator at `url`: https:// needs the CA
/// that signed its certificate (and a client certificate for mutual TLS);
/// plaintext http:// to a non-loopback host needs `insecure`.
pub fn connection(
    url: &str,
    tls_ca: Option<&std::path::Path>,
    tls_cert: Option<&std::path::Path>,
    tls_key: Option<&std::path::Path>,
    token_file: Option<&std::path::Path>,
    insecure: bool,
) -> anyhow::Result<Connection> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("invalid coordinator URL `{url}`"))?;
    let uri = endpoint.uri().clone();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    match uri.scheme_str() {
        Some("https") => {
            let Some(ca) = tls_ca else {
                bail!(
                    "https:// needs the CA certificate that signed the coordinator's certificate (--tls-ca or SIGSWEEP_TLS_CA)"
                );
            };
            let ca = std::fs::read(ca)
                .with_context(|| format!("cannot read the TLS CA {}", ca.display()))?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => {
                    let cert = std::fs::read(cert).with_context(|| {
                        format!("cannot read the TLS certificate {}", cert.display())
                    })?;
                    let key = std::fs::read(key)
                        .with_context(|| format!("cannot read the TLS key {}", key.display()))?;
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => bail!("mutual TLS needs both --tls-cert and --tls-key"),
            }
            endpoint = endpoint.tls_config(tls).context("invalid TLS settings")?;
        }
        Some("http") => {
            if !insecure && !is_loopback_host(&host) {
                bail!(
                    "refusing plaintext http:// to the non-loopback host `{host}`: use https:// with --tls-ca, or pass --insecure (SIGSWEEP_INSECURE=true)"
                );
            }
        }
        _ => bail!("invalid coordinator URL `{url}`: expected http:// or https://"),
    }
    let token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?,
        ),
        None => None,
    };
    let auth = BearerAuth::new(token.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(Connection { endpoint, auth })
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn client_for(connection: &Connection) -> SweepClient {
    let channel = connection
        .endpoint
        .clone()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    SweepServiceClient::with_interceptor(channel, connection.auth.clone())
        .max_decoding_message_size(16 * 1024 * 1024)
}

/// Calls the coordinator, reconnecting with backoff while it is unavailable
/// (for up to a minute); other errors are returned at once.
pub async fn call<T, F, Fut>(remote: &Remote, mut request: F) -> anyhow::Result<T>
where
    F: FnMut(SweepClient) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let connection = remote.connection()?;
    let start = Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        match request(client_for(&connection)).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(s) if s.code() == Code::Unavailable && start.elapsed() < RETRY_FOR => {
                tracing::debug!(status = %s, "coordinator unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(s) if s.code() == Code::Unavailable => {
                bail!(
                    "cannot reach the coordinator at {}: {}",
                    remote.coordinator,
                    s.message()
                )
            }
            Err(s) => bail!("{}", s.message()),
        }
    }
}

fn state_name(s: i32) -> &'static str {
    match pb::SweepState::try_from(s) {
        Ok(pb::SweepState::Running) => "running",
        Ok(pb::SweepState::Finished) => "finished",
        Ok(pb::SweepState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn print_status(s: &pb::SweepStatus) {
    println!(
        "{}  {:<9}  {}/{} done, {} failed, {} running, {} queued",
        s.sweep_id,
        state_name(s.state),
        s.completed,
        s.total,
        s.failed,
        s.running,
        s.queued
    );
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (text, _) = super::run::load_sweep(&args.sweep)?;
    let request = pb::SubmitSweepRequest {
        sweep_toml: text,
        source_name: args.sweep.display().to_string(),
    };
    let r = call(&args.remote, |mut c| {
        let request = request.clone();
        async move { c.submit_sweep(request).await }
    })
    .await?;
    println!("{}", r.sweep_id);
    eprintln!(
        "{} trials{}",
        r.total_trials,
        if r.created {
            ""
        } else {
            " (already submitted)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    match args.sweep {
        Some(id) => {
            let s = call(&args.remote, |mut c| {
                let sweep_id = id.clone();
                async move { c.get_sweep(pb::GetSweepRequest { sweep_id }).await }
            })
            .await?;
            print_status(&s);
        }
        None => {
            let list = call(&args.remote, |mut c| async move {
                c.list_sweeps(pb::ListSweepsRequest {}).await
            })
            .await?;
            if list.sweeps.is_empty() {
                println!("no sweeps");
            }
            for s in &list.sweeps {
                print_status(s);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(args: SweepRef) -> anyhow::Result<ExitCode> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} trials  {msg}  [{elapsed_precise}, ETA {eta}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut last = None;
    'watch: loop {
        let mut stream = call(&args.remote, |mut c| {
            let sweep_id = args.sweep.clone();
            async move { c.watch_sweep(pb::GetSweepRequest { sweep_id }).await }
        })
        .await?;
        while let Some(s) = stream.next().await {
            let s = match s {
                Ok(s) => s,
                // The coordinator went away (restart, new leader): watch again.
                Err(s) if s.code() == Code::Unavailable || s.code() == Code::Unknown => {
                    continue 'watch;
                }
                Err(s) => bail!("{}", s.message()),
            };
            bar.set_length(u64::from(s.total));
            bar.set_position(u64::from(s.completed + s.failed));
            bar.set_message(format!(
                "done {} · failed {} · running {}",
                s.completed, s.failed, s.running
            ));
            last = Some(s);
        }
        break;
    }
    bar.finish();
    if let Some(s) = last {
        print_status(&s);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: SweepRef) -> anyhow::Result<ExitCode> {
    let s = call(&args.remote, |mut c| {
        let sweep_id = args.sweep.clone();
        async move { c.cancel_sweep(pb::CancelSweepRequest { sweep_id }).await }
    })
    .await?;
    print_status(&s);
    Ok(ExitCode::SUCCESS)
}

/// Converts a wire result into the JSON shape of `results.jsonl`.
/// Per-trial results of `sweep` from the coordinator `remote` names.
pub async fn fetch_results_from(
    remote: &Remote,
    sweep: &str,
) -> anyhow::Result<Vec<sigsweep_types::ResultRecord>> {
    let list = call(remote, |mut c| {
        let sweep_id = sweep.to_string();
        async move { c.list_results(pb::ListResultsRequest { sweep_id }).await }
    })
    .await?;
    Ok(list.results.iter().map(|r| r.to_record(sweep)).collect())
}

pub async fn results(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let records = fetch_results_from(&args.remote, &args.sweep).await?;
    match args.format {
        ResultsFormat::Jsonl => {
            for r in &records {
                println!("{}", serde_json::to_string(r)?);
            }
        }
        ResultsFormat::Csv => {
            let rows: Vec<serde_json::Value> = records
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?;
            let mut config_keys: Vec<String> = Vec::new();
            let mut metric_keys: Vec<String> = Vec::new();
            for r in &rows {
                for k in r["config"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    if !config_keys.contains(k) {
                        config_keys.push(k.clone());
                    }
                }
                for k in r["metrics"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    if !metric_keys.contains(k) {
                        metric_keys.push(k.clone());
                    }
                }
            }
            let mut header = vec!["trial_id".to_string(), "seed".into(), "status".into()];
            header.extend(config_keys.iter().cloned());
            header.extend(metric_keys.iter().cloned());
            println!("{}", header.join(","));
            for r in &rows {
                let mut line = vec![
                    r["trial_id"].as_str().unwrap_or_default().to_string(),
                    r["seed"].to_string(),
                    r["status"].as_str().unwrap_or_default().to_string(),
                ];
                for k in &config_keys {
                    line.push(match &r["config"][k] {
                        serde_json::Value::String(s) => s.clone(),
                        v => v.to_string(),
                    });
                }
                for k in &metric_keys {
                    line.push(
                        r["metrics"][k]
                            .as_f64()
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    );
                }
                println!("{}", line.join(","));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
