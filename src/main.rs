//! The `zcc-relay` binary: command-line parsing, logging set-up, dispatch and
//! exit codes (0 ok, 78 configuration error, 1 runtime failure). Everything else
//! lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zcc_relay::config::Secrets;

const DEFAULT_CONFIG: &str = zcc_relay::config::DEFAULT_PATH;
/// EX_CONFIG from sysexits.h; the systemd unit does not restart on it.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "zcc-relay",
    version,
    about = "Relays Zoom Contact Center events to your systems through a crash-safe journal"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check a configuration file and list every problem in it.
    Validate {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run the whole pipeline against the built-in Zoom simulator (no account needed).
    Demo(zcc_relay::cli::demo::DemoArgs),
    /// Inspect the journal's outboxes and dead-letters; redrive or purge a dead-letter.
    Queue(zcc_relay::cli::queue::QueueArgs),
    /// Fill a window from Zoom's REST API now (or, with --dry-run, show what it would add).
    Reconcile(zcc_relay::cli::reconcile::ReconcileArgs),
    /// Show the daemon's state: socket, sinks, backlog, gaps (exit 0 healthy, 2 needs
    /// attention, 3 not running).
    Status(zcc_relay::cli::status::StatusArgs),
    /// Prove each sink's set-up without writing anything, and say what to fix
    /// (exit 0 all ready, 1 a sink is not ready, 78 bad configuration).
    Check(zcc_relay::cli::check::CheckArgs),
}

fn main() -> ExitCode {
    // Before anything opens a file or a socket (see `service::limits`).
    let limits = zcc_relay::service::limits::apply();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Run { config } => run(&config, limits),
        Command::Demo(args) => {
            // The daemon's own state changes, not its dependencies' chatter.
            zcc_relay::telemetry::init("warn,zcc_relay=info");
            runtime_then(|| async move { zcc_relay::cli::demo::run(args).await })
        }
        Command::Queue(args) => queue(&args),
        Command::Reconcile(args) => reconcile(args),
        Command::Status(args) => status(&args),
        Command::Check(args) => check(args),
    }
}

/// The configuration a command runs with, or exit 78 with every problem printed.
fn settings(
    path: &std::path::Path,
    secrets: Secrets,
) -> Result<zcc_relay::config::Settings, ExitCode> {
    zcc_relay::config::load_with(path, secrets)
        .map(|loaded| loaded.settings)
        .map_err(|e| {
            eprintln!("{}: configuration is invalid:\n{e}", path.display());
            ExitCode::from(EXIT_CONFIG)
        })
}

