//! Hostile input and local attackers (issue 15): special files, symlinks and
//! hard links where the configuration or the journal expects regular files, a
//! careless umask, a flood of metrics connections, hostile REST answers and
//! frames. Each test holds one hole shut, with the real binary or real sockets
//! on 127.0.0.1.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

/// A minimal configuration with the Zoom secret in `secret_file`.
fn config_with_secret_file(dir: &Path, secret_file: &Path) -> String {
    format!(
        "[zoom]\naccount_id = \"a\"\nclient_id = \"c\"\nsubscription_id = \"s\"\n\
         client_secret_file = \"{}\"\n[journal]\ndir = \"{}\"\n\
         [[sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n",
        secret_file.display(),
        dir.join("journal").display(),
        dir.join("events.jsonl").display(),
    )
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// Runs `zcc-relay <args>` and gives it `limit` to finish (it is killed after).
fn run_within(args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "zcc-relay {args:?} did not finish within {limit:?}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn secret_and_config_files_must_be_small_regular_files() {
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let big = dir.path().join("big-secret");
    std::fs::write(&big, vec![b'x'; 65 * 1024]).unwrap();
    let config = dir.path().join("config.toml");
    for (secret, expected) in [
        (fifo.as_path(), "a FIFO, not a regular file"),
        (big.as_path(), "larger than 64 KiB"),
        (Path::new("/dev/zero"), "a device, not a regular file"),
    ] {
        std::fs::write(&config, config_with_secret_file(dir.path(), secret)).unwrap();
        let output = run_within(
            &["validate", "--config", config.to_str().unwrap()],
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{stderr}");
        assert!(
            stderr.contains("zoom.client_secret_file: cannot read"),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }

    // `media.options` `_file` keys go through the same reader.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "{}[media]\nstore = \"s3://bucket\"\n[media.options]\naws_secret_access_key_file = \"{}\"\n",
        config_with_secret_file(dir.path(), &secret),
        fifo.display()
    );
    std::fs::write(&config, text).unwrap();
    let output = run_within(
        &["validate", "--config", config.to_str().unwrap()],
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("media.options.aws_secret_access_key_file: cannot read")
            && stderr.contains("a FIFO, not a regular file"),
        "{stderr}"
    );

    // And `--config` itself: no hang on a FIFO, at most 1 MiB.
    let big_config = dir.path().join("big.toml");
    std::fs::write(&big_config, vec![b'#'; 1024 * 1024 + 1]).unwrap();
    for (path, expected) in [
        (fifo.as_path(), "a FIFO, not a regular file"),
        (big_config.as_path(), "larger than 1024 KiB"),
        (Path::new("/dev/urandom"), "a device, not a regular file"),
    ] {
        let output = run_within(
            &["validate", "--config", path.to_str().unwrap()],
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}

#[test]
fn warns_about_secrets_others_can_read() {
    let dir = temp_dir();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cr3t\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_with_secret_file(dir.path(), &secret)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let validate = || {
        let output = run_within(
            &["validate", "--config", config.to_str().unwrap()],
            Duration::from_secs(20),
        );
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = validate();
    assert!(
        out.contains(&format!(
            "warning: zoom.client_secret_file: \"{}\" (mode 0644) can be read by its group or others",
            secret.display()
        )),
        "{out}"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = validate();
    assert!(!out.contains("warning"), "{out}");

    // An inline secret in a config file others can read.
    let inline = config_with_secret_file(dir.path(), &secret).replace(
        &format!("client_secret_file = \"{}\"", secret.display()),
        "client_secret = \"inline-s3cr3t\"",
    );
    std::fs::write(&config, inline).unwrap();
    let out = validate();
    assert!(
        out.contains("warning: zoom.client_secret: an inline secret in")
            && out.contains("(mode 0644), which its group or others can read"),
        "{out}"
    );
    assert!(!out.contains("inline-s3cr3t"), "{out}");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!validate().contains("warning"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_onto_a_fifo_secret_neither_hangs_nor_blocks_the_stop() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let secret = dir.path().join("zoom-secret");
    std::fs::write(&secret, &sim.config().client_secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut typed = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::file("archive", &dir.path().join("events.jsonl")));
    typed.zoom.client_secret = None;
    typed.zoom.client_secret_file = Some(secret.clone());
    let text = typed.to_toml();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let log_path = dir.path().join("daemon.log");
    let child = spawn_run(&config, "info", &log_path);
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("the daemon connects");

    // The secret becomes a FIFO nobody writes to; a reload must not wait for it.
    std::fs::remove_file(&secret).unwrap();
    mkfifo(&secret);
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_log(&log_path, "configuration not reloaded").await;

    sigterm(&child);
    let output = tokio::time::timeout(Duration::from_secs(20), wait_output(child))
        .await
        .expect("the daemon exits after SIGTERM");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("a FIFO, not a regular file"), "{log}");
    sim.shutdown().await;
}

/// Polls a log file another process writes until it contains `needle`.
async fn wait_for_log(path: &Path, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) {
            return log;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{needle:?} not logged within 30 s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_never_writes_through_a_symlink() {
    let dir = temp_dir();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_with_secret_file(dir.path(), &secret)).unwrap();
    let journal = dir.path().join("journal");
    // A journal that exists (`status` and `queue` never create one).
    let opened = zcc_relay::journal::Journal::open(&journal, Vec::new()).unwrap();
    opened.close().await;
    drop(opened);
    std::fs::remove_file(journal.join(zcc_relay::journal::LOCK_FILE)).unwrap();
    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n";
    let victim = dir.path().join("passwd-copy");
    std::fs::write(&victim, PASSWD).unwrap();
    std::os::unix::fs::symlink(&victim, journal.join(zcc_relay::journal::LOCK_FILE)).unwrap();

    // The commands operators run as root, and the daemon itself.
    for args in [
        vec!["status", "--config"],
        vec!["queue", "stats", "--config"],
        vec!["run", "--config"],
    ] {
        let mut args = args.clone();
        args.push(config.to_str().unwrap());
        let output = run_within(&args, Duration::from_secs(20));
        assert_ne!(output.status.code(), Some(0), "{args:?}: {output:?}");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            PASSWD,
            "{args:?}"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("symbolic link"), "{args:?}: {stderr}");
    }

    // A dangling journal.redb symlink: no database is created at its target.
    std::fs::remove_file(journal.join(zcc_relay::journal::LOCK_FILE)).unwrap();
    std::fs::remove_file(journal.join("journal.redb")).unwrap();
    let target = dir.path().join("elsewhere.redb");
    std::os::unix::fs::symlink(&target, journal.join("journal.redb")).unwrap();
    let output = run_within(
        &["run", "--config", config.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(!target.exists(), "redb created a file through the symlink");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_private_whatever_the_umask() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let journal = dir.path().join("state").join("journal");
    let events = dir.path().join("events.jsonl");
    let mut typed = TestConfig::new(&sim, &journal).sink(SinkTable::file("archive", &events));
    typed.media = Some(MediaTable::enabled());
    let text = typed.to_toml();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // A careless shell: umask 022.
    let child = Command::new("sh")
        .args(["-c", "umask 022; exec \"$0\" run --config \"$1\""])
        .arg(BIN)
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("the daemon connects");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    sim.emit(recording_event("R-umask", now));
    let start = Instant::now();
    while read_lines(&events).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing delivered:\n{}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&child);
    let output = wait_output(child).await;
    assert_eq!(output.status.code(), Some(0));

    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&events), 0o600, "events.jsonl");
    assert_eq!(mode(&journal), 0o700, "the journal directory");
    assert_eq!(
        mode(&dir.path().join("state")),
        0o700,
        "a directory it created"
    );
    let mut media_files = 0;
    let mut pending = vec![journal.clone()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                pending.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                media_files +=
                    usize::from(path.extension().is_some_and(|e| e != "redb" && e != "lock"));
            }
        }
    }
    assert!(
        media_files >= 1,
        "the recording was stored under the journal"
    );
    sim.shutdown().await;
}

/// The metrics endpoint alone, on a loopback port, over a fresh journal.
async fn metrics_endpoint(
    dir: &Path,
) -> (
    std::net::SocketAddr,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    use zcc_relay::telemetry::metrics;
    let journal = zcc_relay::journal::Journal::open(dir, Vec::new()).unwrap();
    let tls = zcc_relay::tls::client_config().unwrap();
    let http = zcc_relay::tls::http_client(&tls, Duration::from_secs(5)).unwrap();
    let tokens = zcc_relay::zoom::auth::TokenCache::new(
        http,
        zcc_relay::zoom::auth::Credentials {
            oauth_url: "http://127.0.0.1:9/oauth/token".parse().unwrap(),
            account_id: "a".into(),
            client_id: "c".into(),
            client_secret: zcc_relay::config::Secret::new("s".into()),
        },
    );
    let (_state_tx, state) =
        tokio::sync::watch::channel(zcc_relay::source::ConnectionState::Connecting);
    let listener = metrics::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let sources = metrics::Sources {
        stats: zcc_relay::telemetry::stats::Stats::default(),
        state,
        tokens,
        journal,
        journal_dir: dir.to_path_buf(),
        reconcile_interval: None,
        lease: None,
    };
    let task = tokio::spawn(metrics::serve(listener, sources, cancel.clone()));
    (address, cancel, task)
}

/// `future`'s output, or `None` after `limit` of tokio time. Under a paused
/// clock tokio jumps to the next timer as soon as no task can run, while
/// loopback traffic (an accept, a request's bytes, a close) can still be on
/// its way through the kernel of a loaded machine: each 100 ms of tokio time
/// here gives the kernel a millisecond of real time first, so that a jump
/// outruns a packet already sent only if the kernel holds it for longer than
/// that at every step. The real sleep is the deliberate exception to "no real
/// sleeps in tests": it stands for the wire, not for the logic under test.
async fn paced<F: std::future::Future>(limit: Duration, future: F) -> Option<F::Output> {
    tokio::pin!(future);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::select! {
            output = &mut future => return Some(output),
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Reads until the server closes the connection; `false` if it never does
/// within `limit` (tokio time).
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 64 * 1024];
    paced(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_some()
}

/// Slowloris and idle keep-alive connections are cut; past the cap, a new
/// client waits for a slot instead of costing the daemon a file descriptor.
#[tokio::test(start_paused = true)]
async fn the_metrics_endpoint_bounds_its_connections() {
    use tokio::io::AsyncWriteExt;
    use zcc_relay::telemetry::metrics::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
    let dir = temp_dir();
    let (address, cancel, task) = metrics_endpoint(dir.path()).await;

    // Headers that never end.
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(300)).await,
        "slowloris held"
    );
    assert!(start.elapsed() >= HEADER_READ_TIMEOUT);

    // A whole request, then silence on the kept-alive connection.
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(300)).await,
        "idle connection held"
    );

    // The cap: every slot taken by a silent client, one more real scrape waits
    // until the header timeout frees them.
    let mut silent = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        silent.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    // Time for the server to accept them all.
    paced(Duration::from_secs(1), std::future::pending::<()>()).await;
    let start = tokio::time::Instant::now();
    let mut scrape = tokio::net::TcpStream::connect(address).await.unwrap();
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    use tokio::io::AsyncReadExt;
    paced(Duration::from_secs(300), scrape.read_to_end(&mut answer))
        .await
        .expect("the scrape is answered once a slot frees")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(
        start.elapsed() >= HEADER_READ_TIMEOUT / 2,
        "answered after {:?}: more than {MAX_CONNECTIONS} connections were served at once",
        start.elapsed()
    );
    cancel.cancel();
    task.await.unwrap();
}

