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

/// Rounds the copy steps of one source out to whole target clusters of
/// `cluster` bytes, for a compressed copy: a cluster is stored compressed
/// only when it is written whole, so a copy that starts or ends inside one
/// (the source's block status is finer than the target's clusters, e.g. a
/// raw file's 4 KiB holes) takes in the rest of that cluster from the
/// source, where it reads as the zeros of its holes. Rounding stays within
/// `[lo, hi)`, the target range this source fills (concatenated sources
/// need not be cluster-aligned), so no byte of another source is read.
/// Every step must have the same target − source shift; the result
/// Copies the zero steps no longer than `max_gap` that lie between two
/// copy steps (contiguous in target and source), so the three become one
/// copy; contiguous copy steps are joined too. For a plan whose zero steps
/// read as zeros in the source, copied with zero detection at `sparse`
/// bytes: only gaps aligned to `sparse` on the target are bridged, so the
/// copy's zero scan finds each again whole and writes it as zeros (or
/// skips it on a zeroed target). The same result in fewer, larger units,
/// each of which costs the engine a hand-off between its threads.
pub fn bridge_zero_gaps(steps: &[Step], max_gap: u64, sparse: u64) -> Vec<Step> {
    let sparse = sparse.max(1);
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    let continues = |a: &Step, b: &Step| {
        a.target_offset + a.len == b.target_offset && a.source_offset + a.len == b.source_offset
    };
    let mut i = 0;
    while i < steps.len() {
        let s = steps[i];
        let bridge = match (out.last(), steps.get(i + 1)) {
            (Some(prev), Some(next)) => {
                prev.action == Action::Copy
                    && s.action == Action::Zero
                    && s.len <= max_gap
                    && s.target_offset % sparse == 0
                    && s.len % sparse == 0
                    && next.action == Action::Copy
                    && continues(prev, &s)
                    && continues(&s, next)
            }
            _ => false,
        };
        if bridge {
            let prev = out.last_mut().expect("checked");
            prev.len += s.len + steps[i + 1].len;
            i += 2;
            continue;
        }
        match out.last_mut() {
            Some(prev)
                if prev.action == Action::Copy
                    && s.action == Action::Copy
                    && continues(prev, &s) =>
            {
                prev.len += s.len;
            }
            _ => out.push(s),
        }
        i += 1;
    }
    out
}

/// partitions the same range, the neighbours of the copies shrunk.
pub fn align_copies(steps: &[Step], cluster: u64, lo: u64, hi: u64) -> Vec<Step> {
    let Some(first) = steps.first() else {
        return Vec::new();
    };
    let shift = first.target_offset - first.source_offset;
    // The copy ranges, rounded out and merged.
    let mut copies: Vec<(u64, u64)> = Vec::new();
    for s in steps.iter().filter(|s| s.action == Action::Copy) {
        let start = (s.target_offset / cluster * cluster).max(lo);
        let end = (s.target_offset + s.len)
            .div_ceil(cluster)
            .saturating_mul(cluster)
            .min(hi);
        match copies.last_mut() {
            Some(last) if last.1 >= start => last.1 = last.1.max(end),
            _ => copies.push((start, end)),
        }
    }
    let step = |from: u64, to: u64, action: Action| Step {
        target_offset: from,
        source_offset: from - shift,
        len: to - from,
        action,
    };
    let mut out: Vec<Step> = copies
        .iter()
        .map(|&(a, b)| step(a, b, Action::Copy))
        .collect();
    // What is left of the other steps once the copies are taken out; both
    // lists are sorted, so one cursor walks the copies.
    let mut k = 0;
    for s in steps.iter().filter(|s| s.action != Action::Copy) {
        let (mut from, to) = (s.target_offset, s.target_offset + s.len);
        while k < copies.len() && copies[k].1 <= from {
            k += 1;
        }
        let mut j = k;
        while from < to && j < copies.len() && copies[j].0 < to {
            let (cs, ce) = copies[j];
            if cs > from {
                out.push(step(from, cs, s.action));
            }
            from = from.max(ce);
            j += 1;
        }
        if from < to {
            out.push(step(from, to, s.action));
        }
    }
    out.sort_by_key(|s| s.target_offset);
    out
}

/// Splits copy steps into whole clusters of `cluster` bytes (the image's
/// last cluster, ending at `size`, may be short) and the pieces of
/// clusters left over at their ends: the first can be stored compressed,
/// the second only as they are. Other steps go with the whole clusters.
pub fn split_at_clusters(steps: &[Step], cluster: u64, size: u64) -> (Vec<Step>, Vec<Step>) {
    let (mut whole, mut parts) = (Vec::new(), Vec::new());
    for s in steps {
        if s.action != Action::Copy {
            whole.push(*s);
            continue;
        }
        let piece = |from: u64, to: u64| Step {
            target_offset: from,
            source_offset: s.source_offset + (from - s.target_offset),
            len: to - from,
            action: Action::Copy,
        };
        let (start, end) = (s.target_offset, s.target_offset + s.len);
        let first = start.div_ceil(cluster) * cluster;
        let last = if end == size {
            end
        } else {
            end / cluster * cluster
        };
        if first >= last {
            parts.push(*s);
            continue;
        }
        if start < first {
            parts.push(piece(start, first));
        }
        whole.push(piece(first, last));
        if last < end {
            parts.push(piece(last, end));
        }
    }
    (whole, parts)
}

#[cfg(test)]
mod bridge_tests {
    use super::*;

    fn step(at: u64, len: u64, action: Action) -> Step {
        Step {
            target_offset: at,
            source_offset: at,
            len,
            action,
        }
    }

    #[test]
    fn short_zero_gaps_between_copies_are_bridged() {
        let plan = [
            step(0, 10, Action::Copy),
            step(10, 5, Action::Zero),
            step(15, 10, Action::Copy),
            step(25, 50, Action::Zero),
            step(75, 10, Action::Copy),
            step(85, 5, Action::Zero),
            step(90, 5, Action::Skip),
        ];
        assert_eq!(
            bridge_zero_gaps(&plan, 8, 5),
            vec![
                step(0, 25, Action::Copy),
                step(25, 50, Action::Zero),
                step(75, 10, Action::Copy),
                step(85, 5, Action::Zero),
                step(90, 5, Action::Skip),
            ]
        );
    }
}
