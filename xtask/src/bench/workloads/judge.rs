//! Pure judgements behind the target checks: what a measured pair of numbers says about a
//! target, worded so a reader sees the sign and the noise, never a "yes" on a misread sign.

/// Relative spread of repeated runs of one variant: (best − slowest) / best, 0 when unknown.
pub fn spread(best: f64, slowest: Option<f64>) -> Option<f64> {
    let slowest = slowest?;
    (best > 0.0).then(|| ((best - slowest) / best).max(0.0))
}

/// A percentage with its sign (real minus sign), one decimal: `3.2%`, `−1.4%`.
pub fn pct(x: f64) -> String {
    let v = (x * 1000.0).round() / 10.0;
    if v < 0.0 {
        format!("−{:.1}%", -v)
    } else {
        format!("{:.1}%", v.abs())
    }
}

/// Throughput loss of `with` (the heavier variant) against `base`, judged against
/// `max_loss` (0.03 = 3%). `noise` is the run-to-run spread of the same variant when runs
/// were repeated. A negative loss (the heavier variant was faster) meets the target and says
/// so with its sign; a loss over the bound misses it even when within noise (and says that).
pub fn loss(base: f64, with: f64, noise: Option<f64>, max_loss: f64) -> (String, bool) {
    if base <= 0.0 {
        return ("no baseline throughput".to_owned(), false);
    }
    let loss = 1.0 - with / base;
    let noise_text = |n: Option<f64>| match n {
        Some(n) => format!("run-to-run spread {}", pct(n)),
        None => "single runs".to_owned(),
    };
    let within = noise.is_some_and(|n| loss.abs() <= n);
    let text = if loss < 0.0 {
        let how = match (noise, within) {
            (None, _) => "noise not measured",
            (Some(_), true) => "within noise",
            (Some(_), false) => "beyond the measured noise",
        };
        format!(
            "{} (no loss: faster than the baseline, {how}; {})",
            pct(loss),
            noise_text(noise)
        )
    } else if loss > max_loss && within {
        format!("{} loss (within noise; {})", pct(loss), noise_text(noise))
    } else {
        format!("{} loss ({})", pct(loss), noise_text(noise))
    };
    (text, loss <= max_loss)
}

/// Whether latency stayed put: p50 and p99 of `with` each within `tolerance` (0.2 = 20%)
/// of `base`, plus `slack_us` for values too small for a ratio to mean anything.
pub fn unchanged(
    base: (f64, f64),
    with: (f64, f64),
    tolerance: f64,
    slack_us: f64,
) -> (String, bool) {
    let ok = |b: f64, w: f64| w <= b * (1.0 + tolerance) + slack_us;
    let change = |b: f64, w: f64| {
        if b > 0.0 {
            let c = w / b - 1.0;
            let sign = if (c * 1000.0).round() > 0.0 { "+" } else { "" };
            format!("{sign}{} vs {b:.0}", pct(c))
        } else {
            format!("vs {b:.0}")
        }
    };
    let text = format!(
        "p50 {:.0} µs ({}), p99 {:.0} µs ({})",
        with.0,
        change(base.0, with.0),
        with.1,
        change(base.1, with.1)
    );
    (text, ok(base.0, with.0) && ok(base.1, with.1))
}

/// Nothing silently lost: every one of `sent` requests is in the store or counted as dropped,
/// and nothing is stored twice or out of order.
pub fn accounted(sent: u64, stored: u64, dropped: u64, out_of_order: u64) -> (String, bool) {
    let missing = sent.saturating_sub(stored);
    let extra = stored.saturating_sub(sent);
    let mut text = format!("{stored} of {sent} requests stored, {dropped} dropped (counted)");
    if missing > dropped {
        text.push_str(&format!(", {} lost without a count", missing - dropped));
    }
    if extra > 0 {
        text.push_str(&format!(", {extra} more records than requests"));
    }
    if out_of_order > 0 {
        text.push_str(&format!(", {out_of_order} out of order or duplicated"));
    }
    (
        text,
        extra == 0 && out_of_order == 0 && stored + dropped >= sent,
    )
}

