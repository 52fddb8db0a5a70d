//! Dialogs saved for a restart come back in their places: under the customer they belong
//! to by name, whatever the next configuration's order of customers.

use super::*;
use crate::dialog::{ACCOUNT, ProfileLimits, Profiles};
use crate::proxy::shard::JournalEntry;

/// A harness whose customers are `names` (the default customer, the caller's, under its own
/// name where it appears; the others on addresses nobody calls from), with profile
/// `account` (the From user, `alice`) limited to 5 and scoped by customer.
fn with_customers(names: &[&str]) -> Harness {
    Harness::with_config(|c| {
        let caller = c.routing.customers[0].clone();
        c.routing.customers = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut cust = caller.clone();
                cust.name = name.to_string();
                cust.slot = i as u16;
                if *name != caller.name {
                    cust.sources = vec![format!("10.9.9.{}/32", i + 1).parse().unwrap()];
                }
                cust
            })
            .collect();
        let account = ProfileLimits {
            max: Some(5),
            ..Default::default()
        };
        let mut p = Profiles::new(&[], &[(ACCOUNT.into(), account)], 16);
        p.scope_accounts(names.len() as u16);
        c.profiles = Arc::new(p);
    })
}

fn account_size(h: &Harness, value: &str) -> u64 {
    let p = &h.shard.cfg.profiles;
    p.list[p.account() as usize].size(Some(value.as_bytes()))
}

#[test]
fn a_restored_dialog_counts_for_its_customer_by_name_after_customers_change() {
    let mut before = with_customers(&["x", "y", "acme"]);
    before.shard.enable_journal();
    let (_, fwd) = before.start_call(&invite("c1", "z9hG4bK-a"));
    let ok = before.gateway_answers(&fwd, &response(&fwd, 200, Some("gw")));
    before.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    before.take();
    assert_eq!(account_size(&before, "alice"), 1);
    let mut entries = Vec::new();
    before.shard.journal_entries(&mut entries);
    let saved = entries
        .into_iter()
        .find_map(|e| match e {
            JournalEntry::Up(d) => Some(d),
            JournalEntry::Down(_) => None,
        })
        .expect("saved");
    assert_eq!(saved.customer.as_deref(), Some("acme"));
    // The next run has customer y removed: acme is the second customer now.
    let mut after = with_customers(&["x", "acme"]);
    assert!(after.shard.restore(after.now, &saved));
    assert_eq!(account_size(&after, "alice"), 1, "counted for acme");
    // And its end gives the place back.
    after.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2).text());
    after.take();
    assert_eq!(account_size(&after, "alice"), 0);
}
