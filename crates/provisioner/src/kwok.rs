//! The `kwok` backend: a simulated cloud whose instances are Node objects that kwok keeps Ready.
//!
//! `create` writes a Node named after the claim, annotated `kwok.x-k8s.io/node: fake` (the annotation the
//! local control plane's kwok manages), with `spec.providerID: kwok://<name>`, the claim's labels and taints
//! (already in the form registration gives a Node: `karpenter.sh/registered=true`, no `karpenter.sh/unregistered`
//! taint), NVIDIA GPU Feature Discovery labels and `nvidia.com/gpu` capacity from the GPU SKU catalog. Nodes accept
//! `status` on create, so capacity is there from the start; kwok then adds the Ready condition and keeps it.
//!
//! Failure injection, for tests of the unhappy paths:
//! * [`KwokConfig::unavailable_instance_types`] (`--unavailable-instance-types`): these SKUs never launch;
//! * the claim annotation [`SIMULATE_FAILURE_ANNOTATION`] `= sku-unavailable`: this claim never launches.
//!
//! Both give [`CloudError::InsufficientCapacity`], so the claim gets `Launched=False/InsufficientCapacity`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaito_api::karpenter::{NodeClaim, NodeClaimStatus, labels as klabels};
use kaito_core::sku::{self, Cloud, GpuConfig, GpuVendor};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

use crate::cloud::{CloudError, CloudProvider, InstanceType};

/// Claim annotation that makes the kwok backend refuse the claim; the only value is `sku-unavailable`.
pub const SIMULATE_FAILURE_ANNOTATION: &str = "kaito.sh/simulate-failure";
/// Value of [`SIMULATE_FAILURE_ANNOTATION`] that simulates an unavailable instance type.
pub const SIMULATE_SKU_UNAVAILABLE: &str = "sku-unavailable";
/// Label on every Node this backend creates, naming its claim (how `list` and ownership checks find them).
pub const NODECLAIM_LABEL: &str = "kaito.sh/nodeclaim";
/// Annotation (and label) kwok manages Nodes by.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";
/// Prefix of the provider IDs this backend hands out.
pub const PROVIDER_ID_PREFIX: &str = "kwok://";
/// `status.imageID` of simulated instances.
pub const IMAGE_ID: &str = "kwok-simulated-ubuntu-2204-gpu";
/// Label KAITO's gpu-provisioner puts on nodes: `gpu` for N-series (GPU) VM sizes, else `cpu`.
pub const MACHINE_TYPE_LABEL: &str = "kaito.sh/machine-type";
/// GPU Feature Discovery label saying the node has an NVIDIA GPU.
pub const LABEL_GPU_PRESENT: &str = "nvidia.com/gpu.present";

/// Ephemeral storage when the claim requests none.
const DEFAULT_STORAGE: &str = "128Gi";
/// Pods per node, the kubelet default.
const MAX_PODS: &str = "110";
/// Simulated memory per vCPU when the catalog says nothing about the host (GPU VMs have 8-11 GiB per vCPU).
const MEMORY_GIB_PER_VCPU: u64 = 9;

/// Settings of the simulated cloud.
#[derive(Debug, Clone)]
pub struct KwokConfig {
    /// Whose GPU SKU catalog defines the instance types.
    pub cloud: Cloud,
    /// How long `create` takes, to imitate a real VM launch.
    pub launch_delay: Duration,
    /// Instance types that always fail with insufficient capacity.
    pub unavailable_instance_types: BTreeSet<String>,
}

impl Default for KwokConfig {
    fn default() -> Self {
        Self { cloud: Cloud::Azure, launch_delay: Duration::ZERO, unavailable_instance_types: BTreeSet::new() }
    }
}

/// The kwok cloud provider.
#[derive(Clone)]
pub struct KwokProvider {
    nodes: Api<Node>,
    config: KwokConfig,
}

impl KwokProvider {
    /// A provider that creates Nodes through `client`.
    pub fn new(client: Client, config: KwokConfig) -> Self {
        Self { nodes: Api::all(client), config }
    }

