//! `[dialog]` and the profile part of `[limits]`: profiles, their limits and the rules, checked
//! against each other. Every mistake names the profile, the key and its line.

use super::file::{FileConfig, RuleFile};
use super::{ConfigError, Invalid};
use crate::dialog::{
    ACCOUNT, BUILTIN_VARS, DialogVar, ProfileLimits, Profiles, Rule, ValueFrom, VarAt,
};
use crate::proxy::Cidr;
use regex::bytes::Regex;
use toml::Spanned;

/// The declared profiles with their limits, and the classification rules.
pub(super) fn profiles(
    f: &FileConfig,
    invalid: Invalid<'_>,
) -> Result<(Profiles, Vec<Rule>), ConfigError> {
    let d = &f.dialog;
    let mut no_value: Vec<(String, ProfileLimits)> = Vec::new();
    let mut with_value: Vec<(String, ProfileLimits)> = Vec::new();
    let declared = |name: &str, nv: &[(String, ProfileLimits)], wv: &[(String, ProfileLimits)]| {
        nv.iter().chain(wv).any(|(n, _)| n == name)
    };
    for (key, list, with) in [
        ("dialog.profiles_no_value", &d.profiles_no_value, false),
        ("dialog.profiles_with_value", &d.profiles_with_value, true),
    ] {
        for p in list {
            let name = p.get_ref().trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(invalid(
                    p.span(),
                    key,
                    format!("profile name `{name}`: letters, digits and `_` only"),
                ));
            }
            if declared(name, &no_value, &with_value) {
                return Err(invalid(
                    p.span(),
                    key,
                    format!("profile `{name}` is declared twice"),
                ));
            }
            if name == ACCOUNT && !with {
                return Err(invalid(
                    p.span(),
                    key,
                    format!(
                        "profile `{ACCOUNT}` has a value (the account): declare it in dialog.profiles_with_value or not at all"
                    ),
                ));
            }
            let limits = ProfileLimits {
                table: *f.limits.value_table.get_ref(),
                ..Default::default()
            };
            if with {
                with_value.push((name.into(), limits));
            } else {
                no_value.push((name.into(), limits));
            }
        }
    }
    if !declared(ACCOUNT, &no_value, &with_value) {
        with_value.push((
            ACCOUNT.into(),
            ProfileLimits {
                table: *f.limits.account_table.get_ref(),
                ..Default::default()
            },
        ));
    }

    for l in &f.limits.profile {
        let name = l.profile.get_ref().as_str();
        let with = with_value.iter().any(|(n, _)| n == name);
        let target = no_value
            .iter_mut()
            .chain(with_value.iter_mut())
            .find(|(n, _)| n == name)
            .map(|(_, l)| l)
            .ok_or_else(|| {
                invalid(
                    l.profile.span(),
                    "limits.profile.profile",
                    format!("profile `{name}` is not declared in dialog.profiles_no_value or dialog.profiles_with_value"),
                )
            })?;
        let max = *l.max.get_ref();
        match (&l.value, with) {
            (Some(v), false) => {
                return Err(invalid(
                    v.span(),
                    "limits.profile.value",
                    format!(
                        "profile `{name}` is declared in dialog.profiles_no_value: it has no values"
                    ),
                ));
            }
            (Some(v), true) => {
                if target.values.iter().any(|(x, _)| x == v.get_ref()) {
                    return Err(invalid(
                        v.span(),
                        "limits.profile.value",
                        format!("profile `{name}` value `{}` has two limits", v.get_ref()),
                    ));
                }
                target.values.push((v.get_ref().clone(), max));
            }
            (None, _) => {
                if target.max.is_some() {
                    return Err(invalid(
                        l.profile.span(),
                        "limits.profile",
                        format!("profile `{name}` has two limits"),
                    ));
                }
                target.max = Some(max);
            }
        }
    }

    let profiles = Profiles::new(&no_value, &with_value, *f.limits.account_table.get_ref());
    let rules = d
        .rule
        .iter()
        .map(|r| rule(r, &profiles, f, invalid))
        .collect::<Result<_, _>>()?;
    Ok((profiles, rules))
}

fn regex(s: &Spanned<String>, key: &str, invalid: Invalid<'_>) -> Result<Regex, ConfigError> {
    Regex::new(s.get_ref()).map_err(|e| {
        let first = e.to_string();
        let first = first.lines().last().unwrap_or("").trim().to_string();
        invalid(
            s.span(),
            key,
            format!("`{}` is not a regular expression: {first}", s.get_ref()),
        )
    })
}

