//! `zcc-relay check` for a Dynamics 365 sink: proves the environment's
//! set-up without writing anything. One token request, `WhoAmI` (the app
//! registration is an application user here), the phonecall table's
//! alternate keys (one on `alternate_key_column` alone, its index Active),
//! the org's `maxuploadfilesize` when files are attached, and one contact
//! lookup when customers are linked. Each problem names its fix.

use reqwest::Method;

use super::DynamicsSinkSettings;
use super::client::{Client, query};
use super::error::Context;
use crate::failure::Class;
use crate::sink::{BuildContext, Finding};

/// A number no org should hold: the lookup proves the query, not a match.
const PROBE_NUMBER: &str = "+15550100199";
const NO_KEY: Context<'static> = Context { key_column: None };

pub async fn check(settings: &DynamicsSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
    let client = match Client::new(context.name, settings, context.timeout, context.tls) {
        Ok(client) => client,
        Err(error) => {
            return vec![Finding::problem(
                format!("cannot make the Dataverse client: {error}"),
                "check org_url, authority_url and tenant_id",
            )];
        }
    };
    let mut findings = Vec::new();
    let token_url = settings.token_url();
    if let Err(failure) = client.token_check().await {
        let fix = match failure.class {
            Class::Retry { .. } => {
                "Entra ID did not answer: check authority_url and the network path"
            }
            _ => {
                "check tenant_id, client_id and the client secret (Certificates & secrets of \
                 the app registration), and that org_url is the environment's URL"
            }
        };
        findings.push(Finding::problem(
            format!("no token from {token_url}: {}", failure.reason),
            fix,
        ));
        return findings;
    }
    findings.push(Finding::proved(format!(
        "token from {token_url} for {}",
        settings.scope()
    )));
    match client.call(Method::GET, "WhoAmI", None, NO_KEY).await {
        Ok(reply) => findings.push(Finding::proved(format!(
            "the application user {} can sign in to {}",
            reply.body["UserId"].as_str().unwrap_or("?"),
            settings.org()
        ))),
        Err(failure) => {
            findings.push(Finding::problem(
                format!("WhoAmI failed: {}", failure.reason),
                "in the Power Platform admin center, add the app registration as an \
                 Application user of this environment with a security role",
            ));
            return findings;
        }
    }
    findings.push(alternate_key(&client, &settings.alternate_key_column).await);
    if settings.attach_files {
        findings.push(match client.max_upload().await {
            Ok(limit) => Finding::proved(format!(
                "files up to {limit} bytes of base64 (maxuploadfilesize) attach as notes; \
                 larger ones are linked"
            )),
            Err(failure) => Finding::problem(
                format!(
                    "cannot read the org's maxuploadfilesize: {}",
                    failure.reason
                ),
                "give the application user's role Read on Organization",
            ),
        });
    }
    if settings.link_customers {
        findings.push(match client.contacts_by_phone(PROBE_NUMBER).await {
            Ok(_) => Finding::proved("a contact lookup by telephone1 and mobilephone"),
            Err(failure) => Finding::problem(
                format!("the contact lookup failed: {}", failure.reason),
                "give the application user's role Read on Contact, or set link_customers = false",
            ),
        });
    }
    findings
}

async fn alternate_key(client: &Client, column: &str) -> Finding {
    let path = format!(
        "EntityDefinitions(LogicalName='phonecall')/Keys?{}",
        query(&[("$select", "LogicalName,KeyAttributes,EntityKeyIndexStatus")])
    );
    let keys = match client.call(Method::GET, &path, None, NO_KEY).await {
        Ok(reply) => reply.body["value"].as_array().cloned().unwrap_or_default(),
        Err(failure) => {
            return Finding::problem(
                format!("cannot read the phonecall table's keys: {}", failure.reason),
                "give the application user's role Read on Entity and Entity Key (customization)",
            );
        }
    };
    let ours = keys.iter().find(|key| {
        key["KeyAttributes"].as_array().is_some_and(|attributes| {
            attributes.len() == 1 && attributes[0].as_str() == Some(column)
        })
    });
    match ours {
        None => Finding::problem(
            format!("the phonecall table has no alternate key on {column} alone"),
            format!(
                "create a Single line of text column {column} (100 characters) on Phone Call, \
                 then a key on it alone (Keys › New key), and wait until its index is Active"
            ),
        ),
        Some(key) => match key["EntityKeyIndexStatus"].as_str().unwrap_or("") {
            "Active" => Finding::proved(format!(
                "phonecall alternate key {} on {column} is Active",
                key["LogicalName"].as_str().unwrap_or("?")
            )),
            status => Finding::problem(
                format!("the alternate key on {column} is {status}, not Active"),
                index_fix(status),
            ),
        },
    }
}

fn index_fix(status: &str) -> &'static str {
    match status {
        "Failed" => {
            "duplicate or over-long values stopped the index: fix them and reactivate the key \
             (Keys › the key › Reactivate)"
        }
        _ => "the index is still being built (a system job): wait, then check again",
    }
}
