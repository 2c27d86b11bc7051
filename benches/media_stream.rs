//! Media streaming memory bound: one large recording downloaded from the
//! simulator (Bearer-checked, streamed in 64 KiB chunks) and uploaded into a
//! `file://` store by the media stage, measuring the process's peak resident
//! memory against its resident memory just before the download.
//!
//! `cargo bench --bench media_stream` streams 1 GiB; `ZCC_MEDIA_BYTES=N`
//! changes the size. Writes under `$ZCC_BENCH_DIR` (default: the system temp
//! dir), about that many bytes, removed afterwards. Fails (exit 1) if the
//! growth exceeds `ZCC_MEDIA_MAX_GROWTH_MIB` (default 64) or the stored file
//! does not match the simulator's sha256.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use zcc_relay::journal::{Journal, SinkRoute};
use zcc_sim::{FileKind, SimConfig, Simulator};

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or(0)
}

/// Resets the peak (`VmHWM`) to the current RSS (Linux: write 5 to clear_refs).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() -> anyhow::Result<()> {
    let size: u64 = std::env::var("ZCC_MEDIA_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let max_growth_mib: u64 = std::env::var("ZCC_MEDIA_MAX_GROWTH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let base = std::env::var_os("ZCC_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(size, max_growth_mib, dir.path()))
}

async fn run(size: u64, max_growth_mib: u64, dir: &std::path::Path) -> anyhow::Result<()> {
    let sim = Simulator::start(SimConfig::default()).await?;
    sim.set_media_sizes(size, 1024);
    let config = sim.config().clone();
    let text = format!(
        r#"
[zoom]
account_id = "{}"
client_id = "{}"
client_secret = "{}"
subscription_id = "{}"
oauth_url = "{}"
api_base_url = "{}"
websocket_url = "{}"
[journal]
dir = "{}"
[media]
enabled = true
[[sinks]]
name = "archive"
type = "file"
path = "{}"
"#,
        config.account_id,
        config.client_id,
        config.client_secret,
        config.subscription_id,
        sim.oauth_url(),
        sim.api_base_url(),
        sim.websocket_url(),
        dir.join("journal").display(),
        dir.join("archive.jsonl").display(),
    );
    let settings = zcc_relay::config::parse(&text, &zcc_relay::config::FakeEnvironment::new())
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .settings;
    let journal = Journal::open_with_media(
        &settings.journal.dir,
        SinkRoute::for_sinks(&settings.sinks),
        Some(zcc_relay::media::media_events()),
    )?;
    let tls = zcc_relay::tls::client_config()?;
    let http = zcc_relay::tls::http_client(&tls, Duration::from_secs(30))?;
    let tokens = zcc_relay::zoom::auth::TokenCache::new(
        http.clone(),
        zcc_relay::zoom::auth::Credentials::from_settings(&settings.zoom),
    );
    let api = Arc::new(zcc_relay::zoom::api::ZoomApi::new(
        http,
        settings.zoom.api_base_url.clone(),
        tokens.clone(),
        50,
    ));
    let stage = zcc_relay::app::media_stage(&settings, &tls, &tokens, &api, &journal)?;

    let body = json!({
        "event": "contact_center.recording_completed",
        "event_ts": jiff::Timestamp::now().as_millisecond(),
        "payload": {"account_id": config.account_id, "object": {
            "recording_id": "rec-large", "engagement_id": "eng-large", "channel": "voice"}},
    });
    sim.emit_without_socket(body.clone());
    let expected = sim.media_file(FileKind::VoiceRecording, "rec-large");
    let record = zcc_relay::zoom::event::parse_body(
        &body.to_string(),
        zcc_relay::record::Source::Websocket,
        zcc_relay::record::now_rfc3339(),
        0,
    )?;

    // Everything is set up and warm: measure from here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before_kib = status_kib("VmRSS");
    reset_peak();
    let started = Instant::now();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(stage.run(
        stop.clone(),
        CancellationToken::new(),
        zcc_relay::service::Heartbeat::detached(),
    ));
    journal.append(record).await?;
    let forwarded = loop {
        let (batch, _) = journal.read_outbox("archive", 0, 1).await?;
        if let Some(pending) = batch.into_iter().next() {
            break serde_json::from_slice::<serde_json::Value>(&pending.bytes)?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    let peak_kib = status_kib("VmHWM");
    stop.cancel();
    worker.await??;
    journal.close().await;
    sim.shutdown().await;

    let media = &forwarded["media"][0];
    let growth_mib = peak_kib.saturating_sub(before_kib) as f64 / 1024.0;
    println!(
        "media stream: {:.0} MiB in {:.1} s ({:.0} MiB/s), RSS before {:.1} MiB, peak {:.1} MiB, growth {growth_mib:.1} MiB",
        size as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        size as f64 / 1048576.0 / elapsed.as_secs_f64(),
        before_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0,
    );
    if media["sha256"] != expected.sha256 || media["size"] != expected.size {
        anyhow::bail!("stored file does not match the simulator's: {forwarded}");
    }
    let held = url::Url::parse(media["location"].as_str().unwrap_or_default())?
        .to_file_path()
        .map_err(|()| anyhow::anyhow!("not a file location"))?;
    if std::fs::metadata(&held)?.len() != size {
        anyhow::bail!("the stored file has the wrong size");
    }
    if growth_mib > max_growth_mib as f64 {
        anyhow::bail!("peak RSS grew {growth_mib:.1} MiB, above {max_growth_mib} MiB");
    }
    println!("OK  sha256 matches; growth within {max_growth_mib} MiB");
    Ok(())
}