fn rule(
    r: &RuleFile,
    profiles: &Profiles,
    f: &FileConfig,
    invalid: Invalid<'_>,
) -> Result<Rule, ConfigError> {
    let name = r.profile.get_ref();
    let id = profiles.id(name).ok_or_else(|| {
        invalid(
            r.profile.span(),
            "dialog.rule.profile",
            format!("profile `{name}` is not declared in dialog.profiles_no_value or dialog.profiles_with_value"),
        )
    })?;
    let with = profiles.list[id as usize].with_value();
    let mut rule = Rule::new(id);
    rule.value = match (&r.value, &r.value_from) {
        (Some(v), Some(_)) => {
            return Err(invalid(
                v.span(),
                "dialog.rule.value",
                "give `value` or `value_from`, not both".into(),
            ));
        }
        (Some(v), None) => Some(ValueFrom::Literal(v.get_ref().clone())),
        (None, Some(v)) => Some(ValueFrom::parse(v.get_ref()).ok_or_else(|| {
            invalid(
                v.span(),
                "dialog.rule.value_from",
                format!("`{}` is not one of {}", v.get_ref(), ValueFrom::NAMES),
            )
        })?),
        (None, None) => None,
    };
    if !with && let Some(v) = r.value.as_ref().or(r.value_from.as_ref()) {
        return Err(invalid(
            v.span(),
            "dialog.rule.value",
            format!(
                "profile `{name}` is declared in dialog.profiles_no_value: a rule for it takes no value"
            ),
        ));
    }
    if with && rule.value.is_none() {
        return Err(invalid(
            r.profile.span(),
            "dialog.rule.profile",
            format!(
                "profile `{name}` is declared in dialog.profiles_with_value: a rule for it needs `value` or `value_from`"
            ),
        ));
    }
    if let Some(p) = &r.dialed_prefix {
        rule.dialed_prefix = match p.get_ref() {
            super::file::OneOrMany::One(s) => vec![s.clone()],
            super::file::OneOrMany::Many(v) => v.clone(),
        };
    }
    if let Some(s) = &r.dialed_regex {
        rule.dialed_regex = Some(regex(s, "dialog.rule.dialed_regex", invalid)?);
    }
    if let Some(s) = &r.from_user {
        rule.from_user = Some(regex(s, "dialog.rule.from_user", invalid)?);
    }
    if let Some(s) = &r.account {
        rule.account = Some(regex(s, "dialog.rule.account", invalid)?);
    }
    for s in &r.source {
        rule.source.push(
            s.get_ref()
                .parse::<Cidr>()
                .map_err(|m| invalid(s.span(), "dialog.rule.source", m))?,
        );
    }
    for c in &r.customer {
        if !f.customer.iter().any(|x| x.name.get_ref() == c) {
            return Err(invalid(
                r.profile.span(),
                "dialog.rule.customer",
                format!("no customer is named `{c}`"),
            ));
        }
        rule.customer.push(c.clone());
    }
    rule.stop = r.stop;
    Ok(rule)
}

/// `[[dialog.var]]`: string values only, as Kamailio's `$dlg_var` holds.
pub(super) fn vars(f: &FileConfig, invalid: Invalid<'_>) -> Result<Vec<DialogVar>, ConfigError> {
    let mut out: Vec<DialogVar> = Vec::new();
    for v in &f.dialog.var {
        let name = v.name.get_ref().trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                v.name.span(),
                "dialog.var.name",
                format!("variable name `{name}`: letters, digits, `_` and `-` only"),
            ));
        }
        if BUILTIN_VARS.contains(&name) {
            return Err(invalid(
                v.name.span(),
                "dialog.var.name",
                format!("`{name}` is built in (set by siplb itself)"),
            ));
        }
        let at = match v.at.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("invite") => VarAt::Invite,
            Some("start") => VarAt::Start,
            Some("end") => VarAt::End,
            Some(other) => {
                return Err(invalid(
                    v.at.as_ref().map_or(v.name.span(), |a| a.span()),
                    "dialog.var.at",
                    format!("`{other}` is not one of invite, start, end"),
                ));
            }
        };
        if out.iter().any(|x| x.name == name && x.at == at) {
            return Err(invalid(
                v.name.span(),
                "dialog.var.name",
                format!("variable `{name}` is set twice at the same moment"),
            ));
        }
        let value = match (&v.value, &v.value_from) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    v.name.span(),
                    "dialog.var",
                    format!("variable `{name}`: give `value` or `value_from`, not both"),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    v.name.span(),
                    "dialog.var",
                    format!("variable `{name}` needs `value` or `value_from`"),
                ));
            }
            (Some(val), None) => match val.get_ref() {
                toml::Value::String(s) => ValueFrom::Literal(s.clone()),
                other => {
                    return Err(invalid(
                        val.span(),
                        "dialog.var.value",
                        format!(
                            "variable `{name}` = {other}: dialog variables hold strings only (as Kamailio's $dlg_var); write value = \"{}\"",
                            other.to_string().trim_matches('"')
                        ),
                    ));
                }
            },
            (None, Some(from)) => {
                if at != VarAt::Invite {
                    return Err(invalid(
                        from.span(),
                        "dialog.var.value_from",
                        format!(
                            "variable `{name}`: `value_from` reads the INVITE, so `at` must be `invite`"
                        ),
                    ));
                }
                ValueFrom::parse(from.get_ref()).ok_or_else(|| {
                    invalid(
                        from.span(),
                        "dialog.var.value_from",
                        format!("`{}` is not one of {}", from.get_ref(), ValueFrom::NAMES),
                    )
                })?
            }
        };
        out.push(DialogVar {
            name: name.into(),
            value,
            at,
        });
    }
    Ok(out)
}
