//! The node provisioner (kwok backend) against the local control plane, run in-process: KAITO-shaped
//! NodeClaims become Ready GPU nodes that run pods, go away when deleted, fail visibly when the SKU is
//! unavailable, and survive a provisioner crash without duplicate nodes.
//!
//! Every test starts its own provisioner that only watches NodeClaims labelled with the test's run id, so the
//! tests (and their cluster-scoped objects) do not see each other.
#![cfg(feature = "cluster")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kaito_api::karpenter::{NodeClaim, conditions as types};
use kaito_provisioner::kwok::{NODECLAIM_LABEL, SIMULATE_FAILURE_ANNOTATION};
use kaito_provisioner::{ControllerOptions, KwokConfig, run_kwok};
use kaito_tests::{client, delete_namespace, eventually, install_karpenter_crds, namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

const RUN_LABEL: &str = "kaito.sh/test-run";
const A100: &str = "Standard_NC24ads_A100_v4";

/// A name unique across tests and test runs (NodeClaims and Nodes are cluster-scoped).
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}{:x}{}", (nanos >> 8) & 0xff_ffff, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Starts an in-process provisioner that serves only NodeClaims labelled `kaito.sh/test-run=<run>`.
fn start(client: &Client, run: &str, kwok: KwokConfig) -> JoinHandle<()> {
    let options = ControllerOptions {
        claim_selector: Some(format!("{RUN_LABEL}={run}")),
        gc_interval: None,
        ..ControllerOptions::default()
    };
    tokio::spawn(run_kwok(client.clone(), kwok, options, std::future::pending()))
}

/// The NodeClaim KAITO's Workspace controller creates (upstream-kaito.md §2.4.1).
fn kaito_claim(name: &str, run: &str, sku: &str) -> anyhow::Result<NodeClaim> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {
                "karpenter.sh/nodepool": "kaito",
                "kaito.sh/workspace": "phi-4",
                "kaito.sh/workspacenamespace": "default",
                RUN_LABEL: run,
            },
            "annotations": {"karpenter.sh/do-not-disrupt": "true", "kaito.sh/node-image-family": "ubuntu"},
        },
        "spec": {
            "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
            "requirements": [
                {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [sku]},
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                {"key": "karpenter.azure.com/sku-name", "operator": "In", "values": [sku]},
            ],
            "resources": {"requests": {"storage": "120Gi"}},
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
        },
    }))?)
}

async fn setup() -> anyhow::Result<(Client, Api<NodeClaim>, Api<Node>)> {
    let client = client().await?;
    install_karpenter_crds(&client).await?;
    Ok((client.clone(), Api::all(client.clone()), Api::all(client)))
}

async fn wait_ready(claims: &Api<NodeClaim>, name: &str) -> anyhow::Result<NodeClaim> {
    eventually(&format!("NodeClaim {name} Ready"), Duration::from_secs(30), || async {
        Ok(claims.get_opt(name).await?.filter(|c| c.condition_is_true(types::READY)))
    })
    .await
}

async fn nodes_of(nodes: &Api<Node>, claim: &str) -> anyhow::Result<Vec<Node>> {
    Ok(nodes.list(&ListParams::default().labels(&format!("{NODECLAIM_LABEL}={claim}"))).await?.items)
}

async fn wait_gone(claims: &Api<NodeClaim>, nodes: &Api<Node>, name: &str) -> anyhow::Result<()> {
    eventually(&format!("NodeClaim {name} and its Node gone"), Duration::from_secs(30), || async {
        let gone = claims.get_opt(name).await?.is_none() && nodes.get_opt(name).await?.is_none();
        Ok(gone.then_some(()))
    })
    .await
}