    /// The provider's settings.
    pub fn config(&self) -> &KwokConfig {
        &self.config
    }

    async fn get_node(&self, name: &str) -> Result<Option<Node>, CloudError> {
        self.nodes.get_opt(name).await.map_err(|source| kube_err(format!("reading Node {name}"), source))
    }
}

fn kube_err(context: String, source: kube::Error) -> CloudError {
    CloudError::Kube { context, source }
}

impl CloudProvider for KwokProvider {
    async fn create(&self, claim: &NodeClaim) -> Result<NodeClaim, CloudError> {
        let (instance_type, gpu) = check_launchable(claim, &self.config)?;
        let desired = build_node(claim, &instance_type, gpu)?;
        let name = desired.name_any();
        // A restarted provisioner (or a lost status write) calls create again: return the Node launched
        // before instead of making a second one.
        if let Some(existing) = self.get_node(&name).await? {
            return adopt(existing, claim);
        }
        if !self.config.launch_delay.is_zero() {
            tokio::time::sleep(self.config.launch_delay).await;
        }
        match self.nodes.create(&PostParams::default(), &desired).await {
            Ok(node) => node_to_claim(&node),
            Err(kube::Error::Api(status)) if status.code == 409 => match self.get_node(&name).await? {
                Some(existing) => adopt(existing, claim),
                None => Err(CloudError::Conflict { name, claim: claim.name_any() }),
            },
            Err(source) => Err(kube_err(format!("creating Node {name}"), source)),
        }
    }

    async fn delete(&self, claim: &NodeClaim) -> Result<(), CloudError> {
        let name = claim
            .status
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(|id| id.strip_prefix(PROVIDER_ID_PREFIX))
            .map_or_else(|| claim.name_any(), str::to_string);
        let not_found = || CloudError::NotFound { id: format!("{PROVIDER_ID_PREFIX}{name}") };
        let Some(node) = self.get_node(&name).await? else {
            return Err(not_found());
        };
        // Only ever delete our own Node for this claim; a hand-made Node with the same name stays.
        if !belongs_to(&node, &claim.name_any()) {
            return Err(not_found());
        }
        match self.nodes.delete(&name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(not_found()),
            Err(source) => Err(kube_err(format!("deleting Node {name}"), source)),
        }
    }

    async fn get(&self, provider_id: &str) -> Result<NodeClaim, CloudError> {
        let not_found = || CloudError::NotFound { id: provider_id.to_string() };
        let name = provider_id.strip_prefix(PROVIDER_ID_PREFIX).ok_or_else(not_found)?;
        let node = self.get_node(name).await?.ok_or_else(not_found)?;
        if node.labels().get(NODECLAIM_LABEL).is_none() {
            return Err(not_found());
        }
        node_to_claim(&node)
    }

    async fn list(&self) -> Result<Vec<NodeClaim>, CloudError> {
        let nodes = self
            .nodes
            .list(&ListParams::default().labels(NODECLAIM_LABEL))
            .await
            .map_err(|source| kube_err("listing kwok Nodes".to_string(), source))?;
        nodes.items.iter().map(node_to_claim).collect()
    }

    fn instance_types(&self) -> Vec<InstanceType> {
        sku::all(self.config.cloud)
            .iter()
            .map(|gpu| InstanceType {
                name: gpu.sku.clone(),
                capacity: capacity(&gpu.sku, gpu, None),
                available: !self.config.unavailable_instance_types.contains(&gpu.sku),
            })
            .collect()
    }

    fn name(&self) -> &'static str {
        "kwok"
    }
}

/// The existing Node as the launch result, if it is this claim's.
fn adopt(node: Node, claim: &NodeClaim) -> Result<NodeClaim, CloudError> {
    if belongs_to(&node, &claim.name_any()) {
        node_to_claim(&node)
    } else {
        Err(CloudError::Conflict { name: node.name_any(), claim: claim.name_any() })
    }
}

fn belongs_to(node: &Node, claim: &str) -> bool {
    node.labels().get(NODECLAIM_LABEL).map(String::as_str) == Some(claim)
}

