//! Image sizes: human size strings, per-flavour budgets, `docker history`
//! layers (ours vs the base image's), and the change since the last recorded
//! size.
//!
//! Units follow Docker: `kB`/`MB`/`GB` are decimal (1 GB = 10^9 bytes), the
//! `KiB`/`MiB`/`GiB` spellings are binary.


use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Parses `2.5GB`, `3GB`, `500MB`, `46.16kB`, `1.2GiB`, `2B`, `1024` or
/// `3.4 GB` into bytes. Unit letters are case-insensitive (`mb` = `MB`); a
/// bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        bail!("size {text:?} does not start with a number (expected e.g. 2.5GB or 500MB)");
    }
    let value: f64 = number.parse().with_context(|| format!("bad number in size {text:?}"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => bail!("unknown size unit {other:?} in {text:?} (use B, kB, MB, GB, TB or KiB, MiB, GiB, TiB)"),
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        bail!("size {text:?} is too large");
    }
    // Round, so that "46.16kB" is 46160 and not 46159 from float error.
    Ok(bytes.round() as u64)
}

/// Parses one `--max-size` value, `cpu=2.5GB`, into (`cpu`, 2_500_000_000).
pub fn parse_budget(text: &str) -> Result<(String, u64)> {
    let (flavor, size) =
        text.split_once('=').ok_or_else(|| anyhow!("--max-size {text:?} should look like cpu=2.5GB"))?;
    let flavor = flavor.trim();
    if flavor.is_empty() {
        bail!("--max-size {text:?} names no flavour (e.g. cpu=2.5GB)");
    }
    let bytes = parse_size(size).with_context(|| format!("in --max-size {text:?}"))?;
    Ok((flavor.to_string(), bytes))
}

/// One row of `docker history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Image id of the row, or `<missing>` for intermediate layers.
    pub id: String,
    pub size: u64,
    /// The full `CreatedBy` text.
    pub created_by: String,
    /// True when the layer comes from the base image (see [`mark_base_layers`]).
    pub from_base: bool,
}

impl Layer {
    /// The instruction for a table cell, at most `max_chars` long.
    pub fn instruction(&self, max_chars: usize) -> String {
        short_instruction(&self.created_by, max_chars)
    }
}

/// Parses `docker history --no-trunc --human=false --format
/// '{{.ID}}\t{{.Size}}\t{{.CreatedBy}}'` output (newest layer first, as Docker
/// prints it). Blank lines are skipped.
pub fn parse_history(text: &str) -> Result<Vec<Layer>> {
    let mut layers = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(id), Some(size)) = (fields.next(), fields.next()) else {
            bail!("docker history line {} has no tab-separated size: {line:?}", n + 1);
        };
        let size = parse_size(size)
            .with_context(|| format!("docker history line {}: size {size:?} (was --human=false passed?)", n + 1))?;
        layers.push(Layer {
            id: id.trim().to_string(),
            size,
            created_by: fields.next().unwrap_or("").trim().to_string(),
            from_base: false,
        });
    }
    Ok(layers)
}

/// Marks the base image's layers, given how many rows the base image's own
/// `docker history` has: they are the bottom rows of ours, since history is
/// newest first.
pub fn mark_base_layers(layers: &mut [Layer], base_history_len: usize) {
    let ours = layers.len().saturating_sub(base_history_len);
    for (i, layer) in layers.iter_mut().enumerate() {
        layer.from_base = i >= ours;
    }
}

/// Sum of the layer sizes (equals `docker image inspect .Size` for local images).
pub fn total_size(layers: &[Layer]) -> u64 {
    layers.iter().map(|l| l.size).sum()
}

/// (bytes from the base image, bytes from our own instructions).
pub fn base_and_ours(layers: &[Layer]) -> (u64, u64) {
    layers
        .iter()
        .fold((0, 0), |(base, ours), l| if l.from_base { (base + l.size, ours) } else { (base, ours + l.size) })
}

/// A layer's share of the whole image, in percent (0 for an empty image).
pub fn share_percent(size: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        size as f64 * 100.0 / total as f64
    }
}

/// The `n` largest layers, largest first (ties keep history order).
pub fn largest_layers(layers: &[Layer], n: usize) -> Vec<&Layer> {
    let mut sorted: Vec<&Layer> = layers.iter().collect();
    sorted.sort_by_key(|l| std::cmp::Reverse(l.size));
    sorted.truncate(n);
    sorted
}

