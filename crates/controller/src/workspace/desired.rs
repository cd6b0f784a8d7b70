//! The objects a Workspace should have (pure): NodeClaims, the inference StatefulSet and its Services.
//!
//! Names, labels, ports and mounts follow upstream KAITO's contract (upstream-kaito.md §2.4.1, §2.6) so
//! tooling written for upstream finds the same objects.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kaito_api::karpenter::{self, NodeClaim};
use kaito_api::labels::{
    ANNOTATION_ENABLE_LB, ANNOTATION_NODE_IMAGE_FAMILY, ANNOTATION_PERFORMANCE_MODE, ANNOTATION_WORKSPACE_REVISION,
    LABEL_KARPENTER_MANAGED_BY, LABEL_KARPENTER_WORKSPACE_NAME, LABEL_KARPENTER_WORKSPACE_NAMESPACE, LABEL_WORKSPACE,
    LABEL_WORKSPACE_NAMESPACE,
};
use kaito_api::v1beta1::{AdapterSpec, Workspace};
use kaito_core::args::{self, ModelSource, TransformersOptions, VllmOptions};
use kaito_core::catalog::Runtime;
use kaito_core::sku::Cloud;
use kube::Resource;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::resolve::{Resolved, Workload, sanitized_match_labels};
use crate::config::{Config, NodeProvisioner};

/// Annotation holding the hash of the desired object, so an unchanged object is not re-applied.
pub const ANNOTATION_DESIRED_HASH: &str = "kaito.sh/desired-hash";
/// Label Kubernetes puts on StatefulSet pods with their ordinal.
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// A desired object could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Workspace has no name or namespace (never true for objects read from the apiserver).
    #[error("the Workspace has no {0}")]
    MissingMetadata(&'static str),
    /// The runtime command line could not be built.
    #[error("inference: {0}")]
    Args(#[from] args::ArgsError),
    /// A built object did not match its Kubernetes type (a bug in this module).
    #[error("building {kind}: {source}")]
    Shape {
        /// Kind being built.
        kind: &'static str,
        /// Deserialization error.
        #[source]
        source: serde_json::Error,
    },
}

/// Name and namespace of a Workspace.
pub struct Names {
    /// Workspace name (also StatefulSet and Service name).
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

impl Names {
    /// Reads them from the object.
    pub fn of(ws: &Workspace) -> Result<Self, BuildError> {
        Ok(Names {
            name: ws.metadata.name.clone().ok_or(BuildError::MissingMetadata("name"))?,
            namespace: ws.metadata.namespace.clone().ok_or(BuildError::MissingMetadata("namespace"))?,
        })
    }

    /// The headless Service the Ray workers find the leader through.
    pub fn headless(&self) -> String {
        format!("{}-headless", self.name)
    }
}

fn typed<T: serde::de::DeserializeOwned>(kind: &'static str, value: Value) -> Result<T, BuildError> {
    serde_json::from_value(value).map_err(|source| BuildError::Shape { kind, source })
}

fn owner(ws: &Workspace) -> Option<OwnerReference> {
    ws.controller_owner_ref(&())
}

/// A stable short hash of any serializable value.
pub fn hash_of<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Name of a new NodeClaim: `ws` + 9 hex characters of a hash of the Workspace and a unique seed
/// (upstream uses the time in nanoseconds). 11 lowercase characters fit AKS agent-pool naming.
pub fn node_claim_name(names: &Names, seed: u128) -> String {
    let digest = Sha256::digest(format!("{}{}{}", names.namespace, names.name, seed).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("ws{}", &hex[..9])
}

/// Labels on every NodeClaim (and so every Node) of a Workspace.
pub fn node_claim_labels(ws: &Workspace, names: &Names) -> BTreeMap<String, String> {
    let mut labels = sanitized_match_labels(ws);
    labels.insert(karpenter::labels::NODEPOOL.into(), karpenter::labels::KAITO_NODEPOOL.into());
    labels.insert(LABEL_WORKSPACE.into(), names.name.clone());
    labels.insert(LABEL_WORKSPACE_NAMESPACE.into(), names.namespace.clone());
    labels
}

/// One NodeClaim for a Workspace (upstream-kaito.md §2.4.1).
pub fn node_claim(
    ws: &Workspace,
    resolved: &Resolved,
    config: &Config,
    claim_name: &str,
) -> Result<NodeClaim, BuildError> {
    let names = Names::of(ws)?;
    let sku = resolved.instance_type.clone().unwrap_or_default();
    let image_family = ws
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_NODE_IMAGE_FAMILY))
        .map(|f| f.to_ascii_lowercase())
        .unwrap_or_else(|| "ubuntu".into());
    let mut requirements = vec![
        json!({"key": karpenter::labels::NODEPOOL, "operator": "In", "values": [karpenter::labels::KAITO_NODEPOOL]}),
        json!({"key": karpenter::labels::INSTANCE_TYPE, "operator": "In", "values": [sku]}),
        json!({"key": karpenter::labels::OS, "operator": "In", "values": ["linux"]}),
    ];
    match config.cloud {
        Cloud::Azure => {
            requirements.push(json!({"key": karpenter::labels::AZURE_SKU_NAME, "operator": "In", "values": [sku]}))
        }
        Cloud::Aws => {
            requirements.push(json!({"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["0"]}))
        }
        Cloud::Arc => {}
    }
    typed(
        "NodeClaim",
        json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {
                "name": claim_name,
                "labels": node_claim_labels(ws, &names),
                "annotations": {
                    karpenter::labels::DO_NOT_DISRUPT: "true",
                    ANNOTATION_NODE_IMAGE_FAMILY: image_family,
                },
            },
            "spec": {
                "nodeClassRef": config.node_class_ref,
                "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                "requirements": requirements,
                "resources": {"requests": {"storage": format!("{}Gi", resolved.disk_gib)}},
            }
        }),
    )
}

/// Name of the Karpenter NodePool of a Workspace: `<namespace>-<name>`, cut to 63 characters with a hash
/// suffix when longer, so two long names never collide.
pub fn node_pool_name(names: &Names) -> String {
    let full = format!("{}-{}", names.namespace, names.name);
    if full.len() <= 63 {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}", full[..53].trim_end_matches('-'), &hex[..9])
}

/// Labels that mark the NodePool, its NodeClaims and its Nodes as this Workspace's (Karpenter mode).
pub fn node_pool_ownership(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_KARPENTER_WORKSPACE_NAME.to_string(), names.name.clone()),
        (LABEL_KARPENTER_WORKSPACE_NAMESPACE.to_string(), names.namespace.clone()),
    ])
}

