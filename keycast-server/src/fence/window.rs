//! Which change-feed positions the fence has applied near the top of the feed, so each
//! read starts at the first position that could still appear, not a fixed window back.
//!
//! With concurrent writers (Postgres sequences) a lower `seq` can commit a moment after a
//! higher one, so a position missing below the highest applied one is a hole that may
//! still fill. Without holes (always on SQLite, whose single writer commits in `seq`
//! order) a read starts at the top, which is one index seek and no rows when nothing
//! changed, instead of re-reading the last [`LOOKBACK`] rows on every wake-up.

use std::collections::BTreeSet;

/// How far below the highest applied position a hole is still waited for; older holes
/// are taken for rolled-back writes and given up.
pub const LOOKBACK: u64 = 256;

/// Applied positions: everything up to `settled`, and the ones in `above`.
#[derive(Debug)]
pub struct FeedWindow {
    /// Every position ≤ this was applied, or given up as older than the lookback.
    settled: u64,
    /// Applied positions above `settled` (there is a hole just above `settled`).
    above: BTreeSet<u64>,
}

impl FeedWindow {
    /// A window for a reader whose state reflects the feed up to `start`: the positions
    /// within [`LOOKBACK`] below it are read (and applied) once more, since a write with a
    /// lower position may still have been committing when `start` was read.
    pub fn new(start: u64) -> Self {
        Self {
            settled: start.saturating_sub(LOOKBACK),
            above: BTreeSet::new(),
        }
    }

    /// Where the next read starts (exclusive): just below the lowest hole, or the top.
    pub fn read_after(&self) -> u64 {
        self.settled
    }

    /// The highest applied position.
    pub fn top(&self) -> u64 {
        self.above.last().copied().unwrap_or(self.settled)
    }

    /// Records positions read from the feed; true for one not applied before (the caller
    /// applies exactly those).
    pub fn admit(&mut self, seq: u64) -> bool {
        seq > self.settled && self.above.insert(seq)
    }

    /// Closes filled holes and gives up those older than [`LOOKBACK`]; call after a read's
    /// positions were admitted.
    pub fn settle(&mut self) {
        let floor = self.top().saturating_sub(LOOKBACK);
        if self.settled < floor {
            self.settled = floor;
            self.above = self.above.split_off(&(floor + 1));
        }
        while self.above.first() == Some(&(self.settled + 1)) {
            self.above.pop_first();
            self.settled += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(window: &mut FeedWindow, seqs: &[u64]) -> Vec<u64> {
        let fresh = seqs.iter().copied().filter(|s| window.admit(*s)).collect();
        window.settle();
        fresh
    }

    #[test]
    fn without_holes_each_read_starts_at_the_top() {
        let mut w = FeedWindow::new(10);
        assert_eq!(w.read_after(), 0, "the first read looks back");
        assert_eq!(read(&mut w, &(1..=13).collect::<Vec<_>>()).len(), 13);
        assert_eq!((w.read_after(), w.top()), (13, 13));
        assert_eq!(read(&mut w, &[14]), [14]);
        assert_eq!((w.read_after(), w.top()), (14, 14));
    }

    #[test]
    fn a_write_still_committing_at_the_start_is_applied() {
        let mut w = FeedWindow::new(1000);
        assert_eq!(w.read_after(), 1000 - LOOKBACK);
        let seen: Vec<u64> = (1000 - LOOKBACK + 1..=1000).filter(|s| *s != 990).collect();
        read(&mut w, &seen);
        assert_eq!(w.read_after(), 989, "990 was not yet committed");
        assert_eq!(read(&mut w, &[990, 991]), [990]);
        assert_eq!(w.read_after(), 1000);
    }

    #[test]
    fn a_hole_keeps_reads_below_it_until_it_fills() {
        let mut w = FeedWindow::new(0);
        assert_eq!(read(&mut w, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).len(), 10);
        assert_eq!(read(&mut w, &[11, 13, 14]), [11, 13, 14]);
        assert_eq!((w.read_after(), w.top()), (11, 14));
        // The next read (from 11) sees 13 and 14 again: not applied twice.
        assert_eq!(read(&mut w, &[13, 14, 15]), [15]);
        assert_eq!(w.read_after(), 11);
        assert_eq!(read(&mut w, &[12, 13, 14, 15]), [12]);
        assert_eq!((w.read_after(), w.top()), (15, 15));
    }

    #[test]
    fn a_hole_older_than_the_lookback_is_given_up() {
        let mut w = FeedWindow::new(0);
        let later: Vec<u64> = (2..=LOOKBACK).collect();
        read(&mut w, &later);
        assert_eq!(w.read_after(), 0, "position 1 is still awaited");
        read(&mut w, &[LOOKBACK + 1]);
        assert_eq!(w.read_after(), LOOKBACK + 1, "position 1 was given up");
        assert!(!w.admit(1), "a given-up position is not applied late");
    }

    #[test]
    fn positions_more_than_the_lookback_below_the_start_are_not_applied() {
        let mut w = FeedWindow::new(LOOKBACK + 50);
        assert_eq!(read(&mut w, &[49, 50, 51]), [51]);
    }
}
