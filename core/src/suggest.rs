//! "Did you mean …?": the nearest known name to a misspelt one (options, functions,
//! strategies, meta-commands). Hand-written: a dozen lines of Levenshtein over short names,
//! where a crate would add a dependency for nothing more.

/// The known key nearest to `key` by edit distance, if it is close.
pub fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (short strings only).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("bastoin", "bastion"), 2);
        assert_eq!(
            closest("fowrard", &["forward", "forwards", "wait"]),
            Some("forward")
        );
        assert_eq!(closest("zzz", &["forward"]), None);
    }
}