#[tokio::test]
async fn kaito_nodeclaim_becomes_a_ready_gpu_node_that_runs_pods_and_is_deleted_with_the_claim() -> anyhow::Result<()> {
    let (client, claims, nodes) = setup().await?;
    let run = unique("life");
    let provisioner = start(&client, &run, KwokConfig::default());
    let name = unique("ws");
    claims.create(&PostParams::default(), &kaito_claim(&name, &run, A100)?).await?;

    let claim = wait_ready(&claims, &name).await?;
    assert!(claim.finalizers().contains(&"karpenter.sh/termination".to_string()));
    let status = claim.status.clone().unwrap_or_default();
    assert_eq!(status.provider_id.as_deref(), Some(format!("kwok://{name}").as_str()));
    assert_eq!(status.node_name.as_deref(), Some(name.as_str()));
    assert_eq!(status.capacity.get("nvidia.com/gpu").map(|q| q.0.as_str()), Some("1"));
    assert_eq!(status.allocatable.get("ephemeral-storage").map(|q| q.0.as_str()), Some("120Gi"));
    assert!(status.image_id.is_some());
    for t in [types::LAUNCHED, types::REGISTERED, types::INITIALIZED, types::READY] {
        let c = claim.condition(t).ok_or_else(|| anyhow::anyhow!("no {t} condition"))?;
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", t), "{t}");
        assert_eq!(c.observed_generation, claim.metadata.generation, "{t}");
    }
    assert_eq!(claim.labels().get("node.kubernetes.io/instance-type").map(String::as_str), Some(A100));

    let node = nodes.get(&name).await?;
    let labels = node.labels();
    for (k, v) in [
        ("kaito.sh/workspace", "phi-4"),
        ("karpenter.sh/nodepool", "kaito"),
        ("karpenter.sh/registered", "true"),
        ("karpenter.sh/initialized", "true"),
        ("kaito.sh/machine-type", "gpu"),
        ("node.kubernetes.io/instance-type", A100),
        ("nvidia.com/gpu.present", "true"),
        ("nvidia.com/gpu.count", "1"),
        ("nvidia.com/gpu.memory", "81920"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "node label {k}");
    }
    let taints: Vec<String> =
        node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default().into_iter().map(|t| t.key).collect();
    assert_eq!(taints, vec!["sku".to_string()], "only the claim's taint is left");

    // A GPU pod tolerating sku=gpu is scheduled by the real scheduler and run by kwok.
    let ns = namespace(&client, "prov").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gpu"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": name},
            "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            "containers": [{
                "name": "main",
                "image": "fake",
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }],
        },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    eventually("the GPU pod running on the provisioned node", Duration::from_secs(30), || async {
        let pod = pods.get("gpu").await?;
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str());
        Ok((running && on_node).then_some(()))
    })
    .await?;

    claims.delete(&name, &DeleteParams::default()).await?;
    wait_gone(&claims, &nodes, &name).await?;
    provisioner.abort();
    delete_namespace(&client, &ns).await;
    Ok(())
}

async fn assert_refused(claims: &Api<NodeClaim>, nodes: &Api<Node>, name: &str, sku: &str) -> anyhow::Result<()> {
    let claim = eventually(&format!("NodeClaim {name} Launched=False"), Duration::from_secs(30), || async {
        Ok(claims.get_opt(name).await?.filter(|c| c.condition(types::LAUNCHED).is_some_and(|c| c.status == "False")))
    })
    .await?;
    let launched = claim.condition(types::LAUNCHED).cloned().ok_or_else(|| anyhow::anyhow!("no Launched"))?;
    assert_eq!(launched.reason, "InsufficientCapacity");
    assert_eq!(
        launched.message,
        format!("instance type {sku} is unavailable in the simulated cloud: choose another instanceType")
    );
    let ready = claim.condition(types::READY).cloned().ok_or_else(|| anyhow::anyhow!("no Ready"))?;
    assert_eq!(ready.status, "False");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(nodes_of(nodes, name).await?.is_empty(), "no Node for a refused claim");
    // A refused claim can still be deleted: there is nothing to tear down.
    claims.delete(name, &DeleteParams::default()).await?;
    wait_gone(claims, nodes, name).await
}

#[tokio::test]
async fn sku_unavailable_by_annotation_gives_insufficient_capacity_and_no_node() -> anyhow::Result<()> {
    let (client, claims, nodes) = setup().await?;
    let run = unique("anno");
    let provisioner = start(&client, &run, KwokConfig::default());
    let name = unique("ws");
    let mut claim = kaito_claim(&name, &run, A100)?;
    claim.annotations_mut().insert(SIMULATE_FAILURE_ANNOTATION.to_string(), "sku-unavailable".to_string());
    claims.create(&PostParams::default(), &claim).await?;
    assert_refused(&claims, &nodes, &name, A100).await?;
    provisioner.abort();
    Ok(())
}

