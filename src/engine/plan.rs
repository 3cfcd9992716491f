//! Plans from block status: walk a view of a chain and turn each run into a
//! step, merging neighbours that get the same action.

use super::{Action, Step};
use crate::chain::{ChainStatus, View};
use crate::error::Result;

/// The steps for the guest range `[start, end)` of `view`, with the action
/// `decide` picks for each run's status. Steps land at `shift` plus their
/// guest offset in the target. Skipped runs are kept as `Skip` steps.
pub fn plan_view(
    view: &View<'_>,
    start: u64,
    end: u64,
    shift: u64,
    mut decide: impl FnMut(&ChainStatus) -> Action,
) -> Result<Vec<Step>> {
    let mut steps: Vec<Step> = Vec::new();
    let mut offset = start;
    while offset < end {
        let st = view.block_status(offset, end - offset)?;
        let action = decide(&st);
        match steps.last_mut() {
            Some(last) if last.action == action && last.source_offset + last.len == offset => {
                last.len += st.len
            }
            _ => steps.push(Step {
                target_offset: shift + offset,
                source_offset: offset,
                len: st.len,
                action,
            }),
        }
        offset += st.len;
    }
    Ok(steps)
}
