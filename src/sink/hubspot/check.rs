//! `zcc-relay check` for a HubSpot sink: proves the portal's set-up without
//! writing anything. The token reads; the calls property `unique_property`
//! exists and has unique values; the token may read calls, contacts (one
//! search when customers are linked), the call dispositions and files. Each
//! problem names its fix.

use reqwest::Method;

use super::HubSpotSinkSettings;
use super::client::{API_VERSION, Body, Client, encode};
use crate::sink::{BuildContext, Finding};

/// A number no portal should hold: the search proves the call, not a match.
const PROBE_NUMBER: &str = "+15550100199";

pub async fn check(settings: &HubSpotSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
    let client = match Client::new(context.name, settings, context.timeout, context.tls) {
        Ok(client) => client,
        Err(error) => {
            return vec![Finding::problem(
                format!("cannot make the HubSpot client: {error}"),
                "check api_base_url",
            )];
        }
    };
    if let Err(failure) = client.token_check().await {
        return vec![Finding::problem(
            format!("no token: {}", failure.reason),
            "check token_file (a private app's access token or a service key)",
        )];
    }
    let mut findings = Vec::new();
    let property = &settings.unique_property;
    let path = format!("/crm/properties/{API_VERSION}/calls/{}", encode(property));
    match client.call(Method::GET, &path, Body::None).await {
        Ok(found) if found["hasUniqueValue"].as_bool() == Some(true) => findings.push(
            Finding::proved(format!("the calls property {property} has unique values")),
        ),
        Ok(_) => findings.push(Finding::problem(
            format!("the calls property {property} does not require unique values"),
            "create a calls property with \"Require unique values\" set (HubSpot cannot add \
             it to an existing property) and set unique_property to it",
        )),
        Err(failure) if failure.status == Some(404) => findings.push(Finding::problem(
            format!("the portal has no calls property {property}"),
            format!(
                "create a single-line text calls property {property} with \"Require unique \
                 values\" set (Settings › Properties › Call properties), or set unique_property"
            ),
        )),
        Err(failure) => findings.push(Finding::problem(
            format!(
                "cannot read the calls property {property}: {}",
                failure.reason
            ),
            "give the private app the scopes crm.objects.calls.read and crm.schemas.calls.read",
        )),
    }
    findings.push(match client.dispositions().await {
        Ok(list) => Finding::proved(format!("{} call dispositions readable", list.len())),
        Err(failure) => Finding::problem(
            format!("cannot read the call dispositions: {}", failure.reason),
            "give the private app the scope crm.objects.calls.read",
        ),
    });
    if settings.link_customers {
        findings.push(match client.contacts_by_phone(PROBE_NUMBER).await {
            Ok(_) => Finding::proved("a contact search by phone and mobile phone"),
            Err(failure) => Finding::problem(
                format!("the contact search failed: {}", failure.reason),
                "give the private app the scope crm.objects.contacts.read, or set link_customers = false",
            ),
        });
    }
    if settings.attach_files {
        findings.push(
            match client
                .call(Method::GET, "/files/v3/files/search?limit=1", Body::None)
                .await
            {
                Ok(_) => Finding::proved("the files API is readable"),
                Err(failure) => Finding::problem(
                    format!("cannot use the files API: {}", failure.reason),
                    "give the private app the scope files, or set attach_files = false",
                ),
            },
        );
    }
    findings
}
