//! The contact directory and preferences of the caller's tenant.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ledger::{Channel, MessageCategory};
use crate::policy::directory::Contact;

use super::auth::{Caller, Operate};
use super::input::{check_text, check_texts, Body, PathOf, Text};
use super::problem::ApiError;
use super::ApiState;

/// A contact of the directory.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "contactId": "c-1", "displayName": "Kim Meier", "email": "kim@example.com",
    "locale": "de-CH", "market": "CH", "timezone": "Europe/Zurich",
    "quietStart": "22:00", "quietEnd": "07:00"
}))]
pub struct ContactInput {
    #[serde(default)]
    pub contact_id: Option<String>,
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub display_name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    /// The contact's market (`DE`, `CH`): template versions made for it win.
    #[serde(default)]
    pub market: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub active: bool,
    /// Quiet hours, `HH:MM`, both or neither.
    #[serde(default)]
    pub quiet_start: Option<String>,
    #[serde(default)]
    pub quiet_end: Option<String>,
}

/// The schema of a contact with what [`check_contact`] adds to the derived one: ids without
/// blanks or control characters, an email address, an IANA time zone, quiet hours `HH:MM`,
/// both or neither; the contactId required (an import) or left out (the path's).
fn contact_schema(with_id: bool) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use serde_json::json;
    const ID: &str =
        r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$";
    let mut schema = serde_json::to_value(<ContactInput as utoipa::PartialSchema>::schema())
        .expect("a schema serialises");
    let fields = &mut schema["properties"];
    for id in ["contactId", "locale", "market"] {
        fields[id]["pattern"] = ID.into();
    }
    fields["email"]["format"] = "email".into();
    fields["email"]["pattern"] = ID.into();
    fields["timezone"]["enum"] = zone_names(true).into();
    for quiet in ["quietStart", "quietEnd"] {
        fields[quiet]["pattern"] = QUIET_TIME.into();
    }
    if with_id {
        fields["contactId"]["type"] = "string".into();
        schema["required"] = json!(["contactId", "displayName"]);
        schema["description"] = "A contact of the directory, with its id.".into();
    } else {
        for part in ["properties", "example"] {
            if let Some(fields) = schema[part].as_object_mut() {
                fields.remove("contactId");
            }
        }
        schema["description"] = "A contact of the directory; its id is the path's.".into();
    }
    let object: utoipa::openapi::Schema =
        serde_json::from_value(schema).expect("the contact's schema is a schema");
    quiet_together(object)
}

/// The pattern of a time of quiet hours, `HH:MM`.
pub(super) const QUIET_TIME: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$";

/// The IANA time zones chrono_tz knows (and `null` when the field may be null), as a schema's
/// `enum`.
pub(super) fn zone_names(nullable: bool) -> Vec<serde_json::Value> {
    chrono_tz::TZ_VARIANTS
        .iter()
        .map(|zone| serde_json::json!(zone.name()))
        .chain(nullable.then_some(serde_json::Value::Null))
        .collect()
}

/// `object` with its `quietStart` and `quietEnd` going together: both strings, or neither.
pub(super) fn quiet_together(
    object: utoipa::openapi::Schema,
) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
    let quiet = |ty: Type| {
        ObjectBuilder::new()
            .property("quietStart", ObjectBuilder::new().schema_type(ty.clone()))
            .property("quietEnd", ObjectBuilder::new().schema_type(ty.clone()))
    };
    // Quiet hours go together: both strings, or neither (absent or null).
    AllOfBuilder::new()
        .item(object)
        .item(
            OneOfBuilder::new()
                .item(
                    quiet(Type::String)
                        .required("quietStart")
                        .required("quietEnd"),
                )
                .item(quiet(Type::Null)),
        )
        .into()
}

/// A contact of an import (`POST /v1/contacts/import`): a [`ContactInput`] with its id.
pub struct ContactBody;