/// A Zoom stand-in whose recordings listing misbehaves: `huge` answers a
/// 9 MiB page (the cap is 8 MiB), otherwise every page hands back the same `next_page_token`.
/// The other listings answer one empty page. Returns the paths requested.
async fn hostile_rest(
    huge: bool,
) -> (
    url::Url,
    url::Url,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use axum::routing::{get, post};
    let requested = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = requested.clone();
    let app = axum::Router::new()
        .route(
            "/oauth/token",
            post(|| async {
                axum::Json(serde_json::json!({"access_token": "t", "expires_in": 3600}))
            }),
        )
        .fallback(get(move |uri: axum::http::Uri| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(uri.path().to_string());
                if !uri.path().ends_with("/recordings") {
                    return axum::Json(serde_json::json!({"next_page_token": ""})).into_response();
                }
                if huge {
                    let filler = "x".repeat(9 * 1024 * 1024);
                    return axum::Json(serde_json::json!({"recordings": [], "filler": filler}))
                        .into_response();
                }
                axum::Json(serde_json::json!({"recordings": [], "next_page_token": "again"}))
                    .into_response()
            }
        }));
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        format!("http://{address}/oauth/token").parse().unwrap(),
        format!("http://{address}/v2").parse().unwrap(),
        requested,
    )
}

