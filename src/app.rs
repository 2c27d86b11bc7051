//! Wiring and supervision: builds every component from `Settings`, runs them as
//! tasks, and shuts them down in order.
//!
//! Shutdown order: stop the source (no new events; appends already read are
//! committed), then stop pulling from the outboxes and give in-flight deliveries
//! until `daemon.drain_timeout`, then abort what is left (it stays in the
//! outbox) and close the journal after its last commit.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::deliver::SinkWorker;
use crate::journal::{Journal, SinkRoute};
use crate::reconcile::Reconciler;
use crate::sink::Sink;
use crate::source::Source;
use crate::telemetry::stats::Stats;
use crate::zoom::auth::{Credentials, TokenCache};

/// Timeout for token requests (per request; the token cache is retried by its callers).
const ZOOM_HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the daemon until `shutdown` resolves (Ok) or a component fails in a way
/// that needs a restart (Err). Either way the journal is closed cleanly.
pub async fn run(
    settings: Settings,
    stats: Stats,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = crate::tls::client_config().context("cannot set up TLS")?;
    let routes = SinkRoute::for_sinks(&settings.sinks);
    let dir = settings.journal.dir.clone();
    let media_events = settings.media.enabled.then(crate::media::media_events);
    let journal =
        tokio::task::spawn_blocking(move || Journal::open_with_media(&dir, routes, media_events))
            .await
            .context("journal open task failed")??;
    tracing::info!(dir = %settings.journal.dir.display(), sinks = settings.sinks.len(), "journal open");

    let zoom_http =
        crate::tls::http_client(&tls, ZOOM_HTTP_TIMEOUT).context("cannot build HTTP client")?;
    let tokens = TokenCache::new(
        zoom_http.clone(),
        Credentials::from_settings(&settings.zoom),
    );

    let source_cancel = CancellationToken::new();
    let sinks_stop = CancellationToken::new();
    let sinks_abort = CancellationToken::new();
    let mut workers = JoinSet::new();
    for sink_settings in &settings.sinks {
        let sink = match Sink::build(sink_settings, &tls) {
            Ok(sink) => Arc::new(sink),
            Err(e) => {
                journal.close().await;
                return Err(e.context(format!("sink {}", sink_settings.name)));
            }
        };
        let worker = SinkWorker {
            settings: sink_settings.clone(),
            sink,
            journal: journal.clone(),
            stats: stats.clone(),
        };
        let name = sink_settings.name.clone();
        let (stop, abort) = (sinks_stop.clone(), sinks_abort.clone());
        workers.spawn(async move { (name, worker.run(stop, abort).await) });
    }

    // Reconciliation and media share the token cache with the socket (one
    // token owner) and one request budget.
    let api = Arc::new(crate::zoom::api::ZoomApi::new(
        zoom_http.clone(),
        settings.zoom.api_base_url.clone(),
        tokens.clone(),
        settings.reconcile.max_requests_per_second,
    ));
    if settings.media.enabled {
        let stage = match media_stage(&settings, &tls, &tokens, &api, &journal) {
            Ok(stage) => stage,
            Err(e) => {
                journal.close().await;
                return Err(e);
            }
        };
        tracing::info!(store = %settings.media.store, "media stage on");
        let (stop, abort) = (sinks_stop.clone(), sinks_abort.clone());
        workers.spawn(async move { ("@media".to_owned(), stage.run(stop, abort).await) });
    }
    let reconciler = if settings.reconcile.enabled {
        let reconciler = Reconciler {
            api: api.clone(),
            settings: settings.reconcile.clone(),
            account_id: settings.zoom.account_id.clone(),
            stats: stats.clone(),
        };
        Some(tokio::spawn(
            reconciler.run(journal.clone(), source_cancel.clone()),
        ))
    } else {
        None
    };

    let source = Source {
        settings: settings.websocket.clone(),
        websocket_url: settings.zoom.websocket_url.clone(),
        subscription_id: settings.zoom.subscription_id.clone(),
        tokens,
        journal: journal.clone(),
        stats: stats.clone(),
        tls: tls.clone(),
        state: tokio::sync::watch::channel(crate::source::ConnectionState::Connecting).0,
    };
    let mut source_task = tokio::spawn(source.run(source_cancel.clone()));

    // Wait for the trigger, or for a component that cannot go on.
    let mut failure: Option<anyhow::Error> = None;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => tracing::info!("shutting down"),
        result = &mut source_task => {
            failure = Some(match result {
                Ok(Ok(())) => anyhow::anyhow!("WebSocket source stopped unexpectedly"),
                Ok(Err(e)) => anyhow::Error::new(e),
                Err(e) => anyhow::anyhow!("WebSocket source crashed: {e}"),
            });
        }
        Some(done) = workers.join_next() => {
            failure = Some(match done {
                Ok((name, Err(e))) => anyhow::Error::new(e).context(format!("sink {name}")),
                Ok((name, Ok(()))) => anyhow::anyhow!("sink {name} worker stopped unexpectedly"),
                Err(e) => anyhow::anyhow!("sink worker crashed: {e}"),
            });
        }
    }
    if let Some(e) = &failure {
        tracing::error!(error = %format!("{e:#}"), "stopping after a fatal error");
    }

    // 1. No new events. The source finishes its pending appends before it
    //    returns; reconciliation stops at once, even mid-request or during a
    //    rate-limit wait (what it committed stays; an unfinished gap stays
    //    pending and is repeated at the next start).
    source_cancel.cancel();
    if !source_task.is_finished() {
        let _ = (&mut source_task).await;
    }
    if let Some(reconciler) = reconciler {
        match reconciler.await {
            Ok(Err(e)) => tracing::error!(error = %e, "reconciliation stopped on a journal error"),
            Err(e) => tracing::error!(error = %e, "reconciliation task failed"),
            Ok(Ok(())) => {}
        }
    }
    // 2. Stop pulling; in-flight deliveries get the drain deadline.
    sinks_stop.cancel();
    let drain = settings.daemon.drain_timeout;
    let drained = tokio::time::timeout(drain, async {
        while let Some(done) = workers.join_next().await {
            if let Ok((name, Err(e))) = done {
                tracing::error!(sink = %name, error = %e, "sink worker failed");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            drain_timeout = %humantime::format_duration(drain),
            "deliveries still in flight at the drain deadline; they stay queued for the next start"
        );
        sinks_abort.cancel();
        while workers.join_next().await.is_some() {}
    }
    // 3. Last commit, then release the directory lock.
    journal.close().await;
    tracing::info!("stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The media stage for these settings (the store is built, so a bad store
/// configuration fails here, at start-up).
pub fn media_stage(
    settings: &Settings,
    tls: &Arc<rustls::ClientConfig>,
    tokens: &TokenCache,
    api: &Arc<crate::zoom::api::ZoomApi>,
    journal: &Journal,
) -> anyhow::Result<crate::media::MediaStage> {
    use crate::media::{Downloader, MediaStage, MediaStore, ZoomHosts};
    let store = MediaStore::build(&settings.media, tls)
        .with_context(|| format!("media store {}", settings.media.store))?;
    let zoom = ZoomHosts::new(&settings.zoom.api_base_url, &settings.zoom.oauth_url);
    let downloader =
        Downloader::new(tls, tokens.clone(), zoom).context("cannot build media HTTP client")?;
    Ok(MediaStage {
        journal: journal.clone(),
        api: api.clone(),
        downloader,
        store,
        retry_schedule: crate::media::worker::RETRY_SCHEDULE.to_vec(),
    })
}