impl utoipa::PartialSchema for ContactBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        contact_schema(true)
    }
}

impl ToSchema for ContactBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "Contact".into()
    }
}

/// The body of `PUT /v1/contacts/{contactId}`: a [`ContactInput`] whose id is the path's (a
/// `contactId` in the body is taken when it is the same, refused otherwise).
pub struct ContactOfPath;

impl utoipa::PartialSchema for ContactOfPath {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        contact_schema(false)
    }
}

impl ToSchema for ContactOfPath {}

fn yes() -> bool {
    true
}

type QuietTimes = (Option<chrono::NaiveTime>, Option<chrono::NaiveTime>);

fn check_contact(contact: &ContactInput, at: &str) -> Result<QuietTimes, Vec<String>> {
    let mut problems = Vec::new();
    if contact.display_name.trim().is_empty() {
        problems.push(format!("{at}.displayName: must not be empty"));
    }
    let field = |name: &str| format!("{at}.{name}");
    let (id, name, email, locale, market) = (
        field("contactId"),
        field("displayName"),
        field("email"),
        field("locale"),
        field("market"),
    );
    problems.extend(check_texts([
        (id.as_str(), contact.contact_id.as_deref(), Text::Id),
        (
            name.as_str(),
            Some(contact.display_name.as_str()),
            Text::Name,
        ),
        (email.as_str(), contact.email.as_deref(), Text::Id),
        (locale.as_str(), contact.locale.as_deref(), Text::Id),
        (market.as_str(), contact.market.as_deref(), Text::Id),
    ]));
    // No address is no `email` field (or null), never an empty string.
    if let Some(email) = contact.email.as_deref() {
        if email.parse::<lettre::Address>().is_err() {
            problems.push(format!("{at}.email: not a valid email address"));
        }
    }
    if let Some(zone) = &contact.timezone {
        if zone.parse::<chrono_tz::Tz>().is_err() {
            problems.push(format!("{at}.timezone: not an IANA time zone"));
        }
    }
    let time = |field: &str, value: &Option<String>, problems: &mut Vec<String>| {
        value
            .as_deref()
            .and_then(|v| match chrono::NaiveTime::parse_from_str(v, "%H:%M") {
                Ok(t) => Some(t),
                Err(_) => {
                    problems.push(format!("{at}.{field}: not HH:MM"));
                    None
                }
            })
    };
    let start = time("quietStart", &contact.quiet_start, &mut problems);
    let end = time("quietEnd", &contact.quiet_end, &mut problems);
    if contact.quiet_start.is_some() != contact.quiet_end.is_some() {
        problems.push(format!(
            "{at}.quietEnd: quietStart and quietEnd go together"
        ));
    }
    if problems.is_empty() {
        Ok((start, end))
    } else {
        Err(problems)
    }
}

/// A checked contact of the API, as the directory keeps it.
fn contact_record<'a>(id: &'a str, contact: &'a ContactInput, quiet: QuietTimes) -> Contact<'a> {
    Contact {
        contact_id: id,
        display_name: &contact.display_name,
        email: contact.email.as_deref(),
        locale: contact.locale.as_deref(),
        market: contact.market.as_deref(),
        timezone: contact.timezone.as_deref(),
        active: contact.active,
        quiet,
    }
}

/// The answer to a contact written.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactUpserted {
    contact_id: String,
    upserted: bool,
}