#[tokio::test]
async fn sku_unavailable_by_flag_gives_insufficient_capacity_and_no_node() -> anyhow::Result<()> {
    let (client, claims, nodes) = setup().await?;
    let run = unique("flag");
    let sku = "Standard_NC48ads_A100_v4";
    let kwok = KwokConfig { unavailable_instance_types: BTreeSet::from([sku.to_string()]), ..KwokConfig::default() };
    let provisioner = start(&client, &run, kwok);
    let name = unique("ws");
    claims.create(&PostParams::default(), &kaito_claim(&name, &run, sku)?).await?;
    assert_refused(&claims, &nodes, &name, sku).await?;
    provisioner.abort();
    Ok(())
}

#[tokio::test]
async fn restart_mid_launch_leaves_exactly_one_node_per_claim() -> anyhow::Result<()> {
    let (client, claims, nodes) = setup().await?;
    let run = unique("rst");
    // A launch delay keeps creates in flight when the first provisioner "crashes".
    let slow = KwokConfig { launch_delay: Duration::from_millis(700), ..KwokConfig::default() };
    let first = start(&client, &run, slow);
    let names: Vec<String> = (0..4).map(|_| unique("ws")).collect();
    for name in &names {
        claims.create(&PostParams::default(), &kaito_claim(name, &run, A100)?).await?;
    }
    eventually("some Node launched before the crash", Duration::from_secs(20), || async {
        let launched = nodes.list(&ListParams::default().labels("kaito.sh/workspace=phi-4")).await?;
        Ok(launched.items.iter().any(|n| names.iter().any(|c| n.name_any() == *c)).then_some(()))
    })
    .await?;
    first.abort();
    let _ = first.await;

    let second = start(&client, &run, KwokConfig::default());
    let mut by_claim = BTreeMap::new();
    for name in &names {
        let claim = wait_ready(&claims, name).await?;
        let provider_id = claim.status.and_then(|s| s.provider_id).unwrap_or_default();
        let owned = nodes_of(&nodes, name).await?;
        assert_eq!(owned.len(), 1, "exactly one Node for {name}");
        assert_eq!(owned[0].spec.as_ref().and_then(|s| s.provider_id.clone()).unwrap_or_default(), provider_id);
        by_claim.insert(name.clone(), owned[0].name_any());
    }
    assert_eq!(by_claim.len(), names.len());

    for name in &names {
        claims.delete(name, &DeleteParams::default()).await?;
    }
    for name in &names {
        wait_gone(&claims, &nodes, name).await?;
    }
    second.abort();
    Ok(())
}

#[tokio::test]
async fn node_deleted_under_a_registered_claim_deletes_the_claim() -> anyhow::Result<()> {
    let (client, claims, nodes) = setup().await?;
    let run = unique("lost");
    let provisioner = start(&client, &run, KwokConfig::default());
    let name = unique("ws");
    claims.create(&PostParams::default(), &kaito_claim(&name, &run, A100)?).await?;
    wait_ready(&claims, &name).await?;
    nodes.delete(&name, &DeleteParams::default()).await?;
    wait_gone(&claims, &nodes, &name).await?;
    provisioner.abort();
    Ok(())
}

#[tokio::test]
async fn claims_of_other_node_classes_are_left_alone() -> anyhow::Result<()> {
    let (client, claims, nodes) = setup().await?;
    let run = unique("cls");
    let provisioner = start(&client, &run, KwokConfig::default());
    let name = unique("ws");
    let mut claim = kaito_claim(&name, &run, A100)?;
    claim.spec.node_class_ref.group = "karpenter.k8s.aws".to_string();
    claim.spec.node_class_ref.kind = "EC2NodeClass".to_string();
    claims.create(&PostParams::default(), &claim).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = claims.get(&name).await?;
    assert!(seen.finalizers().is_empty(), "no finalizer on a foreign claim");
    assert!(seen.status.is_none_or(|s| s.conditions.is_empty()), "no status on a foreign claim");
    assert!(nodes_of(&nodes, &name).await?.is_empty());
    claims.delete(&name, &DeleteParams::default()).await?;
    provisioner.abort();
    Ok(())
}
