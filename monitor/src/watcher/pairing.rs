//! Brings the two halves of a rename together.
//!
//! The kernel queues `IN_MOVED_FROM` and `IN_MOVED_TO` once the rename is
//! done, one after the other, but events that other processes cause at the
//! same moment (a concurrent `rm -rf`, a build writing files) can be queued
//! between the two halves. Every such event happened after the rename, so
//! the new name is moved up to right after the old one: the order of what
//! happened is kept, and the halves pair into one `move` instead of a
//! `delete` of the old name and a `create` of the new one.

use std::collections::HashMap;

use super::{Raw, NO_COOKIE};

/// Puts each `RenameTo` right after the `RenameFrom` with its cookie, in
/// one read of events. `pending`: the cookie of a `RenameFrom` that ended
/// the previous read and still waits for its new name, which then goes
/// first. Everything else keeps its order.
pub fn pair_renames(raws: &mut Vec<Raw>, pending: Option<usize>) {
    let mut to_at: HashMap<usize, usize> = HashMap::new();
    for (i, r) in raws.iter().enumerate() {
        if let Raw::RenameTo { cookie, .. } = r {
            if *cookie != NO_COOKIE {
                to_at.entry(*cookie).or_insert(i);
            }
        }
    }
    if to_at.is_empty() {
        return;
    }
    // The new name that belongs after position `i` (`None`: before the first).
    let partner = |i: Option<usize>, r: Option<&Raw>| -> Option<usize> {
        let cookie = match (i, r) {
            (None, _) => pending?,
            (Some(_), Some(Raw::RenameFrom { cookie, .. })) => *cookie,
            _ => return None,
        };
        let j = *to_at.get(&cookie)?;
        let next = i.map_or(0, |i| i + 1);
        (j >= next && cookie != NO_COOKIE).then_some(j)
    };
    let adjacent = |i: Option<usize>, r: Option<&Raw>| {
        partner(i, r).is_none_or(|j| j == i.map_or(0, |i| i + 1))
    };
    if adjacent(None, None)
        && raws
            .iter()
            .enumerate()
            .all(|(i, r)| adjacent(Some(i), Some(r)))
    {
        return;
    }
    let first = partner(None, None);
    let follow: Vec<Option<usize>> = raws
        .iter()
        .enumerate()
        .map(|(i, r)| partner(Some(i), Some(r)))
        .collect();
    let mut slots: Vec<Option<Raw>> = raws.drain(..).map(Some).collect();
    if let Some(t) = first.and_then(|j| slots.get_mut(j)).and_then(Option::take) {
        raws.push(t);
    }
    for i in 0..slots.len() {
        let Some(r) = slots[i].take() else {
            continue;
        };
        raws.push(r);
        if let Some(t) = follow[i]
            .and_then(|j| slots.get_mut(j))
            .and_then(Option::take)
        {
            raws.push(t);
        }
    }
}

/// Splits off the end of a read that starts at its first `RenameFrom`
/// whose `RenameTo` is not in the read after it: the new name is usually
/// queued a moment later, and handling the old name first would take it for
/// a move out of the root (a `delete`). The events after it wait with it,
/// so that nothing overtakes it, even the complete renames of other
/// processes queued in between. Returns the part held back (empty when
/// every rename of the read is complete).
pub fn split_unpaired_tail(raws: &mut Vec<Raw>) -> Vec<Raw> {
    split_unpaired_tail_if(raws, |_| true)
}