/// `PUT /v1/contacts/{contactId}`.
#[utoipa::path(
    put,
    path = "/v1/contacts/{contactId}",
    tag = "contacts",
    operation_id = "putContact",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    params(("contactId" = String, Path, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$", description = "The contact (a contactId in the body must be the same)")),
    request_body = ContactOfPath,
    responses(
        (status = 200, description = "The contact is written (created or replaced)", body = ContactUpserted),
    )
)]
pub async fn put_contact(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    PathOf(contact_id): PathOf<String>,
    Body(contact): Body<ContactInput>,
) -> Result<Response, ApiError> {
    // The body is the contact: its fields' problems point at the root.
    let checked = check_contact(&contact, "");
    let mut problems = checked.as_ref().err().cloned().unwrap_or_default();
    problems.extend(check_text("path.contactId", &contact_id, Text::Id));
    if contact
        .contact_id
        .as_deref()
        .is_some_and(|id| id != contact_id)
    {
        problems.push(".contactId: differs from the path's".into());
    }
    let quiet = match checked {
        Ok(quiet) if problems.is_empty() => quiet,
        _ => return Err(ApiError::bad(problems)),
    };
    state
        .intake
        .directory
        .upsert_contacts(
            &caller.tenant,
            &[contact_record(&contact_id, &contact, quiet)],
        )
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(ContactUpserted {
        contact_id,
        upserted: true,
    })
    .into_response())
}

/// The answer to an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactsImported {
    /// How many contacts were written.
    upserted: usize,
}

/// `POST /v1/contacts/import`: upserts a whole list in one transaction; any invalid entry and
/// nothing is written.
#[utoipa::path(
    post,
    path = "/v1/contacts/import",
    tag = "contacts",
    operation_id = "importContacts",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    request_body(content = Vec<ContactBody>, description = "The contacts, each with its contactId"),
    responses(
        (status = 200, description = "Every contact is written, in one transaction", body = ContactsImported),
    )
)]
pub async fn import_contacts(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    Body(contacts): Body<Vec<ContactInput>>,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    let mut checked = Vec::with_capacity(contacts.len());
    for (n, contact) in contacts.iter().enumerate() {
        let at = format!("[{n}]");
        match (&contact.contact_id, check_contact(contact, &at)) {
            (Some(id), Ok(quiet)) if !id.trim().is_empty() => {
                checked.push((id.trim().to_string(), contact, quiet))
            }
            (_, Err(mut p)) => problems.append(&mut p),
            _ => problems.push(format!("{at}.contactId: required in an import")),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    let records: Vec<Contact> = checked
        .iter()
        .map(|(id, contact, quiet)| contact_record(id, contact, *quiet))
        .collect();
    state
        .intake
        .directory
        .upsert_contacts(&caller.tenant, &records)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(ContactsImported {
        upserted: checked.len(),
    })
    .into_response())
}

/// A recipient's opt-in or opt-out for a category on a channel.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreferenceInput {
    /// The recipient (`contact:…`, `address:…`), as herald's records name it.
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    recipient_ref: String,
    category: MessageCategory,
    channel: Channel,
    opted_in: bool,
    /// Who made the choice (`api` when not given).
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    source: Option<String>,
}

/// The answer to a preference written.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferenceSet {
    recipient_ref: String,
    opted_in: bool,
}

/// `PUT /v1/preferences`: a recipient's opt-in or opt-out for a category on a channel.
#[utoipa::path(
    put,
    path = "/v1/preferences",
    tag = "contacts",
    operation_id = "putPreference",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    request_body = PreferenceInput,
    responses(
        (status = 200, description = "The preference is written", body = PreferenceSet),
    )
)]
pub async fn put_preference(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    Body(pref): Body<PreferenceInput>,
) -> Result<Response, ApiError> {
    let mut problems = check_texts([
        ("recipientRef", Some(pref.recipient_ref.as_str()), Text::Id),
        ("source", pref.source.as_deref(), Text::Name),
    ]);
    if pref.recipient_ref.trim().is_empty() {
        problems.push("recipientRef: must not be empty".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    state
        .intake
        .directory
        .set_preference(
            &caller.tenant,
            pref.recipient_ref.trim(),
            pref.category,
            pref.channel,
            pref.opted_in,
            pref.source.as_deref().unwrap_or("api"),
        )
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(PreferenceSet {
        recipient_ref: pref.recipient_ref,
        opted_in: pref.opted_in,
    })
    .into_response())
}
