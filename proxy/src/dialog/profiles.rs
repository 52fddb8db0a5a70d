//! Dialog profiles (Kamailio's `profiles_no_value` / `profiles_with_value`), the rules that put
//! a new dialog into them, and the limits on their sizes.
//!
//! Profile `account` always exists: every dialog is in it, valued by its account (the
//! customer, or the From user or domain within it: `customer.account_key`).

use super::limits::{Count, Denied, Place, UNLIMITED, ValueTable};
use crate::proxy::Cidr;
use regex::bytes::Regex;
use std::net::IpAddr;

/// The built-in with-value profile that carries the per-account limit.
pub const ACCOUNT: &str = "account";

/// Index of a profile in [`Profiles::list`].
pub type ProfileId = u16;

pub enum Counter {
    NoValue(Count),
    WithValue(ValueTable),
}

pub struct Profile {
    pub name: String,
    pub counter: Counter,
    /// For profile `account`: the number of customers its values are counted apart for (the
    /// From user `1000` of one customer is not that of another); 0 for every other profile.
    pub scoped: std::sync::atomic::AtomicU16,
}

impl Profile {
    pub fn with_value(&self) -> bool {
        matches!(self.counter, Counter::WithValue(_))
    }

    /// The table key of `value` for customer `customer`.
    fn key(&self, customer: u16, value: &[u8], out: &mut Vec<u8>) {
        out.clear();
        if self.scoped.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            out.extend_from_slice(&customer.to_le_bytes());
            out.push(b'/');
        }
        out.extend_from_slice(value);
    }

    /// `f` of the table entry of `value` for each customer it may belong to.
    fn each_key(&self, value: &[u8], mut f: impl FnMut(&[u8])) {
        let mut key = Vec::new();
        for c in 0..self
            .scoped
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1)
        {
            self.key(c, value, &mut key);
            f(&key);
        }
    }

    /// Dialogs in the profile, or with `value` in it (for `account`: of every customer).
    pub fn size(&self, value: Option<&[u8]>) -> u64 {
        match (&self.counter, value) {
            (Counter::NoValue(c), _) => c.get() as u64,
            (Counter::WithValue(t), Some(v)) => {
                let mut n = 0;
                self.each_key(v, |k| n += t.get(k) as u64);
                n
            }
            (Counter::WithValue(t), None) => t.total(),
        }
    }

    /// The highest size reached (for a value: since it entered the table; for `account`, the
    /// highest of any customer's).
    pub fn high_water(&self, value: Option<&[u8]>) -> u64 {
        match (&self.counter, value) {
            (Counter::NoValue(c), _) => c.high_water() as u64,
            (Counter::WithValue(t), Some(v)) => {
                let mut n = 0;
                self.each_key(v, |k| n = n.max(t.high_water(k) as u64));
                n
            }
            (Counter::WithValue(_), None) => 0,
        }
    }
}

/// Where a rule's profile value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueFrom {
    Literal(String),
    /// The Request-URI user: the number dialed.
    Dialed,
    FromUser,
    FromDomain,
    ToUser,
    Source,
    Customer,
    Account,
}

impl ValueFrom {
    pub const NAMES: &'static str =
        "dialed, from_user, from_domain, to_user, source, customer, account";

    pub fn parse(s: &str) -> Option<ValueFrom> {
        Some(match s {
            "dialed" => ValueFrom::Dialed,
            "from_user" => ValueFrom::FromUser,
            "from_domain" => ValueFrom::FromDomain,
            "to_user" => ValueFrom::ToUser,
            "source" => ValueFrom::Source,
            "customer" => ValueFrom::Customer,
            "account" => ValueFrom::Account,
            _ => return None,
        })
    }
}

/// A classification rule: when every condition holds, the dialog joins `profile`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub profile: ProfileId,
    pub value: Option<ValueFrom>,
    pub dialed_prefix: Vec<String>,
    pub dialed_regex: Option<Regex>,
    pub from_user: Option<Regex>,
    pub source: Vec<Cidr>,
    pub customer: Vec<String>,
    pub account: Option<Regex>,
    /// No further rules once this one matched.
    pub stop: bool,
}

impl Rule {
    pub fn new(profile: ProfileId) -> Rule {
        Rule {
            profile,
            value: None,
            dialed_prefix: Vec::new(),
            dialed_regex: None,
            from_user: None,
            source: Vec::new(),
            customer: Vec::new(),
            account: None,
            stop: false,
        }
    }

