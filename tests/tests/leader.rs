//! Leader election on the real API server: of two controller replicas only the Lease holder reconciles;
//! killing it hands the Lease to the other within a lease duration (plus one retry period, client-go's
//! granularity), and the Workspace still ends with exactly one NodeClaim per node.
#![cfg(feature = "cluster")]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kaito_api::karpenter::NodeClaim;
use kaito_api::labels::conditions as cond;
use kaito_api::v1beta1::Workspace;
use kaito_controller::config::Config;
use kaito_controller::leader::Elector;
use kaito_controller::metrics::Metrics;
use kaito_provisioner::{ControllerOptions, KwokConfig};
use kaito_tests::eventually;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

const LEASE: &str = "kaito-test-leader";

/// Whether a replica has reconciled anything (its reconcile counter has a sample).
fn reconciled(metrics: &Metrics) -> bool {
    metrics.render().lines().any(|l| l.starts_with("kaito_workspace_reconciles_total{"))
}

async fn holder(api: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(api.get_opt(LEASE).await?.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() -> anyhow::Result<()> {
    let client = kaito_tests::client().await?;
    kaito_tests::install_crds(&client).await?;
    kaito_tests::install_karpenter_crds(&client).await?;
    let ns = kaito_tests::namespace(&client, "leader").await?;

    let options = ControllerOptions {
        claim_selector: Some(format!("kaito.sh/workspacenamespace={ns}")),
        gc_interval: None,
        ..ControllerOptions::default()
    };
    let slow = KwokConfig { launch_delay: Duration::from_secs(3), ..KwokConfig::default() };
    let provisioner =
        tokio::spawn(kaito_provisioner::run_kwok(client.clone(), slow, options, futures::future::pending()));

    let config = Config { namespace: Some(ns.clone()), ..Config::default() };
    let replica = |identity: &str| {
        let metrics = Arc::new(Metrics::default());
        let elector = Elector::new(client.clone(), &ns, LEASE, identity);
        let (task, stop) = kaito_controller::start_elected(client.clone(), config.clone(), metrics.clone(), elector);
        (task, stop, metrics)
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let (a_task, _a_stop, a_metrics) = replica("replica-a");
    eventually("replica-a leads", Duration::from_secs(20), || async {
        Ok((holder(&leases).await?.as_deref() == Some("replica-a")).then_some(()))
    })
    .await?;
    let (b_task, b_stop, b_metrics) = replica("replica-b");

    let ws: Workspace = serde_saphyr::from_str(&std::fs::read_to_string(format!(
        "{}/../examples/inference/kaito_workspace_llama_3_3_70b_instruct.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))?)?;
    let name = ws.name_any();
    let api: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &ws).await?;
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let selector = format!("kaito.sh/workspace={name},kaito.sh/workspacenamespace={ns}");
    eventually("NodeClaims created by the leader", Duration::from_secs(60), || async {
        Ok((!claims.list(&ListParams::default().labels(&selector)).await?.items.is_empty()).then_some(()))
    })
    .await?;
    // The counter is bumped when a reconcile returns, and the first reconcile creates the NodeClaims before it
    // writes the status and returns: the claims can be visible a moment before the count.
    eventually("the leader's reconcile counted", Duration::from_secs(10), || async {
        Ok(reconciled(&a_metrics).then_some(()))
    })
    .await?;
    anyhow::ensure!(!reconciled(&b_metrics), "the standby reconciled while not leading");

    // Kill the leader: no clean release of the Lease, as when its process dies.
    a_task.abort();
    let killed = tokio::time::Instant::now();
    let takeover = Duration::from_secs(15 + 5);
    eventually("replica-b takes the Lease", takeover + Duration::from_secs(3), || async {
        Ok((holder(&leases).await?.as_deref() == Some("replica-b")).then_some(()))
    })
    .await?;
    let took = killed.elapsed();
    println!("takeover after {took:?}");
    anyhow::ensure!(took <= takeover + Duration::from_secs(1), "takeover took {took:?}");

    let ready = eventually("WorkspaceSucceeded under the new leader", Duration::from_secs(120), || async {
        let ws = api.get(&name).await?;
        Ok(ws.condition(cond::WORKSPACE_SUCCEEDED).is_some_and(|c| c.status == "True").then_some(ws))
    })
    .await?;
    eventually("the new leader's reconcile counted", Duration::from_secs(10), || async {
        Ok(reconciled(&b_metrics).then_some(()))
    })
    .await?;
    let target = ready.status.and_then(|s| s.target_node_count).unwrap_or(0) as usize;
    let count = claims.list(&ListParams::default().labels(&selector)).await?.items.len();
    anyhow::ensure!(target > 1 && count == target, "{count} NodeClaims for targetNodeCount {target}");

    api.delete(&name, &DeleteParams::default()).await?;
    eventually("cleanup", Duration::from_secs(90), || async {
        Ok(claims.list(&ListParams::default().labels(&selector)).await?.items.is_empty().then_some(()))
    })
    .await?;
    // A clean stop releases the Lease.
    let _ = b_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), b_task).await;
    anyhow::ensure!(holder(&leases).await?.is_none(), "the Lease was not released on a clean stop");
    provisioner.abort();
    kaito_tests::delete_namespace(&client, &ns).await;
    Ok(())
}
