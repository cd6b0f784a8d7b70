//! End to end on the real control plane: the Workspace controller and the kwok node provisioner run
//! in-process, each scoped to the test's namespace, and drive example Workspaces to their final state.
#![cfg(feature = "cluster")]

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Service};
use kaito_api::karpenter::NodeClaim;
use kaito_api::labels::conditions as cond;
use kaito_api::v1beta1::Workspace;
use kaito_controller::config::{Config, NodeProvisioner};
use kaito_provisioner::{ControllerOptions, KwokConfig};
use kaito_tests::{client, delete_namespace, eventually, install_crds, install_karpenter_crds, namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};

const WAIT: Duration = Duration::from_secs(90);

/// Controller and provisioner for one test namespace; both stop when dropped.
struct Operators {
    controller: Option<tokio::task::JoinHandle<()>>,
    provisioner: Option<tokio::task::JoinHandle<()>>,
}

impl Operators {
    /// The controller in NodeClaim mode with the kwok provisioner: the set-up of most tests.
    fn kwok(client: &Client, ns: &str, kwok: KwokConfig) -> Self {
        Operators {
            controller: Some(start_controller(client, ns, NodeProvisioner::AzureGpuProvisioner)),
            provisioner: Some(start_provisioner(client, ns, kwok)),
        }
    }
}

impl Drop for Operators {
    fn drop(&mut self) {
        for task in [self.controller.take(), self.provisioner.take()].into_iter().flatten() {
            task.abort();
        }
    }
}

fn start_controller(client: &Client, ns: &str, mode: NodeProvisioner) -> tokio::task::JoinHandle<()> {
    let config = Config { namespace: Some(ns.to_string()), node_provisioner: mode, ..Config::default() };
    let (handle, stop, _metrics) = kaito_controller::start(client.clone(), config);
    // the task runs until aborted; keep the stop channel open for its lifetime
    tokio::spawn(async move {
        let _stop = stop;
        let _ = handle.await;
    })
}

fn start_provisioner(client: &Client, ns: &str, kwok: KwokConfig) -> tokio::task::JoinHandle<()> {
    let options = ControllerOptions {
        claim_selector: Some(format!("kaito.sh/workspacenamespace={ns}")),
        gc_interval: None,
        ..ControllerOptions::default()
    };
    tokio::spawn(kaito_provisioner::run_kwok(client.clone(), kwok, options, futures::future::pending()))
}

async fn setup(prefix: &str) -> anyhow::Result<(Client, String)> {
    let client = client().await?;
    install_crds(&client).await?;
    install_karpenter_crds(&client).await?;
    let ns = namespace(&client, prefix).await?;
    Ok((client, ns))
}

fn example(path: &str) -> Workspace {
    let text = std::fs::read_to_string(format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("reading examples/{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing examples/{path}: {e}"))
}

async fn wait_condition(api: &Api<Workspace>, name: &str, type_: &str, status: &str) -> anyhow::Result<Workspace> {
    eventually(&format!("{name}: {type_}={status}"), WAIT, || async {
        let ws = api.get(name).await?;
        Ok(ws.condition(type_).is_some_and(|c| c.status == status).then_some(ws))
    })
    .await
}