    fn matches(&self, f: &CallFacts<'_>) -> bool {
        (self.dialed_prefix.is_empty()
            || self
                .dialed_prefix
                .iter()
                .any(|p| f.dialed.starts_with(p.as_bytes())))
            && self
                .dialed_regex
                .as_ref()
                .is_none_or(|r| r.is_match(f.dialed))
            && self
                .from_user
                .as_ref()
                .is_none_or(|r| r.is_match(f.from_user))
            && (self.source.is_empty() || self.source.iter().any(|c| c.contains(f.source)))
            && (self.customer.is_empty() || self.customer.iter().any(|c| c == f.customer))
            && self.account.as_ref().is_none_or(|r| r.is_match(f.account))
    }
}

/// What the rules look at, taken from the initial INVITE.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    pub dialed: &'a [u8],
    pub from_user: &'a [u8],
    pub from_domain: &'a [u8],
    pub to_user: &'a [u8],
    pub source: IpAddr,
    pub customer: &'a str,
    /// Index of the customer in the configuration (accounts are counted per customer).
    pub customer_index: u16,
    pub account: &'a [u8],
}

/// One profile a dialog is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub profile: ProfileId,
    /// The value, for a with-value profile, and where it is counted.
    pub value: Option<(Box<[u8]>, Place)>,
    /// For `account` in a fleet (`[cluster]`): the lease its fleet-wide place is taken from.
    pub lease: Option<std::sync::Arc<crate::cluster::fleet::Lease>>,
    /// The customer the value is counted for (accounts are counted per customer).
    pub customer: u16,
}

/// A place a dialog held, by name: profile, value, customer (what a restart takes again).
pub type NamedPlace = (String, Option<Box<[u8]>>, u16);

/// The profile that refused a new dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub profile: ProfileId,
    pub why: Denied,
}

/// Every profile with its counts and limits; shared by all workers. The rules that put
/// dialogs into them are the shards' (`ProxyConfig::rules`), replaced by a reload.
pub struct Profiles {
    pub list: Vec<Profile>,
    /// With `[cluster]`: the account limits are the fleet's, leased through it.
    pub fleet: std::sync::OnceLock<std::sync::Arc<crate::cluster::fleet::Fleet>>,
}

