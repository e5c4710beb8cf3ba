//! `--listen-metrics-urls`: a separate listener serving `GET /metrics` and
//! `GET /health` from the member's own state, as the client port does, and
//! nothing else.

mod common;

use common::{b64, Server};
use serde_json::json;
use stead::metrics::sample;

/// The bound metrics address, from "serving metrics on http://ADDR".
fn metrics_endpoint(s: &Server) -> String {
    s.startup_log
        .iter()
        .find_map(|l| l.split("serving metrics on ").nth(1))
        .map(|a| a.split([',', ' ']).next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no \"serving metrics on\" line in:\n{}", s.startup_log.join("\n")))
}

fn get(url: &str) -> (u16, String, String) {
    let mut resp = common::http_agent().get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = resp.body_mut().read_to_string().expect("body");
    (status, content_type, body)
}

#[test]
fn metrics_listener_serves_metrics_and_health() {
    let s = Server::start(&["--listen-metrics-urls", "http://127.0.0.1:0"]);
    let endpoint = metrics_endpoint(&s);
    assert!(endpoint.starts_with("http://127.0.0.1:") && !endpoint.ends_with(":0"), "{endpoint}");
    assert_ne!(endpoint, s.endpoint, "a listener of its own");

    let (code, put) = s.post("/v3/kv/put", &json!({"key": b64("k"), "value": b64("v")}).to_string());
    assert_eq!(code, 200, "{put}");

    let (status, content_type, text) = get(&format!("{endpoint}/metrics"));
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "content type {content_type}");
    assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0), "{text}");
    assert!(sample(&text, "etcd_server_proposals_committed_total").unwrap_or(0.0) >= 1.0, "{text}");
    // The same registry as the client port's.
    let (_, _, client_text) = get(&format!("{}/metrics", s.endpoint));
    assert_eq!(sample(&client_text, "etcd_server_has_leader"), Some(1.0));

    let (status, content_type, body) = get(&format!("{endpoint}/health"));
    assert_eq!(status, 200, "{body}");
    // etcd writes /health with Go's default content type.
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health, json!({"health": "true"}));

    // Only those two: the KV API stays on the client port.
    let (status, _, _) = get(&format!("{endpoint}/version"));
    assert_eq!(status, 404);
}

#[test]
fn without_the_flag_no_metrics_listener_is_started() {
    let s = Server::start(&[]);
    assert!(!s.startup_log.iter().any(|l| l.contains("serving metrics on")), "{}", s.startup_log.join("\n"));
}
