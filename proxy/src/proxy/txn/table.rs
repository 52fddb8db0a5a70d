//! The transactions of one shard: a slab of [`Txn`] records, each slot reused with a new
//! generation, and the two indices RFC 3261 §17 matches on: the server key of a request
//! (top Via branch and sent-by, method class) and the client key of a response (siplb's own
//! branch, CANCEL apart).

use super::Txn;
use crate::proxy::chunked::Chunked;
use crate::proxy::ids::TxnId;
use crate::proxy::via::MAGIC_COOKIE;
use crate::sip::{Method, SipMsg};
use hashbrown::HashMap;
use std::io::Write;

#[derive(Debug, Default)]
pub struct TxnTable {
    /// Chunked: growing the table moves no transaction.
    slots: Chunked<Option<Txn>>,
    free: Vec<u32>,
    live: usize,
    /// The bytes the open transactions hold, as [`TxnTable::insert`] counts them.
    bytes: usize,
    next_generation: u32,
    server_index: HashMap<Box<[u8]>, u32>,
    client_index: HashMap<Box<[u8]>, u32>,
}

impl TxnTable {
    /// Open transactions.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Memory the open transactions hold: each counted as it is inserted, its record and the
    /// messages it keeps then (the request as received and as forwarded, a reply, its keys).
    /// Later changes of size are not followed: the bulk of a transaction is its request, held
    /// from the start.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `txn` under its keys (those not empty); its id.
    pub fn insert(&mut self, mut txn: Txn) -> TxnId {
        let charged = std::mem::size_of::<Option<Txn>>()
            + txn.received.capacity()
            + txn.forwarded.capacity()
            + txn.last_response.capacity()
            + txn.ack.capacity()
            + 2 * (txn.server_key.len() + txn.client_key.len());
        txn.charged = u32::try_from(charged).unwrap_or(u32::MAX);
        self.bytes += txn.charged as usize;
        self.next_generation = self.next_generation.wrapping_add(1);
        txn.generation = self.next_generation;
        let generation = txn.generation;
        let (sk, ck) = (txn.server_key.clone(), txn.client_key.clone());
        self.live += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                *self.slots.get_mut(slot as usize).expect("a freed slot") = Some(txn);
                slot
            }
            None => {
                self.slots.push(Some(txn));
                (self.slots.len() - 1) as u32
            }
        };
        if !sk.is_empty() {
            self.server_index.insert(sk, slot);
        }
        if !ck.is_empty() {
            self.client_index.insert(ck, slot);
        }
        TxnId { slot, generation }
    }

    /// Gives transaction `id` a new client key (a new attempt with a new branch): responses
    /// to the old branch no longer find it.
    pub fn set_client_key(&mut self, id: TxnId, key: Box<[u8]>) {
        let Some(t) = self.get_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut t.client_key, key.clone());
        if !old.is_empty() && self.client_index.get(&old) == Some(&id.slot) {
            self.client_index.remove(&old);
        }
        if !key.is_empty() {
            self.client_index.insert(key, id.slot);
        }
    }

    pub fn get(&self, id: TxnId) -> Option<&Txn> {
        self.slots
            .get(id.slot as usize)?
            .as_ref()
            .filter(|t| t.generation == id.generation)
    }

    pub fn get_mut(&mut self, id: TxnId) -> Option<&mut Txn> {
        self.slots
            .get_mut(id.slot as usize)?
            .as_mut()
            .filter(|t| t.generation == id.generation)
    }

    fn id_of(&self, slot: u32) -> Option<TxnId> {
        let t = self.slots.get(slot as usize)?.as_ref()?;
        Some(TxnId {
            slot,
            generation: t.generation,
        })
    }

    /// The transaction a request with this server key belongs to.
    pub fn by_server_key(&self, key: &[u8]) -> Option<TxnId> {
        self.id_of(*self.server_index.get(key)?)
    }

    /// The transaction a response with this client key answers.
    pub fn by_client_key(&self, key: &[u8]) -> Option<TxnId> {
        self.id_of(*self.client_index.get(key)?)
    }

    /// Every open transaction.
    pub fn iter(&self) -> impl Iterator<Item = &Txn> {
        self.slots.iter().flatten()
    }

    /// Removes a transaction and its index entries (those that still point at it).
    pub fn remove(&mut self, id: TxnId) -> Option<Txn> {
        self.get(id)?;
        let t = self.slots.get_mut(id.slot as usize)?.take()?;
        if !t.server_key.is_empty() && self.server_index.get(&t.server_key) == Some(&id.slot) {
            self.server_index.remove(&t.server_key);
        }
        if !t.client_key.is_empty() && self.client_index.get(&t.client_key) == Some(&id.slot) {
            self.client_index.remove(&t.client_key);
        }
        self.free.push(id.slot);
        self.live -= 1;
        self.bytes -= t.charged as usize;
        Some(t)
    }
}

