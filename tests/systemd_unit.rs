//! The packaged unit under a real systemd, PID 1 of its own namespaces.
//!
//! Not part of `cargo test`: it installs the built Debian package, so it runs
//! after `cargo deb`, as root, with the package named by `ZCC_RELAY_DEB`
//! (`.ci/run` does this). It fails, never skips, when it cannot run.
//!
//! The machine: an overlay of the host's own root (so the host's installed
//! systemd 252 and libraries, and nothing written back to the host), booted by
//! `/lib/systemd/systemd` as PID 1 of new PID, mount, UTS, IPC and cgroup
//! namespaces (`unshare`), into `sysinit.target`: none of the host's own
//! services or timers start, only what the unit pulls in. It shares the host's network namespace, so the daemon
//! reaches the simulator and the fake sink this test runs on 127.0.0.1.
//! Commands run inside with `nsenter`.
//!
//! Proves, with the unit exactly as packaged (plus one drop-in that adds a
//! sink's signing secret as a credential, as README says):
//! - `systemctl start` returns once READY=1 arrived (Type=notify), the unit
//!   is active and its STATUS line says connected;
//! - the Zoom secret and the sink secret arrive as credentials
//!   (`LoadCredential=`): the simulator and the sink verify them;
//! - `DynamicUser=` + `StateDirectory=`: the daemon runs as a transient uid
//!   that owns `/var/lib/private/zcc-relay` (mode 0700) and the journal in it;
//! - a demo-like run (a generated mix of engagements, recordings with media
//!   stored under the state directory, an HTTP and a file sink) goes through
//!   the system-call filter without a kill, a restart or an EPERM;
//! - the watchdog is pinged, and a daemon that stops answering (SIGSTOP) is
//!   killed by the watchdog and restarted;
//! - `systemctl reload` applies a changed key in the same process;
//! - `zcc-relay status` run by hand sees the running daemon;
//! - `systemctl stop` ends it cleanly within the bound.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::http::FakeSink;
use zcc_sim::{SimConfig, Simulator};

const SINK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const UNIT: &str = "zcc-relay";

/// Sets up the overlay root, `/dev` and a directory shared with the test
/// (`/mnt/zcc-ci`), pivots into the overlay and becomes systemd.
const BOOT: &str = r#"#!/bin/bash
set -euo pipefail
base=$1
r=$base/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$r"
mkdir -p "$r/mnt/zcc-ci"
mount --bind "$base/share" "$r/mnt/zcc-ci"
mount -t tmpfs -o mode=0755,nosuid dev "$r/dev"
for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
    set -- $node
    mknod -m 0666 "$r/dev/$1" c "$2" "$3"
done
mkdir "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
ln -s /proc/self/fd "$r/dev/fd"
cd "$r"
mkdir -p oldroot
pivot_root . oldroot
cd /
mount -t proc proc /proc
umount -l /oldroot
rmdir /oldroot
# As a container manager does: kernel settings and sysfs read-only (the
# machine shares the host's kernel and network), the cgroup namespace's
# cgroup2 writable; no module loading, no clock setting.
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
# Shared propagation inside the machine, as systemd sets it up on a host (and
# container managers for a container): systemd mounts each service's
# credentials in a child namespace and relies on it propagating back.
mount --make-rshared /
exec setpriv --bounding-set=-sys_module,-sys_time -- env -i container=zcc-ci TERM=dumb /lib/systemd/systemd --unit=sysinit.target --show-status=no --log-target=journal
"#;

/// A systemd machine; powered off and removed on drop.
struct Machine {
    base: PathBuf,
    cgroup: PathBuf,
    unshare: Child,
    /// systemd's PID in the host's PID namespace.
    pid: u32,
}

