//! The objects the fake org has (Task, ContentVersion, Contact, Lead) and their fields, as
//! the standard-object reference defines them, plus the org's custom external-id field on
//! Task. Drives validation, SOQL and the describe answers. Knows no HTTP.
//!
//! Sources: Object Reference "Task" (CallType Inbound/Outbound/Internal, CallObject 255,
//! CallDisposition 255 "Call Result", Description 32,000 "Comments", TaskSubtype set on
//! create only), "ContentVersion" (PathOnClient, VersionData, FirstPublishLocationId create
//! only), "Contact" and "Lead" (Phone, MobilePhone are phone fields), and REST API
//! "sObject Describe" for the describe field attributes.

use serde_json::{Value, json};

use super::org::{ExternalIdField, ObjectAccess};

/// The sObjects the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Task,
    ContentVersion,
    Contact,
    Lead,
    /// Read here through SOQL only: created with the first ContentVersion of a file.
    ContentDocument,
    /// Read here through SOQL only: created by `FirstPublishLocationId`.
    ContentDocumentLink,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 6] = [
        Self::Task,
        Self::ContentVersion,
        Self::Contact,
        Self::Lead,
        Self::ContentDocument,
        Self::ContentDocumentLink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Task => "Task",
            Self::ContentVersion => "ContentVersion",
            Self::Contact => "Contact",
            Self::Lead => "Lead",
            Self::ContentDocument => "ContentDocument",
            Self::ContentDocumentLink => "ContentDocumentLink",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Task => "Task",
            Self::ContentVersion => "Content Version",
            Self::Contact => "Contact",
            Self::Lead => "Lead",
            Self::ContentDocument => "Content Document",
            Self::ContentDocumentLink => "Content Document Link",
        }
    }

    pub fn key_prefix(self) -> &'static str {
        use super::id::prefix;
        match self {
            Self::Task => prefix::TASK,
            Self::ContentVersion => prefix::CONTENT_VERSION,
            Self::Contact => prefix::CONTACT,
            Self::Lead => prefix::LEAD,
            Self::ContentDocument => prefix::CONTENT_DOCUMENT,
            Self::ContentDocumentLink => prefix::CONTENT_DOCUMENT_LINK,
        }
    }

    /// sObject names are case-insensitive in REST URLs and SOQL.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    TextArea,
    Picklist,
    Combobox,
    Int,
    Date,
    DateTime,
    Boolean,
    Reference,
    Base64,
    Phone,
}

impl FieldType {
    pub fn describe_name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::String => "string",
            Self::TextArea => "textarea",
            Self::Picklist => "picklist",
            Self::Combobox => "combobox",
            Self::Int => "int",
            Self::Date => "date",
            Self::DateTime => "datetime",
            Self::Boolean => "boolean",
            Self::Reference => "reference",
            Self::Base64 => "base64",
            Self::Phone => "phone",
        }
    }

    /// The Java-ish type name Salesforce's JSON deserializer names in JSON_PARSER_ERROR.
    pub fn parser_name(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Date => "date",
            Self::DateTime => "datetime",
            Self::Boolean => "boolean",
            _ => "string",
        }
    }
}

/// One field's definition.
#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub label: &'static str,
    pub kind: FieldType,
    /// Characters for text types, 0 otherwise.
    pub length: u32,
    pub createable: bool,
    pub updateable: bool,
    pub nillable: bool,
    pub filterable: bool,
    pub external_id: bool,
    pub unique: bool,
    pub case_sensitive: bool,
    pub custom: bool,
    /// Picklist values and whether the picklist is restricted.
    pub picklist: Option<(&'static [&'static str], bool)>,
    pub reference_to: &'static [&'static str],
    /// Value given on create when the request leaves the field out.
    pub default: Option<&'static str>,
}

impl FieldDef {
    fn new(name: &str, label: &'static str, kind: FieldType, length: u32) -> Self {
        Self {
            name: name.to_owned(),
            label,
            kind,
            length,
            createable: true,
            updateable: true,
            nillable: true,
            filterable: true,
            external_id: false,
            unique: false,
            case_sensitive: false,
            custom: false,
            picklist: None,
            reference_to: &[],
            default: None,
        }
    }

    fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }

    fn create_only(mut self) -> Self {
        self.updateable = false;
        self
    }

    fn required(mut self, default: &'static str) -> Self {
        self.nillable = false;
        self.default = Some(default);
        self
    }

    fn picklist(mut self, values: &'static [&'static str], restricted: bool) -> Self {
        self.picklist = Some((values, restricted));
        self
    }

    fn references(mut self, to: &'static [&'static str]) -> Self {
        self.reference_to = to;
        self
    }

    fn unfilterable(mut self) -> Self {
        self.filterable = false;
        self
    }

    /// The describe entry (the attributes a client checks; sObject Describe, REST API).
    pub fn describe(&self, access: ObjectAccess) -> Value {
        let picklist_values: Vec<Value> = self
            .picklist
            .map(|(values, _)| values)
            .unwrap_or_default()
            .iter()
            .map(|value| {
                json!({"active": true, "defaultValue": self.default == Some(*value), "label": value,
                       "validFor": null, "value": value})
            })
            .collect();
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.kind.describe_name(),
            "length": self.length,
            "byteLength": self.length * 3,
            "externalId": self.external_id,
            "unique": self.unique,
            "caseSensitive": self.case_sensitive,
            "createable": self.createable && access.create,
            "updateable": self.updateable && access.edit,
            "nillable": self.nillable,
            "filterable": self.filterable,
            "custom": self.custom,
            "idLookup": self.kind == FieldType::Id || self.external_id,
            "picklistValues": picklist_values,
            "restrictedPicklist": self.picklist.is_some_and(|(_, restricted)| restricted),
            "referenceTo": self.reference_to,
            "defaultedOnCreate": self.default.is_some(),
        })
    }
}

const TASK_STATUS: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];
const TASK_PRIORITY: &[&str] = &["High", "Normal", "Low"];
const CALL_TYPE: &[&str] = &["Inbound", "Outbound", "Internal"];
const TASK_SUBTYPE: &[&str] = &["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"];
const CONTENT_LOCATION: &[&str] = &["S", "E", "L"];

/// The fields of `kind` in this org.
pub fn fields(kind: ObjectKind, external_id_field: Option<&ExternalIdField>) -> Vec<FieldDef> {
    use FieldType as T;
    let id = FieldDef::new("Id", "Activity ID", T::Id, 18).read_only();
    let created = FieldDef::new("CreatedDate", "Created Date", T::DateTime, 0).read_only();
    let modified =
        FieldDef::new("LastModifiedDate", "Last Modified Date", T::DateTime, 0).read_only();
    match kind {
        ObjectKind::Task => {
            let mut fields = vec![
                id,
                FieldDef::new("Subject", "Subject", T::Combobox, 255)
                    .picklist(&["Call", "Send Letter", "Other"], false),
                FieldDef::new("Description", "Comments", T::TextArea, 32_000).unfilterable(),
                FieldDef::new("Status", "Status", T::Picklist, 255)
                    .picklist(TASK_STATUS, true)
                    .required("Not Started"),
                FieldDef::new("Priority", "Priority", T::Picklist, 255)
                    .picklist(TASK_PRIORITY, true)
                    .required("Normal"),
                FieldDef::new("ActivityDate", "Due Date Only", T::Date, 0),
                FieldDef::new("CallType", "Call Type", T::Picklist, 255).picklist(CALL_TYPE, true),
                FieldDef::new("CallDurationInSeconds", "Call Duration", T::Int, 0),
                FieldDef::new("CallObject", "Call Object Identifier", T::String, 255),
                FieldDef::new("CallDisposition", "Call Result", T::String, 255),
                FieldDef::new("WhoId", "Name ID", T::Reference, 18)
                    .references(&["Contact", "Lead"]),
                FieldDef::new("WhatId", "Related To ID", T::Reference, 18).references(&[
                    "Account",
                    "Opportunity",
                    "Case",
                ]),
                FieldDef::new("OwnerId", "Assigned To ID", T::Reference, 18)
                    .references(&["User"])
                    .required(""),
                FieldDef::new("TaskSubtype", "Task Subtype", T::Picklist, 255)
                    .picklist(TASK_SUBTYPE, true)
                    .create_only()
                    .required("Task"),
                created,
                modified,
            ];
            if let Some(custom) = external_id_field {
                let mut field =
                    FieldDef::new(&custom.name, "Zoom Engagement Id", T::String, custom.length);
                field.custom = true;
                field.external_id = custom.external_id;
                field.unique = custom.unique;
                field.case_sensitive = custom.case_sensitive;
                fields.push(field);
            }
            fields
        }
        ObjectKind::ContentVersion => vec![
            FieldDef {
                label: "ContentVersion ID",
                ..id
            },
            FieldDef::new("Title", "Title", T::String, 255),
            FieldDef::new("PathOnClient", "Path On Client", T::String, 500).create_only(),
            FieldDef::new("VersionData", "Version Data", T::Base64, 0)
                .create_only()
                .unfilterable(),
            FieldDef::new("Description", "Description", T::TextArea, 1000),
            FieldDef::new("ReasonForChange", "Reason For Change", T::String, 1000),
            FieldDef::new("ContentLocation", "Content Location", T::Picklist, 40)
                .picklist(CONTENT_LOCATION, true)
                .create_only()
                .required("S"),
            FieldDef::new(
                "FirstPublishLocationId",
                "First Publish Location ID",
                T::Reference,
                18,
            )
            .references(&["Task", "Contact", "Lead", "User", "Account"])
            .create_only(),
            FieldDef::new("ContentDocumentId", "ContentDocument ID", T::Reference, 18)
                .references(&["ContentDocument"])
                .create_only(),
            FieldDef::new("ContentSize", "Size", T::Int, 0).read_only(),
            FieldDef::new("FileExtension", "File Extension", T::String, 40).read_only(),
            FieldDef::new("IsLatest", "Is Latest", T::Boolean, 0).read_only(),
            FieldDef::new("VersionNumber", "Version Number", T::String, 20).read_only(),
            created,
            modified,
        ],
        ObjectKind::ContentDocument => vec![
            FieldDef {
                label: "ContentDocument ID",
                ..id
            },
            FieldDef::new("Title", "Title", T::String, 255).read_only(),
            FieldDef::new(
                "LatestPublishedVersionId",
                "Latest Published Version ID",
                T::Reference,
                18,
            )
            .references(&["ContentVersion"])
            .read_only(),
            FieldDef::new("FileExtension", "File Extension", T::String, 40).read_only(),
            FieldDef::new("ContentSize", "Size", T::Int, 0).read_only(),
            created,
            modified,
        ],
        // "ContentDocumentLink" (Object Reference): ShareType V/C/I, Visibility.
        ObjectKind::ContentDocumentLink => vec![
            FieldDef {
                label: "ContentDocumentLink ID",
                ..id
            },
            FieldDef::new("ContentDocumentId", "ContentDocument ID", T::Reference, 18)
                .references(&["ContentDocument"])
                .read_only(),
            FieldDef::new("LinkedEntityId", "Linked Entity ID", T::Reference, 18)
                .references(&["Task", "Contact", "Lead", "User", "Account"])
                .read_only(),
            FieldDef::new("ShareType", "Share Type", T::Picklist, 40)
                .picklist(&["V", "C", "I"], true)
                .read_only(),
            FieldDef::new("Visibility", "Visibility", T::Picklist, 40)
                .picklist(&["AllUsers", "InternalUsers", "SharedUsers"], true)
                .read_only(),
        ],
        ObjectKind::Contact | ObjectKind::Lead => vec![
            FieldDef {
                label: if kind == ObjectKind::Contact {
                    "Contact ID"
                } else {
                    "Lead ID"
                },
                ..id
            },
            FieldDef::new("FirstName", "First Name", T::String, 40),
            FieldDef::new("LastName", "Last Name", T::String, 80),
            FieldDef::new("Name", "Full Name", T::String, 121).read_only(),
            FieldDef::new(
                "Phone",
                if kind == ObjectKind::Contact {
                    "Business Phone"
                } else {
                    "Phone"
                },
                T::Phone,
                40,
            ),
            FieldDef::new("MobilePhone", "Mobile Phone", T::Phone, 40),
            created,
            modified,
        ],
    }
}

