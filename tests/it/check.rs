//! `zcc-relay check` through the real binary: an http sink's host reachable
//! (with no request sent), its port closed, TLS refused; a file sink whose
//! directory takes files (and the file is not created), or cannot exist;
//! `--sink` choosing one, an unknown name, a bad config; never a secret in
//! the output.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::*;

/// A receiver on 127.0.0.1 that takes one connection, optionally says
/// `greeting`, and reports how many bytes it was sent before the close.
async fn receiver(greeting: &'static [u8]) -> (String, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(greeting).await.unwrap();
        let mut sent = Vec::new();
        // The peer may reset after a TLS alert: what arrived until then counts.
        let _ = stream.read_to_end(&mut sent).await;
        sent.len()
    });
    (addr.to_string(), task)
}

/// A port on 127.0.0.1 that nothing listens on.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

async fn check(harness: &Harness, args: &[&str]) -> Ran {
    let path = harness.write_config();
    let ran = zcc_relay(["check"]).config(&path).args(args).output().await;
    assert!(
        !ran.stdout.contains(SINK_SECRET) && !ran.stderr.contains(SINK_SECRET),
        "the secret was printed:\n{ran:?}"
    );
    ran
}

#[tokio::test]
async fn an_http_sink_whose_host_takes_a_connection_is_ready_and_gets_no_request() {
    let (addr, received) = receiver(b"").await;
    let harness =
        Harness::with_sinks([SinkTable::http("crm", &format!("http://{addr}/hooks"))]).await;
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("sink crm (http): ready"), "{ran:?}");
    assert!(
        ran.stdout.contains(&format!("connected to {addr}")),
        "{ran:?}"
    );
    assert_eq!(received.await.unwrap(), 0, "check sent the receiver bytes");
    harness.shutdown().await;
}

#[tokio::test]
async fn an_http_sink_whose_port_is_closed_is_not_ready_with_its_fix() {
    let addr = closed_port().await;
    let harness =
        Harness::with_sinks([SinkTable::http("crm", &format!("http://{addr}/hooks"))]).await;
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stdout.contains("sink crm (http): NOT READY"), "{ran:?}");
    assert!(
        ran.stdout
            .contains(&format!("problem  cannot connect to {addr}")),
        "{ran:?}"
    );
    assert!(
        ran.stdout.contains("fix      start the receiver"),
        "{ran:?}"
    );
    harness.shutdown().await;
}

#[tokio::test]
async fn an_https_sink_that_does_not_speak_tls_is_not_ready() {
    let (addr, received) = receiver(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    let harness =
        Harness::with_sinks([SinkTable::http("crm", &format!("https://{addr}/hooks"))]).await;
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout
            .contains(&format!("problem  TLS handshake with {addr} failed")),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("serves HTTPS"), "{ran:?}");
    // A ClientHello (and perhaps an alert) only: no HTTP request.
    received.await.unwrap();
    harness.shutdown().await;
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_file_sink_in_a_writable_directory_is_ready_and_the_file_is_not_created() {
    let mut harness = Harness::new().await;
    let out = harness.path("out");
    std::fs::create_dir(&out).unwrap();
    let events = out.join("events.jsonl");
    let deeper = harness.path("later/archive/events.jsonl");
    harness
        .config
        .sinks
        .push(SinkTable::file("archive", &events));
    harness.config.sinks.push(SinkTable::file("later", &deeper));
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("sink archive (file): ready"), "{ran:?}");
    assert!(ran.stdout.contains("sink later (file): ready"), "{ran:?}");
    assert_eq!(
        entries(&out),
        Vec::<String>::new(),
        "check wrote into {out:?}"
    );
    assert!(!harness.path("later").exists(), "check created a directory");
    assert!(!harness.journal().exists(), "check opened the journal");
    harness.shutdown().await;
}