/// Shortens a `CreatedBy` text to the Dockerfile instruction a person wrote:
/// `/bin/sh -c #(nop) ` and the ` # buildkit` marker go, `|N A=1 B=2` build-arg
/// prefixes go, a bare `/bin/sh -c cmd` becomes `RUN cmd`, runs of whitespace
/// collapse, and the result is cut at `max_chars` with `…`.
pub fn short_instruction(created_by: &str, max_chars: usize) -> String {
    let mut text = created_by.trim();
    text = text.strip_suffix("# buildkit").unwrap_or(text).trim_end();
    let mut run = false;
    if let Some(rest) = text.strip_prefix("RUN ") {
        run = true;
        text = rest.trim_start();
    }
    text = strip_build_arg_prefix(text);
    let shown = if let Some(rest) = text.strip_prefix("/bin/sh -c #(nop)") {
        rest.trim().to_string()
    } else if let Some(rest) = text.strip_prefix("/bin/sh -c ") {
        format!("RUN {}", rest.trim())
    } else if run {
        format!("RUN {text}")
    } else if text.is_empty() {
        "(no instruction: imported layer)".to_string()
    } else {
        text.to_string()
    };
    truncate_chars(&shown.split_whitespace().collect::<Vec<_>>().join(" "), max_chars)
}

/// Drops the `|2 VERSION=0.1.0 TORCH=1 ` that Docker puts before a RUN's
/// shell when build args are in scope.
fn strip_build_arg_prefix(text: &str) -> &str {
    let Some(rest) = text.strip_prefix('|') else { return text };
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let Ok(count) = rest[..digits].parse::<usize>() else { return text };
    let mut remaining = rest[digits..].trim_start();
    for _ in 0..count {
        match remaining.split_once(char::is_whitespace) {
            Some((_, after)) => remaining = after.trim_start(),
            None => return "",
        }
    }
    remaining
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// A size record for the history file under `target/`:
/// `{"image": .., "bytes": .., "recorded_at": unix seconds}`.
pub fn size_record(image: &str, bytes: u64, recorded_at_unix: u64) -> Value {
    json!({ "image": image, "bytes": bytes, "recorded_at": recorded_at_unix })
}

/// The change from a previous record to the current one, in bytes (positive =
/// grew). `None` when the previous record is missing or has no `bytes`.
pub fn size_delta(previous: &Value, current: &Value) -> Option<i64> {
    let before = previous.get("bytes")?.as_u64()?;
    let now = current.get("bytes")?.as_u64()?;
    Some(now as i64 - before as i64)
}

/// The last record kept for a flavour in the history file's JSON
/// (`{"cpu": {...}, "gpu": {...}}`).
pub fn last_record<'a>(history: &'a Value, flavor: &str) -> Option<&'a Value> {
    history.get(flavor).filter(|v| v.is_object())
}

