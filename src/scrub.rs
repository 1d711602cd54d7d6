//! Scrubbing what a Job printed before it reaches status, conditions or events.
//!
//! A Job's termination message is its own result or, when it fails, the tail of its log
//! (`terminationMessagePolicy: FallbackToLogsOnError`); a tool or a migration may print its
//! connection string or password there. Everything copied from a Job's output passes through
//! [`scrub`] (in `k8s::views::job_view`), which removes:
//!
//! - the exact values known to be secret (the plan's connection string and its password, the
//!   migration credentials), wherever they stand as a whole token;
//! - the password of any URL with credentials: `scheme://user:pass@` → `scheme://user:***@`;
//! - the value after a key naming a secret: `password=…`, `PASSWORD: …`, `"pwd": "…"`,
//!   `--password …`, `token=…`, `secret=…` (in any case, also as a suffix: `DB_PASSWORD=…`).
//!
//! Pure.

/// What replaces a secret.
pub const MASK: &str = "***";

/// Known values shorter than this are not searched for on their own (a three-letter password
/// would mask every such word); the URL and key forms still catch them.
const MIN_KNOWN: usize = 4;

/// Keys whose value is a secret (compared in lower case, also as the end of a longer key).
const KEYS: [&str; 5] = ["password", "passwd", "pwd", "secret", "token"];

/// `text` without credentials: see the module documentation. `known` are exact secret values.
pub fn scrub(text: &str, known: &[String]) -> String {
    let mut out = text.to_string();
    let mut known: Vec<&str> = known
        .iter()
        .map(|k| k.trim())
        .filter(|k| k.len() >= MIN_KNOWN)
        .collect();
    // Longest first: a connection string goes before the password inside it.
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for k in known {
        out = replace_tokens(&out, k);
    }
    let out = url_passwords(&out);
    key_values(&out)
}

/// Replaces `value` where it stands as a whole token (not inside a longer word, so a short
/// password does not mask part of a checksum).
fn replace_tokens(text: &str, value: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(value) {
        let before = if i > 0 {
            rest[..i].chars().last()
        } else {
            out.chars().last()
        };
        let after = rest[i + value.len()..].chars().next();
        out.push_str(&rest[..i]);
        if word(before) && word(value.chars().next()) || word(after) && word(value.chars().last()) {
            out.push_str(value);
        } else {
            out.push_str(MASK);
        }
        rest = &rest[i + value.len()..];
    }
    out.push_str(rest);
    out
}

/// Where a value ends: whitespace, a quote, or a separator.
fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | ',' | ';' | '&' | ')' | ']' | '}' | '>'
        )
}

