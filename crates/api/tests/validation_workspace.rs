//! Workspace admission rules: one table per rule, each with valid and invalid cases, asserting the field
//! path and a key phrase of the message.

use std::collections::BTreeMap;

use kaito_api::v1beta1::Workspace;
use kaito_api::validation::{
    Cloud, FeatureGates, NodeProvisioner, ValidationContext, validate_workspace_create, validate_workspace_update,
};
use serde_json::{Value, json};

/// RFC 7386 merge patch: `null` removes a key.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn base() -> Value {
    json!({
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws", "namespace": "default"},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"apps": "x"}}},
        "inference": {"preset": {"name": "phi-4-mini-instruct"}}
    })
}

fn workspace(patch: Value) -> Workspace {
    let mut value = base();
    merge(&mut value, &patch);
    serde_json::from_value(value).expect("test Workspace parses")
}

fn tuning() -> Value {
    json!({
        "inference": null,
        "tuning": {
            "preset": {"name": "phi-3-mini-4k-instruct"},
            "method": "qlora",
            "input": {"name": "data", "urls": ["https://example.com/data.parquet"]},
            "output": {"image": "myregistry.azurecr.io/adapter:v1", "imagePushSecret": "push"}
        }
    })
}

type Case = (&'static str, Value, Option<(&'static str, &'static str)>);

fn run_table(ctx: &ValidationContext, cases: Vec<Case>) {
    for (name, patch, expected) in cases {
        let outcome = validate_workspace_create(&workspace(patch), ctx);
        match expected {
            None => assert!(outcome.is_ok(), "{name}: expected valid, got:\n{outcome}"),
            Some((field, phrase)) => assert!(
                outcome.violations.iter().any(|v| v.field == field && v.message.contains(phrase)),
                "{name}: expected {field}: …{phrase}…, got:\n{outcome}"
            ),
        }
    }
}

fn nap() -> ValidationContext {
    ValidationContext::default()
}

fn byo() -> ValidationContext {
    ValidationContext::offline(NodeProvisioner::Byo, Cloud::Azure)
}

fn byo_with_nodes(nodes: Vec<BTreeMap<String, String>>) -> ValidationContext {
    ValidationContext { byo_nodes: Some(nodes), ..byo() }
}

fn gpu_node(product: &str, count: &str, memory_mib: &str) -> BTreeMap<String, String> {
    [
        ("nvidia.com/gpu.product", product),
        ("nvidia.com/gpu.count", count),
        ("nvidia.com/gpu.memory", memory_mib),
        ("apps", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn with_config_maps(ctx: ValidationContext, maps: &[(&str, &str, &str)]) -> ValidationContext {
    let mut all = BTreeMap::new();
    for (name, key, text) in maps {
        all.insert(name.to_string(), BTreeMap::from([(key.to_string(), text.to_string())]));
    }
    ValidationContext { config_maps: Some(all), ..ctx }
}

#[test]
fn rule_01_name_is_a_dns_label() {
    run_table(
        &nap(),
        vec![
            ("valid", json!({}), None),
            ("dot", json!({"metadata": {"name": "ws.phi"}}), Some(("metadata.name", "not a valid name"))),
            ("upper", json!({"metadata": {"name": "Phi"}}), Some(("metadata.name", "lowercase"))),
        ],
    );
}

#[test]
fn rule_02_exactly_one_of_inference_and_tuning() {
    let mut both = tuning();
    merge(&mut both, &json!({"inference": {"preset": {"name": "phi-4-mini-instruct"}}}));
    run_table(
        &nap(),
        vec![
            ("inference", json!({}), None),
            ("tuning", tuning(), None),
            ("both", both, Some(("inference", "both set"))),
            ("neither", json!({"inference": null}), Some(("inference", "neither inference nor tuning"))),
            (
                "preset and template",
                json!({"inference": {"template": {"spec": {"containers": []}}}}),
                Some(("inference.template", "both set")),
            ),
        ],
    );
}

#[test]
fn rule_03_instance_type_per_provisioner() {
    run_table(
        &nap(),
        vec![
            ("nap with sku", json!({}), None),
            ("nap without", json!({"resource": {"instanceType": null}}), Some(("resource.instanceType", "required"))),
        ],
    );
    run_table(
        &byo(),
        vec![
            ("byo without", json!({"resource": {"instanceType": null}}), None),
            ("byo with", json!({}), Some(("resource.instanceType", "must be empty with bring-your-own"))),
        ],
    );
    let karpenter = ValidationContext::offline(NodeProvisioner::Karpenter, Cloud::Azure);
    run_table(
        &karpenter,
        vec![(
            "karpenter without",
            json!({"resource": {"instanceType": null}}),
            Some(("resource.instanceType", "required")),
        )],
    );
}

#[test]
fn rule_04_annotations() {
    let ann = |k: &str, v: &str| json!({"metadata": {"annotations": {k: v}}});
    run_table(
        &nap(),
        vec![
            ("image family", ann("kaito.sh/node-image-family", "AzureLinux"), None),
            (
                "bad image family",
                ann("kaito.sh/node-image-family", "windows"),
                Some(("metadata.annotations[kaito.sh/node-image-family]", "ubuntu or azurelinux")),
            ),
            ("perf mode", ann("kaito.sh/performance-mode", "throughput"), None),
            (
                "bad perf mode",
                ann("kaito.sh/performance-mode", "fast"),
                Some(("metadata.annotations[kaito.sh/performance-mode]", "balanced, interactivity or throughput")),
            ),
            ("local weights", ann("kaito.sh/use-local-weights", "false"), None),
            (
                "bad local weights",
                ann("kaito.sh/use-local-weights", "yes"),
                Some(("metadata.annotations[kaito.sh/use-local-weights]", "\"true\" or \"false\"")),
            ),
            (
                "bad runtime",
                ann("kaito.sh/runtime", "tgi"),
                Some(("metadata.annotations[kaito.sh/runtime]", "vllm or transformers")),
            ),
        ],
    );
    let karpenter = ValidationContext {
        node_classes: vec!["image-family-ubuntu".into(), "image-family-azure-linux".into()],
        ..ValidationContext::offline(NodeProvisioner::Karpenter, Cloud::Azure)
    };
    run_table(
        &karpenter,
        vec![
            ("known class", ann("kaito.sh/node-class-name", "image-family-ubuntu"), None),
            (
                "unknown class",
                ann("kaito.sh/node-class-name", "gpu-big"),
                Some(("metadata.annotations[kaito.sh/node-class-name]", "not configured")),
            ),
        ],
    );
}

#[test]
fn rule_05_label_selector() {
    run_table(
        &nap(),
        vec![
            (
                "In with one value",
                json!({"resource": {"labelSelector": {"matchExpressions": [{"key": "apps", "operator": "In", "values": ["x"]}]}}}),
                None,
            ),
            (
                "reserved only",
                json!({"resource": {"labelSelector": {"matchLabels": {"apps": null, "kaito.sh/workspace": "ws"}}}}),
                Some(("resource.labelSelector.matchLabels", "KAITO-managed")),
            ),
            (
                "NotIn",
                json!({"resource": {"labelSelector": {"matchExpressions": [{"key": "apps", "operator": "NotIn", "values": ["x"]}]}}}),
                Some(("resource.labelSelector", "cannot be turned into node labels")),
            ),
        ],
    );
}

#[test]
fn rule_06_preset_name() {
    let preset = |n: &str| json!({"inference": {"preset": {"name": n}}});
    run_table(
        &nap(),
        vec![
            ("alias", preset("PHI-4-mini-instruct"), None),
            ("hf id in catalog", preset("microsoft/Phi-4-mini-instruct"), None),
            ("hf id outside catalog", preset("someorg/some-model"), None),
            ("unknown", preset("gpt-5"), Some(("inference.preset.name", "unknown model preset"))),
            ("deprecated", preset("phi-2"), Some(("inference.preset.name", "is deprecated and no longer supported"))),
            ("bad id", preset("a/"), Some(("inference.preset.name", "org/model"))),
        ],
    );
}

#[test]
fn rule_07_instance_type_and_partition_with_auto_provisioning() {
    let it = |n: &str| json!({"resource": {"instanceType": n}});
    run_table(
        &nap(),
        vec![
            ("catalog", it("Standard_NC48ads_A100_v4"), None),
            ("unknown azure N series accepted", it("Standard_NC999_future"), None),
            ("not a GPU sku", it("Standard_E4s_v3"), Some(("resource.instanceType", "not a supported azure GPU"))),
            (
                "wrong case",
                it("standard_nc24ads_a100_v4"),
                Some(("resource.instanceType", "did you mean Standard_NC24ads_A100_v4")),
            ),
            (
                "partition",
                json!({"resource": {"partition": {"mode": "mig", "profile": "1g.10gb"}}}),
                Some(("resource.partition", "only for bring-your-own")),
            ),
        ],
    );
    let aws = ValidationContext::offline(NodeProvisioner::Karpenter, Cloud::Aws);
    run_table(
        &aws,
        vec![
            ("aws sku", it("p4d.24xlarge"), None),
            ("azure prefix not accepted on aws", it("Standard_NC999_future"), Some(("resource.instanceType", "aws"))),
        ],
    );
}

#[test]
fn rule_08_byo_nodes() {
    let no_it = json!({"resource": {"instanceType": null}});
    run_table(&byo(), vec![("nodes unknown: skipped", no_it.clone(), None)]);
    run_table(
        &byo_with_nodes(vec![gpu_node("NVIDIA-A100-SXM4-80GB", "1", "81920")]),
        vec![("one gfd node", no_it.clone(), None)],
    );
    run_table(
        &byo_with_nodes(vec![]),
        vec![("no node", no_it.clone(), Some(("resource.labelSelector", "no node matches")))],
    );
    let mut unlabeled = gpu_node("NVIDIA-A100-SXM4-80GB", "1", "81920");
    unlabeled.remove("nvidia.com/gpu.memory");
    run_table(
        &byo_with_nodes(vec![unlabeled]),
        vec![("missing gfd label", no_it.clone(), Some(("resource.labelSelector", "nvidia.com/gpu.memory")))],
    );
    run_table(
        &byo_with_nodes(vec![gpu_node("NVIDIA-A100-SXM4-80GB", "1", "81920"), gpu_node("NVIDIA-A10", "1", "23028")]),
        vec![("mixed", no_it, Some(("resource.labelSelector", "differ in GPUs")))],
    );
}

#[test]
fn rule_09_gpu_memory_fit() {
    let transformers = |it: &str, model: &str| {
        json!({
            "metadata": {"annotations": {"kaito.sh/runtime": "transformers"}},
            "resource": {"instanceType": it},
            "inference": {"preset": {"name": model}}
        })
    };
    let mut bypass = transformers("Standard_NV36ads_A10_v5", "phi-4");
    merge(&mut bypass, &json!({"metadata": {"annotations": {"kaito.sh/bypass-resource-checks": ""}}}));
    run_table(
        &nap(),
        vec![
            ("transformers fits", transformers("Standard_NC24ads_A100_v4", "phi-4"), None),
            (
                "transformers too small",
                transformers("Standard_NV36ads_A10_v5", "phi-4"),
                Some(("inference.preset.name", "Insufficient total GPU memory")),
            ),
            ("bypass", bypass, None),
            // vLLM + auto-provisioning: spread over several nodes by the estimator, so admitted.
            (
                "vllm multi-node",
                json!({"resource": {"instanceType": "Standard_NC24ads_A100_v4"}, "inference": {"preset": {"name": "llama-3.3-70b-instruct", "presetOptions": {"modelAccessSecret": "hf"}}}}),
                None,
            ),
        ],
    );
    let mut count_two = transformers("Standard_NC24ads_A100_v4", "llama-3.3-70b-instruct");
    merge(
        &mut count_two,
        &json!({"resource": {"count": 2}, "inference": {"preset": {"presetOptions": {"modelAccessSecret": "hf"}}}}),
    );
    run_table(
        &nap(),
        vec![(
            "transformers multi-node",
            count_two,
            Some(("inference.preset.name", "Multi-node distributed inference is not supported")),
        )],
    );
    // Bring-your-own vLLM: the plan's node limit is the number of matching nodes.
    let no_it = json!({"resource": {"instanceType": null}, "inference": {"preset": {"name": "llama-3.3-70b-instruct", "presetOptions": {"modelAccessSecret": "hf"}}}});
    run_table(
        &byo_with_nodes(vec![gpu_node("NVIDIA-A100-SXM4-80GB", "1", "81920")]),
        vec![("byo vllm one small node", no_it.clone(), Some(("inference.preset.name", "add 2 node(s)")))],
    );
    run_table(
        &byo_with_nodes(vec![gpu_node("NVIDIA-A100-SXM4-80GB", "8", "81920")]),
        vec![("byo vllm big node", no_it, None)],
    );
}

#[test]
fn rule_10_runtime() {
    run_table(
        &nap(),
        vec![
            (
                "transformers capable",
                json!({"metadata": {"annotations": {"kaito.sh/runtime": "transformers"}}, "inference": {"preset": {"name": "phi-4"}}}),
                None,
            ),
            (
                "no transformers command",
                json!({"metadata": {"annotations": {"kaito.sh/runtime": "transformers"}}}),
                Some(("inference.preset.name", "cannot be served by the transformers runtime")),
            ),
            (
                "vllm strength",
                json!({"inference": {"adapters": [{"source": {"name": "a", "image": "reg.io/a:1"}, "strength": "0.5"}]}}),
                Some(("inference.adapters[0].strength", "vLLM does not support adapter strength")),
            ),
        ],
    );
    let no_vllm = ValidationContext { feature_gates: FeatureGates { vllm: false, ..FeatureGates::default() }, ..nap() };
    run_table(
        &no_vllm,
        vec![("vllm gate off forces transformers", json!({}), Some(("inference.preset.name", "transformers runtime")))],
    );
}

#[test]
fn rule_11_model_access_secret() {
    let llama = |secret: Option<&str>| json!({"inference": {"preset": {"name": "llama-3.1-8b-instruct", "presetOptions": {"modelAccessSecret": secret}}}});
    let mut local = json!({"metadata": {"annotations": {"kaito.sh/use-local-weights": "true"}}, "inference": {"preset": {"presetOptions": {"modelAccessSecret": "hf"}}}});
    merge(&mut local, &json!({}));
    run_table(
        &nap(),
        vec![
            ("gated with secret", llama(Some("hf-token")), None),
            (
                "gated without secret",
                llama(None),
                Some(("inference.preset.presetOptions.modelAccessSecret", "gated Hugging Face model")),
            ),
            ("not gated", json!({}), None),
            (
                "secret with local weights",
                local,
                Some(("inference.preset.presetOptions.modelAccessSecret", "not downloaded")),
            ),
        ],
    );
}

#[test]
fn rule_12_adapters() {
    let transformers = |adapters: Value| json!({"metadata": {"annotations": {"kaito.sh/runtime": "transformers"}}, "inference": {"preset": {"name": "phi-4"}, "adapters": adapters}});
    let many: Vec<Value> =
        (0..11).map(|i| json!({"source": {"name": format!("a{i}"), "image": "reg.io/a:1"}})).collect();
    run_table(
        &nap(),
        vec![
            ("valid", transformers(json!([{"source": {"name": "a", "image": "reg.io/a:1"}, "strength": "0.3"}])), None),
            ("too many", transformers(Value::Array(many)), Some(("inference.adapters", "at most 10"))),
            (
                "duplicate",
                transformers(
                    json!([{"source": {"name": "a", "image": "reg.io/a:1"}}, {"source": {"name": "a", "image": "reg.io/b:1"}}]),
                ),
                Some(("inference.adapters[1].source.name", "also used by inference.adapters[0]")),
            ),
            (
                "no source",
                transformers(json!([{"strength": "0.5"}])),
                Some(("inference.adapters[0].source", "required")),
            ),
            (
                "urls",
                transformers(json!([{"source": {"name": "a", "urls": ["https://example.com/a"]}}])),
                Some(("inference.adapters[0].source.urls", "cannot be downloaded from URLs")),
            ),
            (
                "bad name",
                transformers(json!([{"source": {"name": "A_B", "image": "reg.io/a:1"}}])),
                Some(("inference.adapters[0].source.name", "not a valid name")),
            ),
            (
                "strength out of range",
                transformers(json!([{"source": {"name": "a", "image": "reg.io/a:1"}, "strength": "1.5"}])),
                Some(("inference.adapters[0].strength", "between 0 and 1")),
            ),
        ],
    );
}

#[test]
fn rule_13_inference_config() {
    let cfg = json!({"inference": {"config": "cfg"}});
    let ctx = |text: &str| with_config_maps(nap(), &[("cfg", "inference_config.yaml", text)]);
    run_table(&nap(), vec![("offline: skipped", cfg.clone(), None)]);
    run_table(&ctx("vllm:\n  max-model-len: 8192\n"), vec![("valid", cfg.clone(), None)]);
    run_table(
        &ctx("vllm:\n  max-model-len: 200000\n"),
        vec![("too long", cfg.clone(), Some(("inference.config", "set vllm.max-model-len to at most 131072")))],
    );
    run_table(
        &ctx("vllm:\n  max-model-len: lots\n"),
        vec![("not a number", cfg.clone(), Some(("inference.config", "not a positive integer")))],
    );
    run_table(&ctx("vllm: [unclosed\n"), vec![("bad yaml", cfg.clone(), Some(("inference.config", "not valid YAML")))]);
    run_table(
        &with_config_maps(nap(), &[("cfg", "other.yaml", "")]),
        vec![("missing key", cfg.clone(), Some(("inference.config", "has no key inference_config.yaml")))],
    );
    run_table(&with_config_maps(nap(), &[]), vec![("missing map", cfg, Some(("inference.config", "does not exist")))]);
}

#[test]
fn rule_14_partitions() {
    let mig = |profile: &str, model: &str| json!({"resource": {"instanceType": null, "partition": {"mode": "mig", "profile": profile}}, "inference": {"preset": {"name": model}}});
    let gates = FeatureGates { enable_mig: true, enable_accelerator: true, ..FeatureGates::default() };
    let ctx = ValidationContext { feature_gates: gates, ..byo() };
    run_table(
        &ctx,
        vec![
            ("fits slice", mig("3g.40gb", "phi-4-mini-instruct"), None),
            (
                "unknown profile",
                mig("5g.50gb", "phi-4-mini-instruct"),
                Some(("resource.partition.profile", "not a known MIG profile")),
            ),
            (
                "too big for slice",
                mig("1g.10gb", "phi-4"),
                Some(("inference.preset.name", "MIG profile 1g.10gb has 10 GiB")),
            ),
            (
                "accelerator without count",
                json!({"resource": {"instanceType": null, "partition": {"mode": "accelerator"}}}),
                Some(("resource.partition.count", "needs count")),
            ),
            (
                "accelerator with profile",
                json!({"resource": {"instanceType": null, "partition": {"mode": "accelerator", "count": 1, "profile": "1g.10gb"}}}),
                Some(("resource.partition.profile", "only for MIG")),
            ),
            (
                "accelerator valid",
                json!({"resource": {"instanceType": null, "partition": {"mode": "accelerator", "count": 2}}}),
                None,
            ),
        ],
    );
    run_table(
        &byo(),
        vec![("gate off", mig("3g.40gb", "phi-4-mini-instruct"), Some(("resource.partition.mode", "enableMIG")))],
    );
    let with_nodes =
        ValidationContext { byo_nodes: Some(vec![gpu_node("NVIDIA-A100-SXM4-80GB", "1", "81920")]), ..ctx };
    run_table(&with_nodes, vec![("slice of known node", mig("3g.40gb", "phi-4-mini-instruct"), None)]);
}

#[test]
fn rule_15_model_streaming() {
    let gates = FeatureGates { model_streaming: true, ..FeatureGates::default() };
    let streaming = |drivers: Vec<&str>| ValidationContext {
        feature_gates: gates,
        csi_drivers: Some(drivers.into_iter().map(String::from).collect()),
        ..nap()
    };
    run_table(&streaming(vec!["blob.csi.azure.com"]), vec![("driver present", json!({}), None)]);
    run_table(
        &streaming(vec![]),
        vec![
            (
                "driver missing",
                json!({}),
                Some(("metadata.annotations[kaito.sh/model-streaming]", "blob.csi.azure.com")),
            ),
            ("disabled", json!({"metadata": {"annotations": {"kaito.sh/model-streaming": "disabled"}}}), None),
        ],
    );
}

#[test]
fn rule_16_tuning() {
    let t = |patch: Value| {
        let mut v = tuning();
        merge(&mut v, &patch);
        v
    };
    run_table(
        &nap(),
        vec![
            ("valid", t(json!({})), None),
            ("no method", t(json!({"tuning": {"method": null}})), Some(("tuning.method", "required"))),
            ("count 2", t(json!({"resource": {"count": 2}})), Some(("resource.count", "one node"))),
            ("no preset", t(json!({"tuning": {"preset": null}})), Some(("tuning.preset", "required"))),
            (
                "not tunable",
                t(json!({"tuning": {"preset": {"name": "llama-3.1-8b-instruct"}}})),
                Some(("tuning.preset.name", "does not support fine-tuning")),
            ),
            (
                "outside catalog",
                t(json!({"tuning": {"preset": {"name": "org/model"}}})),
                Some(("tuning.preset.name", "not in the catalog")),
            ),
        ],
    );
    let cfg = t(json!({"tuning": {"config": "train"}}));
    let ctx = |text: &str| with_config_maps(nap(), &[("train", "training_config.yaml", text)]);
    run_table(
        &ctx(
            "training_config:\n  QuantizationConfig:\n    load_in_4bit: true\n  TrainingArguments:\n    output_dir: /mnt/results\n",
        ),
        vec![("good config", cfg.clone(), None)],
    );
    run_table(
        &ctx("training_config:\n  QuantizationConfig:\n    load_in_4bit: true\n  Extra: {}\n"),
        vec![("unknown section", cfg.clone(), Some(("tuning.config", "unknown section Extra")))],
    );
    run_table(
        &ctx("training_config:\n  QuantizationConfig:\n    load_in_4bit: false\n"),
        vec![("qlora unquantized", cfg.clone(), Some(("tuning.config", "qlora needs a quantized model")))],
    );
    run_table(
        &ctx("training_config:\n  QuantizationConfig:\n    load_in_4bit: true\n    load_in_8bit: true\n"),
        vec![("both bits", cfg.clone(), Some(("tuning.config", "both load_in_4bit and load_in_8bit")))],
    );
    run_table(
        &ctx(
            "training_config:\n  QuantizationConfig:\n    load_in_4bit: true\n  TrainingArguments:\n    output_dir: /mnt/../etc\n",
        ),
        vec![("output outside /mnt", cfg.clone(), Some(("tuning.config", "under /mnt")))],
    );
    run_table(&ctx("other: 1\n"), vec![("no top key", cfg, Some(("tuning.config", "top-level training_config")))]);
    let release = ValidationContext { release_config_maps: Some(BTreeMap::new()), ..nap() };
    run_table(
        &release,
        vec![("default template missing", t(json!({})), Some(("tuning.config", "qlora-params-template")))],
    );
}

#[test]
fn rule_17_data_sources_and_destinations() {
    let t = |patch: Value| {
        let mut v = tuning();
        merge(&mut v, &patch);
        v
    };
    run_table(
        &nap(),
        vec![
            ("urls", t(json!({})), None),
            ("image", t(json!({"tuning": {"input": {"urls": null, "image": "reg.io/data:1"}}})), None),
            (
                "two sources",
                t(json!({"tuning": {"input": {"image": "reg.io/data:1"}}})),
                Some(("tuning.input", "exactly one of urls, volumeSource or image")),
            ),
            (
                "bad image",
                t(json!({"tuning": {"input": {"urls": null, "image": "Reg.io/Data:1"}}})),
                Some(("tuning.input.image", "not a valid image reference")),
            ),
            (
                "private url",
                t(json!({"tuning": {"input": {"urls": ["http://10.1.2.3/data.json"]}}})),
                Some(("tuning.input.urls[0]", "private")),
            ),
            (
                "metadata url",
                t(json!({"tuning": {"input": {"urls": ["http://metadata.google.internal/x"]}}})),
                Some(("tuning.input.urls[0]", "metadata service")),
            ),
            (
                "push without secret",
                t(json!({"tuning": {"output": {"imagePushSecret": null}}})),
                Some(("tuning.output.imagePushSecret", "push secret")),
            ),
            (
                "volume and image",
                t(json!({"tuning": {"output": {"volumeSource": {"persistentVolumeClaim": {"claimName": "out"}}}}})),
                Some(("tuning.output", "exactly one of volumeSource or image")),
            ),
        ],
    );
}

#[test]
fn deprecated_fields_warn_without_rejecting() {
    let ws = workspace(json!({
        "resource": {"count": 1, "preferredNodes": ["n1"]},
        "inference": {"preset": {"accessMode": "public", "presetOptions": {"image": "x", "imagePullSecrets": ["s"]}}}
    }));
    let outcome = validate_workspace_create(&ws, &nap());
    assert!(outcome.is_ok(), "{outcome}");
    for phrase in ["preferredNodes", "resource.count", "accessMode", "presetOptions.image", "imagePullSecrets"] {
        assert!(outcome.warnings.iter().any(|w| w.contains(phrase)), "{phrase}: {:?}", outcome.warnings);
    }
}

#[test]
fn update_immutable_fields() {
    let ctx = nap();
    let old = workspace(json!({"metadata": {"annotations": {"kaito.sh/model-streaming": "disabled"}}}));
    let cases: Vec<Case> = vec![
        ("unchanged", json!({"metadata": {"annotations": {"kaito.sh/model-streaming": "disabled"}}}), None),
        (
            "adapters may change",
            json!({"metadata": {"annotations": {"kaito.sh/model-streaming": "disabled"}}, "inference": {"adapters": [{"source": {"name": "a", "image": "reg.io/a:1"}}]}}),
            None,
        ),
        ("count", json!({"resource": {"count": 2}}), Some(("resource.count", "immutable"))),
        (
            "instance type",
            json!({"resource": {"instanceType": "Standard_NC48ads_A100_v4"}}),
            Some(("resource.instanceType", "immutable")),
        ),
        (
            "selector",
            json!({"resource": {"labelSelector": {"matchLabels": {"apps": "y"}}}}),
            Some(("resource.labelSelector", "immutable")),
        ),
        (
            "partition",
            json!({"resource": {"partition": {"mode": "accelerator", "count": 1}}}),
            Some(("resource.partition", "immutable")),
        ),
        ("preset", json!({"inference": {"preset": {"name": "phi-4"}}}), Some(("inference.preset", "immutable"))),
        ("toggle", tuning(), Some(("inference", "cannot switch"))),
        (
            "streaming annotation",
            json!({"metadata": {"annotations": null}}),
            Some(("metadata.annotations[kaito.sh/model-streaming]", "immutable")),
        ),
        (
            "adapters revalidated",
            json!({"inference": {"adapters": [{"source": {"name": "a", "urls": ["https://x.io/a"]}}]}}),
            Some(("inference.adapters[0].source.urls", "URLs")),
        ),
    ];
    for (name, patch, expected) in cases {
        let mut new_value = serde_json::to_value(&old).expect("serializes");
        merge(&mut new_value, &patch);
        let new: Workspace = serde_json::from_value(new_value).expect("parses");
        let outcome = validate_workspace_update(&old, &new, &ctx);
        match expected {
            None => assert!(outcome.is_ok(), "{name}: {outcome}"),
            Some((field, phrase)) => assert!(
                outcome.violations.iter().any(|v| v.field == field && v.message.contains(phrase)),
                "{name}: expected {field}: …{phrase}…, got:\n{outcome}"
            ),
        }
    }
    // Template may change but not appear.
    let template_old =
        workspace(json!({"inference": {"preset": null, "template": {"spec": {"containers": [{"name": "a"}]}}}}));
    let template_new =
        workspace(json!({"inference": {"preset": null, "template": {"spec": {"containers": [{"name": "b"}]}}}}));
    assert!(validate_workspace_update(&template_old, &template_new, &ctx).is_ok());
    let added = validate_workspace_update(&old, &template_new, &ctx);
    assert!(added.has_violation_on("inference.template"), "{added}");
    // BYO may clear a legacy instance type.
    let cleared = workspace(
        json!({"resource": {"instanceType": null}, "metadata": {"annotations": {"kaito.sh/model-streaming": "disabled"}}}),
    );
    assert!(validate_workspace_update(&old, &cleared, &byo()).is_ok());
    assert!(!validate_workspace_update(&old, &cleared, &ctx).is_ok());
    // Deleting objects are always admitted.
    let mut deleting = workspace(json!({"resource": {"count": 5}}));
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert!(validate_workspace_update(&old, &deleting, &ctx).is_ok());
}

#[test]
fn violations_display_as_field_colon_message() {
    let outcome = validate_workspace_create(&workspace(json!({"resource": {"instanceType": null}})), &nap());
    let text = outcome.violations[0].to_string();
    assert!(text.starts_with("resource.instanceType: required"), "{text}");
}

#[test]
fn configured_max_model_len_reads_the_vllm_section() {
    use kaito_api::validation::{INFERENCE_CONFIG_KEY, configured_max_model_len};
    let data = |text: &str| BTreeMap::from([(INFERENCE_CONFIG_KEY.to_string(), text.to_string())]);
    assert_eq!(configured_max_model_len(&data("vllm:\n  max-model-len: 8192\n")), Some(8192));
    assert_eq!(configured_max_model_len(&data("vllm:\n  max-model-len: \"4096\"\n")), Some(4096));
    assert_eq!(configured_max_model_len(&data("vllm:\n  gpu-memory-utilization: 0.9\n")), None);
    assert_eq!(configured_max_model_len(&data("vllm:\n  max-model-len: -1\n")), None);
    assert_eq!(configured_max_model_len(&data("not: [valid")), None);
    assert_eq!(configured_max_model_len(&BTreeMap::new()), None);
}
