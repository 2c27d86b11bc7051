//! Running as a service: the systemd unit (`systemd-analyze verify` and
//! `security`), the sd_notify conversation of the real binary over a real
//! datagram socket, SIGHUP reloads with a real signal, and the journald fields
//! the real binary sends to a journald socket.
//!
//! Needs `systemd-analyze` (the `systemd` package; `.ci/run` installs it) and,
//! for the journald test, root to give the daemon a private mount namespace
//! (CI runs as root). Each test fails loudly, never skips, when it cannot run.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use zcc_sim::scenario;
use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

const UNIT: &str = include_str!("../../systemd/zcc-relay.service");
/// The template for many accounts per host (`zcc-relay@<account>`).
const TEMPLATE: &str = include_str!("../../systemd/zcc-relay@.service");
const INSTALLED_BIN: &str = "/usr/bin/zcc-relay";

/// The unit with the installed binary's path pointed at the one cargo built, so
/// that `verify` finds the executables it checks.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let path = dir.join("zcc-relay.service");
    std::fs::write(&path, UNIT.replace(INSTALLED_BIN, BIN)).unwrap();
    path
}

/// The template as instance `acme` (a file named after the instance is read
/// with `%i` = `acme`), the binary pointed at this build.
fn template_instance_for_this_build(dir: &Path) -> PathBuf {
    let path = dir.join("zcc-relay@acme.service");
    std::fs::write(&path, TEMPLATE.replace(INSTALLED_BIN, BIN)).unwrap();
    path
}

/// `systemd-analyze security`'s overall exposure of `unit`.
fn exposure(unit: &Path) -> f64 {
    let output = systemd_analyze(&["security", "--offline=true", "--no-pager"], unit);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}"));
    line.split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"))
}

/// `verify`'s findings, but for the restart back-off keys systemd < 254
/// does not know (it ignores them: the unit restarts every RestartSec).
fn verify_findings(unit: &Path) -> Vec<String> {
    let output = systemd_analyze(&["verify"], unit);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "verify failed:\n{stderr}");
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            !(line.contains("Unknown key 'RestartSteps'")
                || line.contains("Unknown key 'RestartMaxDelaySec'")
                || line.contains("Unknown key name 'RestartSteps'")
                || line.contains("Unknown key name 'RestartMaxDelaySec'"))
        })
        .map(str::to_owned)
        .collect()
}