fn zoom_api(oauth: url::Url, base: url::Url) -> zcc_relay::zoom::api::ZoomApi {
    let tls = zcc_relay::tls::client_config().unwrap();
    let http = zcc_relay::tls::http_client(&tls, Duration::from_secs(10)).unwrap();
    let tokens = zcc_relay::zoom::auth::TokenCache::new(
        http.clone(),
        zcc_relay::zoom::auth::Credentials {
            oauth_url: oauth,
            account_id: "a".into(),
            client_id: "c".into(),
            client_secret: zcc_relay::config::Secret::new("s".into()),
        },
    );
    zcc_relay::zoom::api::ZoomApi::new(http, base, tokens, 50)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_listing_page_is_a_failed_request() {
    let (oauth, base, _) = hostile_rest(true).await;
    let api = zoom_api(oauth, base);
    let result = api.get("contact_center/recordings", &[]).await;
    match result {
        Err(zcc_relay::zoom::api::ApiError::TooLarge { limit, .. }) => {
            assert_eq!(limit, zcc_relay::zoom::api::MAX_BODY_BYTES)
        }
        other => panic!(
            "a 9 MiB page was accepted: {:?}",
            other.map(|_| "a JSON value")
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_pagination_stops_and_the_other_listings_go_on() {
    let (oauth, base, requested) = hostile_rest(false).await;
    let api = std::sync::Arc::new(zoom_api(oauth, base));
    let reconciler = zcc_relay::reconcile::Reconciler {
        api: api.clone(),
        settings: zcc_relay::config::ReconcileSettings::default(),
        account_id: "a".into(),
        stats: zcc_relay::telemetry::stats::Stats::default(),
        ledger: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let window = zcc_relay::zoom::api::Window {
        from_ms: now - 3_600_000,
        to_ms: now,
    };
    let target = zcc_relay::reconcile::Target::DryRun(Box::new(|_, _| Ok(true)));
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        reconciler.reconcile(window, &target),
    )
    .await
    .expect("the run ends")
    .expect("the run goes on past the endless listing");
    let requested = requested.lock().unwrap().clone();
    let recordings = requested
        .iter()
        .filter(|p| p.ends_with("/recordings"))
        .count();
    assert_eq!(
        recordings, 2,
        "stopped at the first repeated token: {requested:?}"
    );
    assert!(
        requested.iter().any(|p| p.ends_with("/engagements")),
        "{requested:?}"
    );
    assert!(
        requested.iter().any(|p| p.ends_with("/inboxes/messages")),
        "{requested:?}"
    );
    assert_eq!(report.requests as usize, requested.len());
}

/// Ids and event names with newlines, escape sequences and 50 KB of text:
/// delivered (the `webhook-id` percent-encoded and signed as sent), never a
/// forged or raw log line, never a raw escape in `queue dead`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_are_delivered_and_never_reach_a_log_or_table_raw() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let refuses = FakeSink::always(400).await;
    let dir = temp_dir();
    let config = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::http("crm", &crm.url()))
        .sink(SinkTable::http("refuses", &refuses.url()))
        .write(&dir.path().join("config.toml"));
    let log_path = dir.path().join("daemon.log");
    let child = spawn_run(&config, "debug", &log_path);
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("the daemon connects");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let forged = "\n2026-01-01T00:00:00.000000Z  INFO zcc_relay: forged line";
    let mut newline = recording_event("r1", now);
    newline["payload"]["object"]["recording_id"] = format!("r{forged}\u{1b}[2J").into();
    let mut huge = recording_event("r2", now);
    huge["payload"]["object"]["recording_id"] = "i".repeat(50_000).into();
    let odd_event = serde_json::json!({
        "event": format!("contact_center.odd{forged}\u{1b}]0;title\u{7}"),
        "event_ts": now,
        "payload": {"account_id": "sim-account", "object": {}}
    });
    for event in [newline, huge, odd_event] {
        assert!(sim.emit(event));
    }
    crm.wait_accepted(3).await;
    let accepted = crm.accepted();
    let expected_id = "recording_completed:r%0A2026-01-01T00:00:00.000000Z%20%20INFO%20zcc_relay:\
                       %20forged%20line%1B[2J";
    let first = accepted
        .iter()
        .find(|r| r.webhook_id.starts_with("recording_completed:r%0A"))
        .expect("the id with a newline was delivered");
    assert_eq!(first.webhook_id, expected_id);
    let key = zcc_relay::sink::http::signing_key(SINK_SECRET).unwrap();
    let timestamp: u64 = first.timestamp.parse().unwrap();
    assert_eq!(
        first.signature,
        zcc_relay::sink::http::sign(&key, &first.webhook_id, timestamp, &first.body),
        "signed with the webhook-id as sent"
    );
    // The body is untouched: the raw id is in it.
    assert_eq!(
        first.record()["id"],
        format!("recording_completed:r{forged}\u{1b}[2J")
    );

    // The refusing sink dead-letters all three.
    let start = Instant::now();
    while refuses.requests().len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&child);
    let output = wait_output(child).await;
    assert_eq!(output.status.code(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains(" persisted "), "{log}");
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00"),
            "forged line: {line}"
        );
        assert!(!line.contains('\u{1b}'), "raw ESC in the log: {line:?}");
        assert!(line.len() < 8 * 1024, "a {} byte log line", line.len());
    }

    let output = run_within(
        &[
            "queue",
            "dead",
            "--sink",
            "refuses",
            "--config",
            config.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{table}");
    assert!(
        table.contains("recording_completed:r\\n2026-01-01"),
        "{table}"
    );
    assert!(!table.contains('\u{1b}'), "raw ESC in the table");
    assert!(
        table.lines().all(|line| line.len() < 4 * 1024),
        "a cell was not cut"
    );
    assert!(
        table
            .lines()
            .all(|line| !line.starts_with("2026-01-01T00:00:00")),
        "{table}"
    );
    sim.shutdown().await;
}

/// A message between `max_frame_bytes` and tungstenite's limit is refused with
/// the socket kept; past the limit (`max_frame_bytes` + 1 MiB, not 64 MiB) it is
/// refused before being buffered, counted, and costs the connection, which
/// comes back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tungstenite_refuses_a_message_past_max_frame_bytes_plus_headroom() {
    use zcc_relay::source::message_cap;
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let mut typed = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::file("archive", &dir.path().join("events.jsonl")));
    typed.websocket.max_frame_bytes = Some(1024);
    let daemon = Daemon::start(typed.settings());
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("the daemon connects");
    let wait_refused = |n: u64| {
        let stats = daemon.stats.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(30),
                stats.wait_until(move |s| s.bad_frames >= n),
            )
            .await
            .expect("the frame is refused and counted");
        }
    };
    assert!(sim.send_raw_text("x".repeat(4096)));
    wait_refused(1).await;
    assert_eq!(
        sim.handshakes_completed(),
        1,
        "a frame under the headroom keeps the socket"
    );

    assert!(sim.send_raw_text("x".repeat(message_cap(1024) + 1)));
    wait_refused(2).await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while sim.handshakes_completed() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the daemon reconnects after a message past tungstenite's limit");
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

