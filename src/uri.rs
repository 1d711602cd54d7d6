//! MongoDB connection strings: the one module that reads them.
//!
//! The operator's own connection string is parsed once by the driver
//! (`mongodb::options::ConnectionString`: hosts, credentials, database, every option), and
//! the client is built from that parse. Connection strings that belong to the application
//! (its `uriEnv` variables, the migration user's Secret) are never round-tripped through the
//! driver: the application's own driver (.NET, Java …) accepts options the Rust driver
//! rejects, and re-rendering would reorder or drop them. They are only edited in their path,
//! by [`with_database`], leaving everything else byte for byte as written.
//!
//! Pure: no I/O (an `mongodb+srv` name is resolved later, by the client).

use mongodb::error::ErrorKind;
use mongodb::options::ConnectionString;

/// Why a string is not a usable connection string; the message never holds the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("it must start with mongodb:// or mongodb+srv://")]
    Scheme,
    #[error("it names no host")]
    NoHost,
    /// The driver's reason, with the string and its password removed.
    #[error("{0}")]
    Invalid(String),
}

impl UriError {
    /// Stable name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            UriError::Scheme => "scheme",
            UriError::NoHost => "no_host",
            UriError::Invalid(_) => "invalid",
        }
    }
}

/// A connection string the driver accepted, kept out of Debug output.
#[derive(Clone)]
pub struct Uri {
    raw: String,
    parsed: ConnectionString,
}

impl Uri {
    pub fn parse(s: impl Into<String>) -> Result<Self, UriError> {
        let raw: String = s.into();
        let trimmed = raw.trim();
        if !(trimmed.starts_with("mongodb://") || trimmed.starts_with("mongodb+srv://")) {
            return Err(UriError::Scheme);
        }
        let hosts = split(trimmed).hosts;
        if hosts.is_empty() {
            return Err(UriError::NoHost);
        }
        let parsed = ConnectionString::parse(&raw).map_err(|e| {
            let why = match *e.kind {
                ErrorKind::InvalidArgument { message, .. } => message,
                other => other.to_string(),
            };
            UriError::Invalid(redact_raw(&why, &raw))
        })?;
        Ok(Uri { raw, parsed })
    }

    /// The string as written, for the driver and for the Secret handed to the tools.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The driver's parse, to build a client from without parsing again.
    pub fn connection_string(&self) -> &ConnectionString {
        &self.parsed
    }

    /// The default database named in the path, if any.
    pub fn database(&self) -> Option<&str> {
        self.parsed.default_database.as_deref()
    }

    /// This connection string with `database` as its path (see [`with_database`]).
    pub fn with_database(&self, database: &str) -> String {
        with_database(&self.raw, database)
    }

    /// The form `mongodump`/`mongorestore` take: no database in the path (they refuse one
    /// that differs from the one they work on), the old path kept as `authSource` where it
    /// served as such.
    pub fn for_tools(&self) -> String {
        with_database(&self.raw, "")
    }

    /// Removes this connection string and its password (as written and decoded) from a
    /// message, so it can reach a log, an event or the status.
    pub fn redact(&self, message: &str) -> String {
        let mut out = redact_raw(message, &self.raw);
        if let Some(p) = self
            .parsed
            .credential
            .as_ref()
            .and_then(|c| c.password.as_deref())
            .filter(|p| !p.is_empty())
        {
            // The driver may print the percent-decoded password.
            out = out.replace(p, "***");
        }
        out
    }
}

impl Uri {
    /// The exact values to scrub from a Job's output (see [`crate::scrub`]): the string as
    /// written, and its password as written and percent-decoded.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out = vec![self.raw.trim().to_string()];
        if let Some(p) = split(self.raw.trim())
            .userinfo
            .and_then(|u| u.split_once(':'))
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty())
        {
            out.push(p.to_string());
        }
        if let Some(p) = self
            .parsed
            .credential
            .as_ref()
            .and_then(|c| c.password.as_deref())
            .filter(|p| !p.is_empty())
        {
            out.push(p.to_string());
        }
        out
    }
}

impl std::fmt::Debug for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Uri(***)")
    }
}

/// Removes `raw` and its password as written from `message`.
fn redact_raw(message: &str, raw: &str) -> String {
    let mut out = message.replace(raw, "<connection string>");
    if let Some(p) = split(raw)
        .userinfo
        .and_then(|u| u.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
    {
        out = out.replace(p, "***");
    }
    out
}

/// A connection string's pieces as written (nothing decoded):
/// `scheme://[userinfo@]hosts[/path][?query]`.
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    hosts: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

fn split(s: &str) -> Parts<'_> {
    let (scheme, rest) = s.split_once("://").unwrap_or(("mongodb", s));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    // Credentials may contain '/' only percent-encoded, so the first '/' after '@' ends the hosts.
    let (userinfo, after_at) = match before_query.rfind('@') {
        Some(i) => (Some(&before_query[..i]), &before_query[i + 1..]),
        None => (None, before_query),
    };
    let (hosts, path) = after_at.split_once('/').unwrap_or((after_at, ""));
    Parts {
        scheme,
        userinfo,
        hosts,
        path,
        query,
    }
}

/// The database an application's connection string names in its path, as written; `None`
/// for a value that is not a connection string or names none.
pub fn database(value: &str) -> Option<&str> {
    if !(value.starts_with("mongodb://") || value.starts_with("mongodb+srv://")) {
        return None;
    }
    Some(split(value).path).filter(|p| !p.is_empty())
}

/// Replaces the database named in a connection string's path, keeping credentials and
/// options as written. Without a path, the database becomes the path and the old default
/// (admin) stays the authentication database. With credentials, the old path was also the
/// authentication database; it moves to `authSource` so they still work.
pub fn with_database(uri: &str, database: &str) -> String {
    let p = split(uri);
    let mut query: Vec<&str> = p
        .query
        .filter(|q| !q.is_empty())
        .map(|q| q.split('&').collect())
        .unwrap_or_default();
    let auth_source;
    if p.userinfo.is_some()
        && !p.path.is_empty()
        && !query.iter().any(|kv| kv.starts_with("authSource="))
    {
        auth_source = format!("authSource={}", p.path);
        query.push(&auth_source);
    }
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let at = p.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    format!("{}://{at}{}/{database}{q}", p.scheme, p.hosts)
}

#[cfg(test)]
mod tests;
