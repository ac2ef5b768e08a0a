//! `--max-events-per-sec`: a token bucket in front of the output. When it is
//! empty, `update`s are held back, one per path (a newer update of the same
//! path replaces the held one and counts as coalesced), and released as tokens
//! come back. `create`, `delete`, `move` and rescans always pass at once; any
//! held update of the same path (or below a moved or deleted directory) is
//! released just before them, so the order per path is kept and no change is
//! hidden.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::coalesce::{Logical, RelPath};
use crate::index::is_within;

/// An event and the moment it became due (for the latency metric); a held
/// update becomes due again when the limiter releases it.
pub type Item = (Logical, Instant);

#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens per second; 0 disables the limiter.
    rate: f64,
    tokens: f64,
    last: Instant,
    order: VecDeque<RelPath>,
    held: HashMap<RelPath, Item>,
    /// Updates merged while held.
    pub coalesced: u64,
}

impl RateLimiter {
    pub fn new(per_sec: u32, now: Instant) -> RateLimiter {
        RateLimiter {
            rate: per_sec as f64,
            tokens: per_sec as f64,
            last: now,
            order: VecDeque::new(),
            held: HashMap::new(),
            coalesced: 0,
        }
    }

    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate.max(1.0));
    }

    /// Charges `n` emitted lines against the bucket.
    pub fn charge(&mut self, n: usize) {
        if self.rate > 0.0 {
            self.tokens -= n as f64;
        }
    }

    /// Admits one event; returns what may be emitted now, in order.
    pub fn admit(&mut self, item: Item, now: Instant) -> Vec<Item> {
        if self.rate <= 0.0 {
            return vec![item];
        }
        self.refill(now);
        match &item.0 {
            Logical::Update { path, .. } => {
                if let Some(slot) = self.held.get_mut(path) {
                    // The newer update replaces the held one; it becomes due
                    // when the limiter releases it.
                    let received = slot.1;
                    *slot = (item.0, received);
                    self.coalesced += 1;
                    return Vec::new();
                }
                if self.tokens >= 1.0 && self.held.is_empty() {
                    return vec![item];
                }
                let path = path.clone();
                self.order.push_back(path.clone());
                self.held.insert(path, item);
                Vec::new()
            }
            Logical::Access { .. } | Logical::Cancelled => {
                // Reads are the cheapest to lose track of; still never dropped.
                vec![item]
            }
            other => {
                let mut out = Vec::new();
                if !self.held.is_empty() {
                    let scope: Vec<RelPath> = match other {
                        Logical::Move { from, to } => vec![from.clone(), to.clone()],
                        Logical::Reconcile { .. } => Vec::new(),
                        o => vec![o.path().to_vec()],
                    };
                    let release_all = matches!(other, Logical::Reconcile { .. });
                    let mut keep = VecDeque::new();
                    for p in self.order.drain(..) {
                        if release_all || scope.iter().any(|s| is_within(&p, s)) {
                            if let Some(h) = self.held.remove(&p) {
                                out.push((h.0, now));
                            }
                        } else {
                            keep.push_back(p);
                        }
                    }
                    self.order = keep;
                }
                out.push(item);
                out
            }
        }
    }

    /// Held updates that tokens now allow.
    pub fn release(&mut self, now: Instant) -> Vec<Item> {
        if self.held.is_empty() {
            return Vec::new();
        }
        self.refill(now);
        let mut out = Vec::new();
        while self.tokens >= 1.0 {
            let Some(p) = self.order.pop_front() else {
                break;
            };
            if let Some(h) = self.held.remove(&p) {
                self.tokens -= 1.0;
                out.push((h.0, now));
            }
        }
        // The caller charges emitted lines; undo the provisional charge.
        self.tokens += out.len() as f64;
        out
    }

    /// When the next held update can go.
    pub fn next_release(&self) -> Option<Instant> {
        if self.held.is_empty() || self.rate <= 0.0 {
            return None;
        }
        let missing = (1.0 - self.tokens).max(0.0);
        Some(self.last + Duration::from_secs_f64(missing / self.rate))
    }

    /// Everything held (shutdown).
    pub fn drain_all(&mut self, now: Instant) -> Vec<Item> {
        let mut out = Vec::new();
        for p in self.order.drain(..) {
            if let Some(h) = self.held.remove(&p) {
                out.push((h.0, now));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(p: &str) -> Logical {
        Logical::Update {
            path: p.as_bytes().to_vec(),
            stat: None,
            written: None,
        }
    }

    fn names(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|(l, _)| {
                let kind = match l {
                    Logical::Update { .. } => "update",
                    Logical::Delete { .. } => "delete",
                    Logical::Create { .. } => "create",
                    Logical::Move { .. } => "move",
                    _ => "other",
                };
                format!("{kind} {}", String::from_utf8_lossy(l.path()))
            })
            .collect()
    }

    #[test]
    fn updates_are_held_and_merged_never_dropped() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(2, t0);
        let mut out = Vec::new();
        for _ in 0..10 {
            for item in rl.admit((upd("hot"), t0), t0) {
                out.push(item);
                rl.charge(1);
            }
        }
        out.extend(rl.admit((upd("other"), t0), t0));
        assert_eq!(names(&out), vec!["update hot", "update hot"]);
        assert_eq!(rl.held_len(), 2);
        assert!(rl.coalesced >= 7);
        // A second later both held updates go out.
        let later = rl.release(t0 + Duration::from_secs(1));
        assert_eq!(names(&later), vec!["update hot", "update other"]);
    }

    #[test]
    fn creates_and_deletes_pass_and_flush_their_held_update_first() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(1, t0);
        rl.charge(5);
        assert!(rl.admit((upd("d/f"), t0), t0).is_empty());
        let del = Logical::Delete {
            path: b"d".to_vec(),
            dir_hint: true,
        };
        let out = rl.admit((del, t0), t0);
        assert_eq!(names(&out), vec!["update d/f", "delete d"]);
        let cr = Logical::Create {
            path: b"n".to_vec(),
            dir_hint: false,
            stat: None,
            written: None,
        };
        assert_eq!(names(&rl.admit((cr, t0), t0)), vec!["create n"]);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(0, t0);
        for _ in 0..100 {
            assert_eq!(rl.admit((upd("f"), t0), t0).len(), 1);
            rl.charge(1);
        }
        assert_eq!(rl.next_release(), None);
    }
}
