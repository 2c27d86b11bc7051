//! Wiring and supervision: builds every component from `Settings`, runs them as
//! tasks, and shuts them down in order.
//!
//! Shutdown order: stop the source (no new events; appends already read are
//! committed), then stop pulling from the outboxes and give in-flight deliveries
//! until `daemon.drain_timeout`, then abort what is left (it stays in the
//! outbox) and close the journal after its last commit.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Loaded, Settings};
use crate::deliver::SinkWorker;
use crate::journal::{Journal, MEDIA, SinkRoute};
use crate::reconcile::Reconciler;
use crate::service::{Health, Notifier, reload, status};
use crate::sink::{BuildContext, Registry, Running, Sink};
use crate::source::Source;
use crate::telemetry::LogControl;
use crate::telemetry::stats::Stats;
use crate::zoom::auth::{Credentials, TokenCache};

/// How long open scrape connections get to finish at shutdown.
const METRICS_STOP: std::time::Duration = std::time::Duration::from_secs(1);

/// Timeout for token requests (per request; the token cache is retried by its callers).
const ZOOM_HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the binary adds when it runs as a service; the default (tests, `demo`)
/// adds nothing.
#[derive(Default)]
pub struct Control {
    /// sd_notify: READY, STATUS, WATCHDOG, STOPPING.
    pub notifier: Notifier,
    /// systemd's watchdog interval (`WATCHDOG_USEC`), if it asks for pings.
    pub watchdog: Option<Duration>,
    /// Configurations re-read on SIGHUP.
    pub reloads: Option<mpsc::Receiver<Result<Loaded, ConfigError>>>,
    /// The log level of the running process.
    pub log: LogControl,
}

/// Runs the daemon until `shutdown` resolves (Ok) or a component fails in a way
/// that needs a restart (Err). Either way the journal is closed cleanly.
pub async fn run(
    settings: Settings,
    stats: Stats,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with(settings, stats, shutdown, Control::default()).await
}

