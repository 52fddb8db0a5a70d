//! Ids of the records a shard keeps: a transaction's slot with its generation, and a dialog's
//! Kamailio `h_entry` / `h_id` pair. Callers pass these around whole; only this file knows
//! how they are packed.

use std::fmt;

/// A transaction: its slot in the shard's table and the generation of the transaction that
/// holds the slot, so that an id of a removed transaction never names its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// A dialog: `h_entry` is the shard that owns it, `h_id` a sequence number within the shard
/// (Kamailio's `dlg.end_dlg <h_entry> <h_id>` names dialogs this way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DialogId(u64);

const H_ID_BITS: u32 = 48;

impl DialogId {
    /// The dialog `h_id` of shard `h_entry`; none when either is out of range (16 and 48 bits).
    pub fn new(h_entry: u32, h_id: u64) -> Option<DialogId> {
        (h_entry < 1 << (64 - H_ID_BITS) && h_id < 1 << H_ID_BITS)
            .then(|| DialogId((u64::from(h_entry) << H_ID_BITS) | h_id))
    }

    pub fn h_entry(self) -> u32 {
        (self.0 >> H_ID_BITS) as u32
    }

    pub fn h_id(self) -> u64 {
        self.0 & ((1 << H_ID_BITS) - 1)
    }

    /// Reads the `did` parameter siplb puts in its Record-Route (lower-case hex).
    pub fn from_param(v: &[u8]) -> Option<DialogId> {
        let s = std::str::from_utf8(v).ok()?;
        u64::from_str_radix(s, 16).ok().map(DialogId)
    }
}

/// The `did` parameter of siplb's Record-Route.
impl fmt::LowerHex for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialog_id_keeps_entry_and_id() {
        let d = DialogId::new(3, 0x1234).unwrap();
        assert_eq!((d.h_entry(), d.h_id()), (3, 0x1234));
        assert_eq!(DialogId::from_param(format!("{d:x}").as_bytes()), Some(d));
    }

    #[test]
    fn dialog_id_out_of_range_is_none() {
        assert!(DialogId::new(1 << 16, 1).is_none());
        assert!(DialogId::new(0, 1 << 48).is_none());
        assert!(DialogId::from_param(b"xyz").is_none());
    }
}