/// The field named `name` (case-insensitive, as Salesforce resolves field names).
pub fn find<'a>(fields: &'a [FieldDef], name: &str) -> Option<&'a FieldDef> {
    fields
        .iter()
        .find(|field| field.name.eq_ignore_ascii_case(name))
}

/// An object's entry in `GET /sobjects` (Describe Global) and `GET /sobjects/{name}`.
pub fn summary(kind: ObjectKind, access: ObjectAccess, version: &str) -> Value {
    let name = kind.name();
    json!({
        "name": name,
        "label": kind.label(),
        "keyPrefix": kind.key_prefix(),
        "custom": false,
        "createable": access.create,
        "updateable": access.edit,
        "queryable": true,
        "searchable": matches!(kind, ObjectKind::Task | ObjectKind::Contact | ObjectKind::Lead),
        "urls": {
            "sobject": format!("/services/data/{version}/sobjects/{name}"),
            "describe": format!("/services/data/{version}/sobjects/{name}/describe"),
            "rowTemplate": format!("/services/data/{version}/sobjects/{name}/{{ID}}"),
        },
    })
}

/// `GET /sobjects/{name}/describe`.
pub fn describe(
    kind: ObjectKind,
    fields: &[FieldDef],
    access: ObjectAccess,
    version: &str,
) -> Value {
    let name = kind.name();
    json!({
        "name": name,
        "label": kind.label(),
        "keyPrefix": kind.key_prefix(),
        "custom": false,
        "createable": access.create,
        "updateable": access.edit,
        "deletable": access.edit,
        "queryable": true,
        "searchable": kind != ObjectKind::ContentVersion,
        "retrieveable": true,
        "fields": fields.iter().map(|field| field.describe(access)).collect::<Vec<_>>(),
        "urls": {
            "sobject": format!("/services/data/{version}/sobjects/{name}"),
            "describe": format!("/services/data/{version}/sobjects/{name}/describe"),
            "rowTemplate": format!("/services/data/{version}/sobjects/{name}/{{ID}}"),
        },
    })
}
