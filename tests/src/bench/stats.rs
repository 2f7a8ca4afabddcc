//! [`Samples`]: repeated measurements of one figure, summarised as median [min..max].

use std::fmt::Write as _;

/// The values measured so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct Samples(Vec<f64>);

impl Samples {
    /// Adds one value.
    pub(crate) fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// How many values.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (the mean of the middle two for an even count); NaN when empty.
    pub(crate) fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
        }
    }

    /// `median [min..max]` with `decimals` digits after the point.
    pub(crate) fn summary(&self, decimals: usize) -> String {
        let v = self.sorted();
        let (Some(min), Some(max)) = (v.first(), v.last()) else {
            return "-".into();
        };
        let mut text = format!("{:.decimals$}", self.median());
        if v.len() > 1 {
            let _ = write!(text, " [{min:.decimals$}..{max:.decimals$}]");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let mut s = Samples::default();
        for v in [5.0, 1.0, 3.0] {
            s.push(v);
        }
        assert!((s.median() - 3.0).abs() < f64::EPSILON);
        s.push(10.0);
        assert!((s.median() - 4.0).abs() < f64::EPSILON);
        assert_eq!(s.summary(1), "4.0 [1.0..10.0]");
        assert_eq!(Samples::default().summary(1), "-");
    }
}
