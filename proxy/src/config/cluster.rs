//! `[cluster]`: this node's place in a fleet whose per-account limits are shared through Redis.

use super::*;
use crate::cluster::task::{ClusterConfig, OnRedisDown};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterFile {
    /// One `redis://` URL (a server) or several (the seeds of a Redis Cluster).
    pub redis: Spanned<Vec<String>>,
    pub lease_ms: Spanned<u64>,
    pub block: Spanned<u32>,
    /// `closed` or `open`.
    pub on_redis_down: Spanned<String>,
    pub open_share: Spanned<f64>,
    pub quiet_ms: Spanned<u64>,
    pub wait_ms: Spanned<u64>,
}

impl Default for ClusterFile {
    fn default() -> Self {
        ClusterFile {
            redis: Spanned::new(0..0, Vec::new()),
            lease_ms: Spanned::new(0..0, 10_000),
            block: Spanned::new(0..0, 8),
            on_redis_down: Spanned::new(0..0, "closed".into()),
            open_share: Spanned::new(0..0, 0.5),
            quiet_ms: Spanned::new(0..0, 5_000),
            wait_ms: Spanned::new(0..0, 1_000),
        }
    }
}

/// The resolved `[cluster]` of node `node` (none when the table is absent).
pub(super) fn cluster(
    f: Option<&ClusterFile>,
    node: &str,
    invalid: Invalid<'_>,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(f) = f else { return Ok(None) };
    let urls = f.redis.get_ref();
    if urls.is_empty() {
        return Err(invalid(
            f.redis.span(),
            "cluster.redis",
            "at least one Redis URL (redis://host:port) is needed".into(),
        ));
    }
    for u in urls {
        if let Err(e) = redis::Client::open(u.as_str()) {
            return Err(invalid(
                f.redis.span(),
                "cluster.redis",
                format!("`{u}` is not a Redis URL: {e}"),
            ));
        }
    }
    if *f.lease_ms.get_ref() < 100 {
        return Err(invalid(
            f.lease_ms.span(),
            "cluster.lease_ms",
            "at least 100 ms".into(),
        ));
    }
    if *f.block.get_ref() == 0 {
        return Err(invalid(
            f.block.span(),
            "cluster.block",
            "at least 1".into(),
        ));
    }
    if *f.wait_ms.get_ref() == 0 {
        return Err(invalid(
            f.wait_ms.span(),
            "cluster.wait_ms",
            "at least 1".into(),
        ));
    }
    let share = *f.open_share.get_ref();
    if !(share > 0.0 && share <= 1.0) {
        return Err(invalid(
            f.open_share.span(),
            "cluster.open_share",
            format!("{share} is not a share of the limit: more than 0, at most 1"),
        ));
    }
    let on_redis_down = match f.on_redis_down.get_ref().as_str() {
        "closed" => OnRedisDown::Closed,
        "open" => OnRedisDown::Open(share),
        other => {
            return Err(invalid(
                f.on_redis_down.span(),
                "cluster.on_redis_down",
                format!("`{other}` is not one of closed, open"),
            ));
        }
    };
    Ok(Some(ClusterConfig {
        redis: urls.clone(),
        node: node.into(),
        lease: Duration::from_millis(*f.lease_ms.get_ref()),
        block: *f.block.get_ref(),
        on_redis_down,
        quiet: Duration::from_millis(*f.quiet_ms.get_ref()),
        wait: Duration::from_millis(*f.wait_ms.get_ref()),
    }))
}
