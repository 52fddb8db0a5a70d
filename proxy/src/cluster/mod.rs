//! A fleet of siplb nodes (`[cluster]`): per-account limits shared through Redis. [`fleet`]
//! is what the workers share (each account's leased and taken places, the queues to and from
//! the lease task); [`task`] is the lease task, the only part that talks to Redis; [`leases`]
//! is the Redis side: one node's leases of an account's places, granted by a server-side
//! script so that the fleet never holds more than the limit, and expiring with the node.

pub mod fleet;
pub mod leases;
pub mod task;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;

/// A connection to what `[cluster] redis` names: one URL is a single server, several are the
/// seeds of a Redis Cluster.
pub enum Redis {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Redis {
    pub async fn connect(urls: &[String]) -> redis::RedisResult<Redis> {
        match urls {
            [one] => Ok(Redis::Single(
                redis::Client::open(one.as_str())?
                    .get_multiplexed_async_connection()
                    .await?,
            )),
            seeds => Ok(Redis::Cluster(
                redis::cluster::ClusterClient::new(seeds.to_vec())?
                    .get_async_connection()
                    .await?,
            )),
        }
    }
}

impl redis::aio::ConnectionLike for Redis {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Redis::Single(c) => c.req_packed_command(cmd),
            Redis::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Redis::Single(c) => c.req_packed_commands(cmd, offset, count),
            Redis::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Single(c) => c.get_db(),
            Redis::Cluster(c) => c.get_db(),
        }
    }
}
