//! The queues one host serves, and which of them each read takes jobs from.
//!
//! Given in order (`--queue critical --queue low`), they are served in
//! strict priority: a queue is read only while every queue before it is
//! empty. Given with weights (`--queue critical=3 --queue low=1`), the free
//! slots of each read are dealt out by smooth weighted round robin, so jobs
//! read (and, the pool being first in first out, started) follow the
//! weights even one slot at a time; an empty or paused queue's share goes to
//! the others in the same read, so no slot idles while work waits.

use std::fmt;

/// One `--queue` value: a name and, for weighted serving, its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub weight: Option<u32>,
}

/// The largest weight: shares finer than 1 in 1000 mean nothing here.
pub const MAX_WEIGHT: u32 = 1000;
/// The longest queue name, in bytes.
const MAX_NAME: usize = 200;

impl QueueSpec {
    /// A queue of that name, unweighted.
    pub fn named(name: &str) -> Self {
        QueueSpec {
            name: name.to_owned(),
            weight: None,
        }
    }

    /// `NAME` or `NAME=WEIGHT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, weight) = match text.split_once('=') {
            Some((name, weight)) => {
                let weight = weight
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|w| (1..=MAX_WEIGHT).contains(w))
                    .ok_or_else(|| {
                        format!("queue {text:?}: the weight must be a whole number from 1 to {MAX_WEIGHT}")
                    })?;
                (name.trim(), Some(weight))
            }
            None => (text.trim(), None),
        };
        check_name(name)?;
        Ok(QueueSpec {
            name: name.to_owned(),
            weight,
        })
    }
}

impl fmt::Display for QueueSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.weight {
            Some(weight) => write!(f, "{}={weight}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A queue name becomes the hash tag of its keys (`ns:{name}:stream`):
/// braces would change the tag, and `,` `=` separate queues and weights.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a queue name cannot be empty".to_owned());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "queue name of {} bytes is longer than {MAX_NAME}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '{' | '}' | ',' | '=') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "queue name {name:?} contains {bad:?}; use letters, digits and . _ - :"
        ));
    }
    Ok(())
}

/// Checks a host's list: at least one, no name twice, weights on all or none.
pub fn check_queues(queues: &[QueueSpec]) -> Result<(), String> {
    if queues.is_empty() {
        return Err("no queue to serve".to_owned());
    }
    for (i, queue) in queues.iter().enumerate() {
        if queues[..i].iter().any(|q| q.name == queue.name) {
            return Err(format!("queue {:?} is given twice", queue.name));
        }
    }
    let weighted = queues.iter().filter(|q| q.weight.is_some()).count();
    if weighted != 0 && weighted != queues.len() {
        return Err(
            "give every --queue a weight (critical=3) for weighted serving, or none for strict priority"
                .to_owned(),
        );
    }
    Ok(())
}

/// Which queues the free slots of each read go to.
pub(super) struct ReadPlan {
    /// Queue indices by precedence: the given order for strict priority,
    /// heaviest first for weights. Leftover slots go down this list.
    order: Vec<usize>,
    weights: Option<Vec<i64>>,
    /// Smooth weighted round robin's running credit per queue.
    credit: Vec<i64>,
}

impl ReadPlan {
    pub(super) fn new(queues: &[QueueSpec]) -> Self {
        let mut order: Vec<usize> = (0..queues.len()).collect();
        let weights: Option<Vec<i64>> = queues
            .iter()
            .map(|q| q.weight.map(i64::from))
            .collect::<Option<_>>()
            .filter(|_| queues.len() > 1);
        if let Some(weights) = &weights {
            order.sort_by_key(|&i| std::cmp::Reverse(weights[i]));
        }
        ReadPlan {
            order,
            credit: vec![0; queues.len()],
            weights,
        }
    }

    /// Queue indices by precedence.
    pub(super) fn order(&self) -> &[usize] {
        &self.order
    }

    /// Deals `count` slots out to the queues `active` says may be read:
    /// (queue, slots) pairs, by precedence, none empty.
    pub(super) fn allocate(&mut self, count: usize, active: &[bool]) -> Vec<(usize, usize)> {
        let Some(weights) = &self.weights else {
            return self
                .order
                .iter()
                .find(|&&q| active[q])
                .map(|&q| vec![(q, count)])
                .unwrap_or_default();
        };
        let total: i64 = (0..weights.len())
            .filter(|&q| active[q])
            .map(|q| weights[q])
            .sum();
        let mut dealt = vec![0usize; weights.len()];
        if total == 0 {
            return Vec::new();
        }
        for _ in 0..count {
            let mut best = None;
            for &q in self.order.iter().filter(|&&q| active[q]) {
                self.credit[q] += weights[q];
                if best.is_none_or(|b: usize| self.credit[q] > self.credit[b]) {
                    best = Some(q);
                }
            }
            if let Some(best) = best {
                self.credit[best] -= total;
                dealt[best] += 1;
            }
        }
        self.order
            .iter()
            .filter(|&&q| dealt[q] > 0)
            .map(|&q| (q, dealt[q]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(text: &[&str]) -> Vec<QueueSpec> {
        text.iter().map(|t| QueueSpec::parse(t).unwrap()).collect()
    }

    #[test]
    fn queue_values_parse_with_and_without_weights() {
        assert_eq!(QueueSpec::parse("low").unwrap(), QueueSpec::named("low"));
        assert_eq!(QueueSpec::parse("critical=6").unwrap().weight, Some(6));
        for bad in ["", "a=0", "a=x", "a=1001", "{a}", "a b", "=3"] {
            assert!(QueueSpec::parse(bad).is_err(), "{bad:?}");
        }
        assert!(check_queues(&specs(&["a", "b=2"])).is_err());
        assert!(check_queues(&specs(&["a", "a"])).is_err());
        assert!(check_queues(&specs(&["a=1", "b=2"])).is_ok());
    }

    #[test]
    fn strict_priority_gives_every_slot_to_the_first_active_queue() {
        let mut plan = ReadPlan::new(&specs(&["a", "b", "c"]));
        assert_eq!(plan.allocate(8, &[true, true, true]), vec![(0, 8)]);
        assert_eq!(plan.allocate(8, &[false, true, true]), vec![(1, 8)]);
        assert!(plan.allocate(8, &[false, false, false]).is_empty());
    }

    #[test]
    fn weights_share_slots_even_one_at_a_time() {
        let mut plan = ReadPlan::new(&specs(&["low=1", "critical=3"]));
        assert_eq!(plan.order(), &[1, 0]);
        let mut dealt = [0usize; 2];
        for _ in 0..4000 {
            for (q, n) in plan.allocate(1, &[true, true]) {
                dealt[q] += n;
            }
        }
        assert_eq!(dealt, [1000, 3000]);
        assert_eq!(plan.allocate(8, &[true, true]), vec![(1, 6), (0, 2)]);
        // A paused queue's share goes to the others.
        assert_eq!(plan.allocate(8, &[true, false]), vec![(0, 8)]);
    }
}
