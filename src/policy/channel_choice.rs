//! Channels: on which of a rule's channels a resolved recipient can be reached, and which
//! template family each channel uses.

use std::collections::HashMap;

use serde::Deserialize;

use crate::ledger::{Channel, RecipientType};

use super::Resolution;

/// How a rule uses its channel list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelMode {
    /// The first channel of the list on which the recipient can be reached and has not opted
    /// out: one communication per recipient.
    #[default]
    First,
    /// Every channel of the list on which the recipient can be reached: one communication per
    /// recipient and channel (e.g. an alert in-app and by email).
    All,
}

/// The reason code of a recipient that has no address on a channel.
pub const CHANNEL_NOT_AVAILABLE: &str = "CHANNEL_NOT_AVAILABLE";

/// The recipient as reachable on `channel`, or why not.
///
/// - EMAIL: the resolved email address (resolvers resolve email first).
/// - IN_APP: engine users and contacts, by their reference, whether they have an email address
///   or not.
/// - WEBHOOK: webhook subscriptions only.
pub fn on_channel(resolution: &Resolution, channel: Channel) -> Resolution {
    let not_available = |recipient_type: RecipientType, recipient_ref: &str| Resolution::Failed {
        recipient_type,
        recipient_ref: recipient_ref.to_string(),
        code: CHANNEL_NOT_AVAILABLE,
        message: format!("{recipient_ref} cannot be reached on {channel}"),
    };
    let inbox_reachable =
        |t: RecipientType| matches!(t, RecipientType::User | RecipientType::Contact);
    match (resolution, channel) {
        (
            Resolution::Resolved {
                recipient,
                display_name,
            },
            _,
        ) => {
            let native = recipient.channel;
            match channel {
                Channel::Email | Channel::Webhook if native == channel => resolution.clone(),
                Channel::InApp if inbox_reachable(recipient.recipient_type) => {
                    let mut on_inbox = recipient.clone();
                    on_inbox.channel = Channel::InApp;
                    on_inbox.address = Some(recipient.recipient_ref.clone());
                    Resolution::Resolved {
                        recipient: on_inbox,
                        display_name: display_name.clone(),
                    }
                }
                _ => not_available(recipient.recipient_type, &recipient.recipient_ref),
            }
        }
        // No usable email address: the inbox still reaches users and contacts.
        (
            Resolution::Failed {
                recipient_type,
                recipient_ref,
                code: "NO_VALID_ADDRESS" | "INVALID_ADDRESS",
                ..
            },
            Channel::InApp,
        ) if inbox_reachable(*recipient_type) => Resolution::Resolved {
            recipient: crate::ledger::ResolvedRecipient {
                recipient_type: *recipient_type,
                recipient_ref: recipient_ref.clone(),
                channel: Channel::InApp,
                address: Some(recipient_ref.clone()),
                locale: None,
                timezone: None,
                quiet_hours: None,
                market: None,
            },
            display_name: None,
        },
        (Resolution::Failed { .. } | Resolution::Suppressed { .. }, _) => resolution.clone(),
    }
}

/// The template family of each channel: `template_family`, unless `channel_templates` names
/// one for the channel.
pub fn family_for<'a>(
    channel: Channel,
    template_family: &'a str,
    channel_templates: &'a HashMap<Channel, String>,
) -> &'a str {
    channel_templates
        .get(&channel)
        .map(String::as_str)
        .unwrap_or(template_family)
}

/// Checks a channel list and its templates; returns the problems, each naming the field.
pub fn check_channels(
    channels: &[Channel],
    template_family: &str,
    channel_templates: &HashMap<Channel, String>,
    templates: Option<&crate::templates::TemplateRegistry>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if channels.is_empty() {
        problems.push("channels: at least one channel".to_string());
    }
    for (i, c) in channels.iter().enumerate() {
        if channels[..i].contains(c) {
            problems.push(format!("channels: {c} is listed twice"));
        }
    }
    for c in channel_templates.keys() {
        if !channels.contains(c) {
            problems.push(format!("channel_templates.{c}: {c} is not in channels"));
        }
    }
    if let Some(registry) = templates {
        for &c in channels {
            let family = family_for(c, template_family, channel_templates);
            let versions: Vec<_> = registry
                .templates()
                .iter()
                .filter(|t| t.meta.family == family)
                .collect();
            if versions.is_empty() {
                problems.push(format!("template family '{family}' ({c}) has no version"));
            } else if let Some(t) = versions.iter().find(|t| t.meta.channel != c) {
                problems.push(format!(
                    "template {} is for {}, but the rule sends it on {c}: set channel_templates.{c}",
                    t.id(),
                    t.meta.channel
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ResolvedRecipient;

    fn user(email: Option<&str>) -> Resolution {
        match email {
            Some(address) => Resolution::Resolved {
                recipient: ResolvedRecipient {
                    recipient_type: RecipientType::User,
                    recipient_ref: "user:mary".into(),
                    channel: Channel::Email,
                    address: Some(address.into()),
                    locale: Some("de".into()),
                    timezone: None,
                    market: None,
                    quiet_hours: None,
                },
                display_name: Some("Mary".into()),
            },
            None => Resolution::Failed {
                recipient_type: RecipientType::User,
                recipient_ref: "user:mary".into(),
                code: "NO_VALID_ADDRESS",
                message: "no email".into(),
            },
        }
    }

    #[test]
    fn users_reach_the_inbox_with_or_without_an_email_address() {
        for resolution in [user(Some("mary@example.com")), user(None)] {
            match on_channel(&resolution, Channel::InApp) {
                Resolution::Resolved { recipient, .. } => {
                    assert_eq!(recipient.channel, Channel::InApp);
                    assert_eq!(recipient.address.as_deref(), Some("user:mary"));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            on_channel(&user(None), Channel::Email),
            Resolution::Failed {
                code: "NO_VALID_ADDRESS",
                ..
            }
        ));
    }

    #[test]
    fn explicit_addresses_have_no_inbox_and_people_no_webhook() {
        let key = crate::keyring::RefKey::from_setting(Some(&"ab".repeat(32)))
            .unwrap()
            .unwrap();
        let address = crate::policy::recipients::explicit_email(&key, "a@b.example", None);
        assert!(matches!(
            on_channel(&address, Channel::InApp),
            Resolution::Failed {
                code: CHANNEL_NOT_AVAILABLE,
                ..
            }
        ));
        assert!(matches!(
            on_channel(&user(Some("m@example.com")), Channel::Webhook),
            Resolution::Failed {
                code: CHANNEL_NOT_AVAILABLE,
                ..
            }
        ));
        assert!(matches!(
            on_channel(&address, Channel::Email),
            Resolution::Resolved { .. }
        ));
    }

    #[test]
    fn channel_lists_are_checked() {
        let none = HashMap::new();
        assert!(check_channels(&[Channel::Email], "f", &none, None).is_empty());
        assert_eq!(check_channels(&[], "f", &none, None).len(), 1);
        assert_eq!(
            check_channels(&[Channel::Email, Channel::Email], "f", &none, None).len(),
            1
        );
        let stray = HashMap::from([(Channel::InApp, "f-inbox".to_string())]);
        assert_eq!(
            check_channels(&[Channel::Email], "f", &stray, None).len(),
            1
        );
        assert_eq!(family_for(Channel::InApp, "f", &stray), "f-inbox");
        assert_eq!(family_for(Channel::Email, "f", &stray), "f");
    }
}
