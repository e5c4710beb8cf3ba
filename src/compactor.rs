//! Automatic compaction (`--auto-compaction-mode` / `--auto-compaction-retention`),
//! with etcd 3.4's rules:
//! - `periodic`: keep `retention` of history. Every tenth of the retention (at most
//!   six minutes) the current revision is sampled; once a retention has passed
//!   (then every min(retention, 1 h)), compact to the revision sampled a retention
//!   ago. A bare number means hours.
//! - `revision`: every five minutes, compact to current revision − retention.
//!
//! Compactions go through the client path (Raft) like any `Compact` request, so
//! every member applies them at the same log position. Owns only its samples; it
//! must never touch the store directly.

use std::collections::VecDeque;
use std::time::Duration;

use crate::error::RequestError;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::service::ClientService;

/// A validated auto-compaction setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Off,
    Periodic(Duration),
    Revision(i64),
}

/// etcd's revision-mode interval.
const REVISION_MODE_INTERVAL: Duration = Duration::from_secs(300);

impl AutoCompaction {
    /// Parses etcd's flag pair; the error says what was expected.
    pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
        let retention = retention.trim();
        if retention.is_empty() || retention == "0" {
            return Ok(AutoCompaction::Off);
        }
        match mode {
            "periodic" => {
                let period = match retention.parse::<u64>() {
                    Ok(hours) => Duration::from_secs(hours * 3600),
                    Err(_) => parse_go_duration(retention)?,
                };
                if period.is_zero() { Ok(AutoCompaction::Off) } else { Ok(AutoCompaction::Periodic(period)) }
            }
            "revision" => retention
                .parse::<i64>()
                .ok()
                .filter(|r| *r >= 0)
                .map(|r| if r == 0 { AutoCompaction::Off } else { AutoCompaction::Revision(r) })
                .ok_or_else(|| format!("expected a number of revisions, got {retention:?}")),
            other => Err(format!("expected \"periodic\" or \"revision\", got {other:?}")),
        }
    }
}

/// Go's `time.ParseDuration` for the units a retention uses: `1h30m`, `90s`, `500ms`.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected hours (\"1\") or a duration (\"30m\", \"1h30m\"), got {text:?}");
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(value * seconds);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Runs forever on the current arbiter; start it only when auto-compaction is on.
pub async fn run(service: ClientService, setting: AutoCompaction) {
    match setting {
        AutoCompaction::Off => {}
        AutoCompaction::Periodic(period) => periodic(service, period).await,
        AutoCompaction::Revision(retention) => revision(service, retention).await,
    }
}

async fn current_revision(service: &ClientService) -> Option<i64> {
    service.status().await.ok().and_then(|s| s.header.map(|h| h.revision))
}

async fn compact(service: &ClientService, revision: i64) -> bool {
    match service.compact(CompactionRequest { revision, physical: false }).await {
        Ok(_) => {
            tracing::info!("compactor: compacted to revision {revision}");
            true
        }
        // Someone compacted past it already: that counts as done, as in etcd.
        Err(RequestError::Compacted) => true,
        Err(e) => {
            tracing::warn!("compactor: failed to compact to revision {revision}: {e}");
            false
        }
    }
}

async fn periodic(service: ClientService, period: Duration) {
    let hour = Duration::from_secs(3600);
    let compact_interval = period.min(hour);
    let sample_interval = compact_interval / 10;
    let samples_kept = (period.as_secs_f64() / sample_interval.as_secs_f64()) as usize + 1;
    let mut samples: VecDeque<i64> = VecDeque::with_capacity(samples_kept + 1);
    let mut since_success = Duration::ZERO;
    let mut wait = period;
    loop {
        if let Some(rev) = current_revision(&service).await {
            samples.push_back(rev);
            if samples.len() > samples_kept {
                samples.pop_front();
            }
        }
        tokio::time::sleep(sample_interval).await;
        since_success += sample_interval;
        if since_success < wait {
            continue;
        }
        // The oldest sample is the revision one retention ago.
        if let Some(&rev) = samples.front() {
            if rev > 0 && compact(&service, rev).await {
                since_success = Duration::ZERO;
                wait = compact_interval;
            }
        }
    }
}

async fn revision(service: ClientService, retention: i64) {
    let mut last = 0;
    loop {
        tokio::time::sleep(REVISION_MODE_INTERVAL).await;
        let Some(current) = current_revision(&service).await else { continue };
        let target = current - retention;
        if target <= 0 || target == last {
            continue;
        }
        if compact(&service, target).await {
            last = target;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_parses_like_etcd() {
        assert_eq!(AutoCompaction::parse("periodic", "0"), Ok(AutoCompaction::Off));
        assert_eq!(AutoCompaction::parse("periodic", "1"), Ok(AutoCompaction::Periodic(Duration::from_secs(3600))));
        assert_eq!(AutoCompaction::parse("periodic", "1h30m"), Ok(AutoCompaction::Periodic(Duration::from_secs(5400))));
        assert_eq!(AutoCompaction::parse("periodic", "500ms"), Ok(AutoCompaction::Periodic(Duration::from_millis(500))));
        assert_eq!(AutoCompaction::parse("revision", "1000"), Ok(AutoCompaction::Revision(1000)));
        assert!(AutoCompaction::parse("revision", "1h").is_err());
        assert!(AutoCompaction::parse("periodic", "soon").is_err());
        assert!(AutoCompaction::parse("periodic", "5x").is_err());
        assert!(AutoCompaction::parse("daily", "1").is_err());
    }
}
