//! A full disk: the daemon stops with a clear error instead of spinning or
//! corrupting the journal, and the next start (after space was freed) delivers
//! everything it had reported persisted.
//!
//! Needs root to mount a small tmpfs (CI runs as root); the test fails loudly,
//! never skips, if it cannot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount(8) must exist");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (this test needs root)",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_cleanly_on_a_full_disk_and_recovers() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    // The sink is down, so records pile up in the journal until the disk is full.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let dir = temp_dir();
    let disk = dir.path().join("disk");
    let _tmpfs = Tmpfs::mount(&disk, "6m");
    // Space to give back later.
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![0u8; 2 * 1024 * 1024]).unwrap();
    let journal = disk.join("journal");
    let config = dir.path().join("config.toml");
    TestConfig::new(&sim, &journal)
        .sink(SinkTable::http("crm", &dead_url))
        .write(&config);

    let log = dir.path().join("full.log");
    let mut child = spawn_run(&config, "warn,zcc_relay=debug", &log);
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("daemon connects");
    let pad = "z".repeat(20_000);
    let mut n = 0u64;
    let exited = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            let body = serde_json::json!({"event": "contact_center.recording_completed", "event_ts": n,
                "payload": {"account_id": "a", "object": {"recording_id": format!("R{n}"), "pad": pad}}});
            sim.emit(body);
            n += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the daemon should stop once the disk is full, not hang or spin");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        exited.code(),
        Some(1),
        "exit status 1 on a full disk:\n{text}"
    );
    assert!(
        text.contains("No space left on device"),
        "the error names the cause:\n{text}"
    );
    assert!(
        text.contains("journal"),
        "the error names the journal:\n{text}"
    );
    let reported = persisted_ids(&text);
    assert!(
        reported.len() > 10,
        "some records were persisted before the disk filled"
    );

    // Space is back: the next start opens the same journal and delivers every
    // record it reported persisted.
    std::fs::remove_file(&filler).unwrap();
    let crm = FakeSink::ok().await;
    TestConfig::new(&sim, &journal)
        .sink(SinkTable::http("crm", &crm.url()))
        .write(&config);
    let log = dir.path().join("after.log");
    let child = spawn_run(&config, "warn,zcc_relay=debug", &log);
    crm.wait_accepted(reported.len()).await;
    sigterm(&child);
    let output = wait_output(child).await;
    assert!(
        output.status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let delivered: std::collections::BTreeSet<String> = crm
        .accepted()
        .iter()
        .map(|r| r.record()["id"].as_str().unwrap().to_string())
        .collect();
    for id in &reported {
        assert!(
            delivered.contains(id),
            "{id} was reported persisted but not delivered after the disk was freed"
        );
    }
    sim.shutdown().await;
}
