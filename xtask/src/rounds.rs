//! Figures over a benchmark's rounds.

/// The change of `rounds` against `base` round by round (each round's two runs follow each
/// other, so the machine's drift over a run, often larger than the effect measured, touches
/// both alike): the median and each round's, in percent. None without rounds.
pub fn paired_change(rounds: &[f64], base: &[f64]) -> Option<(f64, Vec<f64>)> {
    let each: Vec<f64> = rounds
        .iter()
        .zip(base)
        .filter(|(_, b)| **b > 0.0)
        .map(|(r, b)| (r / b - 1.0) * 100.0)
        .collect();
    let mut sorted = each.clone();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => return None,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    Some((median, each))
}

/// A row of the comparison table: the entry's median and rounds (CPU ms per call), its change
/// against its base's median, and round by round.
pub fn comparison_row(
    label: &str,
    median: f64,
    rounds: &[f64],
    base: Option<(f64, &[f64])>,
) -> String {
    let each: Vec<String> = rounds.iter().map(|v| format!("{v:.3}")).collect();
    let (vs, paired) = match base {
        Some((base_median, base_rounds)) => (
            format!("{:+.1} %", (median / base_median - 1.0) * 100.0),
            paired_change(rounds, base_rounds).map_or(String::new(), |(m, each)| {
                let each: Vec<String> = each.iter().map(|c| format!("{c:+.1}")).collect();
                format!("{m:+.1} % ({})", each.join(", "))
            }),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "| {label} | {median:.3} | {} | {vs} | {paired} |",
        each.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::{comparison_row, paired_change};

    #[test]
    fn a_row_gives_both_changes_and_a_base_row_neither() {
        assert_eq!(
            comparison_row("a", 1.2, &[1.1, 1.3], Some((1.0, &[1.0, 1.0]))),
            "| a | 1.200 | 1.100, 1.300 | +20.0 % | +20.0 % (+10.0, +30.0) |"
        );
        assert_eq!(
            comparison_row("b", 1.0, &[1.0], None),
            "| b | 1.000 | 1.000 |  |  |"
        );
    }

    #[test]
    fn the_paired_change_is_the_median_of_each_rounds_change() {
        let (median, each) = paired_change(&[1.1, 1.5, 2.2], &[1.0, 1.0, 2.0]).unwrap();
        assert_eq!(each.len(), 3);
        assert!((median - 10.0).abs() < 1e-9, "{median}");
        let (median, _) = paired_change(&[1.1, 1.3], &[1.0, 1.0]).unwrap();
        assert!((median - 20.0).abs() < 1e-9, "{median}");
        assert!(paired_change(&[], &[]).is_none());
    }
}
