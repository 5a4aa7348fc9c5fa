//! `/metrics` for Prometheus (`[prometheus] listen`; off by default). An actor like the
//! others: it reads the plan the loop already publishes to every actor, this instance's
//! ECS view and the running counters — at scrape time, on the actor threads — so serving
//! a scrape, or a scraper that hangs, costs the sampling loop nothing.
//!
//! Only `GET /metrics` (and `HEAD`) answers 200; any other path is 404. The body is
//! encoded by `prometheus-client` (render.rs): OpenMetrics 1.0 when the scraper asks for
//! it, as Prometheus does, the Prometheus text format 0.0.4 otherwise.
//!
//! A port that cannot be bound is logged with the key and the address and retried with
//! backoff, never fatal: diskguard keeps the disk watched without its metrics endpoint.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

mod render;

pub use render::{Format, Scrape, render};

use crate::actors::{PlanReceiver, or_closed};
use crate::backoff::Backoff;
use crate::counters::Counters;
use crate::policy::Plan;
use crate::report::metrics::Totals;
use crate::sample::{EcsView, MountInfo, Volume, mount_of};

/// The only path that answers.
pub const PATH: &str = "/metrics";

/// Connections served at once; more are closed on accept. Prometheus keeps one per target,
/// so this is room for a few scrapers and a curl, not a crowd.
const MAX_CONNECTIONS: usize = 16;

/// A client that opens a connection and sends nothing is dropped after this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Why the endpoint is not serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr} (prometheus.listen)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `addr` for the endpoint.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Where a scrape's numbers come from. Every read is a clone out of a channel or an
/// atomic load: nothing here waits on the loop or on an actor.
#[derive(Debug)]
pub struct Sources {
    plans: PlanReceiver,
    ecs: watch::Receiver<Option<EcsView>>,
    counters: Arc<Counters>,
    /// Each volume's mount as last looked up, by the filesystem's device number: the
    /// mount table is read again only when the volume's filesystem changes.
    mounts: Mutex<BTreeMap<Volume, (u64, Option<MountInfo>)>>,
}

impl Sources {
    pub fn new(
        plans: PlanReceiver,
        ecs: watch::Receiver<Option<EcsView>>,
        counters: Arc<Counters>,
    ) -> Self {
        Sources {
            plans,
            ecs,
            counters,
            mounts: Mutex::new(BTreeMap::new()),
        }
    }

    fn mounts(&self, plan: Option<&Plan>) -> BTreeMap<Volume, MountInfo> {
        let mut cache = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for v in plan.into_iter().flat_map(|p| &p.volumes) {
            let Some(stats) = v.stats else { continue };
            let known = cache.get(&v.volume).filter(|(dev, _)| *dev == stats.device);
            let mount = match known {
                Some((_, m)) => m.clone(),
                None => {
                    let m = mount_of(&v.path);
                    cache.insert(v.volume, (stats.device, m.clone()));
                    m
                }
            };
            if let Some(m) = mount {
                out.insert(v.volume, m);
            }
        }
        out
    }

    /// One scrape's body, in `format`.
    pub fn scrape(&self, format: Format) -> String {
        let plan = self.plans.borrow().clone();
        let ecs = self.ecs.borrow().clone();
        let mounts = self.mounts(plan.as_deref());
        let totals = Totals::read(&self.counters);
        render(
            &Scrape {
                plan: plan.as_deref(),
                mounts: &mounts,
                ecs: ecs.as_ref(),
                totals: &totals,
                drains_delayed: Counters::get(&self.counters.drains_delayed),
            },
            format,
        )
    }
}

/// Runs until the plan channel closes (shutdown): binds `listen` (retrying with backoff
/// while it cannot), then serves.
pub async fn run(
    listen: SocketAddr,
    counters: Arc<Counters>,
    ecs: watch::Receiver<Option<EcsView>>,
    plans: PlanReceiver,
) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX).jittered();
    let listener = loop {
        match or_closed(&plans, bind(listen)).await {
            None => return,
            Some(Ok(l)) => break l,
            Some(Err(e)) => {
                let wait = backoff.failed();
                if backoff.failures() == 1 {
                    warn!(
                        listen = %listen,
                        "{}; no Prometheus endpoint until it can (retried at least every {}); the disks are watched all the same",
                        crate::error::chain(&e),
                        humantime::format_duration(RETRY_MAX)
                    );
                } else {
                    debug!(error = %crate::error::chain(&e), "Prometheus endpoint still not bound");
                }
                if or_closed(&plans, tokio::time::sleep(wait)).await.is_none() {
                    return;
                }
            }
        }
    };
    let sources = Arc::new(Sources::new(plans.clone(), ecs, counters));
    serve(listener, sources, plans).await;
}

/// Serves `/metrics` on `listener` until the plan channel closes; connections still open
/// then are dropped with it.
pub async fn serve(listener: TcpListener, sources: Arc<Sources>, mut plans: PlanReceiver) {
    let at = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    info!(listen = %at, "serving Prometheus metrics on http://{at}{PATH}");
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            changed = plans.changed() => if changed.is_err() { break },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() < MAX_CONNECTIONS => {
                    let sources = Arc::clone(&sources);
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let sources = Arc::clone(&sources);
                            async move { Ok::<_, Infallible>(answer(&req, &sources)) }
                        });
                        let served = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(e) = served {
                            debug!(peer = %peer, error = %e, "Prometheus connection ended");
                        }
                    });
                }
                Ok((_, peer)) => debug!(peer = %peer, "too many Prometheus connections; closed"),
                // EMFILE and the like: pause rather than spin on a failing accept.
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// `GET /metrics` → 200 and the scrape; another method there → 405; any other path → 404.
fn answer(req: &Request<Incoming>, sources: &Sources) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != PATH {
        return reply(StatusCode::NOT_FOUND, format!("not found; try {PATH}\n"));
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let mut r = reply(StatusCode::OK, sources.scrape(format));
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(format.content_type()),
    );
    r
}

#[cfg(test)]
mod tests;