/// The Karpenter NodePool of a Workspace (upstream-kaito.md §2.4.2): a static pool of `targetNodeCount` nodes
/// of the Workspace's instance type, tainted for GPU work, never consolidated away.
pub fn node_pool(ws: &Workspace, resolved: &Resolved, config: &Config) -> Result<Value, BuildError> {
    let names = Names::of(ws)?;
    let sku = resolved.instance_type.clone().unwrap_or_default();
    let ownership = node_pool_ownership(&names);
    let mut template_labels = sanitized_match_labels(ws);
    template_labels.extend(ownership.clone());
    let mut pool_labels = ownership;
    pool_labels.insert(LABEL_KARPENTER_MANAGED_BY.into(), "kaito".into());
    let mut requirements = vec![json!({"key": karpenter::labels::INSTANCE_TYPE, "operator": "In", "values": [sku]})];
    if config.cloud == Cloud::Azure {
        requirements
            .push(json!({"key": "karpenter.azure.com/placement-scope", "operator": "In", "values": ["regional"]}));
    }
    Ok(json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": node_pool_name(&names), "labels": pool_labels},
        "spec": {
            "replicas": resolved.target_nodes,
            "template": {
                "metadata": {"labels": template_labels},
                "spec": {
                    "nodeClassRef": config.node_class_ref,
                    "requirements": requirements,
                    "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                    "expireAfter": "Never",
                }
            },
            "disruption": {"consolidateAfter": "0s", "budgets": [{"nodes": "1", "reasons": ["Drifted"]}]},
        }
    }))
}

