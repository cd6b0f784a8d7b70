//! `kaito models list` and `kaito models show`.

use std::io::Write;

use kaito_core::catalog::{self, Preset};

use crate::cli::{Format, RuntimeArg};
use crate::error::CliError;
use crate::output::{self, gib};

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "-" }.to_string()
}

fn runtimes(preset: &Preset) -> String {
    preset.runtimes.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

/// Prints the catalog, optionally only the models a runtime can serve.
pub fn list<W: Write>(out: &mut W, runtime: Option<RuntimeArg>, format: Format) -> Result<(), CliError> {
    let presets: Vec<&Preset> =
        catalog::all().iter().filter(|p| runtime.is_none_or(|r| p.supports(r.into()))).collect();
    if output::structured(out, format, &presets)? {
        return Ok(());
    }
    let mut rows = vec![
        ["NAME", "HUGGING FACE ID", "WEIGHTS", "CONTEXT", "RUNTIMES", "TUNING", "GATED"].map(String::from).to_vec(),
    ];
    for p in presets {
        rows.push(vec![
            p.name.clone(),
            p.hf_id.clone(),
            gib(p.weight_bytes),
            p.model_token_limit.to_string(),
            runtimes(p),
            yes_no(p.tuning),
            yes_no(p.hf_auth_required),
        ]);
    }
    output::table(out, &rows)
}

/// Prints one preset.
pub fn show<W: Write>(out: &mut W, name: &str, format: Format) -> Result<(), CliError> {
    let p = catalog::lookup(name)?;
    if output::structured(out, format, p)? {
        return Ok(());
    }
    let optional = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let mut pairs = vec![
        ("name", p.name.clone()),
        ("hugging face id", p.hf_id.clone()),
        ("aliases", if p.aliases.is_empty() { "-".to_string() } else { p.aliases.join(", ") }),
        ("architecture", p.architecture.clone()),
        ("parameters", p.parameters_billions.map(|b| format!("{b}B")).unwrap_or_else(|| "-".to_string())),
        ("weights", gib(p.weight_bytes)),
        ("node disk", format!("{} GiB", p.disk_gib())),
        ("dtype", p.dtype.clone()),
        ("quantization", optional(&p.quantization)),
        ("context (tokens)", p.model_token_limit.to_string()),
        ("kv cache", format!("{} bytes/token ({})", p.bytes_per_token(), p.kv_cache.attention_type())),
        ("runtimes", runtimes(p)),
        ("tuning", yes_no(p.tuning)),
        ("multi-node", yes_no(p.distributed_inference)),
        ("lora adapters", yes_no(p.vllm.lora_allowed)),
        ("tool-call parser", optional(&p.tool_call_parser)),
        ("reasoning parser", optional(&p.reasoning_parser)),
        ("chat template", optional(&p.chat_template)),
        ("gated (needs HF_TOKEN)", yes_no(p.hf_auth_required)),
    ];
    if let Some(note) = &p.note {
        pairs.push(("note", note.clone()));
    }
    output::key_values(out, &pairs)
}