/// Writes the server-transaction key of `msg` into `out`: top Via branch and sent-by, and the
/// method class (ACK matches INVITE, CANCEL is its own; RFC 3261 §17.2.3).
pub fn server_key(msg: &SipMsg<'_>, out: &mut Vec<u8>) {
    out.clear();
    let buf = msg.buf;
    match msg.branch() {
        Some(b) if b.starts_with(MAGIC_COOKIE) => out.extend_from_slice(b),
        // RFC 2543 peers: no usable branch; Call-ID, From tag and CSeq number instead.
        _ => {
            out.extend_from_slice(msg.call_id());
            out.push(b'|');
            out.extend_from_slice(msg.from_tag().unwrap_or(b""));
            let _ = write!(out, "|{}", msg.cseq);
        }
    }
    out.push(b'|');
    out.extend_from_slice(msg.top_via.host.of(buf));
    let _ = write!(out, ":{}|", msg.top_via.port.unwrap_or(5060));
    let class = match msg.method() {
        Some(Method::Ack) | Some(Method::Invite) => b"INVITE",
        _ => msg.cseq_method_span.of(buf),
    };
    out.extend_from_slice(if msg.method() == Some(Method::Cancel) {
        b"CANCEL"
    } else {
        class
    });
}

/// Turns the server key of a CANCEL into that of the INVITE it cancels (same branch and
/// sent-by, RFC 3261 §9.2).
pub fn invite_key_of_cancel(key: &mut Vec<u8>) {
    let n = key.len() - b"CANCEL".len();
    key.truncate(n);
    key.extend_from_slice(b"INVITE");
}

/// Writes the client key of siplb's `branch` into `out`, marked when it is the CANCEL that
/// shares the INVITE's branch.
pub fn client_key(branch: &[u8], cancel: bool, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(branch);
    if cancel {
        out.extend_from_slice(b"|C");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::target::Target;
    use crate::proxy::txn::Kind;
    use std::time::Duration;

    fn txn(server_key: &[u8], client_key: &[u8]) -> Txn {
        let dst = Target::udp("127.0.0.1:5060".parse().unwrap());
        let mut t = Txn::new(
            Kind::NonInvite,
            Method::Bye,
            dst,
            dst,
            Duration::from_millis(500),
        );
        t.server_key = server_key.into();
        t.client_key = client_key.into();
        t
    }

    #[test]
    fn inserted_transactions_are_found_by_both_keys() {
        let mut table = TxnTable::default();
        let id = table.insert(txn(b"s1", b"c1"));
        assert_eq!(table.by_server_key(b"s1"), Some(id));
        assert_eq!(table.by_client_key(b"c1"), Some(id));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_reused_slot_does_not_answer_to_the_old_id() {
        let mut table = TxnTable::default();
        let old = table.insert(txn(b"s1", b"c1"));
        table.remove(old).unwrap();
        let new = table.insert(txn(b"s2", b"c2"));
        assert_eq!(old.slot, new.slot);
        assert!(table.get(old).is_none());
        assert!(table.get(new).is_some());
        assert!(table.remove(old).is_none());
        assert_eq!(table.by_server_key(b"s1"), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn removing_keeps_an_index_entry_taken_over_by_a_newer_transaction() {
        let mut table = TxnTable::default();
        let first = table.insert(txn(b"s", b""));
        let second = table.insert(txn(b"s", b""));
        table.remove(first);
        assert_eq!(table.by_server_key(b"s"), Some(second));
    }

    #[test]
    fn cancel_key_names_its_invite() {
        let inv = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h:5070;branch=z9hG4bK1\r\n\
                    From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
                    Content-Length: 0\r\n\r\n";
        let cancel = String::from_utf8_lossy(inv)
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        server_key(&SipMsg::parse(inv).unwrap(), &mut a);
        server_key(&SipMsg::parse(cancel.as_bytes()).unwrap(), &mut b);
        assert_ne!(a, b);
        invite_key_of_cancel(&mut b);
        assert_eq!(a, b);
    }
}