/// The two Services of a Workspace: `<ws>` (the leader pod, port 80 → 5000) and `<ws>-headless`.
pub fn services(ws: &Workspace, resolved: &Resolved) -> Result<[Service; 2], BuildError> {
    let names = Names::of(ws)?;
    let load_balancer =
        ws.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_ENABLE_LB)).map(String::as_str) == Some("True");
    let is_vllm = matches!(resolved.workload, Workload::Preset { runtime: Runtime::Vllm, .. });
    let mut ports = vec![
        json!({"name": "http", "port": 80, "targetPort": args::INFERENCE_PORT, "protocol": "TCP"}),
        json!({"name": "ray", "port": args::RAY_PORT, "targetPort": args::RAY_PORT, "protocol": "TCP"}),
        json!({"name": "dashboard", "port": 8265, "targetPort": 8265, "protocol": "TCP"}),
    ];
    if is_vllm && !load_balancer {
        ports.push(json!({"name": "kv-events", "port": args::KV_EVENTS_PORT, "targetPort": args::KV_EVENTS_PORT, "protocol": "TCP"}));
    }
    let main = typed(
        "Service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": names.name, "namespace": names.namespace, "ownerReferences": [owner(ws)],
                         "labels": {LABEL_WORKSPACE: names.name}},
            "spec": {
                "type": if load_balancer { "LoadBalancer" } else { "ClusterIP" },
                "selector": {LABEL_WORKSPACE: names.name, "statefulset.kubernetes.io/pod-name": format!("{}-0", names.name)},
                "ports": ports,
                "publishNotReadyAddresses": true,
            }
        }),
    )?;
    let headless = typed(
        "Service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": names.headless(), "namespace": names.namespace, "ownerReferences": [owner(ws)],
                         "labels": {LABEL_WORKSPACE: names.name}},
            "spec": {
                "clusterIP": "None",
                "selector": {LABEL_WORKSPACE: names.name},
                "publishNotReadyAddresses": true,
            }
        }),
    )?;
    Ok([main, headless])
}

/// Node affinity: every sanitized matchLabel, plus (when KAITO provisions the nodes) the ownership labels
/// the provisioned nodes carry, so pods never land on another Workspace's GPUs.
fn node_affinity(ws: &Workspace, names: &Names, config: &Config) -> Value {
    let mut expressions: Vec<Value> = sanitized_match_labels(ws)
        .into_iter()
        .map(|(k, v)| json!({"key": k, "operator": "In", "values": [v]}))
        .collect();
    let ownership = match config.node_provisioner {
        NodeProvisioner::AzureGpuProvisioner => BTreeMap::from([
            (LABEL_WORKSPACE.to_string(), names.name.clone()),
            (LABEL_WORKSPACE_NAMESPACE.to_string(), names.namespace.clone()),
        ]),
        NodeProvisioner::Karpenter => node_pool_ownership(names),
        NodeProvisioner::Byo => BTreeMap::new(),
    };
    for (key, value) in ownership {
        expressions.push(json!({"key": key, "operator": "In", "values": [value]}));
    }
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": expressions}]
    }}})
}

fn default_tolerations() -> Vec<Value> {
    vec![
        json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}),
    ]
}

/// Seconds the startup probe allows: 15 min + 18 s per GiB of weights, clamped to [30 min, 180 min].
pub fn startup_timeout_seconds(weight_gib: f64) -> u64 {
    let seconds = 15.0 * 60.0 + 18.0 * weight_gib;
    seconds.clamp(30.0 * 60.0, 180.0 * 60.0) as u64
}

/// The inference StatefulSet (upstream-kaito.md §2.6.2, §2.6.3).
pub fn statefulset(
    ws: &Workspace,
    resolved: &Resolved,
    config: &Config,
    revision: Option<i64>,
) -> Result<StatefulSet, BuildError> {
    let names = Names::of(ws)?;
    let selector = json!({LABEL_WORKSPACE: names.name});
    let pod_template = match &resolved.workload {
        Workload::Template => template_pod(ws, &names, config)?,
        Workload::Preset { preset, runtime, plan } => {
            preset_pod(ws, &names, resolved, config, preset, *runtime, plan.as_deref())?
        }
    };
    let mut annotations = BTreeMap::new();
    if let Some(revision) = revision {
        annotations.insert(ANNOTATION_WORKSPACE_REVISION.to_string(), revision.to_string());
    }
    let mut sts = typed::<StatefulSet>(
        "StatefulSet",
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": names.name, "namespace": names.namespace, "ownerReferences": [owner(ws)],
                         "labels": selector, "annotations": annotations},
            "spec": {
                "replicas": resolved.target_nodes,
                "podManagementPolicy": "Parallel",
                "serviceName": names.headless(),
                "selector": {"matchLabels": selector},
                "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Retain", "whenDeleted": "Delete"},
                "template": pod_template,
            }
        }),
    )?;
    let hash = hash_of(&sts.spec);
    sts.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(ANNOTATION_DESIRED_HASH.into(), hash);
    Ok(sts)
}

