//! Checks shared by several kinds: names, label selectors, SKUs, image references, URLs, data sources,
//! cron schedules and durations.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kaito_core::{Cloud, sku};

use super::Outcome;
use crate::labels::RESERVED_SELECTOR_KEYS;
use crate::v1beta1::{DataDestination, DataSource};

/// Whether `s` is an RFC 1123 label: at most 63 lowercase letters, digits and `-`, starting and ending with
/// a letter or digit.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `s` is an RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Checks an object name against the RFC 1123 label rule.
pub(crate) fn check_name_label(name: Option<&str>, outcome: &mut Outcome) {
    if let Some(name) = name
        && !is_dns1123_label(name)
    {
        outcome.violation(
            "metadata.name",
            format!(
                "\"{name}\" is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (it names the Service and pods)"
            ),
        );
    }
}

/// Turns a label selector into the labels it requires: matchLabels plus `In` expressions with exactly one
/// value. Other expressions cannot be stamped on nodes.
pub(crate) fn selector_as_map(selector: &LabelSelector) -> Result<BTreeMap<String, String>, String> {
    let mut labels = selector.match_labels.clone().unwrap_or_default();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.as_deref().unwrap_or_default();
        if expr.operator != "In" || values.len() != 1 {
            return Err(format!(
                "the expression on \"{}\" ({} with {} value(s)) cannot be turned into node labels: use matchLabels, or In with exactly one value",
                expr.key,
                expr.operator,
                values.len()
            ));
        }
        if let Some(previous) = labels.get(&expr.key)
            && previous != &values[0]
        {
            return Err(format!(
                "label \"{}\" is required to be both \"{previous}\" and \"{}\": keep one value",
                expr.key, values[0]
            ));
        }
        labels.insert(expr.key.clone(), values[0].clone());
    }
    Ok(labels)
}

