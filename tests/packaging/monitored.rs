//! The metric names the chart's alerting rules and Grafana dashboard use, and the sample names
//! a `/metrics` text holds. Shared by tests/packaging/monitoring.rs (against the operator's
//! rendering) and tests/operations.rs (against a real scrape during a plan).

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The files whose queries name cutover's metrics.
pub const FILES: [&str; 2] = [
    "charts/cutover/files/rules.yaml",
    "charts/cutover/dashboards/cutover.json",
];

/// Every `cutover_*` metric name the rules' expressions and the dashboard's queries (panel
/// targets, template variables) mention, as sample names (`_total`, `_bucket`, `_sum`,
/// `_count` included), with the file that uses it.
pub fn used_metric_names() -> BTreeSet<(String, &'static str)> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let read = |file: &str| std::fs::read_to_string(repo.join(file)).unwrap();
    let rules: serde_json::Value = serde_norway::from_str(&read(FILES[0])).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&read(FILES[1])).unwrap();
    let mut queries: Vec<(String, &'static str)> = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            queries.push((rule["expr"].as_str().unwrap().into(), FILES[0]));
        }
    }
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((target["expr"].as_str().unwrap().into(), FILES[1]));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            queries.push((q.into(), FILES[1]));
        }
    }
    let mut names = BTreeSet::new();
    for (query, file) in &queries {
        let mut rest = query.as_str();
        while let Some(i) = rest.find("cutover_") {
            let word_start = i == 0 || !is_name_char(rest.as_bytes()[i - 1]);
            let len = rest[i..].bytes().take_while(|b| is_name_char(*b)).count();
            if word_start {
                names.insert((rest[i..i + len].to_string(), *file));
            }
            rest = &rest[i + len..];
        }
    }
    names
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// The sample names of a text exposition (`name{labels} value` or `name value` lines).
pub fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}
