//! Where the Redis ledger's commands go: one node, a Redis Cluster, or the primary that
//! Sentinel names, over TCP or TLS (the redis crate's rustls support, `ring` provider).
//!
//! `BURNLINK_LEDGER` forms ([`Target::parse`]):
//!
//! - `redis://[user:pass@]host:port/db`, `rediss://…` for TLS: one node;
//! - `redis+cluster://[user:pass@]host:port,host:port` (`rediss+cluster://`): any subset of a
//!   cluster's nodes as seeds; the client learns the slot map and follows `MOVED`/`ASK`;
//! - `redis+sentinel://[user:pass@]host:port,host:port/MASTER/db` (`rediss+sentinel://`): the
//!   sentinels to ask for `MASTER`'s primary. The credentials are the data nodes'; TLS, when
//!   asked for, applies to sentinels and data nodes alike.
//!
//! Every handle connects lazily and reconnects by itself, so a replica starts while Redis is
//! down. The caller bounds each call ([`RedisHandle::run`]); the bound covers connecting,
//! cluster redirections and sentinel look-ups, since they all happen inside the call.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ErrorKind, FromRedisValue,
    Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, TlsCertificates, TlsMode,
    Value,
};
use tokio::sync::Mutex as AsyncMutex;

use super::LedgerError;

/// How long connecting to one node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
/// How long one node may take to answer one command before the connection is given up.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);

/// What `BURNLINK_LEDGER` and the `BURNLINK_REDIS_*` variables ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    pub url: String,
    /// `BURNLINK_REDIS_CA`: a PEM CA to trust besides the system's roots.
    pub ca: Option<PathBuf>,
    /// `BURNLINK_REDIS_CERT` and `BURNLINK_REDIS_KEY`: a client certificate for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `BURNLINK_LEDGER_REPLICAS`: replicas that must hold a burn before it counts as safe.
    pub replicas: u32,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            ca: None,
            client_cert: None,
            replicas: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
    Sentinel { master: String },
}

/// A parsed `BURNLINK_LEDGER` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub topology: Topology,
    pub tls: bool,
    /// The `user:pass` part as written (still percent-encoded), if any.
    userinfo: Option<String>,
    pub nodes: Vec<(String, u16)>,
    pub db: i64,
}

const URL_FORMS: &str = "`redis://host:port/db`, `rediss://…`, \
     `redis+cluster://host:port,host:port`, `rediss+cluster://…`, \
     `redis+sentinel://host:port,host:port/MASTER/db` or `rediss+sentinel://…`";

impl Target {
    /// Parses any of the URL forms; the error says what was expected (never echoing a
    /// password).
    pub fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("expected one of {URL_FORMS}"))?;
        let (topology_name, tls) = match scheme {
            "redis" => ("single", false),
            "rediss" => ("single", true),
            "redis+cluster" => ("cluster", false),
            "rediss+cluster" => ("cluster", true),
            "redis+sentinel" => ("sentinel", false),
            "rediss+sentinel" => ("sentinel", true),
            other => {
                return Err(format!(
                    "unknown scheme `{other}://`: expected one of {URL_FORMS}"
                ));
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let default_port = if topology_name == "sentinel" {
            26379
        } else {
            6379
        };
        let nodes = hosts
            .split(',')
            .map(|h| parse_host_port(h.trim(), default_port))
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err(format!("no host given: expected one of {URL_FORMS}"));
        }
        if topology_name == "single" && nodes.len() > 1 {
            return Err(
                "several hosts need `redis+cluster://` or `redis+sentinel://` (one node: \
                 `redis://host:port/db`)"
                    .into(),
            );
        }
        let path = path.split('?').next().unwrap_or("");
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let parse_db = |s: Option<&&str>| -> Result<i64, String> {
            match s {
                None => Ok(0),
                Some(d) => d
                    .parse::<i64>()
                    .ok()
                    .filter(|d| *d >= 0)
                    .ok_or_else(|| format!("bad database number `{d}`")),
            }
        };
        let (topology, db) = match topology_name {
            "single" if segments.len() <= 1 => (Topology::Single, parse_db(segments.first())?),
            "cluster" if segments.is_empty() => (Topology::Cluster, 0),
            "cluster" => {
                return Err("a Redis Cluster has database 0 only: no `/db` in \
                            `redis+cluster://host:port,host:port`"
                    .into());
            }
            "sentinel" if (1..=2).contains(&segments.len()) => (
                Topology::Sentinel {
                    master: segments[0].to_string(),
                },
                parse_db(segments.get(1))?,
            ),
            "sentinel" => {
                return Err(
                    "expected `redis+sentinel://host:port,host:port/MASTER_NAME/db`".into(),
                );
            }
            _ => return Err(format!("unexpected path: expected one of {URL_FORMS}")),
        };
        Ok(Target {
            topology,
            tls,
            userinfo,
            nodes,
            db,
        })
    }

    fn node_url(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = self
            .userinfo
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        format!("{scheme}://{auth}{host}:{port}/{}", self.db)
    }

    /// The decoded username and password, if any.
    fn credentials(&self) -> (Option<String>, Option<String>) {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        match self.userinfo.as_deref() {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (
                    Some(decode(user)).filter(|s| !s.is_empty()),
                    Some(decode(pass)),
                ),
                None => (Some(decode(u)).filter(|s| !s.is_empty()), None),
            },
        }
    }

    /// The password, so that log lines can leave it out.
    pub fn password(&self) -> Option<String> {
        self.credentials().1.filter(|p| !p.is_empty())
    }
}