/// Rule: the selector converts to labels and is not made only of labels KAITO manages.
pub(crate) fn check_label_selector(selector: &LabelSelector, field: &str, outcome: &mut Outcome) {
    match selector_as_map(selector) {
        Err(message) => outcome.violation(field, message),
        Ok(labels) => {
            if !labels.is_empty() && labels.keys().all(|k| RESERVED_SELECTOR_KEYS.contains(&k.as_str())) {
                outcome.violation(
                    format!("{field}.matchLabels"),
                    format!(
                        "only KAITO-managed label keys ({}) are set: add a label of your own, e.g. apps: my-model",
                        labels.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }
}

/// Rule: an instance type the operator can provision on this cloud.
pub(crate) fn check_instance_type(instance_type: &str, cloud: Cloud, field: &str, outcome: &mut Outcome) {
    if sku::lookup(cloud, instance_type).is_some() {
        return;
    }
    if cloud == Cloud::Azure && sku::azure_accepts_unknown(instance_type) {
        return;
    }
    let hint = match sku::suggest(cloud, instance_type) {
        Some(name) => format!("did you mean {name}?"),
        None => format!("run `kaito plan <model> --cloud {cloud}` to pick a GPU SKU"),
    };
    outcome.violation(field, format!("\"{instance_type}\" is not a supported {cloud} GPU instance type: {hint}"));
}

/// Known NVIDIA MIG profiles (A30, A100 40/80 GB, H100 80/94 GB, H200, B200), without the `+me` suffix.
pub(crate) const MIG_PROFILES: &[&str] = &[
    "1g.6gb", "2g.12gb", "4g.24gb", "1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb", "1g.20gb",
    "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", "1g.12gb", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb",
    "1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb", "1g.23gb", "1g.45gb", "2g.45gb", "3g.90gb",
    "4g.90gb", "7g.180gb",
];

/// The memory of a known MIG profile in GiB (e.g. `3g.40gb` → 40), or `None` if the profile is unknown.
pub(crate) fn mig_profile_memory_gib(profile: &str) -> Option<u64> {
    let base = profile.strip_suffix("+me").unwrap_or(profile);
    if !MIG_PROFILES.contains(&base) {
        return None;
    }
    base.split_once('.')?.1.strip_suffix("gb")?.parse().ok()
}

fn is_path_component(s: &str) -> bool {
    // lowercase alphanumerics separated by '.', '_', '__' or runs of '-'.
    let bytes = s.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok || start == i {
            return false;
        }
    }
    true
}

fn is_registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.starts_with('[') || h.ends_with(']') => (h, Some(p)),
        _ => (s, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1].parse::<Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Parses a container image reference (`[registry[:port]/]path[:tag][@algo:hex]`) like the Docker
/// reference grammar. Returns `(has_registry_or_path_prefix, has_tag)` on success.
pub(crate) fn parse_image_reference(reference: &str) -> Result<(bool, bool), String> {
    if reference.is_empty() || reference.len() > 4096 || reference.trim() != reference {
        return Err("empty or padded with spaces".to_string());
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let (algo, hex) = digest.split_once(':').ok_or("the digest must look like sha256:<hex>")?;
        if algo.is_empty()
            || !algo.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-_".contains(&b))
            || hex.len() < 32
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err("the digest must look like sha256:<hex>".to_string());
        }
    }
    // A tag follows the last ':' after the last '/'.
    let last_slash = name_tag.rfind('/');
    let (name, tag) = match name_tag.rfind(':') {
        Some(colon) if last_slash.is_none_or(|s| colon > s) => (&name_tag[..colon], Some(&name_tag[colon + 1..])),
        _ => (name_tag, None),
    };
    if let Some(tag) = tag {
        let bytes = tag.as_bytes();
        if bytes.is_empty()
            || bytes.len() > 128
            || !(bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            || !bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
        {
            return Err(format!("tag \"{tag}\" is not valid"));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let has_prefix = parts.len() > 1;
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[') {
            if !is_registry_host(first) {
                return Err(format!("registry \"{first}\" is not a valid host[:port]"));
            }
            parts.remove(0);
        }
    }
    if parts.is_empty() || !parts.iter().all(|p| is_path_component(p)) {
        return Err("the repository must be lowercase letters, digits and separators (. _ -), split by /".to_string());
    }
    Ok((has_prefix, tag.is_some() || digest.is_some()))
}

/// Host names of cloud instance-metadata services, never a data source.
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "metadata.packet.net",
    "metadata.platformequinix.com",
];

fn ipv4_is_internal(ip: Ipv4Addr) -> bool {
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        // 100.64.0.0/10 carrier-grade NAT, used for cluster and VPC addresses.
        || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
}

fn ip_is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => ipv4_is_internal(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return ipv4_is_internal(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        }
    }
}

/// Checks that a URL is an http(s) URL to a public host: not localhost, a metadata service or an internal IP.
pub(crate) fn check_public_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("\"{raw}\" is not a valid URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("\"{raw}\" uses scheme {}: only http and https URLs can be downloaded", url.scheme()));
    }
    let refuse = |what: &str| Err(format!("\"{raw}\" points to {what}: use a publicly reachable http(s) URL"));
    match url.host() {
        None => refuse("no host"),
        Some(url::Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if domain == "localhost" || domain.ends_with(".localhost") {
                refuse("localhost")
            } else if METADATA_HOSTS.contains(&domain.as_str()) {
                refuse("a cloud metadata service")
            } else {
                Ok(())
            }
        }
        Some(url::Host::Ipv4(ip)) if ipv4_is_internal(ip) => refuse("a loopback, private or link-local address"),
        Some(url::Host::Ipv6(ip)) if ip_is_internal(IpAddr::V6(ip)) => {
            refuse("a loopback, private or link-local address")
        }
        Some(_) => Ok(()),
    }
}

/// Checks that a URL parses and is http(s) (for service endpoints, where cluster-internal hosts are fine).
pub(crate) fn check_service_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("\"{raw}\" is not a valid URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("\"{raw}\" must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("\"{raw}\" has no host"));
    }
    Ok(())
}

fn present<T>(value: &Option<T>) -> bool
where
    T: IsEmpty,
{
    value.as_ref().is_some_and(|v| !v.is_empty_value())
}

trait IsEmpty {
    fn is_empty_value(&self) -> bool;
}