/// As [`split_unpaired_tail`], from the first `RenameFrom` without its
/// `RenameTo` for whose cookie `waits` holds (one that no longer waits is
/// left in place: handled as a move out of the root).
pub fn split_unpaired_tail_if(raws: &mut Vec<Raw>, waits: impl Fn(usize) -> bool) -> Vec<Raw> {
    let mut to_after: HashMap<usize, usize> = HashMap::new();
    for (i, r) in raws.iter().enumerate() {
        if let Raw::RenameTo { cookie, .. } = r {
            // The last position: any `RenameFrom` before it is paired.
            to_after.insert(*cookie, i);
        }
    }
    let unpaired = raws.iter().enumerate().position(|(i, r)| match r {
        Raw::RenameFrom { cookie, .. } => {
            *cookie != NO_COOKIE && to_after.get(cookie).is_none_or(|j| *j < i) && waits(*cookie)
        }
        _ => false,
    });
    match unpaired {
        Some(k) => raws.split_off(k),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(p: &str, cookie: usize) -> Raw {
        Raw::RenameFrom {
            path: p.as_bytes().to_vec(),
            cookie,
        }
    }
    fn to(p: &str, cookie: usize) -> Raw {
        Raw::RenameTo {
            path: p.as_bytes().to_vec(),
            cookie,
            dir: None,
        }
    }
    fn rm(p: &str) -> Raw {
        Raw::Remove {
            path: p.as_bytes().to_vec(),
            dir: false,
        }
    }

    #[test]
    fn an_event_between_the_halves_goes_after_the_pair() {
        let mut v = vec![rm("x"), from("a", 7), rm("y"), rm("z"), to("b", 7), rm("w")];
        pair_renames(&mut v, None);
        assert_eq!(
            v,
            [rm("x"), from("a", 7), to("b", 7), rm("y"), rm("z"), rm("w")]
        );
    }

    #[test]
    fn interleaved_renames_pair_up() {
        let mut v = vec![from("a", 1), from("c", 2), to("b", 1), to("d", 2)];
        pair_renames(&mut v, None);
        assert_eq!(v, [from("a", 1), to("b", 1), from("c", 2), to("d", 2)]);
    }

    #[test]
    fn the_new_name_of_a_pending_rename_goes_first() {
        let mut v = vec![rm("y"), to("b", 3), rm("z")];
        pair_renames(&mut v, Some(3));
        assert_eq!(v, [to("b", 3), rm("y"), rm("z")]);
    }

    #[test]
    fn unpaired_and_adjacent_halves_stay_in_place() {
        let orig = vec![from("a", 1), rm("y"), to("b", 2), from("c", 3), to("d", 3)];
        let mut v = orig.clone();
        pair_renames(&mut v, None);
        assert_eq!(v, orig);
        let orig = vec![from("a", NO_COOKIE), rm("y"), to("b", NO_COOKIE)];
        let mut v = orig.clone();
        pair_renames(&mut v, None);
        assert_eq!(v, orig);
    }

    #[test]
    fn a_rename_without_its_new_name_waits_with_what_follows() {
        let mut v = vec![rm("x"), from("a", 1), to("b", 1), from("c", 2), rm("y")];
        let held = split_unpaired_tail(&mut v);
        assert_eq!(v, [rm("x"), from("a", 1), to("b", 1)]);
        assert_eq!(held, [from("c", 2), rm("y")]);
        let mut v = vec![from("a", 1), to("b", 1), rm("y")];
        assert!(split_unpaired_tail(&mut v).is_empty());
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn the_first_rename_without_its_new_name_waits_with_complete_ones_after_it() {
        // Two renames interleaved: `a -> b` is only half in this read.
        let mut v = vec![rm("w"), from("a", 1), from("x", 2), to("y", 2)];
        pair_renames(&mut v, None);
        let held = split_unpaired_tail(&mut v);
        assert_eq!(v, [rm("w")]);
        assert_eq!(held, [from("a", 1), from("x", 2), to("y", 2)]);
        // The next read brings its new name: the pair is complete.
        let mut v = held;
        v.push(to("b", 1));
        pair_renames(&mut v, None);
        assert_eq!(v, [from("a", 1), to("b", 1), from("x", 2), to("y", 2)]);
        assert!(split_unpaired_tail(&mut v).is_empty());
        // A new name queued before its old one pairs with nothing.
        let mut v = vec![to("b", 4), rm("y"), from("a", 4), rm("z")];
        assert_eq!(split_unpaired_tail(&mut v), [from("a", 4), rm("z")]);
        // Halves without a cookie never pair and never wait.
        let mut v = vec![from("a", NO_COOKIE), rm("y")];
        assert!(split_unpaired_tail(&mut v).is_empty());
    }

    #[test]
    fn an_old_name_that_no_longer_waits_stays_in_place() {
        let mut v = vec![from("a", 1), rm("w"), from("b", 2), rm("x"), from("c", 3)];
        let held = split_unpaired_tail_if(&mut v, |c| c != 1);
        assert_eq!(v, [from("a", 1), rm("w")]);
        assert_eq!(held, [from("b", 2), rm("x"), from("c", 3)]);
        let mut v = vec![from("a", 1), rm("w")];
        assert!(split_unpaired_tail_if(&mut v, |_| false).is_empty());
        assert_eq!(v.len(), 2);
    }
}
