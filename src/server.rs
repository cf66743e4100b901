//! `burnlink serve`: assembling the application from its parts and running it. Nothing here
//! is asked by a request: handlers read the state ([`crate::state::App`]) and the services.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::access::ApiTokens;
use crate::config::{Config, LedgerKind};
use crate::http::conn::ConnLimits;
use crate::http::net;
use crate::lease::LeaseKeeper;
use crate::ledger::{Ledger, MemoryLedger, RedisLedger};
use crate::links::{LinkService, Minter};
use crate::ratelimit::RateLimits;
use crate::sandbox::Sandbox;
use crate::state::App;
use crate::stats::{MemoryStats, RedisStats, StatsStore};
use crate::storage::Storage;
use crate::token::{Keyring, generate_key_entry};

/// What went wrong before the server could start; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("BURNLINK_BIND: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Already names its variable (`BURNLINK_LEDGER`, `BURNLINK_REDIS_CA`, …).
    #[error("{0}")]
    Redis(String),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The outbound client for the issuer could not be built (its roots are unreadable).
    #[error("BURNLINK_OAUTH_ISSUER: {0}")]
    OAuth(String),
    /// The webhook sender could not start; never holds the URL.
    #[error("BURNLINK_WEBHOOK_URL: {0}")]
    Webhook(String),
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(mut config: Config) -> Result<(), StartError> {
    for var in Config::unknown_vars() {
        tracing::warn!(variable = %var, "unknown BURNLINK_* variable ignored (a typo?)");
    }
    raise_open_files_limit(config.max_connections);
    let storage = config.open_storage()?;
    let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    crate::metrics::install();
    crate::webhooks::describe_metrics();
    let (ledger, stats) = open_ledger(&config.ledger).await?;
    match &storage {
        Storage::Disk(sandbox) => sweep_stale_uploads(sandbox),
        Storage::Bucket(bucket) => {
            return_large_buffers_to_the_system();
            sweep_bucket_partials(bucket.clone());
        }
    }
    let keyring = Arc::new(match config.keys.take() {
        Some(k) => k,
        None => {
            tracing::warn!(
                "BURNLINK_KEYS is not set: using a random key for this process only. Links stop \
                 working when it restarts and other replicas reject them. Run `burnlink keygen` \
                 and set BURNLINK_KEYS."
            );
            let entry = generate_key_entry();
            // Printed on stdout, once, and never logged, so a developer can mint with the CLI
            // against this server (or keep the key in `.env`).
            println!("BURNLINK_KEYS={entry}   (generated for this run; links die with it)");
            Keyring::parse(&entry).expect("a generated key entry parses")
        }
    });
    let api_tokens = match config.api_tokens.take() {
        Some(t) => t,
        None => {
            let (tokens, plain) = ApiTokens::generate();
            // Printed on stdout, once, and never logged: log lines must not carry secrets.
            println!(
                "BURNLINK_API_TOKENS={plain}   (generated for this run; set it to keep it across restarts)"
            );
            tokens
        }
    };

    let (listeners, bound) = net::bind(config.bind, config.workers, config.pin_loops)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
    let (base_url, guessed) = config.resolve_base_url(bound);
    if guessed {
        tracing::warn!(
            %base_url,
            "BURNLINK_BIND is a wildcard address and BURNLINK_BASE_URL is unset: links will point \
             at loopback. Set BURNLINK_BASE_URL to the address people reach this server at."
        );
    }

    let oauth = match config.oauth(&base_url) {
        None => None,
        Some(settings) => {
            tracing::info!(issuer = %settings.issuer, audience = %settings.audience,
                "OAuth access tokens accepted beside the API tokens");
            Some(Arc::new(
                crate::oauth::Verifier::new(settings).map_err(StartError::OAuth)?,
            ))
        }
    };
    let minter = Arc::new(Minter::new(
        keyring.clone(),
        storage.clone(),
        config.limits(),
        base_url.clone(),
    ));
    let grace = config.shutdown_grace;
    let conn_limits = ConnLimits {
        // A request head gets 30 s, or the idle timeout if that is shorter: a client that
        // trickles a header is as idle as one that sends nothing.
        header_read_timeout: Duration::from_secs(30).min(config.idle_timeout),
        write_idle: config.idle_timeout,
        max_header_bytes: 64 * 1024,
        max_connections: config.max_connections,
    };
    let rate_limits = Arc::new(RateLimits::new(&config.rate));
    // Events wait where the ledger lives: in Redis they survive this replica. A connection of
    // their own, so webhook traffic never queues behind (or ahead of) ledger calls.
    let webhooks = match (config.webhook.clone(), &config.ledger) {
        (None, _) => None,
        (Some(w), LedgerKind::Memory) => {
            Some(crate::webhooks::Webhooks::start(w, None).map_err(StartError::Webhook)?)
        }
        (Some(w), LedgerKind::Redis(url)) => {
            let conn = crate::ledger::redis::RedisHandle::open(url)
                .map_err(|e| StartError::Redis(e.message))?;
            Some(crate::webhooks::Webhooks::start(w, Some(conn)).map_err(StartError::Webhook)?)
        }
    };
    let links = Arc::new(
        LinkService::new(
            minter,
            keyring.clone(),
            Some(ledger.clone()),
            stats.clone(),
            Some(rate_limits.clone()),
        )
        .with_webhooks(webhooks.clone()),
    );
    let leases =
        LeaseKeeper::new(ledger.clone(), stats.clone(), config.lease).with_webhooks(webhooks);
    let app = Arc::new(App {
        config,
        keyring,
        api_tokens,
        oauth,
        ledger,
        stats,
        storage,
        links,
        leases,
        rate_limits,
        tasks: TaskTracker::new(),
        archives: crate::archive::Slots::default(),
    });
    app.rate_limits.spawn_sweeper();

    // A stable line on stdout that scripts and tests can wait for.
    let scheme = app.config.scheme();
    println!("burnlink listening on {scheme}://{bound} (links: {base_url})");
    tracing::info!(%bound, %base_url, "listening");
    let tasks = app.tasks.clone();
    net::serve(
        listeners,
        app,
        conn_limits,
        tls,
        shutdown_signal(),
        grace,
        tasks,
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// The ledger and the stats store: both in this process, or both in one shared Redis.
///
/// A Redis that is down at start does not stop the replica: the connection is made lazily and
/// retried on every call, `/readyz` fails and transfers answer 503 until Redis answers, and
/// minting (which needs only the key) works throughout.
async fn open_ledger(
    kind: &LedgerKind,
) -> Result<(Arc<dyn Ledger>, Arc<dyn StatsStore>), StartError> {
    Ok(match kind {
        LedgerKind::Memory => {
            let ledger = Arc::new(MemoryLedger::new());
            ledger.spawn_purger(Duration::from_secs(30));
            (ledger, Arc::new(MemoryStats::default()))
        }
        LedgerKind::Redis(options) => {
            let handle = crate::ledger::redis::RedisHandle::open(options)
                .map_err(|e| StartError::Redis(e.to_string()))?;
            // Burns that WAIT get a handle of their own (see `RedisLedger::burns`); without
            // replicas to wait for, nothing waits and the one handle serves all.
            let burns = if options.replicas > 0 {
                crate::ledger::redis::RedisHandle::open(options)
                    .map_err(|e| StartError::Redis(e.to_string()))?
            } else {
                handle.clone()
            };
            let ledger = RedisLedger::with_replicas(handle.clone(), burns, options.replicas);
            if options.replicas > 0 {
                crate::metrics::expose_ledger_unreplicated();
            }
            // The URL may hold a password: log neither it nor an echo of it in the error.
            match ledger.ping().await {
                Ok(()) => tracing::info!("ledger: Redis reachable"),
                Err(e) => tracing::warn!(
                    error = %redact(&e.to_string(), &options.url),
                    "ledger: Redis is not reachable yet; transfers answer 503 and /readyz fails \
                     until it is (minting keeps working)"
                ),
            }
            (Arc::new(ledger), Arc::new(RedisStats::new(handle)))
        }
    })
}

/// `message` without the password of `url`, if it has one.
fn redact(message: &str, url: &str) -> String {
    match crate::ledger::redis::Target::parse(url)
        .ok()
        .and_then(|t| t.password())
    {
        Some(p) => message.replace(&p, "***"),
        None => message.to_string(),
    }
}

/// Removes temporaries that crashed uploads left behind, in the background so a large tree
/// does not delay start-up; uploads still running in other replicas are left alone
/// ([`crate::staging`]). The same sweep then runs every [`SWEEP_PERIOD`], removing the partial
/// files of resumable uploads whose link has expired.
fn sweep_stale_uploads(sandbox: &Sandbox) {
    let sandbox = sandbox.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_PERIOD);
        loop {
            tick.tick().await;
            let sandbox = sandbox.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let removed = crate::staging::sweep(sandbox.root_dir());
                if removed > 0 {
                    tracing::info!(
                        removed,
                        "removed temporary files of interrupted or expired uploads"
                    );
                }
            })
            .await;
        }
    });
}

