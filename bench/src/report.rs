//! How the bench prints a figure: one aligned line, with its target and
//! whether it is met.

use crate::measures::Spread;

/// What a figure must reach on the 2-core reference machine (issue #9).
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
    None,
}

impl Target {
    pub fn verdict(self, value: f64) -> String {
        match self {
            Target::AtLeast(goal) => format!("target >= {goal}: {}", met(value >= goal)),
            Target::AtMost(goal) => format!("target <= {goal}: {}", met(value <= goal)),
            Target::None => String::new(),
        }
    }
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "NOT MET" }
}

pub fn show(what: &str, unit: &str, spread: Spread, target: Target) {
    println!(
        "{what:<52} median {:>9.1} {unit:<6} min {:>9.1} max {:>9.1}  {}",
        spread.median,
        spread.min,
        spread.max,
        target.verdict(spread.median)
    );
}

pub fn line(what: &str, text: &str) {
    println!("{what:<52} {text}");
}

pub fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU's model name, as Linux reports it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_says_met_or_not_met_against_its_goal() {
        assert_eq!(Target::AtLeast(50.0).verdict(50.0), "target >= 50: met");
        assert_eq!(Target::AtLeast(50.0).verdict(49.9), "target >= 50: NOT MET");
        assert_eq!(Target::AtMost(2.0).verdict(2.5), "target <= 2: NOT MET");
        assert_eq!(Target::None.verdict(1.0), "");
    }
}
