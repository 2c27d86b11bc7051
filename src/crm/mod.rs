//! What every CRM sink shares (DESIGN.md §3.5), independent of any one CRM's
//! API: for now the phone-number rules of customer lookup (`phone`).

pub mod phone;
