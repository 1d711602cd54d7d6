//! Own before you destroy, after `Pending`: an object that appears under a name the plan
//! needs and is not the plan's own (created by someone else since the plan started) is never
//! adopted or waited on; the plan fails and restores the old version, as for any failure.
//! (`Pending` refuses such a plan before any side effect: `pending::foreign_preflight`.)

use crate::crd::Phase;

use super::super::reason::Reason;
use super::Machine;

impl Machine<'_> {
    /// Fails the plan when a foreign object was observed mid-way. True when handled.
    pub(super) fn foreign_found(&mut self) -> bool {
        let phase = self.st.phase;
        if self.obs.foreign.is_empty()
            || phase == Phase::Pending
            || phase == Phase::RollingBack
            || phase.is_terminal()
        {
            return false;
        }
        let found: Vec<String> = self.obs.foreign.iter().map(|f| f.describe()).collect();
        self.fail(
            Reason::ForeignObject,
            format!(
                "{} appeared under a name this plan needs and is not its own (no owner reference to this plan): cutover leaves it alone and does not wait on it; remove it before running the plan again",
                found.join(", ")
            ),
        );
        true
    }
}
