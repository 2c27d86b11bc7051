//! What every CRM sink shares (DESIGN.md §3.5), independent of any one CRM's
//! API: the phone-number rules of customer lookup (`phone`), the choice and
//! cache of a linked customer (`customer`), the per-sink request budget
//! (`budget`), the error table (`classify`), the text rules (`render`), the
//! CRM ids a sink created, kept in the journal (`ids`), how records meet a
//! CRM write by engagement (`engagement`) and an engagement's stored files as
//! a CRM holds them (`files`). Each CRM's own client lives with its sink kind
//! (`sink/salesforce/`, `sink/dynamics/`, `sink/hubspot/`, `sink/servicenow/`,
//! `sink/zendesk/`).

pub mod budget;
pub mod classify;
pub mod customer;
pub mod engagement;
pub mod files;
pub mod ids;
pub mod phone;
pub mod render;
