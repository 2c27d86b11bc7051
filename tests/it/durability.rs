//! The order of the syscalls proves "persist before anything": the real binary
//! runs under `strace -f`, and the journal's `fdatasync` that makes a record
//! durable returns before the first byte of that record goes to a sink.
//!
//! Why this is sufficient: redb writes the pages of a commit with `pwrite64`
//! and makes them durable with `fdatasync` (or `fsync`) on `journal.redb`
//! before `commit()` returns. If a sink socket carries the record only after
//! that sync returned, a crash at any instant leaves the record either
//! undelivered or on disk — never delivered-but-lost. strace serialises every
//! thread's syscalls into one chronological log, with file descriptors
//! resolved to paths (`-y`) and whole buffers shown (`-s`), so the write that
//! carries the record into the journal, the sync that follows it and the sink
//! write are all visible in order.

use std::process::Command;
use std::time::Duration;

use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_is_synced_before_any_sink_sees_it() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let journal = dir.path().join("journal");
    let config = dir.path().join("config.toml");
    TestConfig::new(&sim, &journal)
        .sink(SinkTable::http("crm", &crm.url()))
        .write(&config);
    let trace = dir.path().join("trace.txt");
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut strace = Command::new("strace")
        .args(["-f", "-y", "-s", "200000", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=pwrite64,pwritev,pwritev2,write,writev,sendto,sendmsg,fsync,fdatasync",
        ])
        .arg(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stderr(log)
        .spawn()
        .expect("strace must be installed (.ci/run installs it)");
    tokio::time::timeout(Duration::from_secs(60), sim.wait_live())
        .await
        .expect("daemon under strace connects");
    let id = "recording_completed:durable-1";
    let event = serde_json::json!({"event": "contact_center.recording_completed", "event_ts": 1,
        "payload": {"account_id": "a", "object": {"recording_id": "durable-1", "engagement_id": "E"}}});
    assert!(sim.emit(event));
    crm.wait_accepted(1).await;
    // Stop the daemon (its pid is in the lock file), then strace ends with it.
    let pid = std::fs::read_to_string(journal.join(zcc_relay::journal::LOCK_FILE)).unwrap();
    assert!(
        Command::new("kill")
            .args(["-TERM", pid.trim()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || strace.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("daemon.log")).unwrap()
    );

    let trace = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let journal_file = "journal.redb>";
    // 1. The first write that puts the record into the journal file.
    let written = lines
        .iter()
        .position(|l| l.contains("pwrite") && l.contains(journal_file) && l.contains(id))
        .unwrap_or_else(|| panic!("no journal write carrying {id} in the trace"));
    // 2. The sync of the journal file after it, and the line where it returned
    //    (with -f a blocking call may be split into "unfinished" / "resumed").
    let sync_start = (written..lines.len())
        .find(|&i| {
            (lines[i].contains("fdatasync(") || lines[i].contains("fsync("))
                && lines[i].contains(journal_file)
        })
        .expect("no sync of the journal after the write");
    let sync_done = if lines[sync_start].contains("<unfinished ...>") {
        let pid = lines[sync_start].split_whitespace().next().unwrap();
        (sync_start..lines.len())
            .find(|&i| lines[i].starts_with(pid) && lines[i].contains("sync resumed>"))
            .expect("the journal sync never returned")
    } else {
        sync_start
    };
    assert!(
        lines[sync_done].trim_end().ends_with("= 0"),
        "the sync failed: {}",
        lines[sync_done]
    );
    // 3. The first write of the record to the sink's socket.
    let sent = lines
        .iter()
        .position(|l| l.contains("socket:[") && l.contains(&format!("webhook-id: {id}")))
        .unwrap_or_else(|| panic!("no sink request for {id} in the trace"));
    assert!(
        written < sync_done && sync_done < sent,
        "order: journal write {written}, sync returned {sync_done}, sink write {sent}"
    );
    sim.shutdown().await;
}
