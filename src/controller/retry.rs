//! How a plan whose reconciles fail is retried: after 5 s, doubling up to 5 minutes, and
//! with one Warning event per distinct failure instead of one per attempt. A successful
//! reconcile forgets the plan's failures.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// The wait after the first failure.
pub const FIRST: Duration = Duration::from_secs(5);
/// The longest wait: a plan stuck on a lasting error is still looked at this often.
pub const MAX: Duration = Duration::from_secs(300);

/// The wait before the next attempt after `failures` failures in a row (before this one).
pub fn backoff(failures: u32) -> Duration {
    FIRST.saturating_mul(2u32.saturating_pow(failures)).min(MAX)
}

/// What is remembered of one plan's failures in a row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    /// Failed reconciles since the last success.
    pub count: u32,
    /// The error (label, message) last announced by a Warning event.
    pub announced: Option<(String, String)>,
}

/// What to do about one failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// When to reconcile again.
    pub after: Duration,
    /// Whether the failure differs from the one last announced and deserves a Warning event.
    pub announce: bool,
}

impl Failures {
    /// Counts one more failure with this label and message.
    pub fn failed(&mut self, label: &str, message: &str) -> Retry {
        let after = backoff(self.count);
        self.count = self.count.saturating_add(1);
        let announce = self
            .announced
            .as_ref()
            .is_none_or(|(l, m)| l != label || m != message);
        if announce {
            self.announced = Some((label.to_owned(), message.to_owned()));
        }
        Retry { after, announce }
    }
}

/// The failures of every plan that is failing now. Plans leave it on their next success (a
/// deleted plan's last reconcile succeeds), so it holds only plans that still fail.
pub struct Retries<K>(Mutex<HashMap<K, Failures>>);

impl<K> Default for Retries<K> {
    fn default() -> Self {
        Retries(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq> Retries<K> {
    pub fn failed(&self, key: K, label: &str, message: &str) -> Retry {
        let mut failing = self.0.lock().unwrap_or_else(|e| e.into_inner());
        failing.entry(key).or_default().failed(label, message)
    }

    /// The failure last announced for `key` and how many reconciles failed in a row, while
    /// it is failing.
    pub fn failing(&self, key: &K) -> Option<(u32, String, String)> {
        let failing = self.0.lock().unwrap_or_else(|e| e.into_inner());
        failing.get(key).and_then(|f| {
            f.announced
                .as_ref()
                .map(|(l, m)| (f.count, l.clone(), m.clone()))
        })
    }

    pub fn succeeded(&self, key: &K) {
        let mut failing = self.0.lock().unwrap_or_else(|e| e.into_inner());
        failing.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_five_seconds_up_to_five_minutes() {
        let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX, "no overflow however long it fails");
    }

    #[test]
    fn announces_each_distinct_failure_once() {
        let mut f = Failures::default();
        let steps = [
            ("observe", "reading the cluster: timeout", 5, true),
            ("observe", "reading the cluster: timeout", 10, false),
            ("observe", "reading the cluster: timeout", 20, false),
            ("status", "writing the plan's status: conflict", 40, true),
            ("observe", "reading the cluster: timeout", 80, true),
            ("observe", "reading the cluster: refused", 160, true),
            ("observe", "reading the cluster: refused", 300, false),
        ];
        for (label, message, after, announce) in steps {
            assert_eq!(
                f.failed(label, message),
                Retry {
                    after: Duration::from_secs(after),
                    announce
                },
                "{label}: {message}"
            );
        }
    }

    #[test]
    fn success_starts_over_per_plan() {
        let retries = Retries::default();
        let err = ("observe", "reading the cluster: timeout");
        assert_eq!(retries.failed("a", err.0, err.1).after, FIRST);
        assert_eq!(retries.failed("a", err.0, err.1).after, FIRST * 2);
        assert_eq!(
            retries.failing(&"a"),
            Some((2, err.0.to_string(), err.1.to_string()))
        );
        let other = retries.failed("b", err.0, err.1);
        assert!(other.announce, "another plan's failure is its own news");
        assert_eq!(other.after, FIRST);

        retries.succeeded(&"a");
        let again = retries.failed("a", err.0, err.1);
        assert_eq!(again.after, FIRST);
        assert!(
            again.announce,
            "the same error after a success is news again"
        );
        assert_eq!(retries.failed("b", err.0, err.1).after, FIRST * 2);
    }
}
