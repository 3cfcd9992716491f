//! Random writes into distinct guest slots for the crash tests of a
//! format's write path: the ops, their application to an image that may
//! fail at any write, and the old-or-new check of what a crash left.

use super::Rng;
use qimg::format::Format;

/// One guest write into its own slot: `Some(byte)` data, `None` zeroes.
pub type SlotOp = (u64, Option<u8>);

/// Up to `max` writes into distinct random slots of `slots` (three in four
/// data of a random non-zero byte, the rest zeroes), a flush (`None`)
/// after about one in `flush_every`, and a flush at the end.
pub fn slot_ops(seed: u64, slots: u64, max: usize, flush_every: u64) -> Vec<Option<SlotOp>> {
    let mut rng = Rng(seed | 1);
    let mut free: Vec<u64> = (0..slots).collect();
    let mut out = Vec::new();
    while !free.is_empty() && out.len() < max {
        let s = free.swap_remove(rng.below(free.len() as u64) as usize);
        out.push(Some((
            s,
            (rng.below(4) != 0).then(|| 1 + rng.below(250) as u8),
        )));
        if rng.below(flush_every) == 0 {
            out.push(None);
        }
    }
    out.push(None);
    out
}

/// Applies `ops` to `image` (slots of `slot` bytes) until one fails;
/// returns how many ops came before the last flush that returned.
pub fn apply_slots(image: &dyn Format, ops: &[Option<SlotOp>], slot: u64) -> usize {
    let mut flushed = 0;
    for (i, op) in ops.iter().enumerate() {
        let r = match op {
            Some((s, Some(b))) => image.write(s * slot, &vec![*b; slot as usize]),
            Some((s, None)) => image.write_zeroes(s * slot, slot, false),
            None => image.flush(),
        };
        if r.is_err() {
            break;
        }
        if op.is_none() {
            flushed = i + 1;
        }
    }
    flushed
}

/// Asserts what a crash during [`apply_slots`] may leave, in the guest
/// content `got` of an image that read `initial` before: every part of a
/// written slot within one `unit`-aligned range (the format's allocation
/// unit; a slot may straddle two, published apart) reads old or new whole,
/// the slots of the first `flushed` ops read new, and slots never written
/// keep their content. `what` names the crash in messages.
pub fn assert_old_or_new(
    got: &[u8],
    initial: &[u8],
    ops: &[Option<SlotOp>],
    slot: u64,
    unit: u64,
    flushed: usize,
    what: &str,
) {
    assert_eq!(got.len(), initial.len(), "{what}: guest size changed");
    let slot = slot as usize;
    for (i, op) in ops.iter().enumerate() {
        let Some((s, v)) = op else { continue };
        let r = *s as usize * slot..(*s as usize + 1) * slot;
        let new = v.unwrap_or(0);
        let mut a = r.start;
        while a < r.end {
            let b = ((a as u64 / unit + 1) * unit).min(r.end as u64) as usize;
            assert!(
                got[a..b].iter().all(|&x| x == new) || got[a..b] == initial[a..b],
                "{what}: slot {s} at {a:#x} is neither old nor new"
            );
            a = b;
        }
        if i < flushed {
            assert!(
                got[r].iter().all(|&x| x == new),
                "{what}: flushed slot {s} lost"
            );
        }
    }
    let touched: Vec<u64> = ops.iter().flatten().map(|(s, _)| *s).collect();
    for s in (0..(initial.len() / slot) as u64).filter(|s| !touched.contains(s)) {
        let r = s as usize * slot..(s as usize + 1) * slot;
        assert!(got[r.clone()] == initial[r], "{what}: slot {s} changed");
    }
}