/// A user template, with KAITO's selector labels, affinity and tolerations.
fn template_pod(ws: &Workspace, names: &Names, config: &Config) -> Result<Value, BuildError> {
    let template: PodTemplateSpec = ws.spec.inference.as_ref().and_then(|i| i.template.clone()).unwrap_or_default();
    let mut value =
        serde_json::to_value(&template).map_err(|source| BuildError::Shape { kind: "PodTemplate", source })?;
    value["metadata"]["labels"][LABEL_WORKSPACE] = json!(names.name);
    value["spec"]["affinity"] = node_affinity(ws, names, config);
    let mut tolerations = value["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    tolerations.extend(default_tolerations());
    value["spec"]["tolerations"] = json!(tolerations);
    Ok(value)
}

fn preset_pod(
    ws: &Workspace,
    names: &Names,
    resolved: &Resolved,
    config: &Config,
    preset: &kaito_core::Preset,
    runtime: Runtime,
    plan: Option<&kaito_core::Plan>,
) -> Result<Value, BuildError> {
    let inference = ws.spec.inference.as_ref();
    let adapters = inference.and_then(|i| i.adapters.clone()).unwrap_or_default();
    let config_map = inference.and_then(|i| i.config.clone());
    let served_name = preset.name.to_ascii_lowercase();
    let leader = args::leader_address(&names.name, &names.namespace);
    let multi_node = plan.is_some_and(|p| p.is_multi_node()) && runtime == Runtime::Vllm;
    let command = match (runtime, plan) {
        (Runtime::Vllm, Some(plan)) => {
            let mut opts = VllmOptions::new(&served_name);
            opts.adapters_present = !adapters.is_empty();
            opts.config_file = config_map.as_ref().map(|_| args::CONFIG_FILE_PATH);
            opts.model_source = ModelSource::HuggingFace;
            opts.leader_address = Some(&leader);
            if let Some(mode) = ws.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_PERFORMANCE_MODE)) {
                opts.performance_mode = mode.parse()?;
            }
            args::vllm_command(preset, plan, &opts)?
        }
        // Without a known GPU shape (an unknown SKU) vLLM sizes itself; transformers needs no plan.
        (Runtime::Vllm, None) => vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "python3 {} --model={} --served-model-name={} --download-dir={} --port={}",
                args::VLLM_ENTRYPOINT,
                preset.hf_id,
                served_name,
                args::WEIGHTS_DIR,
                args::INFERENCE_PORT
            ),
        ],
        (Runtime::Transformers, _) => args::transformers_command(preset, &TransformersOptions::new(&served_name))?,
    };

    let mut env = vec![json!({"name": "VLLM_USE_FLASHINFER_SAMPLER", "value": "0"})];
    env.push(json!({"name": "VLLM_USE_DEEP_GEMM", "value": if preset.vllm.deep_gemm { "1" } else { "0" }}));
    if let Some(secret) = inference
        .and_then(|i| i.preset.as_ref())
        .and_then(|p| p.preset_options.as_ref())
        .and_then(|o| o.model_access_secret.clone())
    {
        env.push(json!({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "HF_TOKEN", "optional": true}}}));
    }
    if multi_node {
        env.push(json!({"name": "POD_INDEX", "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.labels['{POD_INDEX_LABEL}']")}}}));
    }
    for adapter in &adapters {
        if let (Some(name), Some(strength)) = (adapter.source.as_ref().and_then(|s| s.name.clone()), &adapter.strength)
        {
            env.push(json!({"name": name, "value": strength}));
        }
    }

    let mut mounts = vec![
        json!({"name": "dshm", "mountPath": "/dev/shm"}),
        json!({"name": "model-weights-volume", "mountPath": args::WEIGHTS_DIR}),
    ];
    let mut volumes = vec![
        json!({"name": "dshm", "emptyDir": {"medium": "Memory"}}),
        json!({"name": "model-weights-volume", "emptyDir": {}}),
    ];
    if let Some(config_map) = &config_map {
        mounts.push(json!({"name": "config-volume", "mountPath": args::CONFIG_DIR}));
        volumes.push(json!({"name": "config-volume", "configMap": {"name": config_map}}));
    }
    let adapter_parts = adapter_parts(&adapters);
    mounts.extend(adapter_parts.mounts);
    volumes.extend(adapter_parts.volumes);

    let gpus = resolved.gpus_per_node.max(1);
    let mut ports = vec![json!({"name": "http", "containerPort": args::INFERENCE_PORT, "protocol": "TCP"})];
    if runtime == Runtime::Vllm {
        ports.push(json!({"name": "kv-events", "containerPort": args::KV_EVENTS_PORT, "protocol": "TCP"}));
    }
    let startup_seconds = startup_timeout_seconds(preset.weight_gib());
    let http_health = json!({"path": "/health", "port": args::INFERENCE_PORT});
    let (startup, liveness, readiness) = if multi_node {
        let check = |kind: &str| json!({"command": ["python3", "/workspace/vllm/multi-node-health-check.py", kind, format!("--leader-address={leader}")]});
        let liveness = json!({"exec": check("liveness"), "initialDelaySeconds": 60, "periodSeconds": 10,
                              "timeoutSeconds": 5, "failureThreshold": 1});
        let startup = json!({"exec": check("readiness"), "periodSeconds": 10,
                             "failureThreshold": startup_seconds.div_ceil(10)});
        let readiness = json!({"exec": check("readiness"), "periodSeconds": 10});
        (startup, liveness, readiness)
    } else {
        (
            json!({"httpGet": http_health, "periodSeconds": 10, "failureThreshold": startup_seconds.div_ceil(10)}),
            json!({"httpGet": http_health, "periodSeconds": 10, "failureThreshold": 3}),
            json!({"httpGet": http_health, "initialDelaySeconds": 30, "periodSeconds": 10}),
        )
    };

    let image_pull_secrets: Vec<Value> = adapters
        .iter()
        .filter_map(|a| a.source.as_ref())
        .flat_map(|s| s.image_pull_secrets.clone().unwrap_or_default())
        .map(|name| json!({"name": name}))
        .collect();

    let mut pod = json!({
        "metadata": {"labels": {LABEL_WORKSPACE: names.name}},
        "spec": {
            "affinity": node_affinity(ws, names, config),
            "tolerations": default_tolerations(),
            "imagePullSecrets": image_pull_secrets,
            "containers": [{
                "name": names.name,
                "image": config.inference_image,
                "command": command,
                "resources": {"requests": {"nvidia.com/gpu": gpus.to_string()}, "limits": {"nvidia.com/gpu": gpus.to_string()}},
                "ports": ports,
                "env": env,
                "volumeMounts": mounts,
                "startupProbe": startup,
                "livenessProbe": liveness,
                "readinessProbe": readiness,
            }],
            "volumes": volumes,
        }
    });
    if !adapter_parts.init_containers.is_empty() {
        pod["spec"]["initContainers"] = json!(adapter_parts.init_containers);
    }
    Ok(pod)
}