/// The instance type a claim asks for: the first value of its `node.kubernetes.io/instance-type In`
/// requirement (gpu-provisioner's rule), else of Azure's `karpenter.azure.com/sku-name`.
pub fn requested_instance_type(claim: &NodeClaim) -> Option<&str> {
    [klabels::INSTANCE_TYPE, klabels::AZURE_SKU_NAME].iter().find_map(|key| {
        claim
            .spec
            .requirements
            .iter()
            .find(|r| r.key == *key && r.operator == "In")
            .and_then(|r| r.values.first())
            .map(String::as_str)
    })
}

/// The instance type and GPU shape for a claim, or why the simulated cloud will not launch it.
pub fn check_launchable(claim: &NodeClaim, config: &KwokConfig) -> Result<(String, &'static GpuConfig), CloudError> {
    let instance_type = requested_instance_type(claim).ok_or_else(|| CloudError::InvalidClaim {
        claim: claim.name_any(),
        reason: format!("no `{} In [...]` requirement names an instance type", klabels::INSTANCE_TYPE),
    })?;
    let unavailable = |why: &str| CloudError::InsufficientCapacity {
        instance_type: instance_type.to_string(),
        reason: format!("instance type {instance_type} {why}: choose another instanceType"),
    };
    if claim.annotations().get(SIMULATE_FAILURE_ANNOTATION).map(String::as_str) == Some(SIMULATE_SKU_UNAVAILABLE) {
        return Err(unavailable("is unavailable in the simulated cloud"));
    }
    if config.unavailable_instance_types.contains(instance_type) {
        return Err(unavailable("is unavailable in the simulated cloud"));
    }
    let gpu = sku::lookup(config.cloud, instance_type)
        .ok_or_else(|| unavailable(&format!("not found in the {} GPU SKU catalog", config.cloud)))?;
    Ok((instance_type.to_string(), gpu))
}

/// The Node that simulates the claim's instance (pure; snapshot-tested).
pub fn build_node(claim: &NodeClaim, instance_type: &str, gpu: &GpuConfig) -> Result<Node, CloudError> {
    let name = claim.metadata.name.clone().ok_or_else(|| CloudError::InvalidClaim {
        claim: String::new(),
        reason: "the NodeClaim has no name".to_string(),
    })?;
    let storage = claim.spec.resources.requests.get("storage").cloned();
    let resources = capacity(instance_type, gpu, storage);

    let mut labels = claim.labels().clone();
    // Single-valued `In` requirements become labels, as Karpenter does when it launches a claim.
    for req in &claim.spec.requirements {
        if req.operator == "In" && req.values.len() == 1 && req.key != "kubernetes.io/hostname" {
            let value = &req.values[0];
            if is_label_value(value) {
                labels.entry(req.key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    let nodepool = labels.get(klabels::NODEPOOL).cloned().unwrap_or_else(|| klabels::KAITO_NODEPOOL.to_string());
    let machine_type = if instance_type.starts_with("Standard_N") || gpu.gpu_count > 0 { "gpu" } else { "cpu" };
    labels.extend([
        (klabels::INSTANCE_TYPE.to_string(), instance_type.to_string()),
        (klabels::OS.to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("kubernetes.io/hostname".to_string(), name.clone()),
        (klabels::NODEPOOL.to_string(), nodepool),
        (MACHINE_TYPE_LABEL.to_string(), machine_type.to_string()),
        (NODECLAIM_LABEL.to_string(), name.clone()),
        (KWOK_NODE_ANNOTATION.to_string(), "fake".to_string()),
        ("type".to_string(), "kwok".to_string()),
    ]);
    if gpu.vendor == GpuVendor::Nvidia {
        labels.extend([
            (LABEL_GPU_PRESENT.to_string(), "true".to_string()),
            (sku::LABEL_GPU_PRODUCT.to_string(), gpu_product_label(&gpu.gpu_model)),
            (sku::LABEL_GPU_COUNT.to_string(), gpu.gpu_count.to_string()),
            (sku::LABEL_GPU_MEMORY_MIB.to_string(), (gpu.gpu_memory_per_gpu_bytes >> 20).to_string()),
        ]);
        if let Some((major, minor)) = gpu.compute_capability {
            labels.insert(sku::LABEL_CUDA_MAJOR.to_string(), major.to_string());
            labels.insert(sku::LABEL_CUDA_MINOR.to_string(), minor.to_string());
        }
    }

    // A real instance joins with Karpenter's `karpenter.sh/unregistered` taint, and registration syncs the claim's
    // labels and taints onto it, then removes the taint. The simulated one is created with the claim's labels and
    // taints already, so it joins in its registered form: registration finds nothing to patch. Each early Node
    // write also costs kwok a second pass over the Node before it turns Ready (its initialize stage re-runs on
    // every update it sees before then), and kwok's few workers are the slowest step when hundreds of Nodes join.
    labels.insert(crate::controller::REGISTERED_LABEL.to_string(), "true".to_string());
    let mut taints = claim.spec.taints.clone();
    taints.extend(claim.spec.startup_taints.iter().cloned());

    Ok(Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (KWOK_NODE_ANNOTATION.to_string(), "fake".to_string()),
                ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(format!("{PROVIDER_ID_PREFIX}{name}")),
            taints: Some(taints),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".to_string(),
                operating_system: "linux".to_string(),
                os_image: IMAGE_ID.to_string(),
                kubelet_version: "fake".to_string(),
                kube_proxy_version: "fake".to_string(),
                container_runtime_version: "fake".to_string(),
                kernel_version: "fake".to_string(),
                ..NodeSystemInfo::default()
            }),
            phase: Some("Running".to_string()),
            ..NodeStatus::default()
        }),
    })
}

