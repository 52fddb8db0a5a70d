//! A fleet of siplb nodes (`[cluster]`): per-account limits shared through Redis. [`fleet`]
//! is what the workers share (each account's leased and taken places, the queues to and from
//! the lease task); [`task`] is the lease task, the only part that talks to Redis; [`leases`]
//! is the Redis side: one node's leases of an account's places, granted by a server-side
//! script so that the fleet never holds more than the limit, and expiring with the node.

pub mod fleet;
pub mod leases;
pub mod resp_limit;
pub mod task;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;

/// A connection to what `[cluster] redis` names: one URL is a single server, several are the
/// seeds of a Redis Cluster.
#[derive(Clone)]
pub enum Redis {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Redis {
    pub async fn connect(urls: &[String]) -> redis::RedisResult<Redis> {
        match urls {
            [one] => Ok(Redis::Single(single(one).await?)),
            seeds => Ok(Redis::Cluster(
                redis::cluster::ClusterClient::new(seeds.to_vec())?
                    .get_async_connection()
                    .await?,
            )),
        }
    }
}

/// A connection to one server, made on siplb's own socket under [`resp_limit::Limited`] so
/// that no reply makes siplb hold more than its bound; with the redis crate's timeouts (a
/// second to connect, 500 ms per reply).
async fn single(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    use redis::ConnectionAddr;
    let client = redis::Client::open(url)?;
    let info = client.get_connection_info();
    let config = redis::AsyncConnectionConfig::new();
    let connect = async {
        match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                let _ = s.set_nodelay(true);
                over(info.redis_settings(), s, config).await
            }
            ConnectionAddr::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path).await?;
                over(info.redis_settings(), s, config).await
            }
            // TLS (`rediss://`) and what else the crate knows: its own connection.
            _ => client.get_multiplexed_async_connection().await,
        }
    };
    match tokio::time::timeout(std::time::Duration::from_secs(1), connect).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connecting to Redis timed out",
        )
        .into()),
    }
}

/// The multiplexed connection over `stream`, its bound kept beneath it, its driver spawned.
async fn over<S>(
    settings: &redis::RedisConnectionInfo,
    stream: S,
    config: redis::AsyncConnectionConfig,
) -> redis::RedisResult<MultiplexedConnection>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (conn, driver) =
        MultiplexedConnection::new_with_config(settings, resp_limit::limited(stream), config)
            .await?;
    tokio::spawn(driver);
    Ok(conn)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers anything with a bulk string of 2 GiB and then zeros.
    #[tokio::test(flavor = "current_thread")]
    async fn a_server_that_announces_a_huge_reply_is_cut_off_at_its_header() {
        let (port, server) = crate::peer::announcing_server(b"$2147483647\r\n");
        // The crate asks the server about itself as it connects: the answer is the huge one.
        let e = match Redis::connect(&[format!("redis://127.0.0.1:{port}")]).await {
            Ok(_) => panic!("connected to a server that is not Redis"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("is this a Redis server?"), "{e}");
        let sent = server.join().unwrap();
        assert!(sent < 64 << 20, "siplb read {sent} bytes before it gave up");
    }
}