impl IsEmpty for String {
    fn is_empty_value(&self) -> bool {
        self.trim().is_empty()
    }
}

impl IsEmpty for Vec<String> {
    fn is_empty_value(&self) -> bool {
        self.is_empty()
    }
}

impl IsEmpty for serde_json::Value {
    fn is_empty_value(&self) -> bool {
        self.is_null() || self.as_object().is_some_and(|o| o.is_empty())
    }
}

/// Rule 17 for a data source: exactly one of urls/volumeSource/image; image is a valid reference; URLs are
/// public http(s). `allow_urls` is false for adapters (which must come from an image or a volume).
pub(crate) fn check_data_source(source: &DataSource, field: &str, allow_urls: bool, outcome: &mut Outcome) {
    if let Some(name) = source.name.as_deref()
        && !is_dns1123_subdomain(name)
    {
        outcome.violation(
            format!("{field}.name"),
            format!(
                "\"{name}\" is not a valid name: use lowercase letters, digits, '-' and '.' (it names a container)"
            ),
        );
    }
    let has_urls = present(&source.urls);
    let has_volume = present(&source.volume_source);
    let has_image = present(&source.image);
    if !allow_urls && has_urls {
        outcome.violation(
            format!("{field}.urls"),
            "adapters cannot be downloaded from URLs: package the adapter in an image or put it on a volume",
        );
        return;
    }
    let set = [has_urls, has_volume, has_image].iter().filter(|b| **b).count();
    if set != 1 {
        let choices = if allow_urls { "urls, volumeSource or image" } else { "image or volumeSource" };
        let what = if set == 0 { "none is set" } else { "several are set" };
        outcome.violation(field.to_string(), format!("set exactly one of {choices} ({what})"));
        return;
    }
    if let Some(image) = source.image.as_deref().filter(|_| has_image)
        && let Err(why) = parse_image_reference(image)
    {
        outcome.violation(
            format!("{field}.image"),
            format!("\"{image}\" is not a valid image reference ({why}): use e.g. myregistry.azurecr.io/data:v1"),
        );
    }
    for (i, url) in source.urls.iter().flatten().enumerate() {
        if let Err(why) = check_public_url(url) {
            outcome.violation(format!("{field}.urls[{i}]"), why);
        }
    }
}

/// Rule 17 for a data destination: exactly one of volumeSource/image; an image needs imagePushSecret.
pub(crate) fn check_data_destination(dest: &DataDestination, field: &str, outcome: &mut Outcome) {
    let has_volume = present(&dest.volume_source);
    let has_image = present(&dest.image);
    if has_volume == has_image {
        let what = if has_volume { "both are set" } else { "neither is set" };
        outcome.violation(field.to_string(), format!("set exactly one of volumeSource or image ({what})"));
        return;
    }
    if let Some(image) = dest.image.as_deref().filter(|_| has_image) {
        if let Err(why) = parse_image_reference(image) {
            outcome.violation(
                format!("{field}.image"),
                format!(
                    "\"{image}\" is not a valid image reference ({why}): use e.g. myregistry.azurecr.io/adapter:v1"
                ),
            );
        }
        if !present(&dest.image_push_secret) {
            outcome.violation(
                format!("{field}.imagePushSecret"),
                "pushing to an image needs a push secret: set imagePushSecret to a kubernetes.io/dockerconfigjson Secret",
            );
        }
    }
}

fn cron_value(text: &str, min: u32, max: u32, names: &[&str]) -> Option<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return (min..=max).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    let offset = if names.len() == 12 { 1 } else { 0 };
    names.iter().position(|n| *n == upper).map(|i| i as u32 + offset)
}

fn cron_field(text: &str, min: u32, max: u32, names: &[&str], question_ok: bool) -> bool {
    if text.is_empty() {
        return false;
    }
    text.split(',').all(|item| {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step
            && step.parse::<u32>().map_or(true, |s| s == 0)
        {
            return false;
        }
        if range == "*" || (question_ok && range == "?") {
            return true;
        }
        match range.split_once('-') {
            Some((a, b)) => match (cron_value(a, min, max, names), cron_value(b, min, max, names)) {
                (Some(a), Some(b)) => a <= b,
                _ => false,
            },
            None => cron_value(range, min, max, names).is_some(),
        }
    })
}

