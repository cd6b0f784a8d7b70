//! KAITO's node provisioner: fulfils Karpenter `NodeClaim`s (`karpenter.sh/v1`) through a [`CloudProvider`].
//!
//! * [`cloud`]: the cloud-provider contract ([`CloudProvider`], [`CloudError`], [`InstanceType`]);
//! * [`kwok`]: the local backend, whose instances are kwok-managed Nodes with GPU capacity from the SKU catalog;
//! * [`controller`]: Karpenter's NodeClaim lifecycle (Launched, Registered, Initialized, Ready, termination);
//! * [`conditions`]: the condition computation (pure);
//! * [`metrics`]: Prometheus metrics and health endpoints.
//!
//! Run it in-process (tests) with [`run_kwok`]; the `kaito-provisioner` binary wraps the same call.

pub mod cloud;
pub mod conditions;
pub mod controller;
pub mod kwok;
pub mod metrics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use cloud::{CloudError, CloudProvider, InstanceType};
pub use controller::{ControllerOptions, NodeClassFilter, run};
pub use kwok::{KwokConfig, KwokProvider};
pub use metrics::Metrics;

/// Runs the kwok-backed provisioner until `shutdown` resolves (or the task is aborted).
///
/// ```no_run
/// # async fn demo(client: kube::Client) {
/// use kaito_provisioner::{ControllerOptions, KwokConfig, run_kwok};
/// let task = tokio::spawn(run_kwok(client, KwokConfig::default(), ControllerOptions::default(), futures::future::pending()));
/// // ... create NodeClaims ...
/// task.abort();
/// # }
/// ```
pub async fn run_kwok(
    client: kube::Client,
    kwok: KwokConfig,
    options: ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let provider = Arc::new(KwokProvider::new(client.clone(), kwok));
    run(client, provider, options, Arc::new(Metrics::new()), shutdown).await
}

/// A duration flag could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid duration {input:?}: use a number with a unit, e.g. 0s, 500ms, 2m, 1h")]
pub struct DurationError {
    /// What was given.
    pub input: String,
    /// The number that failed to parse, if that was the problem.
    #[source]
    pub source: Option<std::num::ParseFloatError>,
}

/// Parses `0`, `500ms`, `10s`, `1.5m`, `2h` (Go-style single-unit durations, as Karpenter's flags take).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    let err = |source| DurationError { input: input.to_string(), source };
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|e| err(Some(e)))?;
    let seconds = match unit {
        "" if value == 0.0 => 0.0,
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(err(None)),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| err(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (input, want) in [
            ("0", Some(0)),
            ("0s", Some(0)),
            ("500ms", Some(500)),
            ("2s", Some(2000)),
            ("1.5m", Some(90_000)),
            ("1h", Some(3_600_000)),
            ("5", None),
            ("-1s", None),
            ("1d", None),
            ("s", None),
        ] {
            assert_eq!(parse_duration(input).ok().map(|d| d.as_millis() as u64), want, "{input}");
        }
    }
}
