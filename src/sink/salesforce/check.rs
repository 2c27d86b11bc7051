//! `zcc-relay check` for a Salesforce sink: proves the org's set-up without
//! writing anything. One token request, the describe of Task (the external-id
//! field is there, External ID and Unique; the integration user can create
//! and edit Tasks), the describe of ContentVersion when files are attached,
//! and one phone search when customers are linked. Each problem names its fix.

use reqwest::Method;
use serde_json::Value;

use super::SalesforceSinkSettings;
use super::client::{Body, Client};
use crate::failure::{Class, Failure};
use crate::sink::{BuildContext, Finding};

/// A number no org should hold: the search proves the SOSL call, not a match.
const PROBE_NUMBER: &str = "+15550100199";

pub async fn check(settings: &SalesforceSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
    let client = match Client::new(context.name, settings, context.timeout, context.tls) {
        Ok(client) => client,
        Err(error) => {
            return vec![Finding::problem(
                format!("cannot make the Salesforce client: {error}"),
                "check instance_url",
            )];
        }
    };
    let mut findings = Vec::new();
    let token_url = format!(
        "{}/services/oauth2/token",
        settings.instance_url.as_str().trim_end_matches('/')
    );
    if let Err(failure) = client.token_check().await {
        findings.push(Finding::problem(
            format!("no token from {token_url}: {}", failure.reason),
            token_fix(&failure),
        ));
        // Every other check needs the token.
        return findings;
    }
    findings.push(Finding::proved(format!("token from {token_url}")));
    findings.extend(task(&client, settings).await);
    if settings.attach_files {
        findings.extend(content_version(&client).await);
    }
    if settings.link_customers {
        findings.push(match client.search_phone(PROBE_NUMBER).await {
            Ok(_) => Finding::proved("a phone search (SOSL over Contact and Lead phones)"),
            Err(failure) => Finding::problem(
                format!("the phone search failed: {}", failure.reason),
                "give the integration user Read on Contact and Lead (and their phone fields), \
                 or set link_customers = false",
            ),
        });
    }
    findings
}

fn token_fix(failure: &Failure) -> &'static str {
    match failure.class {
        Class::Retry { .. } => {
            "the org did not answer: check instance_url (the My Domain URL) and the network path"
        }
        _ => {
            "check client_id and the client secret, that the External Client App has the \
             client credentials flow enabled and a run-as user set"
        }
    }
}

/// The describe of `object`, or the finding that says why there is none.
async fn describe(client: &Client, object: &str) -> Result<Value, Finding> {
    client
        .call(
            Method::GET,
            &format!("/sobjects/{object}/describe"),
            &[],
            Body::None,
            object,
        )
        .await
        .map(|reply| reply.body)
        .map_err(|failure| {
            Finding::problem(
                format!("cannot describe {object}: {}", failure.reason),
                format!(
                    "give the integration user's permission set Read on {object} \
                     (and check api_version)"
                ),
            )
        })
}

async fn task(client: &Client, settings: &SalesforceSinkSettings) -> Vec<Finding> {
    let described = match describe(client, "Task").await {
        Ok(described) => described,
        Err(finding) => return vec![finding],
    };
    let mut findings = vec![access(&described, "Task", "Create and Edit")];
    let field = &settings.external_id_field;
    let found = described["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"].as_str() == Some(field.as_str()));
    findings.push(match found {
        None => Finding::problem(
            format!("Task has no field {field} (or the integration user cannot see it)"),
            format!(
                "create a Text field {field} on Activity, flagged External ID and Unique, and \
                 give the integration user's permission set Edit access to it"
            ),
        ),
        Some(found) if found["externalId"].as_bool() != Some(true) => Finding::problem(
            format!("Task.{field} is not an External ID field"),
            format!("edit {field} and tick External ID (and Unique)"),
        ),
        Some(found) if found["unique"].as_bool() != Some(true) => Finding::problem(
            format!("Task.{field} is not Unique"),
            format!("edit {field} and tick Unique, so one engagement can only be one Task"),
        ),
        Some(_) => Finding::proved(format!("Task.{field} is External ID and Unique")),
    });
    findings
}

async fn content_version(client: &Client) -> Vec<Finding> {
    match describe(client, "ContentVersion").await {
        Ok(described) => vec![access(&described, "ContentVersion", "Create")],
        Err(finding) => vec![finding],
    }
}

/// Whether the describe says the user may create (and, for Task, edit) the object.
fn access(described: &Value, object: &str, needed: &str) -> Finding {
    let createable = described["createable"].as_bool() == Some(true);
    let updateable = object != "Task" || described["updateable"].as_bool() == Some(true);
    if createable && updateable {
        Finding::proved(format!("the integration user can {needed} {object}"))
    } else {
        Finding::problem(
            format!("the integration user cannot {needed} {object}"),
            format!("grant {needed} on {object} in the integration user's permission set"),
        )
    }
}