/// A connect rate relative to the straight path, `within` (0.02 = 2%) either way counting as
/// equal; faster is fine, slower by more is not.
pub fn rate_within(x: f64, within: f64) -> (String, bool) {
    let how = if x > 1.0 + within {
        " (faster than straight)"
    } else if (x - 1.0).abs() <= within {
        " (within the bound)"
    } else {
        ""
    };
    (format!("{x:.3}× of straight{how}"), x >= 1.0 - within)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_table() {
        // (base, with, noise, met, text starts with)
        let cases = [
            (1000.0, 990.0, None, true, "1.0% loss (single runs"),
            (1000.0, 960.0, None, false, "4.0% loss (single"),
            (1000.0, 960.0, Some(0.05), false, "4.0% loss (within noise"),
            (
                1000.0,
                1100.0,
                Some(0.12),
                true,
                "−10.0% (no loss: faster than the baseline, within noise",
            ),
            (
                1000.0,
                1287.0,
                Some(0.02),
                true,
                "−28.7% (no loss: faster than the baseline, beyond",
            ),
            (1000.0, 1000.0, Some(0.0), true, "0.0% loss"),
            (0.0, 10.0, None, false, "no baseline"),
        ];
        for (base, with, noise, met, text) in cases {
            let (t, ok) = loss(base, with, noise, 0.03);
            assert_eq!(ok, met, "{base} {with}: {t}");
            assert!(t.starts_with(text), "{base} {with}: {t}");
        }
    }

    #[test]
    fn spread_and_pct() {
        assert_eq!(spread(100.0, Some(90.0)), Some(0.1));
        assert_eq!(spread(100.0, None), None);
        assert_eq!(spread(0.0, Some(1.0)), None);
        assert_eq!(pct(-0.0123), "−1.2%");
        assert_eq!(pct(0.0349), "3.5%");
        assert_eq!(pct(-0.0001), "0.0%");
    }

    #[test]
    fn latency_table() {
        let cases = [
            ((1000.0, 5000.0), (1100.0, 5900.0), true),
            ((1000.0, 5000.0), (1300.0, 5000.0), false),
            ((1000.0, 5000.0), (900.0, 7000.0), false),
            ((20.0, 40.0), (60.0, 80.0), true), // within the absolute slack
        ];
        for (base, with, met) in cases {
            let (text, ok) = unchanged(base, with, 0.2, 50.0);
            assert_eq!(ok, met, "{text}");
        }
        let (text, _) = unchanged((1000.0, 5000.0), (900.0, 5500.0), 0.2, 50.0);
        assert_eq!(
            text,
            "p50 900 µs (−10.0% vs 1000), p99 5500 µs (+10.0% vs 5000)"
        );
    }

    #[test]
    fn accounting_table() {
        let cases = [
            (
                100,
                100,
                0,
                0,
                true,
                "100 of 100 requests stored, 0 dropped (counted)",
            ),
            (
                100,
                97,
                3,
                0,
                true,
                "97 of 100 requests stored, 3 dropped (counted)",
            ),
            (
                100,
                97,
                0,
                0,
                false,
                "97 of 100 requests stored, 0 dropped (counted), 3 lost",
            ),
            (
                100,
                101,
                0,
                0,
                false,
                "101 of 100 requests stored, 0 dropped (counted), 1 more",
            ),
            (
                100,
                100,
                0,
                2,
                false,
                "100 of 100 requests stored, 0 dropped (counted), 2 out",
            ),
        ];
        for (sent, stored, dropped, ooo, met, text) in cases {
            let (t, ok) = accounted(sent, stored, dropped, ooo);
            assert_eq!(ok, met, "{t}");
            assert!(t.starts_with(text), "{t}");
        }
    }

    #[test]
    fn connect_rate_table() {
        assert_eq!(
            rate_within(0.96, 0.02),
            ("0.960× of straight".into(), false)
        );
        assert!(rate_within(0.985, 0.02).1);
        assert!(rate_within(1.05, 0.02).0.contains("faster"));
        assert!(rate_within(1.05, 0.02).1);
    }
}