fn systemd_analyze(args: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze must be installed (apt-get install systemd; .ci/run does)")
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = temp_dir();
    let unit = unit_for_this_build(dir.path());
    let output = systemd_analyze(&["verify"], &unit);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "verify failed:\n{stderr}");
    // systemd < 254 does not know the restart back-off keys and ignores them
    // (the unit then restarts every RestartSec); anything else is a finding.
    let findings: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            !(line.contains("Unknown key 'RestartSteps'")
                || line.contains("Unknown key 'RestartMaxDelaySec'")
                || line.contains("Unknown key name 'RestartSteps'")
                || line.contains("Unknown key name 'RestartMaxDelaySec'"))
        })
        .collect();
    assert!(findings.is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn unit_exposure_is_at_most_2() {
    let dir = temp_dir();
    let unit = unit_for_this_build(dir.path());
    let output = systemd_analyze(&["security", "--offline=true", "--no-pager"], &unit);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{stdout}");
    // README states the score and the systemd version that gave it; with that
    // version, the statement must be true.
    let readme = include_str!("../../README.md");
    let claim = readme
        .split("**exposure ")
        .nth(1)
        .and_then(|rest| rest.split("**").next())
        .expect("README states the exposure as **exposure X.Y (\"…\") with systemd N**");
    let claimed_score: f64 = claim.split_whitespace().next().unwrap().parse().unwrap();
    let claimed_version = claim.rsplit("systemd ").next().unwrap().trim();
    let version = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    let installed = version.split_whitespace().nth(1).unwrap_or_default();
    if installed == claimed_version {
        assert_eq!(
            format!("{claimed_score:.1}"),
            format!("{score:.1}"),
            "README's exposure for systemd {installed} is out of date"
        );
    }
}

#[test]
fn template_unit_passes_systemd_analyze_verify() {
    let dir = temp_dir();
    let unit = template_instance_for_this_build(dir.path());
    let findings = verify_findings(&unit);
    assert!(
        findings.is_empty(),
        "systemd-analyze verify:\n{findings:#?}"
    );
}

#[test]
fn template_unit_keeps_the_main_units_exposure() {
    let dir = temp_dir();
    let main = exposure(&unit_for_this_build(dir.path()));
    let template = exposure(&template_instance_for_this_build(dir.path()));
    assert!(template <= main, "template {template} > main unit {main}");
}

/// One instance per account: its own configuration, journal and secret;
/// everything else is the main unit's, line for line.
#[test]
fn template_unit_is_the_main_unit_per_account() {
    for line in [
        "ExecStartPre=/usr/bin/zcc-relay validate --config /etc/zcc-relay/%i.toml",
        "ExecStart=/usr/bin/zcc-relay run --config /etc/zcc-relay/%i.toml",
        "StateDirectory=zcc-relay/%i",
        "LoadCredential=zoom-client-secret:/etc/zcc-relay/%i/zoom-client-secret",
    ] {
        assert!(
            TEMPLATE.lines().any(|l| l == line),
            "the template lacks {line:?}"
        );
    }
    let settings = |text: &'static str| -> Vec<&'static str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter(|l| !l.contains("%i") && !l.starts_with("Description="))
            .filter(|l| !l.contains("/etc/zcc-relay/") && !l.starts_with("StateDirectory="))
            .collect()
    };
    assert_eq!(settings(TEMPLATE), settings(UNIT));
    // cargo-deb installs every unit of the package from `unit-scripts`,
    // `zcc-relay@.service` included (templates are never enabled or started).
    let cargo: toml::Value = toml::from_str(include_str!("../../Cargo.toml")).unwrap();
    let units = &cargo["package"]["metadata"]["deb"]["systemd-units"];
    assert_eq!(units["unit-scripts"].as_str(), Some("systemd/"));
    assert_eq!(units["unit-name"].as_str(), Some("zcc-relay"));
}

