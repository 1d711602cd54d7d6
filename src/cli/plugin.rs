//! The binary as a kubectl plugin: kubectl runs `kubectl-cutover` (found on `PATH`) for
//! `kubectl cutover ...`, so the same binary, reached through a symlink or a copy of that name,
//! parses the same command tree and names itself `kubectl cutover` in help and errors.

use std::ffi::OsStr;
use std::path::Path;

/// The executable name kubectl looks for.
pub const PLUGIN_BINARY: &str = "kubectl-cutover";
/// How the plugin is invoked, for help and messages.
pub const PLUGIN_NAME: &str = "kubectl cutover";

/// Whether argv[0] names the plugin (its file name is `kubectl-cutover`, `.exe` allowed).
pub fn invoked_as_plugin(argv0: Option<&OsStr>) -> bool {
    argv0
        .and_then(|a| Path::new(a).file_name())
        .and_then(OsStr::to_str)
        .is_some_and(|n| n == PLUGIN_BINARY || n == format!("{PLUGIN_BINARY}.exe"))
}

/// The command tree as invoked: renamed `kubectl cutover` when run as the plugin.
pub fn as_invoked(cmd: clap::Command, argv0: Option<&OsStr>) -> clap::Command {
    if invoked_as_plugin(argv0) {
        cmd.name(PLUGIN_NAME).bin_name(PLUGIN_NAME)
    } else {
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_decides() {
        for a in [
            "kubectl-cutover",
            "/usr/local/bin/kubectl-cutover",
            "./kubectl-cutover",
            "/home/me/.krew/bin/kubectl-cutover",
            "kubectl-cutover.exe",
        ] {
            assert!(invoked_as_plugin(Some(OsStr::new(a))), "{a}");
        }
        for a in [
            "cutover",
            "/usr/bin/cutover",
            "kubectl",
            "kubectl-cutover-old",
        ] {
            assert!(!invoked_as_plugin(Some(OsStr::new(a))), "{a}");
        }
        assert!(!invoked_as_plugin(None));
    }

    #[test]
    fn the_plugin_names_itself_kubectl_cutover() {
        let cmd = || {
            clap::Command::new("cutover")
                .subcommand(clap::Command::new("promote").arg(clap::Arg::new("plan")))
        };
        let mut plugin = as_invoked(cmd(), Some(OsStr::new("/x/kubectl-cutover")));
        let help = plugin.render_help().to_string();
        assert!(help.contains("Usage: kubectl cutover [COMMAND]"), "{help}");
        let err = plugin
            .try_get_matches_from_mut(["kubectl-cutover", "nope"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("kubectl cutover"), "{err}");
        let mut plain = as_invoked(cmd(), Some(OsStr::new("cutover")));
        assert!(plain.render_help().to_string().contains("Usage: cutover"));
    }
}
