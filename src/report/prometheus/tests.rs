use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// An endpoint on a free loopback port, with the plan channel that stops it.
async fn endpoint() -> (
    SocketAddr,
    watch::Sender<Option<Arc<Plan>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = bind("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("a free port binds");
    let addr = listener.local_addr().expect("bound");
    let plans = watch::Sender::new(None);
    let ecs = watch::Sender::new(None);
    let sources = Arc::new(Sources::new(
        plans.subscribe(),
        ecs.subscribe(),
        Arc::new(Counters::default()),
    ));
    let server = tokio::spawn(serve(listener, sources, plans.subscribe()));
    (addr, plans, server)
}

/// One HTTP/1.0 request; the status code and the whole response.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("the endpoint accepts");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: x\r\n{accept}\r\n").as_bytes())
        .await
        .expect("request sent");
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut raw))
        .await
        .expect("answered within 5 s")
        .expect("response read");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    (status, raw)
}

#[tokio::test]
async fn only_get_metrics_answers_200_and_every_other_path_is_404() {
    let (addr, _plans, _server) = endpoint().await;
    let (status, body) = request(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("diskguard_reclaimed_bytes_total 0"), "{body}");
    for path in ["/", "/metrics/", "/metricsx", "/debug/pprof"] {
        assert_eq!(request(addr, "GET", path, None).await.0, 404, "{path}");
    }
    let (status, raw) = request(addr, "POST", "/metrics", None).await;
    assert_eq!(status, 405);
    assert!(
        raw.to_ascii_lowercase().contains("allow: get, head"),
        "{raw}"
    );
    assert_eq!(request(addr, "HEAD", "/metrics", None).await.0, 200);
}

#[tokio::test]
async fn the_body_is_openmetrics_when_asked_for_and_the_text_format_otherwise() {
    let (addr, _plans, _server) = endpoint().await;
    let (_, raw) = request(
        addr,
        "GET",
        "/metrics",
        Some("application/openmetrics-text"),
    )
    .await;
    let lower = raw.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{raw}"
    );
    assert!(raw.ends_with("# EOF\n"), "{raw}");
    let (_, raw) = request(addr, "GET", "/metrics", None).await;
    assert!(
        raw.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{raw}"
    );
    assert!(!raw.contains("# EOF"));
}

#[tokio::test]
async fn a_port_in_use_is_an_error_naming_the_key_and_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("bound");
    let err = bind(addr).await.expect_err("the port is taken");
    let text = crate::error::chain(&err);
    assert!(text.contains("prometheus.listen"), "{text}");
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.to_lowercase().contains("in use"), "{text}");
}

#[tokio::test]
async fn the_endpoint_stops_when_the_plans_close_and_the_port_is_free_again() {
    let (addr, plans, server) = endpoint().await;
    // A scraper that connected and said nothing does not hold the shutdown up.
    let _idle = TcpStream::connect(addr).await.expect("connects");
    drop(plans);
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("stopped within 1 s")
        .expect("no panic");
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

#[tokio::test]
async fn a_taken_port_is_retried_until_it_is_free() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("bound");
    let plans = watch::Sender::new(None);
    let ecs = watch::Sender::new(None);
    let task = tokio::spawn(run(
        addr,
        Arc::new(Counters::default()),
        ecs.subscribe(),
        plans.subscribe(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(taken);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never bound {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(request(addr, "GET", "/metrics", None).await.0, 200);
    drop(plans);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("stopped")
        .expect("no panic");
}