/// 3,000 bad frames in a burst: every one counted, a handful of log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_frames_is_logged_at_a_bounded_rate() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let text = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::file("archive", &dir.path().join("events.jsonl")))
        .to_toml();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let log_path = dir.path().join("daemon.log");
    let child = spawn_run(&config, "info", &log_path);
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("the daemon connects");
    for n in 0..3000 {
        assert!(sim.send_raw_text(format!("not json {n}")));
    }
    // A good event after the flood: it was read, so the flood was too.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(sim.emit(recording_event("after-flood", now)));
    let events = dir.path().join("events.jsonl");
    let start = Instant::now();
    while read_lines(&events).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the event after the flood"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&child);
    wait_output(child).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines = log.matches("refused a WebSocket frame").count();
    assert!((1..=3).contains(&lines), "{lines} refusal lines");
    assert_eq!(
        sim.handshakes_completed(),
        1,
        "bad frames never cost the connection"
    );
    sim.shutdown().await;
}

/// A media URL Zoom (or whoever wrote the event) points at a cloud metadata
/// address, or at plain http beyond loopback, is refused for good before any
/// connection: no retries for a day, no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_downloads_refuse_metadata_addresses_and_plain_http() {
    use zcc_relay::failure::Class;
    use zcc_relay::media::download::{Downloader, ZoomHosts};
    let tls = zcc_relay::tls::client_config().unwrap();
    let http = zcc_relay::tls::http_client(&tls, Duration::from_secs(5)).unwrap();
    let base: url::Url = "https://api.zoom.us/v2".parse().unwrap();
    let tokens = zcc_relay::zoom::auth::TokenCache::new(
        http,
        zcc_relay::zoom::auth::Credentials {
            oauth_url: "https://zoom.us/oauth/token".parse().unwrap(),
            account_id: "a".into(),
            client_id: "c".into(),
            client_secret: zcc_relay::config::Secret::new("s".into()),
        },
    );
    let downloader = Downloader::new(&tls, tokens, ZoomHosts::new(&base, &base)).unwrap();
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://169.254.169.254/x",
        "http://192.0.2.1/transcript.vtt",
    ] {
        let started = Instant::now();
        match downloader.open(url).await {
            Err(failure) if failure.class == Class::Permanent => {
                assert!(failure.reason.contains("refused"), "{url}: {failure}")
            }
            Err(other) => panic!("{url}: {other:?}"),
            Ok(_) => panic!("{url}: fetched"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{url}: a connection was tried"
        );
    }
}

/// Started from a shell with a low soft limit, the daemon raises its open-file
/// limit to the hard one (the unit sets `LimitNOFILE=` too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_raises_its_open_file_limit() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let text = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::file("archive", &dir.path().join("events.jsonl")))
        .to_toml();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let child = Command::new("sh")
        .args(["-c", "ulimit -Sn 256; exec \"$0\" run --config \"$1\""])
        .arg(BIN)
        .arg(&config)
        .env_remove("JOURNAL_STREAM")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("the daemon connects");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>();
    sigterm(&child);
    wait_output(child).await;
    assert_eq!(open_files.len(), 2, "{limits}");
    assert_eq!(open_files[0], open_files[1], "soft = hard: {limits}");
    assert_ne!(open_files[0], "256", "{limits}");
    sim.shutdown().await;
}
