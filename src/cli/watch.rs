//! `status --watch`: the status view again on every change of the plan (a watch on that one
//! object), until the plan reaches a terminal phase. Ctrl-C ends it at any time; the watch
//! only reads, so stopping it never affects the plan.

use std::io::IsTerminal;

use anyhow::bail;
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::render_status;
use crate::crd::UpgradePlan;

/// What to print for a new view: the whole view, after clearing a terminal screen or, when
/// the output is a pipe or a file, after a separator line. `None` when nothing visible changed.
pub fn frame(previous: Option<&str>, view: &str, terminal: bool) -> Option<String> {
    if previous == Some(view) {
        return None;
    }
    let head = match (previous, terminal) {
        (_, true) => "\x1b[H\x1b[2J".to_string(),
        (None, false) => String::new(),
        (Some(_), false) => format!("{}\n", "-".repeat(72)),
    };
    Some(format!("{head}{view}"))
}

pub async fn watch(api: Api<UpgradePlan>, ns: &str, name: &str) -> anyhow::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut last: Option<String> = None;
    let mut seen = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let event = tokio::select! {
            _ = &mut ctrl_c => {
                println!("\nStopped watching; the plan goes on.");
                return Ok(());
            }
            e = events.next() => e,
        };
        let plan = match event {
            None => bail!("the watch on UpgradePlan {ns}/{name} ended"),
            Some(Err(e)) => {
                eprintln!("watching UpgradePlan {ns}/{name}: {e}; retrying");
                continue;
            }
            Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => p,
            Some(Ok(watcher::Event::Delete(_))) => {
                bail!("UpgradePlan {ns}/{name} was deleted")
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if !seen {
                    bail!("UpgradePlan {ns}/{name} not found");
                }
                continue;
            }
            Some(Ok(watcher::Event::Init)) => continue,
        };
        seen = true;
        let view = render_status(&plan);
        if let Some(out) = frame(last.as_deref(), &view, terminal) {
            print!("{out}");
            use std::io::Write;
            std::io::stdout().flush()?;
        }
        last = Some(view);
        if plan.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_only_when_the_view_changed() {
        assert_eq!(frame(None, "a\n", false).as_deref(), Some("a\n"));
        assert_eq!(frame(Some("a\n"), "a\n", false), None);
        let next = frame(Some("a\n"), "b\n", false).unwrap();
        assert!(
            next.starts_with("----") && next.ends_with("\nb\n"),
            "{next}"
        );
        let tty = frame(None, "a\n", true).unwrap();
        assert!(tty.starts_with("\x1b[H\x1b[2J"), "{tty:?}");
    }
}