impl Machine {
    fn boot() -> Machine {
        // On disk (the overlay's upper layer cannot be a tmpfs /tmp on some
        // hosts), small: the installed package, the journal, the media.
        let base = PathBuf::from("/var/tmp").join(format!("zcc-ci-systemd-{}", std::process::id()));
        for dir in ["upper", "work", "root", "share"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        std::fs::write(base.join("boot.sh"), BOOT).unwrap();
        // A cgroup of its own in the cgroup2 hierarchy, which becomes the
        // machine's cgroup root: systemd's cgroups stay under it.
        let cgroup = cgroup2_mount().join(base.file_name().unwrap());
        std::fs::create_dir_all(&cgroup).unwrap();
        let console = std::fs::File::create(base.join("console.log")).unwrap();
        let unshare = Command::new("sh")
            .arg("-c")
            .arg(
                "echo $$ > \"$1/cgroup.procs\" && exec unshare --pid --fork --mount --uts \
                 --ipc --cgroup --propagation private bash \"$2/boot.sh\" \"$2\"",
            )
            .arg("sh")
            .arg(&cgroup)
            .arg(&base)
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("unshare (util-linux)");
        let mut machine = Machine {
            base,
            cgroup,
            pid: 0,
            unshare,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        // systemd is unshare's one child.
        while machine.pid == 0 {
            let children = std::fs::read_to_string(format!(
                "/proc/{0}/task/{0}/children",
                machine.unshare.id()
            ))
            .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                machine.pid = pid.parse().unwrap();
            } else {
                assert!(
                    machine.unshare.try_wait().unwrap().is_none() && Instant::now() < deadline,
                    "the machine did not start:\n{}",
                    machine.console()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        loop {
            let state = machine.run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not finish booting (state {state:?}):\n{}",
                machine.console()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        machine
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.base.join("console.log")).unwrap_or_default()
    }

    /// A directory the machine sees as `/mnt/zcc-ci`.
    fn share(&self) -> PathBuf {
        self.base.join("share")
    }

    /// `args` run inside the machine.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.pid.to_string(),
                "-m",
                "-p",
                "-u",
                "-i",
                "-C",
                "--",
            ])
            .args(args)
            .output()
            .expect("nsenter (util-linux)")
    }

    /// `args` run inside the machine, which must succeed; their stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}\n{}{}\njournal:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.journal()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn sh(&self, script: &str) -> String {
        self.ok(&["sh", "-c", script])
    }