/// The unit runs what the .deb installs, with the settings the daemon relies on.
#[test]
fn unit_matches_the_package_and_the_daemon() {
    let cargo: toml::Value = toml::from_str(include_str!("../../Cargo.toml")).unwrap();
    let assets = cargo["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .expect("[package.metadata.deb] assets");
    let installs = |source: &str, destination: &str| {
        assets.iter().any(|asset| {
            let asset = asset.as_array().unwrap();
            asset[0].as_str() == Some(source) && asset[1].as_str() == Some(destination)
        })
    };
    assert!(installs("target/release/zcc-relay", "usr/bin/"));
    assert!(installs("config.toml.example", "etc/zcc-relay/"));
    for line in [
        "ExecStartPre=/usr/bin/zcc-relay validate --config /etc/zcc-relay/config.toml",
        "ExecStart=/usr/bin/zcc-relay run --config /etc/zcc-relay/config.toml",
        "Type=notify",
        "NotifyAccess=main",
        "RestartPreventExitStatus=78",
        "StateDirectory=zcc-relay",
        "DynamicUser=yes",
    ] {
        assert!(UNIT.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    // The stop timeout covers the default drain deadline plus the 5 s bound.
    let stop = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| humantime::parse_duration(v).ok())
        .expect("TimeoutStopSec");
    let drain = zcc_relay::config::DaemonSettings::default().drain_timeout;
    assert!(stop > drain + Duration::from_secs(5), "{stop:?}");
}

/// Datagrams received on a socket, collected by a thread until dropped.
struct Listener {
    got: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Listener {
    fn bind(path: &Path) -> Listener {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::downgrade(&got);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            // Ends when the test drops the listener.
            while let Some(got) = sink.upgrade() {
                if let Ok(n) = socket.recv(&mut buf) {
                    got.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        Listener { got }
    }

    fn texts(&self) -> Vec<String> {
        let got = self.got.lock().unwrap();
        got.iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect()
    }

    /// Waits (polling an external process's effect) until `done` holds.
    async fn wait(&self, what: &str, done: impl Fn(&[String]) -> bool) {
        let start = Instant::now();
        loop {
            let texts = self.texts();
            if done(&texts) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {what} within 30 s; got {texts:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A message that says "connected": a STATUS line of its own, or the one
/// sent with READY=1 when the socket was live before the daemon was ready.
fn is_connected(message: &str) -> bool {
    message
        .lines()
        .any(|line| line.starts_with("STATUS=connected"))
}

fn position(texts: &[String], what: impl Fn(&str) -> bool) -> Option<usize> {
    texts.iter().position(|t| what(t))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_ready_watchdog_status_and_stopping_in_order() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    // The sink fails until the status says so, then recovers. (Failing for
    // a fixed number of attempts could recover before the status task, slow
    // on a loaded machine, looked: the line never showed the failure.)
    let crm = FakeSink::ok().await;
    crm.set_down(true);
    let dir = temp_dir();
    let config = dir.path().join("config.toml");
    TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable {
            max_in_flight: Some(1),
            ..SinkTable::http("crm", &crm.url())
        })
        .write(&config);
    let socket = dir.path().join("notify");
    let listener = Listener::bind(&socket);
    let log_path = dir.path().join("daemon.log");
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "200000")
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();

    listener
        .wait("READY=1", |t| {
            position(t, |m| m.contains("READY=1")).is_some()
        })
        .await;
    listener
        .wait("two watchdog pings", |t| {
            t.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2
        })
        .await;
    listener
        .wait("a connected status", |t| {
            position(t, is_connected).is_some()
        })
        .await;
    let script = scenario::generate(3, 1, SystemTime::now(), Duration::from_secs(1));
    sim.emit(script[0].body.clone());
    listener
        .wait("sinks failing: crm", |t| {
            position(t, |m| m.contains("sinks failing: crm")).is_some()
        })
        .await;
    crm.set_down(false);
    crm.wait_accepted(1).await;
    listener
        .wait("the recovered status", |t| {
            let failing = position(t, |m| m.contains("sinks failing: crm")).unwrap();
            t[failing..]
                .iter()
                .any(|m| m == "STATUS=connected; 0 pending")
        })
        .await;

    sigterm(&child);
    let output = wait_output(child).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(output.status.code(), Some(0), "{log}");
    listener
        .wait("STOPPING=1", |t| {
            position(t, |m| m.starts_with("STOPPING=1")).is_some()
        })
        .await;

    let texts = listener.texts();
    let ready = position(&texts, |m| m.starts_with("READY=1\nSTATUS=")).unwrap();
    let stopping = position(&texts, |m| m.starts_with("STOPPING=1")).unwrap();
    assert_eq!(ready, 0, "READY comes first: {texts:#?}");
    assert_eq!(stopping, texts.len() - 1, "STOPPING comes last: {texts:#?}");
    // Pings every 100 ms for the seconds the daemon ran: all its loops beat.
    let pings = texts.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 5, "{pings} watchdog pings: {texts:#?}");
    // Not spammy: a status line per change, not per event or per ping.
    let statuses = texts.iter().filter(|m| m.starts_with("STATUS=")).count();
    assert!(statuses <= 8, "{statuses} status updates: {texts:#?}");
    for text in &texts {
        assert!(
            text.lines().all(|l| l.contains('=')),
            "not KEY=value: {text:?}"
        );
    }
    sim.shutdown().await;
}

/// `RUST_LOG` unset, so `daemon.log_level` decides, and stderr into a file.
fn spawn_plain(config: &Path, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

fn sighup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (polling a file another process writes) until it contains `needle`
/// `times` times.
async fn wait_log(path: &Path, needle: &str, times: usize) -> String {
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.matches(needle).count() >= times {
            return log;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{needle:?} ×{times} not logged within 30 s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signed_with(request: &Received, secret: &str) -> bool {
    let key = zcc_relay::sink::http::signing_key(secret).unwrap();
    let timestamp: u64 = request.timestamp.parse().unwrap();
    request.signature
        == zcc_relay::sink::http::sign(&key, &request.webhook_id, timestamp, &request.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_log_level_and_secrets_and_reports_the_rest() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let zoom_secret = dir.path().join("zoom-secret");
    let crm_secret = dir.path().join("crm-secret");
    // A wrong Zoom secret: the daemon runs, and its token requests are refused.
    std::fs::write(&zoom_secret, "not-the-secret\n").unwrap();
    std::fs::write(&crm_secret, format!("{SINK_SECRET}\n")).unwrap();
    let mut text = TestConfig::new(&sim, &dir.path().join("journal")).sink(SinkTable {
        secret: None,
        secret_file: Some(crm_secret.clone()),
        timeout: None,
        ..SinkTable::http("crm", &crm.url())
    });
    text.zoom.client_secret = None;
    text.zoom.client_secret_file = Some(zoom_secret.clone());
    let config = text.write(&dir.path().join("config.toml"));
    let log_path = dir.path().join("daemon.log");
    let child = spawn_plain(&config, &log_path);
    wait_log(&log_path, "Zoom rejected the app credentials", 1).await;
    assert!(!sim.is_live());

    // Fix the Zoom secret, rotate the sink's, raise the log level, and change a
    // key that needs a restart.
    std::fs::write(&zoom_secret, &sim.config().client_secret).unwrap();
    std::fs::write(&crm_secret, "rotated-signing-secret").unwrap();
    text.daemon.log_level = Some("debug".into());
    text.websocket.heartbeat_interval = Some("2s".into());
    text.write(&config);
    sighup(&child);
    let log = wait_log(&log_path, "configuration reloaded", 1).await;
    assert!(
        log.contains("reloaded=daemon.log_level, zoom.client_secret, sinks[crm].secret"),
        "{log}"
    );
    assert!(log.contains("keys=websocket.heartbeat_interval"), "{log}");
    // The next token request uses the new Zoom secret.
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("the daemon connects with the reloaded client secret");

    let script = scenario::generate(5, 2, SystemTime::now(), Duration::from_secs(1));
    sim.emit(script[0].body.clone());
    crm.wait_accepted(1).await;
    let first = &crm.accepted()[0];
    assert!(
        signed_with(first, "rotated-signing-secret"),
        "new key signs"
    );
    assert!(!signed_with(first, SINK_SECRET), "the old key is gone");
    // Debug lines appear only since the reload.
    let log = wait_log(&log_path, " persisted ", 1).await;
    assert!(log.contains("DEBUG"), "{log}");

    // An invalid file changes nothing and stops nothing.
    std::fs::write(&config, "[zoom\nthis is not TOML").unwrap();
    sighup(&child);
    wait_log(&log_path, "configuration not reloaded", 1).await;
    sim.emit(script[1].body.clone());
    crm.wait_accepted(2).await;
    assert!(signed_with(&crm.accepted()[1], "rotated-signing-secret"));

    sigterm(&child);
    let output = wait_output(child).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert_eq!(
        sim.handshakes_completed(),
        1,
        "one process, never restarted:\n{log}"
    );
    for secret in [
        "rotated-signing-secret",
        sim.config().client_secret.as_str(),
        SINK_SECRET,
    ] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
    sim.shutdown().await;
}

/// One journald native-protocol datagram: `KEY=value` lines, or `KEY`, a
/// little-endian u64 length and the value for values with newlines.
fn journal_fields(datagram: &[u8]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            rest = rest.get(end + 1..).unwrap_or_default();
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let after = &rest[end + 1..];
            let len = u64::from_le_bytes(after[..8].try_into().unwrap()) as usize;
            let value = &after[8..8 + len];
            fields.insert(name, String::from_utf8_lossy(value).into_owned());
            rest = after.get(8 + len + 1..).unwrap_or_default();
        }
    }
    fields
}

/// Runs the real binary under systemd's conditions for logging
/// (`JOURNAL_STREAM` set) in a private mount namespace whose
/// `/run/systemd/journal/socket` is a socket this test reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_gets_structured_fields_and_priorities() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let dir = temp_dir();
    let journald = dir.path().join("journald");
    std::fs::create_dir(&journald).unwrap();
    let listener = Listener::bind(&journald.join("socket"));
    let config = dir.path().join("config.toml");
    TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::http("crm", &dead_url))
        .write(&config);
    let stderr = dir.path().join("stderr.log");
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal \
             && mount --bind \"$1\" /run/systemd/journal && shift && exec \"$@\"",
        )
        .arg("sh")
        .arg(&journald)
        .args([BIN, "run", "--config"])
        .arg(&config)
        .env("JOURNAL_STREAM", "8:12345")
        .env("RUST_LOG", "info,zcc_relay=debug")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("unshare(1) must exist");

    let entries = || -> Vec<BTreeMap<String, String>> {
        let got = listener.got.lock().unwrap();
        got.iter()
            .filter(|d| !d.is_empty())
            .map(|d| journal_fields(d))
            .collect()
    };
    let start = Instant::now();
    while !entries()
        .iter()
        .any(|e| e.get("MESSAGE").is_some_and(|m| m.contains("connected")))
    {
        let err = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing reached the journald socket (this test needs root for a mount namespace); stderr:\n{err}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let script = scenario::generate(7, 1, SystemTime::now(), Duration::from_secs(1));
    sim.emit(script[0].body.clone());
    let find = |message: &str| {
        entries()
            .into_iter()
            .find(|e| e.get("MESSAGE").is_some_and(|m| m == message))
    };
    let start = Instant::now();
    while find("sink failing; records wait in its outbox and are retried").is_none()
        || find("persisted").is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:#?}",
            entries()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An error-level line: another consumer takes the subscription.
    sim.evict();
    let evicted = |e: &BTreeMap<String, String>| {
        e.get("MESSAGE")
            .is_some_and(|m| m.starts_with("another consumer took this Zoom subscription"))
    };
    let start = Instant::now();
    while !entries().iter().any(evicted) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:#?}",
            entries()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigterm(&child);
    let output = wait_output(child).await;
    assert_eq!(output.status.code(), Some(0));

    let connected = find("connected to Zoom WebSocket").unwrap();
    assert_eq!(connected["PRIORITY"], "5", "info is notice");
    assert_eq!(connected["SYSLOG_IDENTIFIER"], "zcc-relay");
    assert!(connected.contains_key("SUBSCRIPTION"), "{connected:?}");

    let failing = find("sink failing; records wait in its outbox and are retried").unwrap();
    assert_eq!(failing["PRIORITY"], "4", "warn is warning");
    assert_eq!(failing["SINK"], "crm");
    assert!(failing["ERROR"].contains("connection"), "{failing:?}");

    let eviction = entries().into_iter().find(evicted).unwrap();
    assert_eq!(eviction["PRIORITY"], "3", "error is err");
    assert!(eviction.contains_key("RETRY_IN"), "{eviction:?}");

    let persisted = find("persisted").unwrap();
    assert_eq!(persisted["PRIORITY"], "6", "debug is informational");
    assert_eq!(
        persisted["EVENT"],
        script[0].body["event"].as_str().unwrap()
    );
    assert!(persisted["RECORD_ID"].contains(':'), "{persisted:?}");
    assert!(
        entries()
            .iter()
            .all(|e| !e.keys().any(|k| k.starts_with("F_"))),
        "fields are not prefixed"
    );
    sim.shutdown().await;
}
