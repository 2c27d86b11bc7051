//! The nats kind's `zcc-relay check`: the credentials and TLS files are
//! usable, a server takes the connection with them (within the sink's
//! `timeout`), JetStream answers, the stream exists, and the template's
//! subjects land in it. Read-only requests only (stream info, stream names by
//! subject): nothing is published and no stream is created, even with
//! `create_stream = true` (then a missing stream is what start-up will create).

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};

use super::subject::Values;
use super::{MIN_DUPLICATE_WINDOW, NatsSinkSettings, connect_options};
use crate::sink::{BuildContext, Finding};

pub async fn check(settings: &NatsSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let options = match connect_options(&settings.connection(), context.tls, context.timeout) {
        Ok(options) => options,
        Err(error) => {
            findings.push(Finding::problem(
                format!("the sink's credentials or TLS files are not usable: {error}"),
                "point the key at the right file (credentials_file: a .creds file with a user \
                 JWT and an nkey seed; nkey_seed_file: a seed starting with S; PEM for tls_*)",
            ));
            return findings;
        }
    };
    let servers: Vec<&str> = settings.servers.iter().map(|url| url.as_str()).collect();
    let shown = settings
        .servers
        .iter()
        .map(|url| {
            format!(
                "{}:{}",
                url.host_str().unwrap_or_default(),
                url.port().unwrap_or(4222)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    // Without retry_on_initial_connect: one pass over the servers, its error.
    let client = match tokio::time::timeout(context.timeout, options.connect(servers)).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => {
            let refused = matches!(
                error.kind(),
                async_nats::ConnectErrorKind::AuthorizationViolation
                    | async_nats::ConnectErrorKind::Authentication
            );
            findings.push(if refused {
                Finding::problem(
                    format!("the NATS server ({shown}) refused the credentials ({error})"),
                    "check credentials_file / token_file / nkey_seed_file / user + password_file \
                     against the server's accounts",
                )
            } else {
                Finding::problem(
                    format!("cannot connect to {shown}: {error}"),
                    "check `servers`, that nats-server runs there, and the firewall (TLS: the \
                     server's certificate must verify against tls_ca_file or the system roots)",
                )
            });
            return findings;
        }
        Err(_) => {
            findings.push(Finding::problem(
                format!("no answer from {shown} within {:?}", context.timeout),
                "check `servers` and the firewall",
            ));
            return findings;
        }
    };
    let info = client.server_info();
    findings.push(Finding::proved(format!(
        "connected to nats-server {} at {shown} (max_payload {} bytes)",
        info.version, info.max_payload
    )));
    let js = jetstream::ContextBuilder::new()
        .timeout(context.timeout)
        .build(client.clone());
    let stream = &settings.stream;
    match js.get_stream(stream).await {
        Ok(found) => {
            let config = &found.cached_info().config;
            findings.push(Finding::proved(format!(
                "stream {stream} exists: subjects {:?}, {:?} storage, {} replica(s), \
                 duplicate_window {:?}, max_msg_size {}",
                config.subjects,
                config.storage,
                config.num_replicas.max(1),
                config.duplicate_window,
                config.max_message_size
            )));
            if config.num_replicas <= 1 {
                findings.push(Finding::proved(
                    "warning: one replica; acknowledged records can be lost with that server \
                     unless it runs with sync_interval: always (README, durability)",
                ));
            }
            if config.duplicate_window < MIN_DUPLICATE_WINDOW {
                findings.push(Finding::proved(
                    "warning: duplicate_window under 1h; a record retried later is stored twice",
                ));
            }
            // Which stream captures a subject of the template's shape.
            let sample = settings.subject.render(&Values {
                account_id: Some("account"),
                event: Some("recording_completed"),
                engagement_id: Some("engagement"),
            });
            match js.stream_by_subject(sample.clone()).await {
                Ok(name) if name == *stream => findings.push(Finding::proved(format!(
                    "subjects like {sample} land in stream {stream}"
                ))),
                Ok(other) => findings.push(Finding::problem(
                    format!("subjects like {sample} land in stream {other}, not {stream}"),
                    "change `subject`, or the streams' subjects",
                )),
                Err(_) => findings.push(Finding::problem(
                    format!("no stream captures subjects like {sample}"),
                    format!(
                        "add {} to stream {stream}'s subjects, or change `subject`",
                        settings.subject.stream_subject()
                    ),
                )),
            }
        }
        Err(error) => match error.kind() {
            GetStreamErrorKind::JetStream(api)
                if api.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                if settings.create_stream {
                    findings.push(Finding::proved(format!(
                        "stream {stream} does not exist yet; the daemon creates it at start \
                         (create_stream = true) with subjects {}",
                        settings.subject.stream_subject()
                    )));
                } else {
                    findings.push(Finding::problem(
                        format!("stream {stream} does not exist"),
                        format!(
                            "create it (`nats stream add {stream} --subjects '{}' --storage file \
                             --dupe-window 2h`) or set create_stream = true",
                            settings.subject.stream_subject()
                        ),
                    ));
                }
            }
            _ => findings.push(Finding::problem(
                format!("cannot read stream {stream}: {error}"),
                "enable JetStream on the server (-js) and for the account, and grant the \
                 account $JS.API.STREAM.INFO",
            )),
        },
    }
    findings
}