async fn claims_of(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<NodeClaim>> {
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let selector = format!("kaito.sh/workspace={name},kaito.sh/workspacenamespace={ns}");
    Ok(claims.list(&ListParams::default().labels(&selector)).await?.items)
}

async fn nodes_of(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<Node>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let selector = format!("kaito.sh/workspace={name},kaito.sh/workspacenamespace={ns}");
    Ok(nodes.list(&ListParams::default().labels(&selector)).await?.items)
}

/// Creates the Workspace, waits for WorkspaceSucceeded, checks the objects, deletes it and checks cleanup.
async fn deploy_and_delete(client: &Client, ns: &str, ws: Workspace, expect_nodes: usize) -> anyhow::Result<Workspace> {
    let api: Api<Workspace> = Api::namespaced(client.clone(), ns);
    let name = ws.name_any();
    api.create(&PostParams::default(), &ws).await?;
    let ready = wait_condition(&api, &name, cond::WORKSPACE_SUCCEEDED, "True").await?;
    let status = ready.status.clone().unwrap();
    assert_eq!(status.target_node_count, Some(expect_nodes as i32));
    assert_eq!(status.state, Some(kaito_api::v1beta1::WorkspaceState::Ready));
    assert!(ready.finalizers().contains(&"workspace.finalizer.kaito.sh".to_string()));
    for type_ in [cond::RESOURCE_READY, cond::INFERENCE_READY] {
        assert_eq!(ready.condition(type_).unwrap().status, "True", "{type_}");
    }
    let phases: BTreeSet<String> = status.phases.unwrap_or_default().into_iter().map(|p| p.name).collect();
    assert!(phases.contains("WorkspaceSucceeded"), "{phases:?}");
    assert_eq!(claims_of(client, ns, &name).await?.len(), expect_nodes);
    assert_eq!(status.worker_nodes.unwrap_or_default().len(), expect_nodes);

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = sts.get(&name).await?;
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(expect_nodes as i32));
    assert_eq!(sts.spec.as_ref().unwrap().service_name.as_deref(), Some(format!("{name}-headless").as_str()));
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let main = services.get(&name).await?;
    assert_eq!(
        main.spec.unwrap().ports.unwrap()[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(5000))
    );
    let headless = services.get(&format!("{name}-headless")).await?;
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));

    api.delete(&name, &DeleteParams::default()).await?;
    eventually(&format!("{name} and its nodes gone"), WAIT, || async {
        let gone = api.get_opt(&name).await?.is_none()
            && claims_of(client, ns, &name).await?.is_empty()
            && nodes_of(client, ns, &name).await?.is_empty();
        Ok(gone.then_some(()))
    })
    .await?;
    Ok(ready)
}