/// The bucket's counterpart of [`sweep_stale_uploads`]: at start-up and every
/// [`SWEEP_PERIOD`], the unfinished resumable uploads of expired links are aborted and their
/// state objects removed (a plain upload aborts its own multipart upload when it fails).
fn sweep_bucket_partials(bucket: Arc<crate::storage::Bucket>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_PERIOD);
        loop {
            tick.tick().await;
            match bucket.sweep_partials().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    removed,
                    "aborted the unfinished uploads of expired links in the bucket"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not sweep the bucket's unfinished uploads")
                }
            }
        }
    });
}

/// How often partial uploads of expired links are swept away.
const SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(600);

/// With files in a bucket, makes glibc's allocator give blocks of 64 KiB and more straight
/// back to the system when they are freed. An upload's parts are hyper's read buffers (the
/// body's chunks), allocated on the connection's thread and freed on another once S3 has the
/// part; glibc's default raises its mmap threshold to the largest block freed so far, so those
/// buffers move into per-thread heaps whose freed space stays resident. The suite's 256 MiB
/// bucket upload peaked at 56–63 MiB of RSS with the default (its bound is 64 MiB) and at
/// about 50 MiB with this; the live heap is about 17 MB either way (massif). Not for a
/// directory sandbox: there the same buffers are freed where they were made, memory stays
/// flat without it, and mapping each buffer anew cost a 256 MiB upload to disk a fifth of its
/// speed (850 → 660 MB/s, `benches/load/upload_ab.sh`). A no-op on other C libraries.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    {
        const THRESHOLD: libc::c_int = 64 * 1024;
        // SAFETY: mallopt only sets the allocator's parameters and may be called from any
        // thread. It fails only for a value out of range; the defaults then stay.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
    }
}

/// Lifts the soft limit on open files to the hard one (systemd and most shells start services
/// at 1024, far below `BURNLINK_MAX_CONNECTIONS`), and says so when even the hard limit leaves
/// too little room: each connection is a descriptor, and a transfer holds a file or two more.
fn raise_open_files_limit(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "could not raise the open-files limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let wanted = 2 * (max_connections + crate::http::net::HEADROOM) as u64 + 64;
    if now < wanted {
        tracing::warn!(
            open_files_limit = now,
            max_connections,
            "the open-files limit is low for BURNLINK_MAX_CONNECTIONS; raise it (LimitNOFILE=) \
             or lower BURNLINK_MAX_CONNECTIONS"
        );
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}
