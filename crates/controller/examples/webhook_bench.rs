//! Admission webhook latency: p50/p99 of handling one AdmissionReview, in-process (JSON bytes in, JSON bytes
//! out, as the server does) and over HTTPS on 127.0.0.1 through the real server (keep-alive connection, as the
//! API server uses). Run with `bench/webhook/run.sh` (release build).
//!
//! The reviews cycle through every example: the valid ones (create and an immutable-field update) and every
//! file in examples/invalid. The webhook has no client here, so ConfigMap lookups are not part of the figure.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaito_api::validation::{NodeProvisioner, ValidationContext};
use kaito_controller::webhook::{self, cert, server};
use kaito_core::Cloud;
use kube::api::DynamicObject;
use kube::core::admission::AdmissionReview;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn review_json(operation: &str, object: &Value, old: Option<&Value>, uid: usize) -> Vec<u8> {
    let (group, version) = object["apiVersion"].as_str().and_then(|v| v.split_once('/')).unwrap_or(("", ""));
    let kind = object["kind"].as_str().unwrap_or("");
    let resource = format!("{}s", kind.to_lowercase());
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{uid}"),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"], "namespace": "default", "operation": operation,
            "userInfo": {"username": "admin"}, "object": object, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap_or_default()
}

fn objects(examples: &Path) -> Vec<(Value, Option<Value>)> {
    let mut files: Vec<_> = ["inference", "tuning", "ragengine", "inferenceset", "invalid"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(examples.join(dir)).into_iter().flatten().flatten().map(|e| e.path()))
        .filter(|p| !p.to_string_lossy().contains("byo"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_default();
        for doc in docs.into_iter().filter(|d| d["kind"] != "ConfigMap") {
            if doc["kind"] == "Workspace" && doc["resource"]["instanceType"].is_string() {
                let mut new = doc.clone();
                new["resource"]["instanceType"] = json!("Standard_NC48ads_A100_v4");
                out.push((new, Some(doc.clone())));
            }
            out.push((doc, None));
        }
    }
    out
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    format!("p50 {:?}  p99 {:?}  max {:?}  (n = {})", at(0.5), at(0.99), at(1.0), samples.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let objects = objects(&examples);
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let (object, old) = &objects[i % objects.len()];
            review_json(if old.is_some() { "UPDATE" } else { "CREATE" }, object, old.as_ref(), i)
        })
        .collect();
    let ctx = ValidationContext::offline(NodeProvisioner::AzureGpuProvisioner, Cloud::Azure);

    // In-process: decode, decide, encode.
    let mut samples = Vec::with_capacity(n);
    let mut denied = 0;
    for body in &bodies {
        let start = Instant::now();
        let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
        let response = webhook::review(review, &ctx);
        denied += usize::from(!response.allowed);
        let out = serde_json::to_vec(&response.into_review())?;
        std::hint::black_box(out);
        samples.push(start.elapsed());
    }
    println!("in-process review ({} distinct objects, {denied} denied): {}", objects.len(), percentiles(samples));

    // HTTPS through the server, one keep-alive connection.
    let serving = cert::generate("kaito-webhook", "default", cert::VALIDITY)?;
    let hook = Arc::new(server::Webhook { base: ctx, client: None, release_namespace: None });
    let tls = cert::server_config(serving.cert_pem.as_bytes(), serving.key_pem.as_bytes())?;
    let (running, _task) = server::start("127.0.0.1:0".parse()?, tls, hook).await?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(serving.ca_pem.as_bytes()) {
        roots.add(ca?)?;
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(running.addr).await?;
    tcp.set_nodelay(true)?;
    let stream = connector.connect("127.0.0.1".try_into()?, tcp).await?;
    let mut stream = BufReader::new(stream);
    let mut samples = Vec::with_capacity(n);
    for body in &bodies {
        let start = Instant::now();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            webhook::WORKSPACE_HOOK.path,
            body.len()
        );
        stream.get_mut().write_all(head.as_bytes()).await?;
        stream.get_mut().write_all(body).await?;
        let mut length = 0;
        let mut status = String::new();
        stream.read_line(&mut status).await?;
        if !status.contains(" 200 ") {
            return Err(format!("webhook answered {status}").into());
        }
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
        }
        let mut response = vec![0; length];
        stream.read_exact(&mut response).await?;
        samples.push(start.elapsed());
    }
    println!("HTTPS round trip (keep-alive, TLS 1.3): {}", percentiles(samples));
    running.handle.shutdown();
    Ok(())
}