fn parse_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    if s.is_empty() {
        return Err(format!("empty host: expected one of {URL_FORMS}"));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad IPv6 address `{s}`"))?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("empty host in `{s}`"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("bad port in `{s}`"))?,
    };
    Ok((host.to_string(), port))
}

/// Why a handle could not be made (bad URL or unreadable files); names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct OpenError {
    pub var: &'static str,
    pub message: String,
}

fn open_error(var: &'static str, message: impl Into<String>) -> OpenError {
    OpenError {
        var,
        message: message.into(),
    }
}

/// Reads the TLS material; `None` when no file is configured (the system roots then apply).
fn certificates(options: &RedisOptions) -> Result<Option<TlsCertificates>, OpenError> {
    if options.ca.is_none() && options.client_cert.is_none() {
        return Ok(None);
    }
    let read = |var: &'static str, path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| open_error(var, format!("cannot read `{}`: {e}", path.display())))
    };
    let root_cert = match &options.ca {
        None => None,
        Some(path) => {
            let ca = read("BURNLINK_REDIS_CA", path)?;
            if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
                return Err(open_error(
                    "BURNLINK_REDIS_CA",
                    format!("`{}` holds no PEM certificate", path.display()),
                ));
            }
            // The redis crate trusts only `root_cert` when it is given: add the system's
            // roots, so the CA is trusted besides them, not instead of them.
            let mut bundle = system_roots_pem();
            bundle.extend_from_slice(b"\n");
            bundle.extend_from_slice(&ca);
            Some(bundle)
        }
    };
    let client_tls = match &options.client_cert {
        None => None,
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read("BURNLINK_REDIS_CERT", cert)?,
            client_key: read("BURNLINK_REDIS_KEY", key)?,
        }),
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// The platform's trust anchors as one PEM text.
fn system_roots_pem() -> Vec<u8> {
    use base64ct::{Base64, Encoding};
    let mut out = Vec::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        let b64 = Base64::encode_string(cert.as_ref());
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out
}

/// The redis crate's rustls builds its configuration from the process-wide crypto provider;
/// make sure it is `ring` (already linked for burnlink's own TLS), whatever else is linked.
fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// A cheap, clonable handle on the ledger's Redis, whatever its topology.
#[derive(Clone)]
pub struct RedisHandle {
    conn: Arc<Conn>,
}

// Made once per process and held behind an `Arc`: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Conn {
    Single(ConnectionManager),
    Cluster(LazyCluster),
    Sentinel(SentinelPrimary),
}

/// The cluster connection is made on first use (inside a bounded call) and kept; once made it
/// follows slot moves and failovers itself. A call that fails on the connection's own
/// account (a node gone, a timeout) makes the next call start over from the seed nodes, so a
/// stale view never sticks.
struct LazyCluster {
    client: ClusterClient,
    conn: AsyncMutex<Option<(u64, ClusterConnection)>>,
    generation: AtomicU64,
}

