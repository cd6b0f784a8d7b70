//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller replicas exactly one
//! reconciles at a time (`--leader-elect`).
//!
//! The algorithm is client-go's: a candidate takes the Lease when it is free or when its record has not
//! changed for a whole lease duration *by the candidate's own clock* (so clocks need not agree); the holder
//! renews every [`Elector::renew_every`]; every write carries the Lease's resourceVersion, so two candidates
//! can never both succeed. A leader that cannot renew within the lease duration stops its work and
//! [`Elector::lead`] returns [`LeaderError::Lost`]: the process exits rather than risk two leaders.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// Lease name (upstream's leader-election id).
pub const LEASE_NAME: &str = "ef60f9b0.io";

/// Why leading ended badly.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be renewed within the lease duration: another replica may lead now.
    #[error("lost the leader lease {0}: stopping so that two replicas never act at once")]
    Lost(String),
}

/// One candidate for the Lease.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    /// Lease name.
    pub name: String,
    /// Who this candidate is (POD_NAME, else hostname and pid).
    pub identity: String,
    /// How long a silent holder keeps the Lease.
    pub lease_duration: Duration,
    /// How often the holder renews (and a candidate retries).
    pub renew_every: Duration,
    observed: std::sync::Arc<std::sync::Mutex<Option<(String, Instant)>>>,
}

impl Elector {
    /// A candidate for Lease `name` in `namespace` with upstream's timings (15 s lease, 5 s renew).
    pub fn new(client: Client, namespace: &str, name: &str, identity: impl Into<String>) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            observed: Default::default(),
        }
    }

    /// This process's identity: `POD_NAME`, else `<hostname>_<pid>`.
    pub fn default_identity() -> String {
        std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
            format!("{}_{}", host.trim(), std::process::id())
        })
    }

    /// One attempt to take or renew the Lease; `Ok(true)` when this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let seconds = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let mut lease = Lease::default();
            lease.metadata.name = Some(self.name.clone());
            lease.spec = Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            });
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.identity;
        if !mine && !holder.is_empty() && !self.expired(&lease) {
            return Ok(false);
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if !mine {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(now);
        // replace() sends the resourceVersion we read: a concurrent writer makes this fail with 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Whether another holder's record has stayed unchanged for a lease duration, by our clock.
    fn expired(&self, lease: &Lease) -> bool {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let duration = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.lease_duration);
        let Ok(mut observed) = self.observed.lock() else { return false };
        match observed.as_ref() {
            Some((seen, since)) if *seen == version => since.elapsed() > duration,
            _ => {
                *observed = Some((version, Instant::now()));
                false
            }
        }
    }

    /// Gives the Lease up (on a clean shutdown) so another replica need not wait for it to expire.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
        }
    }

    /// Waits to become leader, then runs `work` while renewing the Lease.
    ///
    /// `work` gets a future that resolves when it must stop. Returns `Ok` when `shutdown` resolves (after
    /// stopping `work` and releasing the Lease) or when `work` ends by itself, and [`LeaderError::Lost`] when
    /// the Lease could not be renewed within the lease duration (after stopping `work`).
    pub async fn lead<W, Fut>(&self, shutdown: impl Future<Output = ()>, work: W) -> Result<(), LeaderError>
    where
        W: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, lease = %self.name, "leader election"),
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(self.renew_every) => {}
            }
        }
        tracing::info!(identity = %self.identity, lease = %self.name, "became leader");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let mut work = std::pin::pin!(work(stopped));
        let mut last_renewed = Instant::now();
        let outcome = loop {
            tokio::select! {
                _ = &mut work => break Ok(()),
                _ = &mut shutdown => break Ok(()),
                _ = tokio::time::sleep(self.renew_every) => {
                    match self.try_acquire_or_renew().await {
                        Ok(true) => last_renewed = Instant::now(),
                        Ok(false) => break Err(LeaderError::Lost(self.name.clone())),
                        Err(error) => tracing::warn!(%error, lease = %self.name, "renewing the leader lease"),
                    }
                    // Stop before the lease can expire in another candidate's eyes.
                    if last_renewed.elapsed() + self.renew_every >= self.lease_duration {
                        break Err(LeaderError::Lost(self.name.clone()));
                    }
                }
            }
        };
        let _ = stop.send(());
        // Bounded: a stuck controller must not keep a lost lease's process alive.
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut work).await;
        if outcome.is_ok() {
            self.release().await;
        }
        outcome
    }
}
