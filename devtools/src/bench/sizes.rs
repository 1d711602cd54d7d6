//! The data sets a benchmark run seeds: `10k`, `100k`, `1m` small documents (Squidex-shaped,
//! `appsim seed`: that many content items plus as many events), or `100mb` of large documents.

use anyhow::{Context, bail};
use serde::Serialize;

/// What to seed into the two databases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum DataSet {
    /// `documents` content items in the content database and as many events in the main one.
    Small { documents: u64 },
    /// About `bytes` of document data in documents of `document_bytes` each, split evenly
    /// between the two databases.
    Large { bytes: u64, document_bytes: u64 },
}

/// One size as written on the command line, with its data set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Size {
    pub label: String,
    pub data: DataSet,
}

/// Payload of one large document (a content item's body or an event's payload).
pub const LARGE_DOCUMENT_BYTES: u64 = 64 * 1024;

impl Size {
    /// Documents in both databases together (large: content items plus events).
    pub fn documents_total(&self) -> u64 {
        match self.data {
            DataSet::Small { documents } => 2 * documents,
            DataSet::Large {
                bytes,
                document_bytes,
            } => 2 * (bytes / document_bytes / 2),
        }
    }
}

/// Parses `10k,100k,1m,100mb` (also plain numbers and `none`, which selects nothing).
pub fn parse_sizes(list: &str) -> anyhow::Result<Vec<Size>> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.eq_ignore_ascii_case("none") {
            continue;
        }
        out.push(parse_size(item)?);
    }
    Ok(out)
}

fn parse_size(item: &str) -> anyhow::Result<Size> {
    let lower = item.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits
        .parse()
        .with_context(|| format!("size {item:?}: expected a number like 10k, 1m or 100mb"))?;
    let data = match unit {
        "" => DataSet::Small { documents: n },
        "k" => DataSet::Small {
            documents: n * 1_000,
        },
        "m" => DataSet::Small {
            documents: n * 1_000_000,
        },
        "mb" | "mib" => DataSet::Large {
            bytes: n * 1024 * 1024,
            document_bytes: LARGE_DOCUMENT_BYTES,
        },
        _ => bail!(
            "size {item:?}: unknown unit {unit:?} (use k, m for documents, mb for large documents)"
        ),
    };
    if n == 0 {
        bail!("size {item:?} is empty");
    }
    Ok(Size { label: lower, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_sizes() {
        let sizes = parse_sizes("10k, 100k,1m,100MB").unwrap();
        let data: Vec<DataSet> = sizes.iter().map(|s| s.data).collect();
        assert_eq!(
            data,
            [
                DataSet::Small { documents: 10_000 },
                DataSet::Small { documents: 100_000 },
                DataSet::Small {
                    documents: 1_000_000
                },
                DataSet::Large {
                    bytes: 100 * 1024 * 1024,
                    document_bytes: LARGE_DOCUMENT_BYTES
                },
            ]
        );
        assert_eq!(sizes[3].label, "100mb");
        assert_eq!(sizes[0].documents_total(), 20_000);
        assert_eq!(sizes[3].documents_total(), 1600);
    }

    #[test]
    fn none_and_plain_numbers() {
        assert!(parse_sizes("none").unwrap().is_empty());
        assert_eq!(
            parse_sizes("500").unwrap()[0].data,
            DataSet::Small { documents: 500 }
        );
        assert!(parse_sizes("10x").is_err());
        assert!(parse_sizes("0k").is_err());
    }
}
