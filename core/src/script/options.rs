//! Option maps: `#{ key: "~/.ssh/x.pem", timeout: 10 }`.
//!
//! [`Options::new`] rejects unknown keys (with the closest known one as a suggestion), and the
//! typed getters name the option and the type they wanted, so a typo in a team script fails at
//! once and says where.

use rhai::{Dynamic, Map};

use crate::error::{Error, Result};

/// The options given to one binding call.
pub struct Options {
    map: Map,
    func: &'static str,
}

impl Options {
    /// Checks `map` against the `known` keys of binding `func`.
    pub fn new(map: Map, func: &'static str, known: &[&str]) -> Result<Self> {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = closest(key, known)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                return Err(Error::invalid(format!(
                    "unknown option `{key}` for {func}(){hint}; its options are: {}",
                    known.join(", ")
                )));
            }
        }
        Ok(Options { map, func })
    }

    /// No options.
    pub fn empty(func: &'static str) -> Self {
        Options {
            map: Map::new(),
            func,
        }
    }

    fn wrong(&self, key: &str, want: &str, got: &Dynamic) -> Error {
        Error::invalid(format!(
            "option `{key}` of {}() must be {want}, not {} ({got})",
            self.func,
            got.type_name()
        ))
    }

    /// A string option.
    pub fn string(&self, key: &str) -> Result<Option<String>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => v
                .clone()
                .into_string()
                .map(Some)
                .map_err(|_| self.wrong(key, "a string", v)),
        }
    }

    /// A boolean option.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .map_err(|_| self.wrong(key, "true or false", v)),
        }
    }

    /// A port number option.
    pub fn port(&self, key: &str) -> Result<Option<u16>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => v
                .as_int()
                .ok()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a port number (1-65535)", v)),
        }
    }

    /// A whole-number option within `range`.
    pub fn int_in(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => v
                .as_int()
                .ok()
                .filter(|n| range.contains(n))
                .map(Some)
                .ok_or_else(|| {
                    self.wrong(
                        key,
                        &format!("a whole number from {} to {}", range.start(), range.end()),
                        v,
                    )
                }),
        }
    }

    /// A number of seconds (integer or decimal) option.
    pub fn seconds(&self, key: &str) -> Result<Option<std::time::Duration>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => {
                #[allow(clippy::cast_precision_loss)]
                let secs = v
                    .as_int()
                    .map(|i| i as f64)
                    .or_else(|_| v.as_float())
                    .ok()
                    .filter(|s| *s > 0.0 && s.is_finite())
                    .ok_or_else(|| self.wrong(key, "a positive number of seconds", v))?;
                Ok(Some(std::time::Duration::from_secs_f64(secs)))
            }
        }
    }

    /// A value of a custom type (e.g. a `Hop` for `via`).
    pub fn custom<T: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        want: &str,
    ) -> Result<Option<T>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => v
                .clone()
                .try_cast::<T>()
                .map(Some)
                .ok_or_else(|| self.wrong(key, want, v)),
        }
    }
}

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
    fn unknown_key_suggests() {
        let mut m = Map::new();
        m.insert("kee".into(), "x".into());
        let err = Options::new(m, "bastion", &["key", "user", "port"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown option `kee` for bastion()"), "{err}");
        assert!(err.contains("did you mean `key`?"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let mut m = Map::new();
        m.insert("port".into(), "ssh".into());
        let o = Options::new(m, "bastion", &["port"]).unwrap();
        let err = o.port("port").unwrap_err().to_string();
        assert!(
            err.contains("option `port` of bastion() must be a port number"),
            "{err}"
        );
    }

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