/// The history file's JSON with a flavour's record replaced; anything that is
/// not an object (a missing or corrupt file) starts afresh.
pub fn with_record(history: &Value, flavor: &str, record: Value) -> Value {
    let mut updated = match history {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    updated.insert(flavor.to_string(), record);
    Value::Object(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_docker_units() {
        let cases = [
            ("2.5GB", 2_500_000_000),
            ("3GB", 3_000_000_000),
            ("500MB", 500_000_000),
            ("46.16kB", 46_160),
            ("300.45kB", 300_450),
            ("2B", 2),
            ("1024", 1024),
            ("1.2GiB", 1_288_490_189),
            ("1MiB", 1_048_576),
            ("3.4 GB", 3_400_000_000),
            ("5gb", 5_000_000_000),
            ("0", 0),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text).unwrap(), bytes, "{text}");
        }
        for bad in ["", "GB", "2.5XB", "1.2.3GB", "-1GB", "1e3"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn budgets_parse() {
        assert_eq!(parse_budget("cpu=2.5GB").unwrap(), ("cpu".to_string(), 2_500_000_000));
        assert_eq!(parse_budget(" gpu = 6GiB ").unwrap(), ("gpu".to_string(), 6 << 30));
        assert!(parse_budget("2.5GB").is_err());
        assert!(parse_budget("=2GB").is_err());
        assert!(parse_budget("cpu=lots").is_err());
    }

    fn recorded_history() -> Vec<Layer> {
        let text = include_str!("testdata/history/engine20-buildkit.txt");
        let rows: String = text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
        parse_history(&rows).unwrap()
    }

    #[test]
    fn recorded_history_parses() {
        let mut layers = recorded_history();
        assert_eq!(layers.len(), 14);
        assert!(layers[0].id.starts_with("sha256:a8018782"));
        assert_eq!(layers[1].id, "<missing>");
        // Equals `docker image inspect --format '{{.Size}}'` of that image.
        assert_eq!(total_size(&layers), 2_152_291);

        mark_base_layers(&mut layers, 2);
        assert!(layers[..12].iter().all(|l| !l.from_base));
        assert!(layers[12..].iter().all(|l| l.from_base));
        assert_eq!(base_and_ours(&layers), (1_982_256, 170_035));

        let top: Vec<String> = largest_layers(&layers, 3).iter().map(|l| l.instruction(80)).collect();
        assert_eq!(
            top,
            [
                "COPY busybox /bin/busybox",
                "RUN head -c 120000 /dev/urandom > /app/venv.bin && echo \"torch=${TORCH}\"",
                "COPY big.bin /app/",
            ]
        );
        assert_eq!(layers[2].instruction(40), "EXPOSE map[8080/tcp:{}]");
        assert_eq!(largest_layers(&layers, 5).len(), 5);
        assert!((share_percent(layers[13].size, total_size(&layers)) - 92.1).abs() < 0.1);
    }

    #[test]
    fn instructions_are_shortened() {
        let cases = [
            ("/bin/sh -c #(nop)  CMD [\"python3\"]", "CMD [\"python3\"]"),
            ("/bin/sh -c #(nop) ADD file:4b1b6a in / ", "ADD file:4b1b6a in /"),
            ("/bin/sh -c apt-get update && apt-get install -y git", "RUN apt-get update && apt-get install -y git"),
            ("|2 A=1 B=two /bin/sh -c pip install .", "RUN pip install ."),
            ("RUN |1 TORCH_INDEX_URL=https://x/cpu /bin/sh -c pip install torch # buildkit", "RUN pip install torch"),
            ("RUN /bin/sh -c set -eux;\n\tapt-get update # buildkit", "RUN set -eux; apt-get update"),
            ("COPY /opt/venv /opt/venv # buildkit", "COPY /opt/venv /opt/venv"),
            ("WORKDIR /app", "WORKDIR /app"),
            ("", "(no instruction: imported layer)"),
        ];
        for (created_by, want) in cases {
            assert_eq!(short_instruction(created_by, 80), want, "{created_by:?}");
        }
        assert_eq!(short_instruction("RUN /bin/sh -c echo 0123456789 # buildkit", 12), "RUN echo 01…");
    }

    #[test]
    fn bad_history_is_an_error() {
        assert!(parse_history("sha256:abc\t1.2MB\tRUN x").is_ok()); // human sizes still parse
        assert!(parse_history("sha256:abc 12 RUN x").is_err());
        assert!(parse_history("sha256:abc\tbig\tRUN x").is_err());
        assert_eq!(parse_history("\n\n").unwrap(), vec![]);
    }

    #[test]
    fn deltas_between_records() {
        let before = size_record("iopaint:cpu-0.1.0", 1_000, 1);
        let after = size_record("iopaint:cpu-0.1.1", 1_500, 2);
        assert_eq!(size_delta(&before, &after), Some(500));
        assert_eq!(size_delta(&after, &before), Some(-500));
        assert_eq!(size_delta(&Value::Null, &after), None);

        let history = with_record(&Value::Null, "cpu", before.clone());
        let history = with_record(&history, "gpu", after.clone());
        assert_eq!(last_record(&history, "cpu"), Some(&before));
        assert_eq!(last_record(&history, "gpu"), Some(&after));
        assert_eq!(last_record(&history, "tpu"), None);
        let replaced = with_record(&history, "cpu", after.clone());
        assert_eq!(last_record(&replaced, "cpu"), Some(&after));
        assert_eq!(with_record(&json!([1, 2]), "cpu", before.clone()), json!({ "cpu": before }));
    }
}