fn status(args: &zcc_relay::cli::status::StatusArgs) -> ExitCode {
    // Run by hand, outside the service: the credential files are not there,
    // and reading the journal needs no secret.
    let settings = match settings(&args.config, Secrets::Skip) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    zcc_relay::telemetry::init("error");
    match zcc_relay::cli::status::run(args, &settings) {
        Ok(health) => ExitCode::from(health.exit_code()),
        Err(e) => {
            eprintln!("zcc-relay status: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: zcc_relay::cli::check::CheckArgs) -> ExitCode {
    // With secrets: a kind may need its token to prove anything. Never the
    // journal: it runs beside a running daemon.
    let settings = match settings(&args.config, Secrets::Read) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    // The report says everything; only errors of the libraries beside it.
    zcc_relay::telemetry::init("error");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(zcc_relay::cli::check::run(&args, &settings)) {
        Ok(zcc_relay::cli::check::Verdict::UnknownSink(names)) => {
            let name = args.sink.as_deref().unwrap_or_default();
            let names = if names.is_empty() {
                "none is configured".to_owned()
            } else {
                format!("the sinks are: {}", names.join(", "))
            };
            eprintln!("{}: no sink named {name:?}; {names}", args.config.display());
            ExitCode::from(EXIT_CONFIG)
        }
        Ok(verdict) => ExitCode::from(verdict.exit_code()),
        Err(e) => {
            eprintln!("zcc-relay check: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn reconcile(args: zcc_relay::cli::reconcile::ReconcileArgs) -> ExitCode {
    let settings = match settings(&args.config, Secrets::Read) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    zcc_relay::telemetry::init(&settings.daemon.log_level);
    runtime_then(|| async move { zcc_relay::cli::reconcile::run(&args, &settings).await })
}

fn queue(args: &zcc_relay::cli::queue::QueueArgs) -> ExitCode {
    // Like `status`: the journal alone, no secret needed.
    let settings = match settings(&args.config, Secrets::Skip) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    // Only trouble inside the journal is worth a log line next to the report.
    zcc_relay::telemetry::init("error");
    match zcc_relay::cli::queue::run(args, &settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zcc-relay queue: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(path: &std::path::Path) -> ExitCode {
    match zcc_relay::config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                println!("warning: {warning}");
            }
            println!(
                "{}: configuration is valid ({} sink(s))",
                path.display(),
                loaded.settings.sinks.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: configuration is invalid:\n{e}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(path: &std::path::Path, limits: zcc_relay::service::limits::Applied) -> ExitCode {
    let loaded = match zcc_relay::config::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            // Logging is not set up yet (the level comes from the config).
            eprintln!("{}: configuration is invalid:\n{e}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let log = zcc_relay::telemetry::init(&loaded.settings.daemon.log_level);
    for warning in &loaded.warnings {
        tracing::warn!(key = %warning.key, "{}", warning.message);
    }
    if !limits.raised {
        tracing::warn!(
            soft = limits.nofile_soft,
            hard = limits.nofile_hard,
            "cannot raise the open-file limit to the hard limit; set LimitNOFILE= in the unit"
        );
    }
    let settings = loaded.settings;
    let path = path.to_owned();
    runtime_then(|| async move {
        let stats = zcc_relay::telemetry::stats::Stats::default();
        let shutdown = shutdown_signal();
        let (reload_tx, reloads) = tokio::sync::mpsc::channel(4);
        reload_on_sighup(path, reload_tx);
        let control = zcc_relay::app::Control {
            notifier: zcc_relay::service::Notifier::from_env(),
            watchdog: zcc_relay::service::notify::watchdog_interval(),
            reloads: Some(reloads),
            log,
        };
        zcc_relay::app::run_with(settings, stats, shutdown, control).await
    })
}

/// Listens for SIGHUP from now on (its default action would end the process)
/// and hands each re-read configuration to the daemon, which applies what is
/// safe to change live.
fn reload_on_sighup(
    path: PathBuf,
    reloads: tokio::sync::mpsc::Sender<
        Result<zcc_relay::config::Loaded, zcc_relay::config::ConfigError>,
    >,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; reloading needs a restart");
            return;
        }
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!(config = %path.display(), "SIGHUP received; re-reading the configuration");
            let file = path.clone();
            let loaded =
                match tokio::task::spawn_blocking(move || zcc_relay::config::load(&file)).await {
                    Ok(loaded) => loaded,
                    Err(e) => {
                        tracing::error!(error = %e, "configuration reload task failed");
                        continue;
                    }
                };
            if reloads.send(loaded).await.is_err() {
                return; // the daemon is stopping
            }
        }
    });
}

fn runtime_then<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(f());
    // A blocking task that never returns (a read stuck in the kernel) must not
    // keep a stopped daemon alive: dropping the runtime would wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // Logging is set up by now (journald or stderr): one line, with the
        // whole chain of causes.
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "zcc-relay failed");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
/// Listens for SIGTERM (systemd stop) and SIGINT (Ctrl-C) from the moment it
/// is called — before the journal is opened — and resolves on either, so a stop
/// during start-up is a clean stop too.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for stop signals; the daemon can only be killed");
                std::future::pending::<()>().await;
            }
        }
    }
}
