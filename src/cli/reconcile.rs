//! `zcc-relay reconcile --from --to [--dry-run]`: one reconciliation of an
//! operator-chosen window, outside the daemon's schedule.
//!
//! A real run appends to the journal and therefore needs it to itself (the
//! daemon stopped); the next daemon start delivers what it added. A dry run
//! only reads, so it also works beside a running daemon.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::view::Access;
use crate::config::Settings;
use crate::journal::{self, Journal, JournalError, SinkRoute};
use crate::reconcile::{Reconciler, RunReport, Target};
use crate::zoom::api::{Window, ZoomApi};
use crate::zoom::auth::{Credentials, TokenCache};

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    #[arg(long, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Start of the window (RFC 3339, e.g. 2026-11-20T00:00:00Z).
    #[arg(long)]
    pub from: String,
    /// End of the window (RFC 3339).
    #[arg(long)]
    pub to: String,
    /// Only report what would be added, per event type.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

fn instant(flag: &str, text: &str) -> anyhow::Result<u64> {
    let at: jiff::Timestamp = text.parse().with_context(|| {
        format!("--{flag} {text:?} is not an RFC 3339 time such as 2026-11-20T00:00:00Z")
    })?;
    u64::try_from(at.as_millisecond()).with_context(|| format!("--{flag} is before 1970"))
}

pub async fn run(args: &ReconcileArgs, settings: &Settings) -> anyhow::Result<()> {
    let window = Window {
        from_ms: instant("from", &args.from)?,
        to_ms: instant("to", &args.to)?,
    };
    if window.from_ms >= window.to_ms {
        bail!("--from must be before --to");
    }
    let tls = crate::tls::client_config().context("cannot set up TLS")?;
    let http = crate::tls::http_client(&tls, std::time::Duration::from_secs(30))?;
    let tokens = TokenCache::new(http.clone(), Credentials::from_settings(&settings.zoom));
    let api = ZoomApi::new(
        http,
        settings.zoom.api_base_url.clone(),
        tokens,
        settings.reconcile.max_requests_per_second,
    );
    let stats = crate::telemetry::stats::Stats::default();
    // In a pair, what this run appends is numbered as the daemon numbers it:
    // note versions from the ledger the two relays share.
    let ledger = match &settings.standby {
        Some(standby) if !args.dry_run => {
            let key =
                crate::lease::key_for(&settings.zoom.account_id, &settings.zoom.subscription_id);
            let store = crate::lease::nats::NatsLease::connect(standby, key, &tls).await?;
            Some(crate::lease::ledger::Ledger::new(
                Arc::new(store),
                standby.ttl / 3,
                stats.clone(),
            ))
        }
        _ => None,
    };
    let reconciler = Reconciler {
        api: Arc::new(api),
        settings: settings.reconcile.clone(),
        account_id: settings.zoom.account_id.clone(),
        stats,
        ledger,
    };

    let dir = &settings.journal.dir;
    let routes = SinkRoute::for_sinks(&settings.sinks);
    // As the daemon opens it: with media on, reconciled media records wait for
    // the media stage (the next daemon start) instead of going out bare, and
    // records already waiting for it stay there.
    let media = settings.media.enabled.then(crate::media::media_events);
    let (report, mode) = match Journal::open_with_media(dir, routes, media) {
        Ok(journal) => {
            let target = if args.dry_run {
                let reader = journal.clone();
                Target::DryRun(Box::new(move |id, version| {
                    let txn = reader.begin_read()?;
                    journal::read::is_new(&txn, id, version)
                }))
            } else {
                Target::Apply(journal.clone())
            };
            let report = reconciler.reconcile(window, &target).await;
            drop(target);
            journal.close().await;
            (report?, Access::Exclusive)
        }
        Err(JournalError::Locked { holder, .. }) if args.dry_run => {
            let db =
                journal::open_read_only(dir).context("cannot read the running daemon's journal")?;
            let target = Target::DryRun(Box::new(move |id, version| {
                let txn = redb::ReadableDatabase::begin_read(&db)?;
                journal::read::is_new(&txn, id, version)
            }));
            let _ = holder;
            (
                reconciler.reconcile(window, &target).await?,
                Access::ReadOnly,
            )
        }
        Err(JournalError::Locked { holder, .. }) => bail!(
            "the journal is in use by zcc-relay pid {holder}; its own sweep covers the last reconcile.lookback. \
             Stop it (systemctl stop zcc-relay) to reconcile another window, or add --dry-run to look without changing anything"
        ),
        Err(e) => return Err(e).context("cannot open the journal"),
    };
    print(&report, args, mode)
}

fn print(report: &RunReport, args: &ReconcileArgs, mode: Access) -> anyhow::Result<()> {
    if args.json {
        let doc = serde_json::json!({"mode": mode, "dry_run": args.dry_run, "report": report});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let verb = if args.dry_run { "would add" } else { "added" };
    println!(
        "reconciled {} .. {} ({} requests to Zoom, journal {})",
        report.from,
        report.to,
        report.requests,
        mode.name()
    );
    println!("{:<58} {:>6} {:>10}", "event", "found", verb);
    for event in crate::reconcile::synth::TYPES {
        let found = report.found.get(event).copied().unwrap_or(0);
        let new = report.new.get(event).copied().unwrap_or(0);
        println!("{event:<58} {found:>6} {new:>10}");
    }
    if !args.dry_run && report.new.values().sum::<u64>() > 0 {
        println!("The daemon delivers the added records when it starts.");
    }
    Ok(())
}
