//! Which collections an obsolete-collection pattern selects: a `*` glob, minus the highest
//! numbered match when asked (Squidex keeps `States_Contents_All<N>` generations and reads
//! only the newest).

use wildmatch::WildMatch;

use crate::crd::CollectionPattern;

/// True when `name` matches `pattern`, where `*` matches any run of characters. (`?` would
/// match one character, but the CRD's pattern syntax and validation admit only `*`.)
pub fn glob_match(pattern: &str, name: &str) -> bool {
    WildMatch::new(pattern).matches(name)
}

/// The number a collection name ends with; an unnumbered name is generation 1.
pub fn generation(name: &str) -> u64 {
    let digits: String = name
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(1)
}

/// The collections of one database that `pattern` selects for dropping, sorted. `protected`
/// names (the migration document's collection) are never selected.
pub fn select(
    pattern: &CollectionPattern,
    collections: &[String],
    protected: &[String],
) -> Vec<String> {
    let glob = WildMatch::new(&pattern.pattern);
    let mut matched: Vec<&String> = collections
        .iter()
        .filter(|c| glob.matches(c))
        .filter(|c| !c.starts_with("system."))
        .collect();
    if pattern.keep_highest
        && let Some(newest) = matched
            .iter()
            .max_by_key(|c| (generation(c), c.len(), c.as_str()))
            .cloned()
    {
        matched.retain(|c| *c != newest);
    }
    let mut out: Vec<String> = matched
        .into_iter()
        .filter(|c| !protected.contains(c))
        .cloned()
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str, keep_highest: bool) -> CollectionPattern {
        CollectionPattern {
            database: "db".into(),
            pattern: p.into(),
            keep_highest,
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("States_Contents_All*", "States_Contents_All"));
        assert!(glob_match("States_Contents_All*", "States_Contents_All12"));
        assert!(!glob_match("States_Contents_All*", "States_Assets"));
        assert!(glob_match("*_old", "Events_old"));
        assert!(!glob_match("*_old", "Events_older"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXcYYb"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(
            !glob_match("ab*ba", "aba"),
            "prefix and suffix may not overlap"
        );
        assert!(glob_match("a**b", "aXb"), "a run of stars is one star");
    }

    #[test]
    fn keeps_the_newest_generation() {
        let cols: Vec<String> = [
            "States_Contents_All",
            "States_Contents_All2",
            "States_Contents_All10",
            "States_Contents_All3",
            "States_Assets",
            "Migration",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            select(&pat("States_Contents_All*", true), &cols, &[]),
            vec![
                "States_Contents_All",
                "States_Contents_All2",
                "States_Contents_All3"
            ]
        );
        assert_eq!(
            select(&pat("States_Contents_All*", false), &cols, &[]).len(),
            4
        );
    }

    #[test]
    fn never_selects_protected_or_system_collections() {
        let cols: Vec<String> = ["Migration", "Migration_old", "system.views"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            select(&pat("*", false), &cols, &["Migration".into()]),
            vec!["Migration_old"]
        );
    }
}
