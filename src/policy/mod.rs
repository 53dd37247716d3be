//! Policy: everything decided before a delivery attempt. Recipients, channels, preferences,
//! rules and idempotency keys.

pub mod business_hours;
pub mod channel_choice;
pub mod directory;
pub mod identity;
pub mod keys;
pub mod noise;
pub mod preferences;
pub mod recipients;
pub mod rules;
pub mod tenant;

pub use keys::{derive_key, KeyError};
pub use recipients::{
    address_ref, earlier_address_ref, hash_address, mask_address, redact_addresses, Resolution,
};