impl std::fmt::Debug for Profiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles")
            .field(
                "list",
                &self.list.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Limits of one profile, as configured.
#[derive(Debug, Clone, Default)]
pub struct ProfileLimits {
    /// No-value profile: its limit. With-value profile: the limit of each value that has none
    /// of its own.
    pub max: Option<u32>,
    /// With-value profile: values with a limit of their own.
    pub values: Vec<(String, u32)>,
    /// With-value profile: values held at once.
    pub table: usize,
}

impl Profiles {
    /// Profiles from their declarations; `account` is added when not declared.
    pub fn new(
        no_value: &[(String, ProfileLimits)],
        with_value: &[(String, ProfileLimits)],
        account_table: usize,
    ) -> Profiles {
        let mut list = Vec::new();
        for (name, l) in no_value {
            list.push(Profile {
                name: name.clone(),
                counter: Counter::NoValue(Count::new(l.max.unwrap_or(UNLIMITED))),
                scoped: Default::default(),
            });
        }
        let account = with_value.iter().any(|(n, _)| n == ACCOUNT);
        let implicit = (!account).then(|| (ACCOUNT.to_string(), ProfileLimits::default()));
        for (name, l) in with_value.iter().chain(implicit.as_ref()) {
            let table = if name == ACCOUNT {
                account_table
            } else {
                l.table
            };
            let own = l
                .values
                .iter()
                .map(|(v, max)| (v.as_bytes().into(), *max))
                .collect();
            list.push(Profile {
                name: name.clone(),
                counter: Counter::WithValue(ValueTable::new(
                    table,
                    l.max.unwrap_or(UNLIMITED),
                    own,
                )),
                scoped: Default::default(),
            });
        }
        Profiles {
            list,
            fleet: std::sync::OnceLock::new(),
        }
    }

    pub fn id(&self, name: &str) -> Option<ProfileId> {
        self.list
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as ProfileId)
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.list.iter().find(|p| p.name == name)
    }

    pub fn account(&self) -> ProfileId {
        self.id(ACCOUNT).expect("profile `account` always exists")
    }

    /// Counts the accounts of each of `customers` customers apart.
    pub fn scope_accounts(&mut self, customers: u16) {
        let id = self.account() as usize;
        self.list[id]
            .scoped
            .store(customers, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many customers' accounts are counted apart (every customer number given since
    /// start is below it).
    pub fn account_scope(&self) -> u16 {
        self.list[self.account() as usize]
            .scoped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts the accounts of at least `customers` customers apart (a reload that adds
    /// customers; the running count is never lowered, as live dialogs hold keys of it).
    pub fn widen_accounts(&self, customers: u16) {
        let id = self.account() as usize;
        self.list[id]
            .scoped
            .fetch_max(customers, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes the limits of `new` (a reloaded configuration's profiles), keeping every count:
    /// live dialogs stay counted, and a count above a lowered limit only stops new dialogs.
    /// The profiles themselves (names, kinds, table sizes) cannot change live: the key that
    /// would have to is the error, and nothing is changed then.
    pub fn update_limits(&self, new: &Profiles) -> Result<(), (&'static str, String)> {
        let names = |p: &Profiles| -> Vec<(String, bool)> {
            p.list
                .iter()
                .map(|p| (p.name.clone(), p.with_value()))
                .collect()
        };
        let (was, now) = (names(self), names(new));
        if was != now {
            let of = |list: &[(String, bool)], valued: bool| -> Vec<String> {
                let kind = list.iter().filter(|p| p.1 == valued);
                kind.map(|p| p.0.clone()).collect()
            };
            let key = if of(&was, false) != of(&now, false) {
                "dialog.profiles_no_value"
            } else {
                "dialog.profiles_with_value"
            };
            return Err((
                key,
                "the profiles cannot change without a restart (their limits can)".into(),
            ));
        }
        for (old, new) in self.list.iter().zip(&new.list) {
            if let (Counter::WithValue(a), Counter::WithValue(b)) = (&old.counter, &new.counter)
                && a.capacity() != b.capacity()
            {
                let key = if old.name == ACCOUNT {
                    "limits.account_table"
                } else {
                    "limits.value_table"
                };
                return Err((key, "the table size cannot change without a restart".into()));
            }
        }
        for (old, new) in self.list.iter().zip(&new.list) {
            match (&old.counter, &new.counter) {
                (Counter::NoValue(a), Counter::NoValue(b)) => a.set_limit(b.limit()),
                (Counter::WithValue(a), Counter::WithValue(b)) => {
                    let (default, own) = b.limits();
                    a.set_limits(default, own);
                }
                _ => unreachable!("kinds compared above"),
            }
            let scoped = new.scoped.load(std::sync::atomic::Ordering::Relaxed);
            old.scoped
                .fetch_max(scoped, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Puts a new dialog into its account's profile and those `rules` select, taking a
    /// place in each; on a refusal every place taken is given back.
    pub fn enter(
        &self,
        rules: &[Rule],
        f: &CallFacts<'_>,
        out: &mut Vec<Membership>,
    ) -> Result<(), Refusal> {
        out.clear();
        let account = self.account();
        let result = self
            .join(account, Some(f.account), f.customer_index, out)
            .and_then(|()| {
                for r in rules {
                    if !r.matches(f) {
                        continue;
                    }
                    let value = r.value.as_ref().map(|v| value_of(v, f));
                    let already = out.iter().any(|m| {
                        m.profile == r.profile
                            && m.value.as_ref().map(|(v, _)| &v[..]) == value.as_deref()
                    });
                    if !already {
                        self.join(r.profile, value.as_deref(), f.customer_index, out)?;
                    }
                    if r.stop {
                        break;
                    }
                }
                Ok(())
            });
        if result.is_err() {
            self.leave(out);
        }
        result
    }

    fn join(
        &self,
        profile: ProfileId,
        value: Option<&[u8]>,
        customer: u16,
        out: &mut Vec<Membership>,
    ) -> Result<(), Refusal> {
        let refuse = |why| Refusal { profile, why };
        let p = &self.list[profile as usize];
        match (&p.counter, value) {
            (Counter::NoValue(c), _) => {
                c.try_acquire().map_err(refuse)?;
                out.push(Membership {
                    profile,
                    value: None,
                    lease: None,
                    customer,
                });
            }
            (Counter::WithValue(t), Some(v)) => {
                let mut key = Vec::new();
                p.key(customer, v, &mut key);
                // A fleet-wide limit (`[cluster]`): the fleet's place first, so that the
                // account's count here never shows a call the fleet has no place for.
                let mut lease = None;
                if let Some(fleet) = self.fleet.get()
                    && p.name == ACCOUNT
                {
                    let limit = t.limit_of(v);
                    if limit != UNLIMITED {
                        use crate::cluster::fleet::{Wait, unix_ms};
                        match fleet.take(v, limit, unix_ms()) {
                            Ok(l) => lease = Some(l),
                            Err(Wait::Asked) => return Err(refuse(Denied::Lease)),
                            Err(Wait::Busy) => return Err(refuse(Denied::Unavailable)),
                        }
                    }
                }
                let place = match t.try_acquire_as(&key, v) {
                    Ok(place) => place,
                    Err(why) => {
                        if let (Some(l), Some(fleet)) = (&lease, self.fleet.get()) {
                            fleet.put_back(l);
                        }
                        return Err(refuse(why));
                    }
                };
                out.push(Membership {
                    profile,
                    value: Some((v.into(), place)),
                    lease,
                    customer,
                });
            }
            (Counter::WithValue(_), None) => {
                debug_assert!(false, "config checks give with-value profiles a value");
            }
        }
        Ok(())
    }

    /// The places of a dialog that exists already (restored after a restart), whatever the
    /// limits say now: `(profile, value, customer)` as [`Membership`] had them. Profiles no
    /// longer configured, and values a full table has no room for, are left out.
    pub fn rejoin(&self, places: &[NamedPlace]) -> Vec<Membership> {
        let mut out = Vec::new();
        for (name, value, customer) in places {
            let Some(profile) = self.id(name) else {
                continue;
            };
            let p = &self.list[profile as usize];
            match (&p.counter, value) {
                (Counter::NoValue(c), _) => {
                    c.acquire_anyway();
                    out.push(Membership {
                        profile,
                        value: None,
                        lease: None,
                        customer: *customer,
                    });
                }
                (Counter::WithValue(t), Some(v)) => {
                    let mut key = Vec::new();
                    p.key(*customer, v, &mut key);
                    if let Ok(place) = t.acquire_anyway(&key, v) {
                        let fleet_wide = p.name == ACCOUNT && t.limit_of(v) != UNLIMITED;
                        let lease = self.fleet.get().filter(|_| fleet_wide).map(|f| {
                            let l = f.lease(v);
                            l.limit
                                .store(t.limit_of(v), std::sync::atomic::Ordering::Relaxed);
                            l.restore_taken();
                            l
                        });
                        out.push(Membership {
                            profile,
                            value: Some((v.clone(), place)),
                            lease,
                            customer: *customer,
                        });
                    }
                }
                (Counter::WithValue(_), None) => {}
            }
        }
        out
    }

    /// Gives back every place of `ms` and empties it: call exactly once per dialog.
    pub fn leave(&self, ms: &mut Vec<Membership>) {
        for m in ms.drain(..) {
            if let (Some(l), Some(fleet)) = (&m.lease, self.fleet.get()) {
                fleet.put_back(l);
            }
            match (&self.list[m.profile as usize].counter, m.value) {
                (Counter::NoValue(c), _) => c.release(),
                (Counter::WithValue(t), Some((_, place))) => t.release(place),
                (Counter::WithValue(_), None) => {}
            }
        }
    }
}

pub fn value_of<'a>(v: &'a ValueFrom, f: &CallFacts<'a>) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    match v {
        ValueFrom::Literal(s) => Cow::Borrowed(s.as_bytes()),
        ValueFrom::Dialed => Cow::Borrowed(f.dialed),
        ValueFrom::FromUser => Cow::Borrowed(f.from_user),
        ValueFrom::FromDomain => Cow::Borrowed(f.from_domain),
        ValueFrom::ToUser => Cow::Borrowed(f.to_user),
        ValueFrom::Source => Cow::Owned(f.source.to_string().into_bytes()),
        ValueFrom::Customer => Cow::Borrowed(f.customer.as_bytes()),
        ValueFrom::Account => Cow::Borrowed(f.account),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(dialed: &'a [u8], account: &'a [u8]) -> CallFacts<'a> {
        CallFacts {
            dialed,
            from_user: b"alice",
            from_domain: b"example.com",
            to_user: dialed,
            source: "198.18.0.1".parse().unwrap(),
            customer: "local",
            customer_index: 0,
            account,
        }
    }

    /// The dialog article's classification: total, then 00 → international, 0 → domestic,
    /// else local.
    fn article() -> (Profiles, Vec<Rule>) {
        let nv = |n: &str, max: Option<u32>| {
            (
                n.to_string(),
                ProfileLimits {
                    max,
                    ..Default::default()
                },
            )
        };
        let p = Profiles::new(
            &[
                nv("total", None),
                nv("local", None),
                nv("domestic", None),
                nv("international", Some(1)),
            ],
            &[(
                ACCOUNT.into(),
                ProfileLimits {
                    max: Some(2),
                    values: vec![("big".into(), 3)],
                    table: 0,
                },
            )],
            100,
        );
        let id = |n| p.id(n).unwrap();
        let mut intl = Rule::new(id("international"));
        intl.dialed_prefix = vec!["00".into()];
        intl.stop = true;
        let mut dom = Rule::new(id("domestic"));
        dom.dialed_prefix = vec!["0".into()];
        dom.stop = true;
        let rules = vec![Rule::new(id("total")), intl, dom, Rule::new(id("local"))];
        (p, rules)
    }

    fn names(p: &Profiles, ms: &[Membership]) -> Vec<String> {
        ms.iter()
            .map(|m| {
                let n = &p.list[m.profile as usize].name;
                match &m.value {
                    Some((v, _)) => format!("{n}={}", String::from_utf8_lossy(v)),
                    None => n.clone(),
                }
            })
            .collect()
    }

    #[test]
    fn rules_classify_by_dialed_prefix() {
        let (p, rules) = article();
        let mut ms = Vec::new();
        p.enter(&rules, &facts(b"0044123", b"a"), &mut ms).unwrap();
        assert_eq!(names(&p, &ms), ["account=a", "total", "international"]);
        let mut ms2 = Vec::new();
        p.enter(&rules, &facts(b"0301234", b"a"), &mut ms2).unwrap();
        assert_eq!(names(&p, &ms2), ["account=a", "total", "domestic"]);
        let mut ms3 = Vec::new();
        p.enter(&rules, &facts(b"5551234", b"b"), &mut ms3).unwrap();
        assert_eq!(names(&p, &ms3), ["account=b", "total", "local"]);
        assert_eq!(p.get("total").unwrap().size(None), 3);
        assert_eq!(p.get(ACCOUNT).unwrap().size(Some(b"a")), 2);
        for ms in [&mut ms, &mut ms2, &mut ms3] {
            p.leave(ms);
        }
        assert!(p.list.iter().all(|x| x.size(None) == 0));
    }

    #[test]
    fn a_refusal_gives_back_what_was_taken() {
        let (p, rules) = article();
        let mut first = Vec::new();
        p.enter(&rules, &facts(b"00", b"a"), &mut first).unwrap();
        // International is full (limit 1): account and total must not keep the second call.
        let mut second = Vec::new();
        let r = p
            .enter(&rules, &facts(b"00", b"a"), &mut second)
            .unwrap_err();
        assert_eq!(r.profile, p.id("international").unwrap());
        assert_eq!(r.why, Denied::Limit);
        assert!(second.is_empty());
        assert_eq!(p.get(ACCOUNT).unwrap().size(Some(b"a")), 1);
        assert_eq!(p.get("total").unwrap().size(None), 1);
        // Account limit 2, value `big` 3.
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut ms = Vec::new();
            p.enter(&rules, &facts(b"5", b"big"), &mut ms).unwrap();
            held.push(ms);
        }
        let mut ms = Vec::new();
        let r = p.enter(&rules, &facts(b"5", b"big"), &mut ms).unwrap_err();
        assert_eq!(r.profile, p.account());
        for mut ms in held {
            p.leave(&mut ms);
        }
        p.leave(&mut first);
        assert!(p.list.iter().all(|x| x.size(None) == 0));
    }

    /// The From user `1000` of one customer is not that of another: each has its own count
    /// and limit; asked by value, the profile sums them.
    #[test]
    fn accounts_are_counted_per_customer() {
        let mut p = Profiles::new(
            &[],
            &[(
                ACCOUNT.into(),
                ProfileLimits {
                    max: Some(1),
                    ..Default::default()
                },
            )],
            10,
        );
        p.scope_accounts(2);
        let mut a = facts(b"1", b"1000");
        let mut ms = Vec::new();
        p.enter(&[], &a, &mut ms).unwrap();
        let mut again = Vec::new();
        assert_eq!(p.enter(&[], &a, &mut again).unwrap_err().why, Denied::Limit);
        a.customer_index = 1;
        let mut other = Vec::new();
        p.enter(&[], &a, &mut other).unwrap();
        let account = p.get(ACCOUNT).unwrap();
        assert_eq!(account.size(Some(b"1000")), 2);
        assert_eq!(account.high_water(Some(b"1000")), 1);
        assert_eq!(
            other[0].value.as_ref().map(|(v, _)| &**v),
            Some(&b"1000"[..])
        );
        p.leave(&mut ms);
        p.leave(&mut other);
        assert_eq!(p.get(ACCOUNT).unwrap().size(Some(b"1000")), 0);
    }

    #[test]
    fn account_exists_without_being_declared() {
        let p = Profiles::new(&[], &[], 10);
        let mut ms = Vec::new();
        p.enter(&[], &facts(b"1", b"local"), &mut ms).unwrap();
        assert_eq!(p.get(ACCOUNT).unwrap().size(Some(b"local")), 1);
        p.leave(&mut ms);
    }
}
