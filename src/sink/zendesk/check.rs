//! `zcc-relay check` for a Zendesk sink: proves the account's set-up without
//! writing anything. A token comes (OAuth) and the integration user is an
//! agent or admin (`users/me`); tickets can be listed by `external_id`; one
//! users search by phone (when customers are linked); the disposition field
//! exists (when set). Each problem names its fix.

use reqwest::Method;

use super::ZendeskSinkSettings;
use super::client::{Body, Client, encode};
use super::config::ZendeskAuth;
use crate::sink::{BuildContext, Finding};

/// A number no account should hold: the search proves the call, not a match.
const PROBE_NUMBER: &str = "+15550100199";

pub async fn check(settings: &ZendeskSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
    let client = match Client::new(context.name, settings, context.timeout, context.tls) {
        Ok(client) => client,
        Err(error) => {
            return vec![Finding::problem(
                format!("cannot make the Zendesk client: {error}"),
                "check url",
            )];
        }
    };
    let api_token = matches!(settings.auth, ZendeskAuth::ApiToken { .. });
    if let Err(failure) = client.token_check().await {
        return vec![Finding::problem(
            format!("no OAuth token: {}", failure.reason),
            "check client_id and client_secret_file (Admin Center › Apps and integrations › \
             APIs › OAuth Clients: a confidential client with the client credentials grant)",
        )];
    }
    let mut findings = Vec::new();
    match client
        .call(Method::GET, "/api/v2/users/me", Body::None, None)
        .await
    {
        Ok(me) => {
            let role = me.body["user"]["role"].as_str().unwrap_or("");
            let id = me.body["user"]["id"].as_u64();
            if id.is_none() || !matches!(role, "agent" | "admin") {
                findings.push(Finding::problem(
                    format!("the integration user is not an agent (role {role:?})"),
                    "authenticate as an agent or admin who may create and edit tickets and \
                     end-users",
                ));
            } else {
                let how = if api_token {
                    "by API token (Zendesk switches API tokens off on 30 April 2027: move to an \
                     OAuth client)"
                } else {
                    "by OAuth client credentials"
                };
                findings.push(Finding::proved(format!(
                    "signed in {how} as a Zendesk {role}"
                )));
            }
        }
        Err(failure) => {
            findings.push(Finding::problem(
                format!("cannot read the integration user: {}", failure.reason),
                if api_token {
                    "check email and api_token_file (Admin Center › Apps and integrations › \
                     Zendesk API: token access on)"
                } else {
                    "check the OAuth client (client_id, client_secret_file) and that it may \
                     use the scopes \"read write\""
                },
            ));
            return findings;
        }
    }
    let path = format!("/api/v2/tickets?external_id={}", encode("zcc:check"));
    findings.push(
        match client.call(Method::GET, &path, Body::None, None).await {
            Ok(_) => Finding::proved("tickets can be listed by external_id"),
            Err(failure) => Finding::problem(
                format!("cannot list tickets by external_id: {}", failure.reason),
                "give the integration user access to all tickets (an agent role that sees every \
             ticket)",
            ),
        },
    );
    if settings.link_customers {
        let path = format!("/api/v2/users/search?query={}", encode(PROBE_NUMBER));
        findings.push(
            match client.call(Method::GET, &path, Body::None, None).await {
                Ok(_) => Finding::proved("a users search by phone"),
                Err(failure) => Finding::problem(
                    format!("the users search failed: {}", failure.reason),
                    "let the integration user view end-users, or set link_customers = false",
                ),
            },
        );
    }
    if let Some(field) = settings.disposition_field_id {
        let path = format!("/api/v2/ticket_fields/{field}");
        findings.push(
            match client.call(Method::GET, &path, Body::None, None).await {
                Ok(found) if found.body["ticket_field"]["active"].as_bool() != Some(false) => {
                    Finding::proved(format!("the ticket field {field} exists"))
                }
                Ok(_) => Finding::problem(
                    format!("the ticket field {field} is inactive"),
                    "activate it (Admin Center › Objects and rules › Tickets › Fields) or unset \
                 disposition_field_id",
                ),
                Err(failure) => Finding::problem(
                    format!("cannot read the ticket field {field}: {}", failure.reason),
                    "set disposition_field_id to an existing ticket field's id, or remove it",
                ),
            },
        );
    }
    findings
}