    /// The unit's properties.
    fn show(&self, properties: &[&str]) -> BTreeMap<String, String> {
        let mut args = vec!["systemctl", "show", UNIT];
        for property in properties {
            args.extend(["-p", property]);
        }
        self.ok(&args)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn journal(&self) -> String {
        let output = self.run(&[
            "journalctl",
            "--no-pager",
            "-u",
            UNIT,
            "-o",
            "short-monotonic",
        ]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The unit's journal as JSON entries.
    fn journal_entries(&self) -> Vec<serde_json::Value> {
        let output = self.run(&["journalctl", "--no-pager", "-u", UNIT, "-o", "json"]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.pid != 0 {
            // SIGRTMIN+4: systemd powers off.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGRTMIN() + 4) };
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.unshare.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SIGKILL to unshare; the namespace's init (and with it everything
        // in it) goes with the PID namespace.
        if self.unshare.try_wait().ok().flatten().is_none() {
            if self.pid != 0 {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
            }
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
        }
        remove_cgroup(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup` on a unified
/// host, `/sys/fs/cgroup/unified` on a hybrid one).
fn cgroup2_mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&"cgroup2"))
        .map(|fields| PathBuf::from(fields[1]))
        .expect("a cgroup2 hierarchy is mounted")
}

/// Removes a cgroup and those under it (deepest first), once empty.
fn remove_cgroup(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    remove_cgroup(&entry.path());
                }
            }
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metrics(addr: std::net::SocketAddr) -> Vec<zcc_relay::telemetry::metrics::Sample> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics endpoint");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    zcc_relay::telemetry::metrics::parse(body)
}

fn value(samples: &[zcc_relay::telemetry::metrics::Sample], name: &str, sink: Option<&str>) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| sink.is_none_or(|sink| s.labels.get("sink").map(String::as_str) == Some(sink)))
        .map(|s| s.value)
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(sim: &Simulator, crm: &FakeSink, metrics_port: u16, log_level: &str) -> String {
    let account = sim.config();
    format!(
        r#"[zoom]
account_id = "{account_id}"
client_id = "{client_id}"
subscription_id = "{subscription_id}"
oauth_url = "{oauth_url}"
api_base_url = "{api_base_url}"
websocket_url = "{websocket_url}"
# no client secret here: the unit's credential zoom-client-secret

[websocket]
heartbeat_interval = "2s"
idle_timeout = "10s"

[daemon]
log_level = "{log_level}"

[journal]
dir = "/var/lib/zcc-relay"

[media]
enabled = true

[metrics]
listen = "127.0.0.1:{metrics_port}"

[[sinks]]
name = "crm"
type = "http"
url = "{crm}"
# no secret here: the credential sink-crm-secret from a drop-in

[[sinks]]
name = "archive"
type = "file"
path = "/var/lib/zcc-relay/archive/events.jsonl"
"#,
        account_id = account.account_id,
        client_id = account.client_id,
        subscription_id = account.subscription_id,
        oauth_url = sim.oauth_url(),
        api_base_url = sim.api_base_url(),
        websocket_url = sim.websocket_url(),
        crm = crm.url(),
    )
}

// Blocking `systemctl` calls run on the test's threads; the simulator and the
// fake sink keep others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_packaged_unit_runs_under_systemd() {
    let deb = std::env::var("ZCC_RELAY_DEB").expect(
        "ZCC_RELAY_DEB must name the .deb to install (cargo deb --locked builds it; .ci/run sets it)",
    );
    assert!(Path::new(&deb).is_file(), "no package at {deb}");
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "booting systemd in namespaces needs root"
    );

    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::verifying(SINK_SECRET).await;
    let metrics_port = free_port();
    let metrics_addr: std::net::SocketAddr = ([127, 0, 0, 1], metrics_port).into();

    let machine = tokio::task::spawn_blocking(Machine::boot).await.unwrap();
    let m = &machine;
    let share = m.share();
    std::fs::copy(&deb, share.join("zcc-relay.deb")).unwrap();
    std::fs::write(
        share.join("config.toml"),
        config(&sim, &crm, metrics_port, "info"),
    )
    .unwrap();
    std::fs::write(
        share.join("zoom-client-secret"),
        &sim.config().client_secret,
    )
    .unwrap();
    std::fs::write(share.join("crm-secret"), SINK_SECRET).unwrap();
    std::fs::write(
        share.join("crm.conf"),
        "[Service]\nLoadCredential=sink-crm-secret:/etc/zcc-relay/crm-secret\n",
    )
    .unwrap();

    // Install the package, the configuration and the secrets as README says.
    m.ok(&["dpkg", "-i", "/mnt/zcc-ci/zcc-relay.deb"]);
    let unit_file = m.ok(&["systemctl", "show", UNIT, "-p", "FragmentPath", "--value"]);
    assert!(
        unit_file
            .trim()
            .ends_with("/systemd/system/zcc-relay.service"),
        "the package's unit: {unit_file}"
    );
    // The template for many accounts per host comes with it: an instance per
    // account, each with its own configuration and state directory.
    let template = m.ok(&[
        "systemctl",
        "show",
        "zcc-relay@probe.service",
        "-p",
        "FragmentPath",
        "-p",
        "StateDirectory",
        "-p",
        "ExecStart",
    ]);
    assert!(
        template.contains("/systemd/system/zcc-relay@.service"),
        "the package's template: {template}"
    );
    assert!(
        template.contains("StateDirectory=zcc-relay/probe"),
        "{template}"
    );
    assert!(template.contains("/etc/zcc-relay/probe.toml"), "{template}");
    m.sh(
        "install -m 0644 /mnt/zcc-ci/config.toml /etc/zcc-relay/config.toml && \
         install -m 0600 /mnt/zcc-ci/zoom-client-secret /etc/zcc-relay/zoom-client-secret && \
         install -m 0600 /mnt/zcc-ci/crm-secret /etc/zcc-relay/crm-secret && \
         install -D -m 0644 /mnt/zcc-ci/crm.conf /etc/systemd/system/zcc-relay.service.d/crm.conf && \
         systemctl daemon-reload",
    );

    // Start: returns once READY=1 arrived.
    let started = Instant::now();
    m.ok(&["timeout", "60", "systemctl", "start", UNIT]);
    let start_took = started.elapsed();
    let props = m.show(&[
        "ActiveState",
        "SubState",
        "StatusText",
        "MainPID",
        "WatchdogUSec",
        "NRestarts",
        "Type",
    ]);
    assert_eq!(props["Type"], "notify");
    assert_eq!(props["ActiveState"], "active", "{props:?}");
    assert_eq!(props["SubState"], "running", "{props:?}");
    assert_eq!(props["WatchdogUSec"], "30s");
    let main_pid = props["MainPID"].clone();
    eprintln!("systemctl start returned in {start_took:?}: {props:?}");
    sim.wait_live().await;

    // DynamicUser + StateDirectory.
    let uid: u32 = m
        .ok(&[
            "sh",
            "-c",
            &format!("awk '/^Uid:/ {{print $2}}' /proc/{main_pid}/status"),
        ])
        .trim()
        .parse()
        .unwrap();
    assert!(
        (61184..=65519).contains(&uid),
        "a dynamic uid (61184-65519), not {uid}"
    );
    let state = m.sh(
        "readlink /var/lib/zcc-relay; stat -c '%u %a' /var/lib/private/zcc-relay; \
         stat -c '%u' /var/lib/private/zcc-relay/journal.redb",
    );
    assert_eq!(
        state.lines().collect::<Vec<_>>(),
        ["private/zcc-relay", &format!("{uid} 700"), &uid.to_string()],
        "the state directory and the journal belong to the dynamic user"
    );

    // A demo-like run: a generated mix of engagements, recordings with media.
    let options = ScenarioOptions::for_simulator(&sim);
    let script =
        scenario::generate_with(21, 6, SystemTime::now(), Duration::from_secs(1), &options);
    for event in &script {
        assert!(sim.emit(event.body.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    // Settled: everything received and acked, and the delivered counters the
    // same in two scrapes in a row (a counter moves just after its ack's
    // commit, which a scrape between the two can see half done).
    let mut delivered_before = None;
    let samples = loop {
        let samples = tokio::task::spawn_blocking(move || metrics(metrics_addr))
            .await
            .unwrap();
        let received = value(&samples, "zcc_relay_events_received_total", None);
        let settled = ["crm", "archive"].iter().all(|sink| {
            value(&samples, "zcc_relay_sink_pending_records", Some(sink)) == 0.0
                && value(&samples, "zcc_relay_sink_delivered_total", Some(sink)) > 0.0
        });
        let delivered = ["crm", "archive"]
            .map(|sink| value(&samples, "zcc_relay_sink_delivered_total", Some(sink)));
        if received == script.len() as f64
            && settled
            && value(&samples, "zcc_relay_media_pending_records", None) == 0.0
            && delivered_before == Some(delivered)
        {
            break samples;
        }
        delivered_before = Some(delivered);
        assert!(
            Instant::now() < deadline,
            "the run did not settle: received {received} of {}\n{}",
            script.len(),
            m.journal()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let delivered_crm = value(&samples, "zcc_relay_sink_delivered_total", Some("crm"));
    let delivered_archive = value(&samples, "zcc_relay_sink_delivered_total", Some("archive"));
    assert_eq!(value(&samples, "zcc_relay_sink_dead_records", None), 0.0);
    assert_eq!(
        crm.accepted().len() as f64,
        delivered_crm,
        "every record reached the sink, signed with the credential's secret"
    );
    assert!(crm.requests().iter().all(|r| r.signed_by(SINK_SECRET)));
    let archived = m.ok(&["cat", "/var/lib/private/zcc-relay/archive/events.jsonl"]);
    let lines: Vec<(String, u64)> = archived
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                record["id"].as_str().unwrap().to_owned(),
                record["revision"].as_u64().unwrap(),
            )
        })
        .collect();
    let distinct: std::collections::BTreeSet<&(String, u64)> = lines.iter().collect();
    assert_eq!(
        (lines.len() as f64, distinct.len() as f64),
        (delivered_archive, delivered_archive),
        "one line per record delivered to the archive"
    );
    let media_files =
        m.sh("find /var/lib/private/zcc-relay -type f | grep -vc -e journal -e archive || true");
    eprintln!(
        "demo-like run: {} events, {delivered_crm} records to crm, {delivered_archive} to archive, {} other files under the state directory",
        script.len(),
        media_files.trim()
    );
    // The system-call filter let all of it through: same process, no EPERM.
    let props = m.show(&["MainPID", "NRestarts", "ActiveState"]);
    assert_eq!(
        (props["MainPID"].as_str(), props["NRestarts"].as_str()),
        (main_pid.as_str(), "0"),
        "{props:?}\n{}",
        m.journal()
    );
    let journal = m.journal();
    for bad in [
        "Operation not permitted",
        "os error 1)",
        "SIGSYS",
        "core-dump",
    ] {
        assert!(!journal.contains(bad), "{bad:?} in the journal:\n{journal}");
    }

    // The watchdog: pings arrive (every 15 s)…
    let pinged = |m: &Machine| -> u64 {
        m.show(&["WatchdogTimestampMonotonic"])["WatchdogTimestampMonotonic"]
            .parse()
            .unwrap()
    };
    let first = pinged(m);
    let deadline = Instant::now() + Duration::from_secs(25);
    while pinged(m) == first {
        assert!(Instant::now() < deadline, "no watchdog ping in 25 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Reload: a changed key applied in the same process.
    std::fs::write(
        share.join("config.toml"),
        config(&sim, &crm, metrics_port, "debug"),
    )
    .unwrap();
    m.sh("install -m 0644 /mnt/zcc-ci/config.toml /etc/zcc-relay/config.toml");
    m.ok(&["systemctl", "reload", UNIT]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.journal_entries().iter().any(|entry| {
        entry["MESSAGE"] == "configuration reloaded" && entry["RELOADED"] == "daemon.log_level"
    }) {
        assert!(
            Instant::now() < deadline,
            "no reload in the journal:\n{}",
            m.journal()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let props = m.show(&["MainPID", "ActiveState"]);
    assert_eq!(props["MainPID"], main_pid);
    assert_eq!(props["ActiveState"], "active");

    // `status` by hand, beside the running daemon.
    let status = m.run(&[
        "zcc-relay",
        "status",
        "--config",
        "/etc/zcc-relay/config.toml",
    ]);
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{status_text}");
    assert!(status_text.contains("running (pid"), "{status_text}");

    // …and a daemon that stops answering is killed by it and restarted.
    m.ok(&[
        "systemctl",
        "kill",
        "--kill-whom=main",
        "--signal=SIGSTOP",
        UNIT,
    ]);
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(60);
    loop {
        let props = m.show(&["NRestarts", "ActiveState", "MainPID"]);
        if props["NRestarts"] == "1" && props["ActiveState"] == "active" {
            assert_ne!(props["MainPID"], main_pid);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no watchdog restart within 60 s: {props:?}\n{}",
            m.journal()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let restarted_after = stopped.elapsed();
    // systemd's own line about the unit.
    let journal = m.journal();
    assert!(
        journal.contains("zcc-relay.service: Watchdog timeout"),
        "{journal}"
    );
    eprintln!("watchdog: frozen daemon killed and restarted after {restarted_after:?}");
    sim.wait_live().await;

    // Stop: clean, well within TimeoutStopSec=30s.
    let stopping = Instant::now();
    m.ok(&["systemctl", "stop", UNIT]);
    let stop_took = stopping.elapsed();
    let props = m.show(&["ActiveState", "Result", "ExecMainStatus", "ExecMainCode"]);
    assert_eq!(props["ActiveState"], "inactive", "{props:?}");
    assert_eq!(props["Result"], "success", "{props:?}\n{}", m.journal());
    assert_eq!(props["ExecMainStatus"], "0", "{props:?}");
    assert!(
        stop_took < Duration::from_secs(15),
        "stop took {stop_took:?}"
    );
    eprintln!("systemctl stop took {stop_took:?}");

    drop(machine);
    sim.shutdown().await;
}
