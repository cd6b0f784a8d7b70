//! The operator's own webhook certificate is replaced before it expires, and the new CA reaches the
//! ValidatingWebhookConfiguration's caBundle.
#![cfg(feature = "cluster")]

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kaito_controller::webhook::cert::{self, SelfManaged};
use kaito_tests::{client, delete_namespace, namespace};
use kube::api::{Api, DeleteParams, PostParams};

#[tokio::test]
async fn a_certificate_close_to_expiry_is_rotated_and_the_ca_bundle_follows() -> anyhow::Result<()> {
    let client = client().await?;
    let ns = namespace(&client, "rotation").await?;
    let secret_name = "kaito-webhook-cert";
    // A webhook configuration that matches nothing (no rules), only there to receive the caBundle.
    let config_name = format!("kaito-rotation-{ns}");
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config: ValidatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "metadata": {"name": config_name},
        "webhooks": [{
            "name": "validation.workspace.kaito.sh",
            "clientConfig": {"url": "https://127.0.0.1:9/validate/workspace.kaito.sh"},
            "rules": [],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Ignore"
        }]
    }))?;
    configs.create(&PostParams::default(), &config).await?;

    // A certificate that expires in 2 days: inside the rotation window.
    let old = cert::generate("kaito-webhook", &ns, Duration::from_secs(2 * 24 * 3600))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets.create(&PostParams::default(), &cert::to_secret(&old, secret_name)).await?;

    let manager = SelfManaged {
        client: client.clone(),
        namespace: ns.clone(),
        secret: secret_name.to_string(),
        service: "kaito-webhook".to_string(),
        webhook_configurations: vec![config_name.clone()],
    };
    let rotated = manager.ensure().await?;
    assert_ne!(rotated.ca_pem, old.ca_pem, "a certificate inside the rotation window must be replaced");
    assert!(rotated.not_after > std::time::SystemTime::now() + cert::ROTATE_BEFORE);

    let stored = secrets.get(secret_name).await?;
    let stored_ca = stored.data.unwrap_or_default().get(cert::CA_KEY).map(|b| b.0.clone()).unwrap_or_default();
    assert_eq!(stored_ca, rotated.ca_pem.as_bytes(), "the Secret holds the new certificate");
    let bundle = configs.get(&config_name).await?.webhooks.unwrap_or_default()[0]
        .client_config
        .ca_bundle
        .clone()
        .map(|b| b.0)
        .unwrap_or_default();
    assert_eq!(bundle, rotated.ca_pem.as_bytes(), "the caBundle follows the new CA");

    // A fresh certificate is kept as it is.
    let again = manager.ensure().await?;
    assert_eq!(again.ca_pem, rotated.ca_pem);

    configs.delete(&config_name, &DeleteParams::default()).await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}
