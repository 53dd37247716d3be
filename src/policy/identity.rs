//! Recipients from the engine's identity service: assignees, candidate users, group members.

use crate::camunda::client::UserProfile;
use crate::ledger::{Channel, RecipientType, ResolvedRecipient};

use super::recipients::{valid_email, Resolution};

/// The recipient reference of an engine user.
pub fn user_ref(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// A Camunda user (None: the engine does not know the id) as a recipient.
pub fn engine_user(
    user_id: &str,
    profile: Option<&UserProfile>,
    locale: Option<&str>,
) -> Resolution {
    let recipient_ref = user_ref(user_id);
    let failed = |code, message: String| Resolution::Failed {
        recipient_type: RecipientType::User,
        recipient_ref: recipient_ref.clone(),
        code,
        message,
    };
    let Some(profile) = profile else {
        return failed(
            "RECIPIENT_NOT_FOUND",
            format!("the engine has no user '{user_id}'"),
        );
    };
    let Some(email) = profile
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    else {
        return failed(
            "NO_VALID_ADDRESS",
            format!("user '{user_id}' has no email address in the engine"),
        );
    };
    if let Err(reason) = valid_email(email) {
        return failed(
            "INVALID_ADDRESS",
            format!("user '{user_id}' has an invalid email address ({reason})"),
        );
    }
    Resolution::Resolved {
        recipient: ResolvedRecipient {
            recipient_type: RecipientType::User,
            recipient_ref,
            channel: Channel::Email,
            address: Some(email.to_string()),
            locale: locale.map(str::to_string),
            timezone: None,
            quiet_hours: None,
            market: None,
        },
        display_name: Some(profile.display_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(email: Option<&str>) -> UserProfile {
        UserProfile {
            id: "anna".into(),
            first_name: Some("Anna".into()),
            last_name: Some("Approver".into()),
            email: email.map(str::to_string),
        }
    }

    #[test]
    fn users_without_a_usable_address_are_business_failures() {
        assert!(matches!(
            engine_user("x", None, None),
            Resolution::Failed {
                code: "RECIPIENT_NOT_FOUND",
                ..
            }
        ));
        assert!(matches!(
            engine_user("anna", Some(&profile(None)), None),
            Resolution::Failed {
                code: "NO_VALID_ADDRESS",
                ..
            }
        ));
        assert!(matches!(
            engine_user("anna", Some(&profile(Some("anna at example"))), None),
            Resolution::Failed {
                code: "INVALID_ADDRESS",
                ..
            }
        ));
        match engine_user("anna", Some(&profile(Some("anna@corp.example"))), None) {
            Resolution::Resolved {
                recipient,
                display_name,
            } => {
                assert_eq!(recipient.recipient_ref, "user:anna");
                assert_eq!(display_name.as_deref(), Some("Anna Approver"));
            }
            other => panic!("{other:?}"),
        }
    }
}