/// Checks a 5-field cron expression (minute hour day-of-month month day-of-week) or a descriptor such as
/// `@daily`.
pub(crate) fn check_cron(expr: &str) -> Result<(), String> {
    let trimmed = expr.trim();
    if trimmed.starts_with('@') {
        return match trimmed {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight" | "@hourly" => Ok(()),
            _ => Err(format!("unknown cron descriptor {trimmed}")),
        };
    }
    const MONTHS: &[&str] = &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
    const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected 5 fields (minute hour day-of-month month day-of-week), found {}", fields.len()));
    }
    let specs: [(&str, u32, u32, &[&str], bool); 5] = [
        ("minute", 0, 59, &[], false),
        ("hour", 0, 23, &[], false),
        ("day-of-month", 1, 31, &[], true),
        ("month", 1, 12, MONTHS, false),
        ("day-of-week", 0, 7, DAYS, true),
    ];
    for (text, (what, min, max, names, question)) in fields.iter().zip(specs) {
        if !cron_field(text, min, max, names, question) {
            return Err(format!("{what} field \"{text}\" is not valid (allowed {min}-{max}, *, ranges, lists, steps)"));
        }
    }
    Ok(())
}

/// Parses a Go-style duration (`4h`, `90m`, `1h30m`, `2.5h`) into seconds.
pub(crate) fn parse_duration_seconds(text: &str) -> Result<f64, String> {
    let s = text.trim();
    let invalid = || format!("\"{text}\" is not a duration: use e.g. 4h, 90m or 1h30m");
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += number * factor;
    }
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("workspace-phi-4"));
        for bad in ["", "Phi", "a.b", "-a", "a-", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    #[test]
    fn image_references() {
        for good in [
            "busybox",
            "library/busybox:1.36",
            "myregistry.azurecr.io/adapters/phi-3-adapter:0.0.1",
            "localhost:5000/a/b:c",
            "ghcr.io/org/img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(parse_image_reference(good).is_ok(), "{good}");
        }
        for bad in ["", "UPPER/case", "a//b", "reg.io/a:", "reg.io/a:-tag", "a b", "reg.io:port/a"] {
            assert!(parse_image_reference(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_image_reference("ghcr.io/a/b:1"), Ok((true, true)));
        assert_eq!(parse_image_reference("b"), Ok((false, false)));
    }

    #[test]
    fn urls() {
        assert!(check_public_url("https://huggingface.co/datasets/x/resolve/main/a.parquet").is_ok());
        for bad in [
            "ftp://example.com/a",
            "http://localhost/a",
            "http://127.0.0.1/a",
            "http://10.0.0.4/a",
            "http://169.254.169.254/latest",
            "http://metadata.google.internal/x",
            "http://[::1]/a",
            "http://[fd00::1]/a",
            "not a url",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_and_durations() {
        for good in ["0 2 * * *", "*/15 0-6 1,15 JAN-MAR mon-fri", "@daily", "0 0 ? * 0"] {
            assert!(check_cron(good).is_ok(), "{good}");
        }
        for bad in ["", "0 2 * *", "61 * * * *", "* 24 * * *", "*/0 * * * *", "@often", "* * 0 * *"] {
            assert!(check_cron(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration_seconds("4h"), Ok(14400.0));
        assert_eq!(parse_duration_seconds("1h30m"), Ok(5400.0));
        assert_eq!(parse_duration_seconds("0"), Ok(0.0));
        assert_eq!(parse_duration_seconds("-1h"), Ok(-3600.0));
        assert!(parse_duration_seconds("4 hours").is_err());
        assert!(parse_duration_seconds("").is_err());
    }

    #[test]
    fn mig_profiles() {
        assert_eq!(mig_profile_memory_gib("1g.10gb"), Some(10));
        assert_eq!(mig_profile_memory_gib("3g.40gb+me"), Some(40));
        assert_eq!(mig_profile_memory_gib("5g.50gb"), None);
    }
}
