//! Kubernetes' `$(VAR)` expansion, as the kubelet applies it to env values, `command` and
//! `args` (k8s.io/kubernetes third_party/forked/golang/expansion): `$(NAME)` is replaced when
//! NAME is defined and left verbatim otherwise, `$$` escapes a `$`, anything else is literal.
//! Shell syntax (`$NAME`, `${NAME}`) is deliberately untouched: that is the shell's job.

/// Expands `$(NAME)` references in `input` with `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            // `$$` is an escaped `$`.
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = &inner[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[close + 1..];
                }
                None => {
                    // Unterminated reference: kept as written.
                    out.push_str(&rest[dollar..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "MONGODB_URI" => Some("mongodb://127.0.0.1:1/?x=1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_defined_variables() {
        assert_eq!(
            expand("--uri=$(MONGODB_URI)", vars),
            "--uri=mongodb://127.0.0.1:1/?x=1"
        );
        assert_eq!(expand("a$(EMPTY)b", vars), "ab");
    }

    #[test]
    fn keeps_undefined_and_malformed_references() {
        assert_eq!(expand("$(NOPE) x", vars), "$(NOPE) x");
        assert_eq!(expand("tail $(MONGODB_URI", vars), "tail $(MONGODB_URI");
        assert_eq!(expand("$HOME ${X} $", vars), "$HOME ${X} $");
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(expand("$$(MONGODB_URI)", vars), "$(MONGODB_URI)");
        assert_eq!(expand("cost: $$5", vars), "cost: $5");
        assert_eq!(expand("$$$(EMPTY)", vars), "$");
    }
}