/// The primary's connection, found through the sentinels and replaced whenever a call fails
/// on it (the primary died, hangs, or was demoted: `READONLY`).
struct SentinelPrimary {
    /// One client per sentinel, asked all at once: a hung sentinel cannot hold up the others.
    sentinels: Vec<AsyncMutex<SentinelClient>>,
    current: SyncMutex<Option<(u64, MultiplexedConnection)>>,
    lookup: AsyncMutex<()>,
    generation: AtomicU64,
    config: AsyncConnectionConfig,
}

/// One connection for one call: implements the redis crate's `ConnectionLike`, so commands
/// and scripts run on it unchanged.
pub(crate) enum Active {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Node(MultiplexedConnection),
}

/// A handle is itself a connection for callers that need plain commands (the webhook stream):
/// each command runs through [`RedisHandle::run`], so it follows failovers and reconnects like
/// every ledger call. Bounded by [`HANDLE_COMMAND_LIMIT`], longer than any blocking read the
/// callers make.
impl ConnectionLike for RedisHandle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let cmd = cmd.clone();
        Box::pin(async move {
            self.run(HANDLE_COMMAND_LIMIT, move |mut c| async move {
                c.req_packed_command(&cmd).await
            })
            .await
            .map_err(unavailable)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let pipeline = pipeline.clone();
        Box::pin(async move {
            self.run(HANDLE_COMMAND_LIMIT, move |mut c| async move {
                c.req_packed_commands(&pipeline, offset, count).await
            })
            .await
            .map_err(unavailable)
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// How long one ledger call may take in all, connecting included (and, on a cluster or with
/// Sentinel, redirections and look-ups). A Redis that hangs must not hang transfers: past
/// this they answer 503 and the client retries.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one command through a handle may take in all.
const HANDLE_COMMAND_LIMIT: Duration = Duration::from_secs(30);

fn unavailable(e: LedgerError) -> RedisError {
    RedisError::from((ErrorKind::Io, "redis unavailable", e.to_string()))
}

impl ConnectionLike for Active {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Active::Single(c) => c.req_packed_command(cmd),
            Active::Cluster(c) => c.req_packed_command(cmd),
            Active::Node(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Active::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Active::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Active::Node(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Active::Single(c) => c.get_db(),
            Active::Cluster(c) => c.get_db(),
            Active::Node(c) => c.get_db(),
        }
    }
}

impl Active {
    /// Runs a keyless command on the primary that holds `key` (on one node: that node). For
    /// `WAIT`, which must reach the node the write went to, over the same connection.
    pub(crate) async fn on_key_node<T: FromRedisValue>(
        &mut self,
        key: &str,
        cmd: Cmd,
    ) -> RedisResult<T> {
        match self {
            Active::Cluster(c) => {
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                let value = c
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(T::from_redis_value(value)?)
            }
            _ => cmd.query_async(self).await,
        }
    }
}

/// A failure that says the connection (not the command) is at fault: start over next time.
fn connection_at_fault(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
            )
        )
}

const NO_GENERATION: u64 = u64::MAX;

impl RedisHandle {
    /// Opens a handle for any URL form. Nothing is sent yet; only a malformed URL or an
    /// unreadable TLS file is an error.
    pub fn open(options: &RedisOptions) -> Result<RedisHandle, OpenError> {
        install_crypto_provider();
        let target = Target::parse(&options.url).map_err(|m| open_error("BURNLINK_LEDGER", m))?;
        let certs = certificates(options)?;
        if certs.is_some() && !target.tls {
            let var = if options.ca.is_some() {
                "BURNLINK_REDIS_CA"
            } else {
                "BURNLINK_REDIS_CERT"
            };
            return Err(open_error(
                var,
                "is set, but BURNLINK_LEDGER is not a TLS URL (use `rediss://`, \
                 `rediss+cluster://` or `rediss+sentinel://`)",
            ));
        }
        let bad_url = |e: RedisError| open_error("BURNLINK_LEDGER", format!("{e}"));
        let conn = match &target.topology {
            Topology::Single => {
                // The URL as given: the redis crate reads its query parameters too.
                let url = options.url.as_str();
                let client = match &certs {
                    Some(c) => Client::build_with_tls(url, c.clone()),
                    None => Client::open(url),
                }
                .map_err(bad_url)?;
                Conn::Single(single(client).map_err(bad_url)?)
            }
            Topology::Cluster => {
                let seeds: Vec<String> = target
                    .nodes
                    .iter()
                    .map(|(h, p)| target.node_url(h, *p))
                    .collect();
                let mut builder = ClusterClientBuilder::new(seeds)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    // Redirections and retries share the caller's bound, which cuts them
                    // off; a few quick retries let a `MOVED` or a slot refresh go through.
                    .overall_response_timeout(Some(OP_TIMEOUT))
                    .retries(3)
                    .min_retry_wait(20)
                    .max_retry_wait(200);
                if let Some(c) = &certs {
                    builder = builder.certs(c.clone());
                }
                Conn::Cluster(LazyCluster {
                    client: builder.build().map_err(bad_url)?,
                    conn: AsyncMutex::new(None),
                    generation: AtomicU64::new(0),
                })
            }
            Topology::Sentinel { master } => {
                let (user, pass) = target.credentials();
                let mut sentinels = Vec::new();
                for (host, port) in &target.nodes {
                    // A TLS sentinel must be named as a TLS address: the builder refuses a
                    // TLS mode on a plain `Tcp` one.
                    let addr = if target.tls {
                        ConnectionAddr::TcpTls {
                            host: host.clone(),
                            port: *port,
                            insecure: false,
                            tls_params: None,
                        }
                    } else {
                        ConnectionAddr::Tcp(host.clone(), *port)
                    };
                    let mut b =
                        SentinelClientBuilder::new([addr], master, SentinelServerType::Master)
                            .map_err(bad_url)?
                            .set_client_to_redis_db(target.db);
                    if let Some(u) = &user {
                        b = b.set_client_to_redis_username(u);
                    }
                    if let Some(p) = &pass {
                        b = b.set_client_to_redis_password(p);
                    }
                    if target.tls {
                        b = b
                            .set_client_to_redis_tls_mode(TlsMode::Secure)
                            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                        if let Some(c) = &certs {
                            b = b
                                .set_client_to_redis_certificates(c.clone())
                                .set_client_to_sentinel_certificates(c.clone());
                        }
                    }
                    sentinels.push(AsyncMutex::new(b.build().map_err(bad_url)?));
                }
                Conn::Sentinel(SentinelPrimary {
                    sentinels,
                    current: SyncMutex::new(None),
                    lookup: AsyncMutex::new(()),
                    generation: AtomicU64::new(0),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(RESPONSE_TIMEOUT)),
                })
            }
        };
        Ok(RedisHandle {
            conn: Arc::new(conn),
        })
    }

    /// One node from a `redis://` URL, without TLS files (tests and benches).
    pub fn single(url: &str) -> Result<RedisHandle, RedisError> {
        Ok(RedisHandle {
            conn: Arc::new(Conn::Single(single(Client::open(url)?)?)),
        })
    }

    /// Runs `call` on a connection, connecting first if need be, all within `limit`; every
    /// failure is `Unavailable` (fail closed). A failure on the connection's account drops it,
    /// so the next call reconnects (to the new primary after a failover).
    pub(crate) async fn run<T, F, Fut>(&self, limit: Duration, call: F) -> Result<T, LedgerError>
    where
        F: FnOnce(Active) -> Fut + Send,
        Fut: Future<Output = RedisResult<T>> + Send,
    {
        let used = AtomicU64::new(NO_GENERATION);
        let attempt = async {
            let (generation, conn) = self.active().await?;
            used.store(generation, Ordering::Relaxed);
            let result = call(conn).await;
            if let Err(e) = &result
                && connection_at_fault(e)
            {
                self.forget(generation);
            }
            result
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(LedgerError::Unavailable(format!("redis: {e}"))),
            Err(_) => {
                self.forget(used.load(Ordering::Relaxed));
                Err(LedgerError::Unavailable(format!(
                    "redis: no answer within {limit:?}"
                )))
            }
        }
    }

    async fn active(&self) -> RedisResult<(u64, Active)> {
        match self.conn.as_ref() {
            Conn::Single(c) => Ok((NO_GENERATION, Active::Single(c.clone()))),
            Conn::Cluster(lazy) => {
                let mut slot = lazy.conn.lock().await;
                if let Some((g, c)) = slot.as_ref() {
                    return Ok((*g, Active::Cluster(c.clone())));
                }
                let c = lazy.client.get_async_connection().await?;
                let g = lazy.generation.fetch_add(1, Ordering::Relaxed);
                *slot = Some((g, c.clone()));
                Ok((g, Active::Cluster(c)))
            }
            Conn::Sentinel(s) => {
                if let Some((g, c)) = s.current.lock().unwrap().as_ref() {
                    return Ok((*g, Active::Node(c.clone())));
                }
                let _one_lookup = s.lookup.lock().await;
                if let Some((g, c)) = s.current.lock().unwrap().as_ref() {
                    return Ok((*g, Active::Node(c.clone())));
                }
                let c = s.find_primary().await?;
                let g = s.generation.fetch_add(1, Ordering::Relaxed);
                *s.current.lock().unwrap() = Some((g, c.clone()));
                Ok((g, Active::Node(c)))
            }
        }
    }

    fn forget(&self, generation: u64) {
        if generation == NO_GENERATION {
            return;
        }
        match self.conn.as_ref() {
            Conn::Single(_) => {}
            Conn::Cluster(lazy) => {
                // Not awaited: a call holding the lock is connecting, and will store a fresh one.
                if let Ok(mut slot) = lazy.conn.try_lock()
                    && slot.as_ref().is_some_and(|(g, _)| *g == generation)
                {
                    *slot = None;
                }
            }
            Conn::Sentinel(s) => {
                let mut current = s.current.lock().unwrap();
                if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                    *current = None;
                }
            }
        }
    }

    /// Whether this handle talks to a Redis Cluster (stats and counting differ slightly).
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn.as_ref(), Conn::Cluster(_))
    }
}