/// `scheme://user:pass@host` → `scheme://user:***@host`, for any scheme.
fn url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        // The authority (credentials and hosts, which ',' separates) ends at '/', '?', '#',
        // whitespace or a quote; the credentials end at its last '@'.
        let end = after
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>')
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, pass)) if !pass.is_empty() && pass != MASK => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    _ => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The value after a key naming a secret: `key=v`, `key: v`, `"key": "v"`, `--key v`.
fn key_values(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        let Some(kw) = KEYS
            .iter()
            .find(|k| lower.as_bytes()[i..].starts_with(k.as_bytes()))
        else {
            i += 1;
            continue;
        };
        let mut j = i + kw.len();
        // The rest of the key (`password_hash`, `passwordFile`): still a secret's key.
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
            j += 1;
        }
        let dashes = i >= 2 && &bytes[i - 2..i] == b"--";
        let mut k = j;
        if k < bytes.len() && matches!(bytes[k], b'"' | b'\'') {
            k += 1;
        }
        while k < bytes.len() && bytes[k] == b' ' {
            k += 1;
        }
        let separated = if k < bytes.len() && matches!(bytes[k], b'=' | b':') {
            k += 1;
            true
        } else {
            // `--password value`: the option's argument.
            dashes && k > j
        };
        if !separated {
            i = j;
            continue;
        }
        while k < bytes.len() && bytes[k] == b' ' {
            k += 1;
        }
        let quote = (k < bytes.len() && matches!(bytes[k], b'"' | b'\'')).then(|| bytes[k]);
        if quote.is_some() {
            k += 1;
        }
        let value_end = match quote {
            Some(q) => text[k..].find(q as char).map_or(text.len(), |e| k + e),
            None => text[k..].find(ends_value).map_or(text.len(), |e| k + e),
        };
        let value = &text[k..value_end];
        // A URL's password was masked already; `password: ***` stays as it is.
        if !value.is_empty() && value != MASK && !value.contains("://") {
            out.push_str(&text[copied..k]);
            out.push_str(MASK);
            copied = value_end;
        }
        i = value_end.max(j);
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        scrub(text, &[])
    }

    #[test]
    fn urls_keep_their_user_not_their_password() {
        assert_eq!(
            s("connecting to mongodb://migrator:s3cr%40t@db-0:27017,db-1/app?authSource=admin"),
            "connecting to mongodb://migrator:***@db-0:27017,db-1/app?authSource=admin"
        );
        assert_eq!(
            s("uri='mongodb+srv://u:p@x.example.net' failed"),
            "uri='mongodb+srv://u:***@x.example.net' failed"
        );
        assert_eq!(
            s("http://u:pw@h/x and https://h/y"),
            "http://u:***@h/x and https://h/y"
        );
        assert_eq!(s("mongodb://u@h/x"), "mongodb://u@h/x");
        assert_eq!(s("mongodb://h:27017/x"), "mongodb://h:27017/x");
    }

    #[test]
    fn keys_naming_a_secret_lose_their_value() {
        for (given, want) in [
            ("password=hunter2 next", "password=*** next"),
            ("DB_PASSWORD=hunter2", "DB_PASSWORD=***"),
            ("--password hunter2 --db x", "--password *** --db x"),
            ("--password=hunter2", "--password=***"),
            (
                r#"{"pwd": "hunter 2", "user": "u"}"#,
                r#"{"pwd": "***", "user": "u"}"#,
            ),
            ("Password: hunter2", "Password: ***"),
            (
                "?user=u&password=hunter2&ssl=true",
                "?user=u&password=***&ssl=true",
            ),
            ("API_TOKEN=abc.def", "API_TOKEN=***"),
            ("client_secret: 'x y'", "client_secret: '***'"),
        ] {
            assert_eq!(s(given), want, "{given}");
        }
        // Words alone are not keys.
        for keep in [
            "password authentication failed for user \"app\"",
            "Secret \"mongo\" not found",
            "--password",
            "password=",
        ] {
            assert_eq!(s(keep), keep);
        }
    }

    #[test]
    fn known_values_go_wherever_they_stand_alone() {
        let known = vec![
            "mongodb://app:Pa55word@h/db".to_string(),
            "Pa55word".to_string(),
            "ab".to_string(),
        ];
        assert_eq!(
            scrub(
                "uri mongodb://app:Pa55word@h/db; then Pa55word alone",
                &known
            ),
            "uri *** then *** alone".replace("*** then", "***; then")
        );
        // Not inside a longer word (a checksum), and too short to look for alone.
        assert_eq!(
            scrub(r#"{"sha256":"00Pa55word11","bytes":12} ab"#, &known),
            r#"{"sha256":"00Pa55word11","bytes":12} ab"#
        );
        // Non-word characters inside the value.
        let known = vec!["p@ss:w/rd!".to_string()];
        assert_eq!(scrub("auth p@ss:w/rd! failed", &known), "auth *** failed");
    }

    #[test]
    fn any_text_is_safe() {
        assert_eq!(s("pässwörd=ü token=ö ✓"), "pässwörd=ü token=*** ✓");
        assert_eq!(s("mongodb://u:p,w@h1,h2/x"), "mongodb://u:***@h1,h2/x");
    }

    #[test]
    fn a_backup_result_line_survives() {
        let line = r#"{"path":"/backup/a/b.archive.gz","bytes":4096,"sha256":"0a1b"}"#;
        assert_eq!(s(line), line);
    }
}