#[tokio::test]
async fn single_node_preset_reaches_succeeded_and_cleans_up() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-single").await?;
    let _ops = Operators::kwok(&client, &ns, KwokConfig::default());
    let ready = deploy_and_delete(&client, &ns, example("inference/kaito_workspace_phi_4_mini.yaml"), 1).await?;
    let plan = ready.status.unwrap().plan.expect("the sizing plan is in status");
    assert_eq!((plan.instance_type.as_str(), plan.nodes, plan.gpus_per_node), ("Standard_NC24ads_A100_v4", 1, 1));
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn multi_node_preset_runs_a_statefulset_over_several_nodes() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-multi").await?;
    let _ops = Operators::kwok(&client, &ns, KwokConfig::default());
    let ws = example("inference/kaito_workspace_llama_3_3_70b_instruct.yaml");
    let preset = kaito_core::catalog::lookup("llama-3.3-70b-instruct")?;
    let gpu = kaito_core::sku::lookup(kaito_core::Cloud::Azure, "Standard_NC24ads_A100_v4").unwrap();
    let expected = kaito_core::plan::plan(kaito_core::PlanInput::new(preset, gpu))?.nodes as usize;
    assert!(expected > 1, "the example must need several nodes");
    let ready = deploy_and_delete(&client, &ns, ws, expected).await?;
    assert_eq!(ready.status.unwrap().plan.unwrap().pipeline_parallel, expected as i32);
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn workspace_with_a_lora_adapter_runs_its_puller_and_succeeds() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-adapter").await?;
    let _ops = Operators::kwok(&client, &ns, KwokConfig::default());
    let ws = example("inference/kaito_workspace_phi_4_mini_adapters.yaml");
    let name = ws.name_any();
    let api: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &ws).await?;
    wait_condition(&api, &name, cond::WORKSPACE_SUCCEEDED, "True").await?;
    // The pod that became ready is the one with the puller: kwok ran the init container first.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods.get(&format!("{name}-0")).await?;
    let init = pod.spec.as_ref().and_then(|s| s.init_containers.clone()).unwrap_or_default();
    assert_eq!(init.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["puller-phi-4-mini-dolly"]);
    let mounts = &pod.spec.as_ref().unwrap().containers[0].volume_mounts;
    assert!(mounts.iter().flatten().any(|m| m.mount_path == "/mnt/adapter"), "{mounts:?}");
    let command = pod.spec.unwrap().containers[0].command.clone().unwrap_or_default().join(" ");
    assert!(command.contains("--enable-lora"), "{command}");
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn the_inference_configmap_max_model_len_reaches_the_plan_and_the_command() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-config").await?;
    let _ops = Operators::kwok(&client, &ns, KwokConfig::default());
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ns);
    let config: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "phi-config"},
        "data": {"inference_config.yaml": "vllm:\n  max-model-len: 8192\n"},
    }))?;
    config_maps.create(&PostParams::default(), &config).await?;
    let mut ws = example("inference/kaito_workspace_phi_4_mini.yaml");
    ws.spec.inference.as_mut().unwrap().config = Some("phi-config".into());
    let name = ws.name_any();
    let api: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &ws).await?;
    wait_condition(&api, &name, cond::WORKSPACE_SUCCEEDED, "True").await?;
    // The command's --max-model-len comes from the sizing plan (`auto` without a configured length).
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let template = sts.get(&name).await?.spec.unwrap().template.spec.unwrap();
    let command = template.containers[0].command.clone().unwrap_or_default().join(" ");
    assert!(command.contains("--max-model-len=8192"), "{command}");
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn custom_template_workspace_reaches_succeeded() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-template").await?;
    let _ops = Operators::kwok(&client, &ns, KwokConfig::default());
    deploy_and_delete(&client, &ns, example("inference/kaito_workspace_custom_template.yaml"), 1).await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn bring_your_own_nodes_reach_succeeded() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-byo").await?;
    let _ops = Operators { controller: Some(start_controller(&client, &ns, NodeProvisioner::Byo)), provisioner: None };
    let node = format!("byo-{ns}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/add-gpu-node.sh");
    let out = std::process::Command::new(script)
        .args([&node, "Standard_NC24ads_A100_v4", "1", "81920", "apps=byo-phi-4-mini"])
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let api: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    let ws = example("inference/kaito_workspace_byo_nodes.yaml");
    api.create(&PostParams::default(), &ws).await?;
    let ready = wait_condition(&api, &ws.name_any(), cond::WORKSPACE_SUCCEEDED, "True").await?;
    assert_eq!(ready.status.as_ref().unwrap().worker_nodes, Some(vec![node.clone()]));
    assert!(ready.condition(cond::NODE_CLAIM_READY).is_none(), "no NodeClaims in bring-your-own mode");
    assert!(claims_of(&client, &ns, &ws.name_any()).await?.is_empty());

    api.delete(&ws.name_any(), &DeleteParams::default()).await?;
    eventually("workspace gone", WAIT, || async { Ok(api.get_opt(&ws.name_any()).await?.is_none().then_some(())) })
        .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    assert!(nodes.get_opt(&node).await?.is_some(), "bring-your-own nodes are never deleted");
    nodes.delete(&node, &DeleteParams::default()).await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn controller_restart_mid_provisioning_creates_no_duplicate_node_claims() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-restart").await?;
    let slow = KwokConfig { launch_delay: Duration::from_secs(3), ..KwokConfig::default() };
    let mut ops = Operators {
        controller: Some(start_controller(&client, &ns, NodeProvisioner::AzureGpuProvisioner)),
        provisioner: Some(start_provisioner(&client, &ns, slow)),
    };
    let ws = example("inference/kaito_workspace_llama_3_3_70b_instruct.yaml");
    let name = ws.name_any();
    let api: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &ws).await?;
    let first = eventually("NodeClaims created", WAIT, || async {
        let claims = claims_of(&client, &ns, &name).await?;
        Ok((!claims.is_empty()).then_some(claims.len()))
    })
    .await?;
    // kill the controller while nodes are still launching, and start a new one
    if let Some(controller) = ops.controller.take() {
        controller.abort();
    }
    ops.controller = Some(start_controller(&client, &ns, NodeProvisioner::AzureGpuProvisioner));
    let ready = wait_condition(&api, &name, cond::WORKSPACE_SUCCEEDED, "True").await?;
    let target = ready.status.unwrap().target_node_count.unwrap() as usize;
    let claims = claims_of(&client, &ns, &name).await?;
    assert_eq!(claims.len(), target, "exactly one NodeClaim per node (had {first} before the restart)");
    assert_eq!(nodes_of(&client, &ns, &name).await?.len(), target);
    api.delete(&name, &DeleteParams::default()).await?;
    eventually("cleanup", WAIT, || async { Ok(claims_of(&client, &ns, &name).await?.is_empty().then_some(())) })
        .await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn unavailable_sku_is_reported_in_resource_ready() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-sku").await?;
    let unavailable = KwokConfig {
        unavailable_instance_types: ["Standard_NC24ads_A100_v4".to_string()].into(),
        ..KwokConfig::default()
    };
    let _ops = Operators::kwok(&client, &ns, unavailable);
    let ws = example("inference/kaito_workspace_phi_4_mini.yaml");
    let api: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &ws).await?;
    let failed = wait_condition(&api, &ws.name_any(), cond::RESOURCE_READY, "False").await?;
    let failed = eventually("the provisioner's reason in ResourceReady", WAIT, || {
        let api = api.clone();
        let name = ws.name_any();
        let _ = &failed;
        async move {
            let ws = api.get(&name).await?;
            Ok(ws.condition(cond::RESOURCE_READY).is_some_and(|c| c.reason == "InsufficientCapacity").then_some(ws))
        }
    })
    .await?;
    let resource = failed.condition(cond::RESOURCE_READY).unwrap();
    assert!(resource.message.contains("Standard_NC24ads_A100_v4"), "{}", resource.message);
    assert_eq!(failed.condition(cond::WORKSPACE_SUCCEEDED).unwrap().status, "False");
    assert!(nodes_of(&client, &ns, &ws.name_any()).await?.is_empty());
    api.delete(&ws.name_any(), &DeleteParams::default()).await?;
    eventually("cleanup", WAIT, || async { Ok(api.get_opt(&ws.name_any()).await?.is_none().then_some(())) }).await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn pod_failures_are_classified_in_inference_ready() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-pods").await?;
    let _ops = Operators::kwok(&client, &ns, KwokConfig::default());
    let api: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    for (state, reason) in [("ImagePullBackOff", "ImagePullError"), ("CrashLoopBackOff", "ContainerCrashLoopBackOff")] {
        let mut ws = example("inference/kaito_workspace_custom_template.yaml");
        let name = format!("broken-{}", state.to_ascii_lowercase());
        ws.metadata.name = Some(name.clone());
        let template = ws.spec.inference.as_mut().unwrap().template.as_mut().unwrap();
        template
            .metadata
            .get_or_insert_default()
            .annotations
            .get_or_insert_default()
            .insert("kaito.sh/simulate-container-state".into(), state.into());
        api.create(&PostParams::default(), &ws).await?;
        let classified = eventually(&format!("{name}: InferenceReady reason {reason}"), WAIT, || async {
            let ws = api.get(&name).await?;
            Ok(ws.condition(cond::INFERENCE_READY).is_some_and(|c| c.reason == reason).then_some(ws))
        })
        .await?;
        let inference = classified.condition(cond::INFERENCE_READY).unwrap();
        assert_eq!(inference.status, "False");
        assert_eq!(classified.condition(cond::RESOURCE_READY).unwrap().status, "True", "nodes are fine");
        assert!(!inference.message.is_empty());
        api.delete(&name, &DeleteParams::default()).await?;
    }
    eventually("cleanup", WAIT, || async {
        Ok(api.list(&ListParams::default()).await?.items.is_empty().then_some(()))
    })
    .await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