/// The Node's resources: vCPUs parsed from the SKU name, memory per vCPU, ephemeral storage = the claim's
/// storage request, and the SKU's accelerators under the vendor's device-plugin resource name.
pub fn capacity(instance_type: &str, gpu: &GpuConfig, storage: Option<Quantity>) -> BTreeMap<String, Quantity> {
    let vcpus = vcpus_from_sku(instance_type).unwrap_or(8);
    let mut resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(vcpus.to_string())),
        ("memory".to_string(), Quantity(format!("{}Gi", (vcpus * MEMORY_GIB_PER_VCPU).max(16)))),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
        ("ephemeral-storage".to_string(), storage.unwrap_or_else(|| Quantity(DEFAULT_STORAGE.to_string()))),
    ]);
    let device = match gpu.vendor {
        GpuVendor::Nvidia => "nvidia.com/gpu",
        GpuVendor::Amd => "amd.com/gpu",
        GpuVendor::AwsNeuron => "aws.amazon.com/neuron",
    };
    if gpu.gpu_count > 0 {
        resources.insert(device.to_string(), Quantity(gpu.gpu_count.to_string()));
    }
    resources
}

/// vCPUs encoded in a SKU name: Azure `Standard_NC24ads_A100_v4` → 24; AWS `p4d.24xlarge` → 96.
pub fn vcpus_from_sku(sku: &str) -> Option<u64> {
    if let Some(rest) = sku.strip_prefix("Standard_") {
        let digits: String =
            rest.chars().skip_while(|c| c.is_ascii_alphabetic()).take_while(char::is_ascii_digit).collect();
        return digits.parse().ok().filter(|n| *n > 0);
    }
    let (_, size) = sku.split_once('.')?;
    let multiple = size.strip_suffix("xlarge")?;
    let n: u64 = if multiple.is_empty() { 1 } else { multiple.parse().ok()? };
    Some(n * 4)
}

/// GPU Feature Discovery style product label from the catalog's model name (`NVIDIA A100` → `NVIDIA-A100`).
pub fn gpu_product_label(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    for c in model.chars() {
        let keep = if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '-' };
        if !(keep == '-' && out.ends_with('-')) {
            out.push(keep);
        }
    }
    let trimmed: String = out.trim_matches(|c: char| !c.is_ascii_alphanumeric()).chars().take(63).collect();
    trimmed.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && value.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