/// Image of the init containers that copy an image adapter's `/data` into the adapter volume.
pub const ADAPTER_PULLER_IMAGE: &str = "mcr.microsoft.com/aks/skopeo:1.14.4-6";
/// Copies the image's layers to a directory, unpacks them, and keeps the image's `/data`. The first
/// pull secret that is mounted is used (the controller projects every one the adapter names).
const PULLER_SCRIPT: &str = r#"set -eu
auth=""
for f in "$AUTH_DIR"/*.json; do if [ -f "$f" ]; then auth="--authfile=$f"; break; fi; done
skopeo copy $auth "docker://$IMAGE" dir:/tmp/image
mkdir -p /tmp/rootfs "$TARGET"
for layer in /tmp/image/*; do case "$layer" in *manifest.json|*/version) ;; *) tar -xf "$layer" -C /tmp/rootfs 2>/dev/null || true ;; esac; done
if [ ! -d /tmp/rootfs/data ]; then echo "image $IMAGE has no /data directory" >&2; exit 1; fi
cp -r /tmp/rootfs/data/. "$TARGET"/"#;

/// What LoRA adapters add to the inference pod.
#[derive(Debug, Default)]
struct AdapterParts {
    init_containers: Vec<Value>,
    volumes: Vec<Value>,
    mounts: Vec<Value>,
}