async fn an_invalid_workspace_gets_a_status_that_says_what_to_do_and_no_nodes() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-invalid").await?;
    let _ops = Operators::kwok(&client, &ns, KwokConfig::default());
    let api: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    let mut ws = example("inference/kaito_workspace_phi_4_mini.yaml");
    ws.spec.inference.as_mut().unwrap().preset.as_mut().unwrap().name = "no-such-model".into();
    api.create(&PostParams::default(), &ws).await?;
    let invalid = wait_condition(&api, &ws.name_any(), cond::WORKSPACE_SUCCEEDED, "False").await?;
    let condition = invalid.condition(cond::WORKSPACE_SUCCEEDED).unwrap();
    assert_eq!(condition.reason, "InvalidWorkspace");
    assert!(condition.message.contains("inference.preset.name"), "{}", condition.message);
    assert!(claims_of(&client, &ns, &ws.name_any()).await?.is_empty(), "nothing billable for an invalid Workspace");
    api.delete(&ws.name_any(), &DeleteParams::default()).await?;
    eventually("cleanup", WAIT, || async { Ok(api.get_opt(&ws.name_any()).await?.is_none().then_some(())) }).await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}

/// Plays Karpenter for the test: for each NodePool of the namespace, keeps `spec.replicas` kwok GPU nodes with
/// the pool's template labels, and removes them when the pool is deleted.
async fn fake_karpenter(client: Client, ns: String) {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool");
    let pools: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, "nodepools"));
    let nodes: Api<Node> = Api::all(client.clone());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/add-gpu-node.sh");
    let selector = format!("karpenter.kaito.sh/workspace-namespace={ns}");
    loop {
        let live: Vec<DynamicObject> =
            pools.list(&ListParams::default().labels(&selector)).await.map(|l| l.items).unwrap_or_default();
        let mut wanted = BTreeSet::new();
        for pool in &live {
            let replicas = pool.data["spec"]["replicas"].as_u64().unwrap_or(0);
            let labels = pool.data["spec"]["template"]["metadata"]["labels"].as_object().cloned().unwrap_or_default();
            let sku =
                pool.data["spec"]["template"]["spec"]["requirements"][0]["values"][0].as_str().unwrap_or_default();
            for i in 0..replicas {
                let name = format!("karp-{}-{i}", pool.name_any());
                wanted.insert(name.clone());
                if nodes.get_opt(&name).await.ok().flatten().is_none() {
                    let mut args = vec![name, sku.to_string(), "1".into(), "81920".into()];
                    args.extend(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())));
                    let _ = std::process::Command::new(script).args(&args).output();
                }
            }
        }
        let ours = nodes.list(&ListParams::default().labels(&selector)).await.map(|l| l.items).unwrap_or_default();
        for node in ours.iter().filter(|n| !wanted.contains(&n.name_any())) {
            let _ = nodes.delete(&node.name_any(), &DeleteParams::default()).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn karpenter_mode_makes_one_node_pool_per_workspace() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-karpenter").await?;
    let _ops = Operators {
        controller: Some(start_controller(&client, &ns, NodeProvisioner::Karpenter)),
        provisioner: Some(tokio::spawn(fake_karpenter(client.clone(), ns.clone()))),
    };
    let api: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    let ws = example("inference/kaito_workspace_phi_4_mini.yaml");
    let name = ws.name_any();
    api.create(&PostParams::default(), &ws).await?;
    let ready = wait_condition(&api, &name, cond::WORKSPACE_SUCCEEDED, "True").await?;
    assert_eq!(ready.status.unwrap().worker_nodes.unwrap_or_default().len(), 1);
    let pool_name = format!("{ns}-{name}");
    let gvk = kube::api::GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool");
    let pools: Api<kube::api::DynamicObject> =
        Api::all_with(client.clone(), &kube::api::ApiResource::from_gvk_with_plural(&gvk, "nodepools"));
    let pool = pools.get(&pool_name).await?;
    assert_eq!(pool.data["spec"]["replicas"], 1, "a static pool of targetNodeCount nodes");
    assert_eq!(pool.labels().get("karpenter.kaito.sh/managed-by").map(String::as_str), Some("kaito"));

    api.delete(&name, &DeleteParams::default()).await?;
    eventually("workspace, NodePool and nodes gone", WAIT, || async {
        let nodes: Api<Node> = Api::all(client.clone());
        let selector = format!("karpenter.kaito.sh/workspace-namespace={ns}");
        let gone = api.get_opt(&name).await?.is_none()
            && pools.get_opt(&pool_name).await?.is_none()
            && nodes.list(&ListParams::default().labels(&selector)).await?.items.is_empty();
        Ok(gone.then_some(()))
    })
    .await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}
