//! Dialogs as Kamailio's `dialog` module keeps them (DESIGN §3): profiles, the rules that
//! classify a new dialog into them, and the strict limits on their sizes, shared by every
//! worker. The dialog records themselves live in each worker's shard
//! ([`crate::proxy::Shard`]).

pub mod limits;
pub mod profiles;

pub use limits::{Denied, UNLIMITED};
pub use profiles::{
    ACCOUNT, CallFacts, Membership, ProfileId, ProfileLimits, Profiles, Refusal, Rule, ValueFrom,
};