/// A DNS label (container and volume names) made from a DNS subdomain (adapter names may hold dots).
fn dns_label(name: &str) -> String {
    let label: String = name.chars().map(|c| if c == '.' { '-' } else { c }).take(63).collect();
    label.trim_end_matches('-').to_string()
}

/// Each adapter ends up in `/mnt/adapter/<name>`, where the inference server loads every
/// sub-directory as a LoRA module named after it: an image adapter is copied there by a
/// `puller-<name>` init container, a volume adapter is mounted there read-only. (Admission refuses
/// adapters from URLs, as upstream does.)
fn adapter_parts(adapters: &[AdapterSpec]) -> AdapterParts {
    let mut parts = AdapterParts::default();
    if adapters.is_empty() {
        return parts;
    }
    let shared = json!({"name": "adapter-volume", "mountPath": args::ADAPTERS_DIR});
    parts.mounts.push(shared.clone());
    parts.volumes.push(json!({"name": "adapter-volume", "emptyDir": {}}));
    for source in adapters.iter().filter_map(|a| a.source.as_ref()) {
        let Some(name) = source.name.as_deref() else {
            continue;
        };
        let label = dns_label(name);
        let target = format!("{}/{name}", args::ADAPTERS_DIR);
        if let Some(image) = &source.image {
            let auth_dir = format!("/root/.docker/config.d/{name}-inference-adapter");
            let mut mounts = vec![shared.clone()];
            let secrets = source.image_pull_secrets.clone().unwrap_or_default();
            if !secrets.is_empty() {
                let volume = dns_label(&format!("{label}-inference-adapter"));
                let sources: Vec<Value> = secrets
                    .iter()
                    .map(|s| json!({"secret": {"name": s, "items": [{"key": ".dockerconfigjson", "path": format!("{s}.json")}]}}))
                    .collect();
                parts.volumes.push(json!({"name": volume, "projected": {"sources": sources}}));
                mounts.push(json!({"name": volume, "mountPath": auth_dir, "readOnly": true}));
            }
            parts.init_containers.push(json!({
                "name": dns_label(&format!("puller-{label}")),
                "image": ADAPTER_PULLER_IMAGE,
                "command": ["/bin/sh", "-c", PULLER_SCRIPT],
                "env": [
                    {"name": "IMAGE", "value": image},
                    {"name": "TARGET", "value": target},
                    {"name": "AUTH_DIR", "value": auth_dir},
                ],
                "volumeMounts": mounts,
            }));
        } else if let Some(Value::Object(volume_source)) = &source.volume_source {
            let volume = dns_label(&format!("adapter-{label}"));
            let mut volume_spec = volume_source.clone();
            volume_spec.insert("name".into(), json!(volume));
            parts.volumes.push(Value::Object(volume_spec));
            parts.mounts.push(json!({"name": volume, "mountPath": target, "readOnly": true}));
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::resolve::resolve;

    fn workspace(yaml: &str) -> Workspace {
        let mut ws: Workspace = serde_saphyr::from_str(yaml).expect("test workspace parses");
        ws.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
        ws
    }

    fn example(path: &str) -> Workspace {
        let text = std::fs::read_to_string(format!("{}/../../examples/{path}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut ws = workspace(&text);
        ws.metadata.namespace = Some("default".into());
        ws
    }

    fn objects(ws: &Workspace, config: &Config) -> Value {
        let resolved = resolve(ws, config, None, None).expect("resolves");
        let names = Names::of(ws).unwrap();
        let claim = node_claim(ws, &resolved, config, &node_claim_name(&names, 0)).unwrap();
        json!({
            "nodeClaim": claim,
            "services": services(ws, &resolved).unwrap(),
            "statefulSet": statefulset(ws, &resolved, config, Some(1)).unwrap(),
        })
    }

    #[test]
    fn single_node_preset_objects() {
        let ws = example("inference/kaito_workspace_phi_4_mini.yaml");
        insta::assert_yaml_snapshot!(objects(&ws, &Config::default()));
    }

    #[test]
    fn lora_adapters_from_images_and_a_volume() {
        let ws = workspace(
            r#"
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata: {name: phi-4-adapters, namespace: default}
resource:
  instanceType: Standard_NC24ads_A100_v4
  labelSelector: {matchLabels: {apps: phi-4}}
inference:
  preset: {name: phi-4-mini-instruct}
  adapters:
    - source:
        name: falcon.adapter
        image: myregistry.azurecr.io/adapters/falcon:v1
        imagePullSecrets: [acr-secret, backup-secret]
    - source:
        name: public-adapter
        image: myregistry.azurecr.io/adapters/public:v2
    - source:
        name: pvc-adapter
        volumeSource: {persistentVolumeClaim: {claimName: adapters}}
"#,
        );
        let built = objects(&ws, &Config::default());
        let pod = &built["statefulSet"]["spec"]["template"]["spec"];
        let names: Vec<&str> =
            pod["initContainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["puller-falcon-adapter", "puller-public-adapter"]);
        let mounts = &pod["containers"][0]["volumeMounts"];
        assert!(mounts.as_array().unwrap().iter().any(|m| m["mountPath"] == "/mnt/adapter/pvc-adapter"));
        insta::assert_yaml_snapshot!(json!({
            "initContainers": pod["initContainers"],
            "volumes": pod["volumes"],
            "volumeMounts": mounts,
            "env": pod["containers"][0]["env"],
            "imagePullSecrets": pod["imagePullSecrets"],
        }));
    }

    #[test]
    fn dns_labels_from_adapter_names() {
        assert_eq!(dns_label("falcon.adapter"), "falcon-adapter");
        assert_eq!(dns_label(&format!("puller-{}", "a".repeat(80))).len(), 63);
        assert_eq!(dns_label("x.-"), "x");
    }

    #[test]
    fn multi_node_preset_objects() {
        let mut ws = example("inference/kaito_workspace_phi_4_mini.yaml");
        ws.spec.inference.as_mut().unwrap().preset.as_mut().unwrap().name = "llama-3.3-70b-instruct".into();
        let built = objects(&ws, &Config::default());
        let replicas = built["statefulSet"]["spec"]["replicas"].as_u64().unwrap();
        assert!(replicas > 1);
        let script = built["statefulSet"]["spec"]["template"]["spec"]["containers"][0]["command"][2].as_str().unwrap();
        assert!(
            script.contains(
                "--ray_address=workspace-phi-4-mini-0.workspace-phi-4-mini-headless.default.svc.cluster.local"
            ),
            "{script}"
        );
        insta::assert_yaml_snapshot!(built["statefulSet"]);
    }

    #[test]
    fn karpenter_mode_node_pool() {
        let ws = example("inference/kaito_workspace_phi_4_mini.yaml");
        let config = Config { node_provisioner: NodeProvisioner::Karpenter, ..Config::default() };
        let resolved = resolve(&ws, &config, None, None).unwrap();
        insta::assert_yaml_snapshot!(node_pool(&ws, &resolved, &config).unwrap());
        let long = Names { name: "w".repeat(60), namespace: "team-a".into() };
        assert_eq!(node_pool_name(&long).len(), 63);
        assert_ne!(node_pool_name(&long), node_pool_name(&Names { name: "w".repeat(61), namespace: "team-a".into() }));
    }

    #[test]
    fn node_claim_names_are_eleven_lowercase_characters() {
        let names = Names { name: "w".into(), namespace: "n".into() };
        let a = node_claim_name(&names, 1);
        assert_eq!(a.len(), 11);
        assert!(a.starts_with("ws") && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(a, node_claim_name(&names, 2));
    }

    #[test]
    fn startup_timeout_is_clamped() {
        assert_eq!(startup_timeout_seconds(1.0), 1800);
        assert_eq!(startup_timeout_seconds(100.0), 900 + 1800);
        assert_eq!(startup_timeout_seconds(10_000.0), 10_800);
    }

    #[test]
    fn the_desired_hash_changes_with_the_spec() {
        let ws = example("inference/kaito_workspace_phi_4_mini.yaml");
        let config = Config::default();
        let resolved = resolve(&ws, &config, None, None).unwrap();
        let a = statefulset(&ws, &resolved, &config, Some(1)).unwrap();
        let other = Config { inference_image: "example.com/other:1".into(), ..Config::default() };
        let b = statefulset(&ws, &resolved, &other, Some(1)).unwrap();
        let hash = |s: &StatefulSet| s.metadata.annotations.as_ref().unwrap()[ANNOTATION_DESIRED_HASH].clone();
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a), hash(&statefulset(&ws, &resolved, &config, Some(1)).unwrap()));
    }
}
