//! Dialogs as Kamailio's `dialog` module keeps them: profiles, the rules that
//! classify a new dialog into them, and the strict limits on their sizes, shared by every
//! worker. The dialog records themselves live in each worker's shard
//! ([`crate::proxy::Shard`]).

pub mod limits;
pub mod profiles;

/// When a configured dialog variable is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarAt {
    /// With the initial INVITE.
    Invite,
    /// At the answer (Kamailio `event_route[dialog:start]`).
    Start,
    /// At the end (Kamailio `event_route[dialog:end]`).
    End,
}

/// A dialog variable from the configuration (Kamailio `$dlg_var(name) = …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogVar {
    pub name: String,
    pub value: ValueFrom,
    pub at: VarAt,
}

/// The variables siplb sets itself: Unix seconds of the INVITE, the answer and the end, and
/// the billed seconds (end − answer, rounded to the nearest second; 0 when not answered).
pub const BUILTIN_VARS: [&str; 4] = ["SetupTime", "AnswerTime", "EndTime", "BillSec"];

pub use limits::{Denied, UNLIMITED};
pub use profiles::{
    ACCOUNT, CallFacts, Membership, ProfileId, ProfileLimits, Profiles, Refusal, Rule, ValueFrom,
};