#[tokio::test]
async fn a_file_sink_whose_directory_cannot_exist_is_not_ready() {
    let mut harness = Harness::new().await;
    // Under a regular file: impossible for root too.
    let plain = harness.path("plain.txt");
    std::fs::write(&plain, "x").unwrap();
    let events = plain.join("sub/events.jsonl");
    harness
        .config
        .sinks
        .push(SinkTable::file("archive", &events));
    // A directory where the file should be.
    harness
        .config
        .sinks
        .push(SinkTable::file("dir", harness.dir.path()));
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout.contains("sink archive (file): NOT READY"),
        "{ran:?}"
    );
    assert!(
        ran.stdout
            .contains(&format!("problem  {} is not a directory", plain.display())),
        "{ran:?}"
    );
    assert!(
        ran.stdout
            .contains("fix      set `path` to a file under a directory"),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("sink dir (file): NOT READY"), "{ran:?}");
    assert!(ran.stdout.contains("2 of 2 sink(s) not ready"), "{ran:?}");
    harness.shutdown().await;
}

#[tokio::test]
async fn sink_chooses_one_and_an_unknown_name_is_a_config_error() {
    let mut harness = Harness::with_sinks([SinkTable::http(
        "down",
        &format!("http://{}/", closed_port().await),
    )])
    .await;
    let archive = harness.path("x.jsonl");
    harness
        .config
        .sinks
        .push(SinkTable::file("archive", &archive));
    let ran = check(&harness, &["--sink", "archive", "--json"]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["ready"], true, "{report}");
    assert_eq!(report["sinks"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["sinks"][0]["name"], "archive", "{report}");
    assert_eq!(report["sinks"][0]["type"], "file", "{report}");
    assert_eq!(
        report["sinks"][0]["findings"][0]["outcome"], "proved",
        "{report}"
    );

    let ran = check(&harness, &["--sink", "nope"]).await;
    assert_eq!(ran.code, Some(78), "{ran:?}");
    assert!(
        ran.stderr
            .contains("no sink named \"nope\"; the sinks are: down, archive"),
        "{ran:?}"
    );
    assert!(ran.stdout.is_empty(), "{ran:?}");
    harness.shutdown().await;
}

#[tokio::test]
async fn a_bad_config_exits_78() {
    let harness = Harness::with_sinks([SinkTable::http("crm", "not a url")]).await;
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(78), "{ran:?}");
    assert!(ran.stderr.contains("sinks[0].url"), "{ran:?}");
    harness.shutdown().await;
}

/// `check` against a fake Salesforce org: a proper org is ready (and nothing
/// is written: the fake counts no upsert, no ContentVersion); each set-up
/// problem is named with its fix, one by one.
#[tokio::test]
async fn a_salesforce_sink_is_checked_against_the_org_without_writing() {
    use zcc_sim::sink::salesforce::{ExternalIdField, ObjectAccess, Org, SalesforceFake};
    let fake = SalesforceFake::start(Org::new()).await.unwrap();
    let sink = SinkTable::salesforce("org", &fake.url(), &fake.client_id(), &fake.client_secret());
    let harness = Harness::with_sinks([sink]).await;
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.contains("sink org (salesforce): ready"),
        "{ran:?}"
    );
    assert!(
        ran.stdout
            .contains("Task.Zoom_Engagement_Id__c is External ID and Unique"),
        "{ran:?}"
    );
    assert!(!ran.stdout.contains(&fake.client_secret()), "{ran:?}");
    let counts = fake.request_counts();
    assert_eq!(
        (
            counts.upsert,
            counts.update,
            counts.composite,
            counts.content_version
        ),
        (0, 0, 0, 0),
        "check wrote to the org: {counts:?}"
    );

    fake.set_external_id_field(Some(ExternalIdField::not_unique("Zoom_Engagement_Id__c")));
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout
            .contains("problem  Task.Zoom_Engagement_Id__c is not Unique"),
        "{ran:?}"
    );

    fake.set_external_id_field(None);
    fake.set_task_access(ObjectAccess::READ_ONLY);
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    for expected in [
        "problem  Task has no field Zoom_Engagement_Id__c",
        "fix      create a Text field Zoom_Engagement_Id__c on Activity",
        "problem  the integration user cannot Create and Edit Task",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:?}");
    }
    harness.shutdown().await;
}