fn single(client: Client) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        // One quick retry per reconnect: a request during an outage fails fast with 503, and
        // the next request tries again, so service resumes as soon as Redis is back.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client, config)
}

impl SentinelPrimary {
    /// Asks every sentinel at once; the first that names a primary which confirms its role
    /// (`ROLE`, checked by the redis crate) wins. The others are dropped.
    async fn find_primary(&self) -> RedisResult<MultiplexedConnection> {
        let mut lookups: FuturesUnordered<_> = self
            .sentinels
            .iter()
            .map(|s| async move {
                let mut client = s.lock().await;
                client.get_async_connection_with_config(&self.config).await
            })
            .collect();
        let mut last_error = None;
        while let Some(result) = lookups.next().await {
            match result {
                Ok(conn) => return Ok(conn),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            RedisError::from((ErrorKind::InvalidClientConfig, "no sentinel configured"))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let t = Target::parse("redis://127.0.0.1:6379/2").unwrap();
        assert_eq!(t.topology, Topology::Single);
        assert_eq!((t.tls, t.db), (false, 2));
        let t = Target::parse("rediss://:pw@h:7000").unwrap();
        assert!(t.tls);
        assert_eq!(t.password().as_deref(), Some("pw"));
        assert_eq!(t.node_url("h", 7000), "rediss://:pw@h:7000/0");
        let t = Target::parse("redis+cluster://a:1,b:2,[::1]:3").unwrap();
        assert_eq!(t.topology, Topology::Cluster);
        assert_eq!(
            t.nodes,
            vec![("a".into(), 1), ("b".into(), 2), ("::1".into(), 3)]
        );
        assert_eq!(t.node_url("::1", 3), "redis://[::1]:3/0");
        let t = Target::parse("rediss+sentinel://u:p%40ss@s1:26379,s2/mymaster/3").unwrap();
        assert_eq!(
            t.topology,
            Topology::Sentinel {
                master: "mymaster".into()
            }
        );
        assert_eq!(t.nodes[1], ("s2".into(), 26379));
        assert_eq!(t.db, 3);
        assert_eq!(t.credentials(), (Some("u".into()), Some("p@ss".into())));
        for bad in [
            "mysql://x",
            "redis://a:1,b:2",
            "redis+cluster://a:1/3",
            "redis+sentinel://a:1",
            "redis://a:notaport",
            "redis://",
            "redis://h:1/x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        // The error never echoes the URL (which may hold a password).
        let e = Target::parse("redis://u:secret@a:1,b:2").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
