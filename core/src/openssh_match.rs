//! OpenSSH's host-pattern matching, shared by [`crate::known_hosts`] and
//! [`crate::ssh_config`]: `*` and `?` wildcards, comma-separated lists, and `!negation`
//! (a negated match vetoes the whole list), as `match.c` in OpenSSH defines them.

/// The outcome of matching against a comma-separated pattern list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatternMatch {
    /// No pattern matched.
    None,
    /// A pattern matched, and no negated one did.
    Positive,
    /// A negated pattern matched.
    Negated,
}

/// OpenSSH's `match_pattern_list`; `fold_case` lowercases both sides (`match_hostname`).
pub(crate) fn match_pattern_list(s: &str, list: &str, fold_case: bool) -> PatternMatch {
    let s = if fold_case {
        s.to_ascii_lowercase()
    } else {
        s.to_owned()
    };
    let mut positive = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let pattern = if fold_case {
            pattern.to_ascii_lowercase()
        } else {
            pattern.to_owned()
        };
        if match_pattern(&s, &pattern) {
            if negated {
                return PatternMatch::Negated;
            }
            positive = true;
        }
    }
    if positive {
        PatternMatch::Positive
    } else {
        PatternMatch::None
    }
}

/// OpenSSH's `match_pattern`: the whole of `s` against `pattern`; `*` matches any bytes, `?`
/// exactly one.
pub(crate) fn match_pattern(s: &str, pattern: &str) -> bool {
    let (s, p) = (s.as_bytes(), pattern.as_bytes());
    let (mut si, mut pi) = (0, 0);
    // Where the last `*` was, and the position in `s` it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && p[pi] == s[si])) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((star_p, star_s)) = star {
            pi = star_p + 1;
            si = star_s + 1;
            star = Some((star_p, star_s + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(match_pattern("web-1.internal", "web-*.internal"));
        assert!(match_pattern("a", "?"));
        assert!(!match_pattern("ab", "?"));
        assert!(match_pattern("anything", "*"));
        assert!(!match_pattern("db", "web*"));
    }

    #[test]
    fn lists_and_negation() {
        assert_eq!(
            match_pattern_list("web-1", "db,web-*", false),
            PatternMatch::Positive
        );
        assert_eq!(
            match_pattern_list("web-1", "web-*,!web-1", false),
            PatternMatch::Negated
        );
        assert_eq!(match_pattern_list("x", "a,,b", false), PatternMatch::None);
        assert_eq!(
            match_pattern_list("WEB-1", "web-*", true),
            PatternMatch::Positive
        );
        assert_eq!(
            match_pattern_list("WEB-1", "web-*", false),
            PatternMatch::None
        );
    }
}