/// [`run`] under a service manager: notifications, the watchdog and reloads.
pub async fn run_with(
    settings: Settings,
    stats: Stats,
    shutdown: impl Future<Output = ()>,
    control: Control,
) -> anyhow::Result<()> {
    // Every main loop beats a quarter of the watchdog interval; the watchdog
    // withholds its ping when one has not beaten for half of it.
    // (Nobody watches without a notify socket to ping.)
    let watchdog = control.watchdog.filter(|_| control.notifier.is_enabled());
    let health = watchdog.map_or_else(Health::default, |interval| Health::watched(interval / 4));
    let tls = crate::tls::client_config().context("cannot set up TLS")?;
    let routes = SinkRoute::for_sinks(&settings.sinks);
    let dir = settings.journal.dir.clone();
    let media_events = settings.media.enabled.then(crate::media::media_events);
    let writer_heartbeat = health.register("journal writer");
    let journal = tokio::task::spawn_blocking(move || {
        Journal::open_with(&dir, routes, media_events, writer_heartbeat)
    })
    .await
    .context("journal open task failed")??;
    tracing::info!(dir = %settings.journal.dir.display(), sinks = settings.sinks.len(), "journal open");

    // Bound before any task starts: a taken port is a startup failure.
    let metrics_listener = match settings.metrics.listen {
        None => None,
        Some(address) => match crate::telemetry::metrics::bind(address).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                journal.close().await;
                return Err(e);
            }
        },
    };

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
    let mut sinks = Vec::new();
    for sink_settings in &settings.sinks {
        let context = BuildContext {
            name: &sink_settings.name,
            timeout: sink_settings.timeout,
            tls: &tls,
            health: &health,
            journal: Some(&journal),
        };
        let sink = match sink_settings.kind.build(&context).await {
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
            health: health.clone(),
        };
        sinks.push((sink_settings.name.clone(), worker.sink.clone()));
        let name = sink_settings.name.clone();
        let (stop, abort) = (sinks_stop.clone(), sinks_abort.clone());
        let stats = stats.clone();
        workers.spawn(async move {
            // Each sink proves its set-up in its own task, so a slow pre-flight
            // delays neither start-up nor the other sinks. One that is not
            // ready still runs: its records wait and it is reported failing
            // until the set-up is fixed.
            tokio::select! {
                ready = worker.sink.ready() => if let Err(error) = ready {
                    stats.sink_setup_error(&name, error.class == crate::failure::Class::Setup);
                    tracing::warn!(sink = %name, %error, "sink not ready; its records wait in its outbox");
                },
                _ = stop.cancelled() => {}
            }
            (name, worker.run(stop, abort).await)
        });
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
        let heartbeat = health.register("media stage");
        workers.spawn(async move { (MEDIA.to_owned(), stage.run(stop, abort, heartbeat).await) });
    }
    // `[standby]`: the lease decides when the socket and the reconciler run.
    let me = crate::lease::holder_name();
    let lease = match &settings.standby {
        None => None,
        Some(standby) => {
            let key =
                crate::lease::key_for(&settings.zoom.account_id, &settings.zoom.subscription_id);
            match crate::lease::nats::NatsLease::connect(standby, key.clone(), &tls).await {
                Ok(store) => {
                    let (role, role_rx) =
                        tokio::sync::watch::channel(crate::lease::Role::Standby { holder: None });
                    tracing::info!(holder = %me, bucket = %standby.bucket, ttl = %humantime::format_duration(standby.ttl), "standby: the Zoom socket opens only while this relay holds the lease");
                    Some((
                        Arc::new(store),
                        role,
                        role_rx,
                        standby.ttl,
                        format!("{}/{key}", standby.bucket),
                    ))
                }
                Err(e) => {
                    journal.close().await;
                    return Err(e);
                }
            }
        }
    };
    // In a pair, note versions are numbered from the ledger the two share.
    let ledger = lease.as_ref().map(|(store, _, _, ttl, _)| {
        crate::lease::ledger::Ledger::new(store.clone(), *ttl / 3, stats.clone())
    });
    let reconciler = settings.reconcile.enabled.then(|| Reconciler {
        api: api.clone(),
        settings: settings.reconcile.clone(),
        account_id: settings.zoom.account_id.clone(),
        stats: stats.clone(),
        ledger: ledger.clone(),
    });
    let lease_view = lease
        .as_ref()
        .map(|(_, _, role_rx, _, name)| crate::lease::LeaseView {
            role: role_rx.clone(),
            holder: me.clone(),
            lease: name.clone(),
        });

    let (state, state_rx) = tokio::sync::watch::channel(crate::source::ConnectionState::Connecting);
    // The metrics endpoint lives until the journal closes, so a scrape sees the drain.
    let metrics_stop = CancellationToken::new();
    let metrics_task = match metrics_listener {
        None => None,
        Some(listener) => {
            let sources = crate::telemetry::metrics::Sources {
                stats: stats.clone(),
                state: state_rx,
                tokens: tokens.clone(),
                journal: journal.clone(),
                journal_dir: settings.journal.dir.clone(),
                reconcile_interval: settings
                    .reconcile
                    .enabled
                    .then_some(settings.reconcile.interval),
                lease: lease_view.clone(),
            };
            Some(tokio::spawn(crate::telemetry::metrics::serve(
                listener,
                sources,
                metrics_stop.clone(),
            )))
        }
    };
    let (live, live_rx) = tokio::sync::watch::channel(0u64);
    let source = Source {
        settings: settings.websocket.clone(),
        websocket_url: settings.zoom.websocket_url.clone(),
        subscription_id: settings.zoom.subscription_id.clone(),
        tokens: tokens.clone(),
        journal: journal.clone(),
        stats: stats.clone(),
        tls: tls.clone(),
        state,
        lease: lease
            .as_ref()
            .map(|(_, _, role_rx, ttl, _)| crate::lease::Gate {
                role: role_rx.clone(),
                ttl: *ttl,
            }),
        live: lease.as_ref().map(|_| live),
        ledger,
    };
    let connection = source.state.subscribe();
    let source_heartbeat = health.register("source");
    let reconciler_heartbeat = reconciler.as_ref().map(|_| health.register("reconciler"));
    let lease_cancel = CancellationToken::new();
    let (mut source_task, reconciler, lease_task) = match lease {
        None => {
            let cancel = source_cancel.clone();
            let source_task: tokio::task::JoinHandle<anyhow::Result<()>> =
                tokio::spawn(async move {
                    let mut heartbeat = source_heartbeat;
                    source
                        .run(cancel, &mut heartbeat)
                        .await
                        .map_err(anyhow::Error::new)
                });
            let reconciler =
                reconciler
                    .zip(reconciler_heartbeat)
                    .map(|(reconciler, mut heartbeat)| {
                        let (journal, cancel) = (journal.clone(), source_cancel.clone());
                        tokio::spawn(async move {
                            reconciler.run(journal, cancel, &mut heartbeat).await
                        })
                    });
            (source_task, reconciler, None)
        }
        Some((store, role, role_rx, ttl, _)) => {
            let lease_loop = crate::lease::Lease {
                store: store.clone(),
                ttl,
                holder: me.clone(),
                role,
            };
            let lease_task = tokio::spawn(lease_loop.run(lease_cancel.clone()));
            let terms = crate::lease::term::Terms {
                store,
                role: role_rx,
                holder: me.clone(),
                source,
                reconciler,
                journal: journal.clone(),
                stats: stats.clone(),
                live: live_rx,
            };
            let cancel = source_cancel.clone();
            let reconciler_heartbeat =
                reconciler_heartbeat.unwrap_or_else(crate::service::Heartbeat::detached);
            let source_task: tokio::task::JoinHandle<anyhow::Result<()>> =
                tokio::spawn(async move {
                    terms
                        .run(cancel, source_heartbeat, reconciler_heartbeat)
                        .await
                        .map_err(anyhow::Error::new)
                });
            (source_task, None, Some(lease_task))
        }
    };

    // Every task runs: tell systemd, then keep it posted.
    let service_stop = CancellationToken::new();
    let mut service_tasks = JoinSet::new();
    let notifier = control.notifier;
    if notifier.is_enabled() {
        let pending = status::pending(&journal).await;
        let state = connection.borrow().clone();
        let now_ms = crate::clock::now_ms();
        let mut first = status::line(&state, &BTreeSet::new(), pending, now_ms);
        if let Some(lease) = &lease_view {
            first = status::with_role(first, &lease.record(now_ms));
        }
        notifier.ready(&first);
        service_tasks.spawn(status::run(
            notifier.clone(),
            journal.clone(),
            connection,
            stats.failing_sinks(),
            lease_view.clone(),
            first,
            service_stop.clone(),
        ));
        if let Some(interval) = watchdog {
            service_tasks.spawn(crate::service::health::watchdog(
                health.clone(),
                notifier.clone(),
                interval,
                service_stop.clone(),
            ));
        }
    }
    if let Some(reloads) = control.reloads {
        service_tasks.spawn(apply_reloads(
            reloads,
            settings.clone(),
            control.log,
            tokens,
            sinks,
            service_stop.clone(),
        ));
    }

    // Wait for the trigger, or for a component that cannot go on.
    let mut failure: Option<anyhow::Error> = None;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => tracing::info!("shutting down"),
        result = &mut source_task => {
            failure = Some(match result {
                Ok(Ok(())) => anyhow::anyhow!("WebSocket source stopped unexpectedly"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("WebSocket source crashed: {e}"),
            });
        }
        Some(done) = workers.join_next() => {
            failure = Some(match done {
                Ok((name, Err(e))) => anyhow::Error::new(e).context(worker_label(&name)),
                Ok((name, Ok(()))) => anyhow::anyhow!("{} stopped unexpectedly", worker_label(&name)),
                Err(e) => anyhow::anyhow!("a sink worker or the media stage crashed: {e}"),
            });
        }
    }
    if let Some(e) = &failure {
        tracing::error!(error = %format!("{e:#}"), "stopping after a fatal error");
    }
    // The status task stops first, so that STOPPING=1 is the last word.
    service_stop.cancel();
    while service_tasks.join_next().await.is_some() {}
    notifier.stopping(match failure {
        Some(_) => "stopping after a fatal error",
        None => "stopping: draining in-flight deliveries",
    });

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
    // With the socket closed, the lease is released for the standby.
    lease_cancel.cancel();
    if let Some(lease_task) = lease_task {
        let _ = lease_task.await;
    }
    // 2. Stop pulling; in-flight deliveries get the drain deadline.
    sinks_stop.cancel();
    let drain = settings.daemon.drain_timeout;
    let drained = tokio::time::timeout(drain, async {
        while let Some(done) = workers.join_next().await {
            if let Ok((name, Err(e))) = done {
                if name == MEDIA {
                    tracing::error!(error = %e, "media stage failed while draining");
                } else {
                    tracing::error!(sink = %name, error = %e, "sink worker failed while draining");
                }
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
    metrics_stop.cancel();
    if let Some(mut task) = metrics_task
        && tokio::time::timeout(METRICS_STOP, &mut task).await.is_err()
    {
        task.abort();
    }
    journal.close().await;
    tracing::info!("stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How a task of the workers' set is named in errors: `sink crm`, or the
/// media stage (which runs beside the sink workers under [`MEDIA`]).
fn worker_label(name: &str) -> String {
    if name == MEDIA {
        "media stage".to_owned()
    } else {
        format!("sink {name}")
    }
}

/// Applies each configuration re-read on SIGHUP: the log level and secrets
/// live, everything else is reported as needing a restart. The journal is not
/// touched.
async fn apply_reloads(
    mut reloads: mpsc::Receiver<Result<Loaded, ConfigError>>,
    mut running: Settings,
    log: LogControl,
    tokens: TokenCache,
    sinks: Vec<(String, Arc<Sink>)>,
    stop: CancellationToken,
) {
    loop {
        let loaded = tokio::select! {
            _ = stop.cancelled() => return,
            next = reloads.recv() => match next {
                Some(loaded) => loaded,
                None => return,
            },
        };
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                let problems = e.to_string().replace('\n', "; ");
                tracing::error!(error = %problems, "configuration not reloaded: the file is invalid; running on with the configuration in use");
                continue;
            }
        };
        let plan = reload::plan(&running, &loaded.settings);
        let mut reloaded = Vec::new();
        let mut refused = Vec::new();
        if let Some(level) = &plan.log_level {
            match log.set_level(level) {
                Ok(()) => {
                    running.daemon.log_level = level.clone();
                    reloaded.push(reload::LOG_LEVEL_KEY.to_owned());
                }
                Err(e) => refused.push(format!("{} ({e})", reload::LOG_LEVEL_KEY)),
            }
        }
        if let Some(secret) = &plan.zoom_client_secret {
            tokens.set_client_secret(secret.clone());
            running.zoom.client_secret = secret.clone();
            reloaded.push(reload::ZOOM_CLIENT_SECRET_KEY.to_owned());
        }
        for update in &plan.sinks {
            let keys = update.key_paths();
            let applied = match sinks.iter().find(|(sink, _)| sink == &update.name) {
                Some((_, sink)) => sink.apply(&update.kind),
                None => Err(anyhow::anyhow!("no such sink is running")),
            };
            match applied {
                Ok(()) => {
                    let current = running.sinks.iter_mut().find(|s| s.name == update.name);
                    if let Some(current) = current {
                        current.kind = update.kind.clone();
                    }
                    reloaded.extend(keys);
                }
                Err(e) => refused.extend(keys.iter().map(|key| format!("{key} ({e})"))),
            }
        }
        let changed = if reloaded.is_empty() {
            "nothing".to_owned()
        } else {
            reloaded.join(", ")
        };
        tracing::info!(reloaded = %changed, "configuration reloaded");
        if !refused.is_empty() {
            tracing::warn!(keys = %refused.join(", "), "not reloaded; the values in use stay");
        }
        if !plan.needs_restart.is_empty() {
            tracing::warn!(
                keys = %plan.needs_restart.join(", "),
                "changed keys take effect only after a restart (systemctl restart zcc-relay); running on with their old values"
            );
        }
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
    let downloader = Downloader::new(tls, tokens.clone(), zoom)
        .context("cannot build media HTTP client")?
        .allow_http(settings.media.allow_http);
    Ok(MediaStage {
        journal: journal.clone(),
        api: api.clone(),
        downloader,
        store,
        retry_schedule: crate::media::worker::RETRY_SCHEDULE.to_vec(),
    })
}