/// `check` against a fake Dataverse environment: a proper one is ready and
/// nothing is written; a missing or unfinished alternate key and a wrong
/// secret are each named with their fix.
#[tokio::test]
async fn a_dynamics_sink_is_checked_against_the_environment_without_writing() {
    use zcc_sim::sink::dynamics::{AlternateKey, DynamicsFake, Environment, KeyStatus};
    let fake = DynamicsFake::start(Environment::new()).await.unwrap();
    let harness = Harness::with_sinks([SinkTable::dynamics("crm365", &fake)]).await;
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    for expected in [
        "sink crm365 (dynamics): ready",
        "phonecall alternate key zcc_engagementid_key on zcc_engagementid is Active",
        "the application user",
        "a contact lookup by telephone1 and mobilephone",
        "files up to 5242880 bytes",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:?}");
    }
    assert!(!ran.stdout.contains(&fake.client_secret()), "{ran:?}");
    let counts = fake.request_counts();
    assert_eq!(
        (
            counts.phonecall_writes,
            counts.annotation_creates,
            counts.batch
        ),
        (0, 0, 0),
        "check wrote to the environment: {counts:?}"
    );

    fake.set_key(None);
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    for expected in [
        "problem  the phonecall table has no alternate key on zcc_engagementid alone",
        "fix      create a Single line of text column zcc_engagementid",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:?}");
    }
    fake.set_key(Some(AlternateKey {
        name: "k".into(),
        column: "zcc_engagementid".into(),
        status: KeyStatus::Pending,
    }));
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout
            .contains("problem  the alternate key on zcc_engagementid is Pending, not Active"),
        "{ran:?}"
    );

    let mut wrong = SinkTable::dynamics("crm365", &fake);
    wrong.client_secret = Some("not-the-secret".into());
    let harness = Harness::with_sinks([wrong]).await;
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stdout.contains("AADSTS7000215"), "{ran:?}");
    assert!(
        ran.stdout
            .contains("fix      check tenant_id, client_id and the client secret"),
        "{ran:?}"
    );
    harness.shutdown().await;
    fake.stop().await;
}

/// `check` against a fake HubSpot portal: a proper one is ready and nothing
/// is written; a property without unique values and a token without a
/// scope are each named with their fix.
#[tokio::test]
async fn a_hubspot_sink_is_checked_against_the_portal_without_writing() {
    use zcc_sim::sink::hubspot::{HubSpotFake, Portal};
    let fake = HubSpotFake::start(Portal::new()).await.unwrap();
    let mut harness = Harness::new().await;
    let token_file = harness.path("hubspot-token");
    harness
        .config
        .sinks
        .push(SinkTable::hubspot("portal", &fake, &token_file));
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    for expected in [
        "sink portal (hubspot): ready",
        "the calls property zcc_engagement_id has unique values",
        "6 call dispositions readable",
        "a contact search by phone and mobile phone",
        "the files API is readable",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:?}");
    }
    assert!(!ran.stdout.contains(&fake.token()), "{ran:?}");
    let counts = fake.request_counts();
    assert_eq!(
        (counts.upserts, counts.uploads, counts.associations),
        (0, 0, 0),
        "check wrote to the portal: {counts:?}"
    );

    fake.set_property("zcc_engagement_id", false);
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout.contains(
            "problem  the calls property zcc_engagement_id does not require unique values"
        ),
        "{ran:?}"
    );
    fake.set_property("zcc_engagement_id", true);
    fake.set_scopes(&["crm.objects.calls.read", "crm.objects.calls.write", "files"]);
    let ran = check(&harness, &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    for expected in [
        "MISSING_SCOPES",
        "crm.schemas.calls.read",
        "crm.objects.contacts.read",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:?}");
    }
    harness.shutdown().await;
    fake.stop().await;
}