/// A kwok Node seen as a launched claim: name, labels, timestamps, providerID and resources.
pub fn node_to_claim(node: &Node) -> Result<NodeClaim, CloudError> {
    let claim_name = node.labels().get(NODECLAIM_LABEL).cloned().unwrap_or_else(|| node.name_any());
    let mut labels = node.labels().clone();
    // Bookkeeping labels of the simulation, and the lifecycle labels Karpenter keeps on Nodes only, are not
    // instance facts worth copying onto the claim.
    for internal in [
        "kubernetes.io/hostname",
        NODECLAIM_LABEL,
        KWOK_NODE_ANNOTATION,
        "type",
        crate::controller::REGISTERED_LABEL,
        crate::controller::INITIALIZED_LABEL,
    ] {
        labels.remove(internal);
    }
    let status = node.status.clone().unwrap_or_default();
    let mut claim = NodeClaim::new(&claim_name, Default::default());
    claim.metadata.labels = Some(labels);
    claim.metadata.creation_timestamp = node.metadata.creation_timestamp.clone();
    claim.metadata.deletion_timestamp = node.metadata.deletion_timestamp.clone();
    claim.status = Some(NodeClaimStatus {
        node_name: node.metadata.name.clone(),
        provider_id: node.spec.as_ref().and_then(|s| s.provider_id.clone()),
        image_id: Some(IMAGE_ID.to_string()),
        capacity: status.capacity.unwrap_or_default(),
        allocatable: status.allocatable.unwrap_or_default(),
        conditions: Vec::new(),
    });
    Ok(claim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Taint;
    use kaito_api::karpenter::{
        NodeClaimResources, NodeClaimSpec, NodeClassReference, NodeSelectorRequirementWithMinValues,
    };

    pub(crate) fn kaito_claim(name: &str, sku: &str) -> NodeClaim {
        let mut claim = NodeClaim::new(
            name,
            NodeClaimSpec {
                taints: vec![Taint {
                    key: "sku".into(),
                    value: Some("gpu".into()),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                }],
                requirements: vec![
                    req(klabels::NODEPOOL, &["kaito"]),
                    req(klabels::INSTANCE_TYPE, &[sku]),
                    req(klabels::OS, &["linux"]),
                    req(klabels::AZURE_SKU_NAME, &[sku]),
                ],
                resources: NodeClaimResources {
                    requests: BTreeMap::from([("storage".to_string(), Quantity("120Gi".into()))]),
                },
                node_class_ref: NodeClassReference {
                    group: "kaito.sh".into(),
                    kind: "KaitoNodeClass".into(),
                    name: "default".into(),
                },
                ..NodeClaimSpec::default()
            },
        );
        claim.metadata.labels = Some(BTreeMap::from([
            (klabels::NODEPOOL.to_string(), "kaito".to_string()),
            ("kaito.sh/workspace".to_string(), "phi".to_string()),
            ("kaito.sh/workspacenamespace".to_string(), "default".to_string()),
        ]));
        claim
    }

    fn req(key: &str, values: &[&str]) -> NodeSelectorRequirementWithMinValues {
        NodeSelectorRequirementWithMinValues {
            key: key.into(),
            operator: "In".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            min_values: None,
        }
    }

    #[test]
    fn node_for_a100_claim() {
        let claim = kaito_claim("wsabc123def", "Standard_NC24ads_A100_v4");
        let (sku, gpu) = check_launchable(&claim, &KwokConfig::default()).expect("launchable");
        let node = build_node(&claim, &sku, gpu).expect("node");
        insta::assert_yaml_snapshot!(node);
    }

    #[test]
    fn node_for_multi_gpu_h100_claim_has_gpu_count_and_memory() {
        let claim = kaito_claim("wsh100", "Standard_ND96isr_H100_v5");
        let (sku, gpu) = check_launchable(&claim, &KwokConfig::default()).expect("launchable");
        let node = build_node(&claim, &sku, gpu).expect("node");
        let labels = node.labels();
        assert_eq!(labels["nvidia.com/gpu.count"], "8");
        assert_eq!(labels["nvidia.com/gpu.memory"], "81920");
        assert_eq!(labels["nvidia.com/gpu.product"], "NVIDIA-H100");
        let status = node.status.expect("status");
        assert_eq!(status.capacity.expect("capacity")["nvidia.com/gpu"], Quantity("8".into()));
        assert_eq!(status.allocatable.expect("allocatable")["cpu"], Quantity("96".into()));
    }

    #[test]
    fn launchability_table() {
        let flagged = KwokConfig {
            unavailable_instance_types: BTreeSet::from(["Standard_NC48ads_A100_v4".to_string()]),
            ..KwokConfig::default()
        };
        let mut annotated = kaito_claim("a", "Standard_NC24ads_A100_v4");
        annotated.metadata.annotations =
            Some(BTreeMap::from([(SIMULATE_FAILURE_ANNOTATION.to_string(), SIMULATE_SKU_UNAVAILABLE.to_string())]));
        let mut no_type = kaito_claim("b", "x");
        no_type.spec.requirements.retain(|r| r.key != klabels::INSTANCE_TYPE && r.key != klabels::AZURE_SKU_NAME);

        let cases: Vec<(&str, NodeClaim, Option<&str>)> = vec![
            ("catalog sku", kaito_claim("c", "Standard_NC24ads_A100_v4"), None),
            (
                "flagged sku",
                kaito_claim("d", "Standard_NC48ads_A100_v4"),
                Some(
                    "insufficient capacity for Standard_NC48ads_A100_v4: instance type Standard_NC48ads_A100_v4 is unavailable in the simulated cloud: choose another instanceType",
                ),
            ),
            (
                "annotation",
                annotated,
                Some(
                    "insufficient capacity for Standard_NC24ads_A100_v4: instance type Standard_NC24ads_A100_v4 is unavailable in the simulated cloud: choose another instanceType",
                ),
            ),
            (
                "unknown sku",
                kaito_claim("e", "Standard_D4s_v3"),
                Some(
                    "insufficient capacity for Standard_D4s_v3: instance type Standard_D4s_v3 not found in the azure GPU SKU catalog: choose another instanceType",
                ),
            ),
            (
                "no instance type",
                no_type,
                Some(
                    "invalid NodeClaim b: no `node.kubernetes.io/instance-type In [...]` requirement names an instance type",
                ),
            ),
        ];
        for (what, claim, want) in cases {
            let got = check_launchable(&claim, &flagged).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), want, "{what}");
        }
    }

    #[test]
    fn vcpus_table() {
        for (sku, want) in [
            ("Standard_NC24ads_A100_v4", Some(24)),
            ("Standard_ND96isr_H100_v5", Some(96)),
            ("Standard_NC6s_v3", Some(6)),
            ("p4d.24xlarge", Some(96)),
            ("g5.xlarge", Some(4)),
            ("weird", None),
        ] {
            assert_eq!(vcpus_from_sku(sku), want, "{sku}");
        }
    }

    #[test]
    fn product_labels_are_valid_label_values() {
        assert_eq!(gpu_product_label("NVIDIA A100"), "NVIDIA-A100");
        assert_eq!(gpu_product_label("NVIDIA H100 (confidential)"), "NVIDIA-H100-confidential");
        assert!(is_label_value(&gpu_product_label("AMD Radeon PRO V620")));
    }

    #[test]
    fn node_round_trips_to_claim() {
        let claim = kaito_claim("wsround", "Standard_NC24ads_A100_v4");
        let (sku, gpu) = check_launchable(&claim, &KwokConfig::default()).expect("launchable");
        let node = build_node(&claim, &sku, gpu).expect("node");
        let back = node_to_claim(&node).expect("claim");
        assert_eq!(back.name_any(), "wsround");
        let status = back.status.expect("status");
        assert_eq!(status.provider_id.as_deref(), Some("kwok://wsround"));
        assert_eq!(status.capacity["ephemeral-storage"], Quantity("120Gi".into()));
        assert!(belongs_to(&node, "wsround"));
        assert!(!belongs_to(&node, "other"));
    }
}
