//! `zcc-relay check` for a ServiceNow sink: proves the instance's set-up
//! without writing anything. The sign-in works (a token, or the basic
//! credentials on the first read); the table can be read and has the
//! correlation field (and the summary field when set); work-note entries and
//! attachments can be read; one contact lookup runs. Each problem names its
//! fix.

use reqwest::Method;

use super::ServiceNowSinkSettings;
use super::client::{Body, Client, encode};
use crate::sink::{BuildContext, Finding};

/// A number no instance should hold: the lookup proves the call, not a match.
const PROBE_NUMBER: &str = "+15550100199";

pub async fn check(settings: &ServiceNowSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
    let client = match Client::new(context.name, settings, context.timeout, context.tls) {
        Ok(client) => client,
        Err(error) => {
            return vec![Finding::problem(
                format!("cannot make the ServiceNow client: {error}"),
                "check instance_url",
            )];
        }
    };
    if let Err(failure) = client.token_check().await {
        return vec![Finding::problem(
            format!("no token from /oauth_token.do: {}", failure.reason),
            "check client_id and client_secret_file, that the OAuth application has \
             \"Client Credentials\" with an OAuth Application User, and that \
             glide.oauth.inbound.client.credential.grant_type.enabled is true",
        )];
    }
    let mut findings = Vec::new();
    let table = &settings.table;
    let field = &settings.correlation_field;
    // The dictionary says whether the fields exist (an unknown field in a
    // record read is silently left out).
    let mut wanted = vec![field.clone()];
    wanted.extend(settings.summary_field.clone());
    let query = format!("name={table}^elementIN{}", wanted.join(","));
    let path = format!(
        "/api/now/table/sys_dictionary?sysparm_query={}&sysparm_fields=element&sysparm_limit=10",
        encode(&query)
    );
    match client.call(Method::GET, &path, Body::None).await {
        Ok(answer) => {
            let present: Vec<&str> = answer["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["element"].as_str())
                .collect();
            for want in &wanted {
                findings.push(if present.contains(&want.as_str()) {
                    Finding::proved(format!("the table {table} has the field {want}"))
                } else {
                    Finding::problem(
                        format!("the table {table} has no field {want}"),
                        format!(
                            "create the String field {want} on {table} (System Definition › \
                             Tables), or change correlation_field / summary_field"
                        ),
                    )
                });
            }
        }
        Err(failure) if failure.status == Some(401) => {
            return vec![Finding::problem(
                format!("the instance refused the credentials: {}", failure.reason),
                "check username and password_file (or client_id and client_secret_file)",
            )];
        }
        Err(failure) => findings.push(Finding::problem(
            format!("cannot read the dictionary of {table}: {}", failure.reason),
            "give the integration user read on sys_dictionary (so check can prove the fields), \
             or verify the fields by hand",
        )),
    }
    let read = |path: String| {
        let client = &client;
        async move { client.call(Method::GET, &path, Body::None).await }
    };
    findings.push(
        match read(format!(
            "/api/now/table/{table}?sysparm_fields=sys_id&sysparm_limit=1"
        ))
        .await
        {
            Ok(_) => Finding::proved(format!("the table {table} is readable")),
            Err(failure) => Finding::problem(
                format!("cannot read the table {table}: {}", failure.reason),
                format!(
                    "install its plugin (interaction: com.glide.interaction) or set table, and \
                     give the integration user read, create and write on {table}"
                ),
            ),
        },
    );
    findings.push(
        match read(format!(
            "/api/now/table/sys_journal_field?sysparm_query={}&sysparm_fields=sys_id&sysparm_limit=1",
            encode(&format!("name={table}^element=work_notes"))
        ))
        .await
        {
            Ok(_) => Finding::proved("work-note entries (sys_journal_field) are readable"),
            Err(failure) => Finding::problem(
                format!("cannot read work-note entries: {}", failure.reason),
                "give the integration user read and write on sys_journal_field",
            ),
        },
    );
    if settings.attach_files {
        findings.push(
            match read("/api/now/attachment?sysparm_limit=1".to_owned()).await {
                Ok(_) => Finding::proved("the Attachment API is readable"),
                Err(failure) => Finding::problem(
                    format!("cannot use the Attachment API: {}", failure.reason),
                    "give the integration user read and create on sys_attachment, or set \
                     attach_files = false",
                ),
            },
        );
    }
    if settings.link_customers {
        findings.push(
            match client
                .contacts_by_phone(
                    &settings.contact_table,
                    &settings.contact_phone_fields,
                    PROBE_NUMBER,
                )
                .await
            {
                Ok(_) => Finding::proved(format!(
                    "a contact lookup in {} by {}",
                    settings.contact_table,
                    settings.contact_phone_fields.join(", ")
                )),
                Err(failure) => Finding::problem(
                    format!("the contact lookup failed: {}", failure.reason),
                    "give the integration user read on contact_table, set contact_table / \
                     contact_phone_fields, or set link_customers = false",
                ),
            },
        );
    }
    findings
}
