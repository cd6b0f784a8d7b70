//! The cloud-provider contract, modelled on Karpenter's `cloudprovider.CloudProvider`.
//!
//! The NodeClaim controller ([`crate::controller`]) owns the Kubernetes side of a claim's life (finalizer,
//! conditions, Node registration, deletion order); a [`CloudProvider`] only turns claims into instances and
//! back. A new cloud (Azure agent pools, AWS, ...) implements this trait and nothing else.

use std::future::Future;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaito_api::karpenter::NodeClaim;

/// What a cloud can launch: one instance type with its resources, as Karpenter's `InstanceType`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceType {
    /// Instance type name (Azure VM size, AWS instance type), the value of `node.kubernetes.io/instance-type`.
    pub name: String,
    /// Resources one instance offers (`cpu`, `memory`, `pods`, `nvidia.com/gpu`, ...).
    pub capacity: std::collections::BTreeMap<String, Quantity>,
    /// Whether the cloud can launch it right now (false for simulated or real capacity shortages).
    pub available: bool,
}

/// Why a cloud call failed.
///
/// The controller reacts to the variant, not the message: [`CloudError::NotFound`] means "gone" (deletion is
/// complete, a registered claim lost its instance), [`CloudError::InsufficientCapacity`] and
/// [`CloudError::InvalidClaim`] are terminal for this claim (`Launched=False`, retried slowly), and everything
/// else is transient (`Launched=Unknown`/`LaunchFailed`, retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The instance does not exist (Karpenter's `NodeClaimNotFoundError`).
    #[error("instance {id} not found")]
    NotFound {
        /// Provider ID or claim name that was looked up.
        id: String,
    },
    /// The cloud cannot launch this instance type now (Karpenter's `InsufficientCapacityError`).
    #[error("insufficient capacity for {instance_type}: {reason}")]
    InsufficientCapacity {
        /// The instance type that could not be launched.
        instance_type: String,
        /// Why, in words a user can act on.
        reason: String,
    },
    /// The claim cannot be launched as written (missing requirement, bad name, bad quantity).
    #[error("invalid NodeClaim {claim}: {reason}")]
    InvalidClaim {
        /// Claim name.
        claim: String,
        /// What is wrong.
        reason: String,
    },
    /// An instance with the claim's name exists but belongs to something else.
    #[error("instance {name} already exists and does not belong to NodeClaim {claim}")]
    Conflict {
        /// Instance (Node, agent pool) name.
        name: String,
        /// The claim that wanted it.
        claim: String,
    },
    /// The Kubernetes API failed (backends that keep instances as Kubernetes objects, like kwok).
    #[error("kubernetes API call failed: {context}")]
    Kube {
        /// What was being done.
        context: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The cloud API failed for another reason (throttling, outage); retried.
    #[error("cloud API call failed: {context}")]
    Api {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CloudError {
    /// Whether the error says the instance is gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::NotFound { .. })
    }

    /// Whether launching cannot succeed by retrying soon (no capacity, unknown instance type, bad claim).
    /// Unknown instance types are reported as [`CloudError::InsufficientCapacity`], as Karpenter does when
    /// no offering matches.
    pub fn is_terminal_launch_error(&self) -> bool {
        matches!(self, CloudError::InsufficientCapacity { .. } | CloudError::InvalidClaim { .. })
    }
}

/// A cloud that fulfils NodeClaims with instances; one instance per claim.
///
/// # Contract for implementers (e.g. an Azure agent-pool backend)
///
/// * **Identity.** Derive the instance's cloud name from the claim name (gpu-provisioner names the AKS agent
///   pool after the claim) so that a restarted provisioner finds what it launched before. Return the same
///   `providerID` the instance's Node will carry in `spec.providerID`: the controller registers the claim by
///   matching the two.
/// * **`create` is idempotent.** The controller calls it whenever `status.providerID` is empty, which after
///   a crash between "instance created" and "status written" happens again for the same claim. If the
///   instance already exists (or its creation is in progress), return it rather than launching a second one;
///   if something else owns that name, return [`CloudError::Conflict`].
///   The returned claim carries the launched facts: `status.providerID`, `status.imageID` (optional),
///   `status.capacity`, `status.allocatable`, and `metadata.labels` the Node will have
///   (`node.kubernetes.io/instance-type`, zone, capacity type, ...). The controller copies these onto the
///   claim; the input claim's other fields are ignored.
///   Map "no capacity / SKU not offered / quota exhausted / unknown instance type" to
///   [`CloudError::InsufficientCapacity`] and a claim that can never launch to [`CloudError::InvalidClaim`];
///   everything else is retried with backoff.
///   `create` may return before the Node joins; registration is the controller's job. A cloud whose Node
///   exists when `create` returns (kwok) sets `status.nodeName`: the controller then reads that Node and
///   registers it in the same pass, so `Launched` and `Registered` reach the claim in one status write.
/// * **`delete`** starts deleting the claim's instance (`status.providerID`, else the one named after the
///   claim, since a crash may have left an instance whose ID was never written) and may return while deletion
///   is still in progress. Return [`CloudError::NotFound`] once nothing is left: the controller calls `delete`
///   again (every second) until it does, and only then removes the `karpenter.sh/termination` finalizer.
///   Never delete an instance that does not belong to the claim.
/// * **`get`** returns the instance as a claim (at least `status.providerID` and labels), or
///   [`CloudError::NotFound`]. An instance that is being deleted should still be returned with
///   `metadata.deletionTimestamp` set.
/// * **`list`** returns only instances this provisioner launched (gpu-provisioner: agent pools with a
///   `kaito.sh/workspace` or `kaito.sh/ragengine` label and a `karpenter.sh/nodepool` label), each with
///   `metadata.name` = the claim name and `metadata.creationTimestamp` = the instance's creation time; the
///   garbage collector deletes listed instances whose claim no longer exists.
/// * **`instance_types`** lists what the cloud can launch (may be empty when it is not cheap to know).
///
/// Methods take `&self` and are called concurrently for different claims; never for the same claim at once.
pub trait CloudProvider: Send + Sync + 'static {
    /// Launches (or finds) the claim's instance; see the trait docs for the returned fields.
    fn create(&self, claim: &NodeClaim) -> impl Future<Output = Result<NodeClaim, CloudError>> + Send;

    /// Starts deleting the claim's instance; [`CloudError::NotFound`] when it is already gone.
    fn delete(&self, claim: &NodeClaim) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// The instance with this provider ID, as a claim; [`CloudError::NotFound`] when it does not exist.
    fn get(&self, provider_id: &str) -> impl Future<Output = Result<NodeClaim, CloudError>> + Send;

    /// Every instance this provisioner launched.
    fn list(&self) -> impl Future<Output = Result<Vec<NodeClaim>, CloudError>> + Send;

    /// Instance types the cloud offers.
    fn instance_types(&self) -> Vec<InstanceType>;

    /// Short backend name for logs and metrics (`kwok`, `azure`).
    fn name(&self) -> &'static str;
}
