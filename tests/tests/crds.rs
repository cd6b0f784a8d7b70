//! The generated CRDs on a real kube-apiserver: versions, schema validation, printer columns, explain, and
//! the control plane's ability to run pods on kwok nodes.
#![cfg(feature = "cluster")]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kaito_api::{v1alpha1, v1beta1};
use kaito_tests::{client, delete_namespace, eventually, install_crds, namespace, run_kubectl};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};

fn phi_workspace(name: &str) -> v1beta1::Workspace {
    let manifest = include_str!("../../examples/inference/kaito_workspace_phi_4_mini.yaml");
    let mut ws: v1beta1::Workspace = serde_saphyr::from_str(manifest).expect("example parses");
    ws.metadata.name = Some(name.to_string());
    ws
}

#[tokio::test]
async fn workspace_lifecycle_as_v1beta1_and_read_as_v1alpha1() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = namespace(&client, "crud").await?;
    let beta: Api<v1beta1::Workspace> = Api::namespaced(client.clone(), &ns);

    let created = beta.create(&PostParams::default(), &phi_workspace("phi")).await?;
    assert_eq!(created.spec.resource.count, Some(1), "the CRD default for resource.count applies");

    let fetched = beta.get("phi").await?;
    assert_eq!(fetched.spec.inference, created.spec.inference);

    let patch = serde_json::json!({"metadata": {"labels": {"team": "ml"}}, "inference": {"config": "my-config"}});
    let patched = beta.patch("phi", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    assert_eq!(patched.metadata.labels.unwrap()["team"], "ml");
    assert_eq!(patched.spec.inference.unwrap().config.as_deref(), Some("my-config"));

    // the same object through the v1alpha1 endpoint, typed and untyped
    let alpha: Api<v1alpha1::Workspace> = Api::namespaced(client.clone(), &ns);
    let as_alpha = alpha.get("phi").await?;
    assert_eq!(as_alpha.spec.resource.instance_type.as_deref(), Some("Standard_NC24ads_A100_v4"));
    assert_eq!(as_alpha.spec.inference.unwrap().preset.unwrap().name, "phi-4-mini-instruct");
    let gvk = GroupVersionKind::gvk("kaito.sh", "v1alpha1", "Workspace");
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
    let raw = dynamic.get("phi").await?;
    assert_eq!(raw.types.unwrap().api_version, "kaito.sh/v1alpha1");

    // status is a subresource: a main-resource write must not change it
    let status = serde_json::json!({"status": {"state": "Ready"}});
    beta.patch("phi", &PatchParams::default(), &Patch::Merge(&status)).await?;
    assert!(beta.get("phi").await?.status.is_none(), "status must only change through /status");
    beta.patch_status("phi", &PatchParams::default(), &Patch::Merge(&status)).await?;
    assert_eq!(beta.get("phi").await?.status.unwrap().state, Some(v1beta1::WorkspaceState::Ready));

    beta.delete("phi", &DeleteParams::default()).await?;
    eventually("workspace deletion", Duration::from_secs(10), || async {
        Ok(beta.get_opt("phi").await?.is_none().then_some(()))
    })
    .await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn apiserver_rejects_objects_that_violate_the_schema() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = namespace(&client, "schema").await?;
    let gvk = GroupVersionKind::gvk("kaito.sh", "v1beta1", "Workspace");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));

    let cases = [
        // wrong type
        (
            serde_json::json!({"resource": {"count": "two", "labelSelector": {}}, "inference": {"preset": {"name": "phi-4"}}}),
            "resource.count",
        ),
        // enum value outside the allowed set
        (
            serde_json::json!({"resource": {"labelSelector": {}}, "tuning": {"method": "full", "input": {}, "output": {}}}),
            "tuning.method",
        ),
        // required field missing
        (serde_json::json!({"resource": {"labelSelector": {}}, "inference": {"preset": {}}}), "inference.preset.name"),
        // more than 10 adapters
        (
            serde_json::json!({"resource": {"labelSelector": {}}, "inference": {"adapters": vec![serde_json::json!({}); 11]}}),
            "inference.adapters",
        ),
    ];
    for (i, (body, field)) in cases.into_iter().enumerate() {
        let mut object = serde_json::json!({
            "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": format!("bad-{i}")}
        });
        object.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        let object: DynamicObject = serde_json::from_value(object)?;
        let err = api.create(&PostParams::default(), &object).await.expect_err("invalid object must be rejected");
        let message = err.to_string();
        assert!(message.contains("Invalid"), "case {i}: expected a validation error, got {message}");
        assert!(message.contains(field), "case {i}: the error should name {field}: {message}");
    }

    // InferenceSet replicas has a minimum of 0
    let gvk = GroupVersionKind::gvk("kaito.sh", "v1beta1", "InferenceSet");
    let sets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
    let set: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "kaito.sh/v1beta1", "kind": "InferenceSet", "metadata": {"name": "negative"},
        "spec": {"replicas": -1, "labelSelector": {}, "template": {"resource": {}, "inference": {}}}
    }))?;
    let err = sets.create(&PostParams::default(), &set).await.expect_err("negative replicas must be rejected");
    assert!(err.to_string().contains("spec.replicas"), "{err}");
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn kubectl_prints_the_columns_and_explains_fields() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = namespace(&client, "kubectl").await?;
    let beta: Api<v1beta1::Workspace> = Api::namespaced(client.clone(), &ns);
    beta.create(&PostParams::default(), &phi_workspace("columns")).await?;

    let table = run_kubectl(&["get", "workspace", "-n", &ns])?;
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "INSTANCE",
            "RESOURCEREADY",
            "INFERENCEREADY",
            "JOBSTARTED",
            "WORKSPACESUCCEEDED",
            "TARGETNODECOUNT",
            "STATE",
            "AGE"
        ]
    );
    assert!(table.contains("Standard_NC24ads_A100_v4"), "{table}");
    // short names work
    assert!(run_kubectl(&["get", "wk", "-n", &ns])?.contains("columns"));

    let explain = run_kubectl(&["explain", "workspace.resource.instanceType"])?;
    assert!(explain.contains("GPU virtual machine size to provision"), "{explain}");
    let explain = run_kubectl(&["explain", "workspace.inference.preset.name"])?;
    assert!(explain.contains("Hugging Face repository id"), "{explain}");
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn deployment_gets_running_pods_on_a_kwok_gpu_node() -> anyhow::Result<()> {
    let client = client().await?;
    let ns = namespace(&client, "pods").await?;
    let node = format!("gpu-{ns}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/add-gpu-node.sh");
    let out = std::process::Command::new(script).args([&node, "Standard_NC24ads_A100_v4", "1"]).output()?;
    assert!(out.status.success(), "add-gpu-node: {}", String::from_utf8_lossy(&out.stderr));

    let labels = BTreeMap::from([("app".to_string(), "probe".to_string())]);
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probe"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
                    "containers": [{"name": "c", "image": "example.invalid/none:1",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]
                }
            }
        }
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments.create(&PostParams::default(), &deployment).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = eventually("a Running pod on the kwok node", Duration::from_secs(60), || async {
        let list = pods.list(&ListParams::default().labels("app=probe")).await?;
        Ok(list.items.into_iter().find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
    })
    .await?;
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some(node.as_str()), "scheduled by kube-scheduler");

    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    nodes.delete(&node, &DeleteParams::default()).await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}
