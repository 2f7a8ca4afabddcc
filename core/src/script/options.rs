//! Option maps: `#{ key: "~/.ssh/x.pem", timeout: 10 }`.
//!
//! [`Options::new`] rejects unknown keys (with the closest known one as a suggestion), and the
//! typed getters name the option and the type they wanted, so a typo in a team script fails at
//! once and says where.

use rhai::{Dynamic, Map};

use crate::error::{Error, Result};
use crate::suggest::closest;

/// The longest `timeout` any binding takes: a day.
pub const MAX_TIMEOUT: f64 = 86_400.0;

/// The longest `sleep()`: 30 days (`wait()` holds forwards for as long as it takes).
pub const MAX_SLEEP: f64 = 30.0 * 86_400.0;

/// `secs` as a duration when it is a number from 0 to `max`; else an error that names `what`
/// and the range (a bare `Duration::from_secs_f64` panics on NaN, negatives and 1e20).
pub fn duration_in(what: &str, secs: f64, max: f64) -> Result<std::time::Duration> {
    if secs >= 0.0 && secs <= max {
        return Ok(std::time::Duration::from_secs_f64(secs));
    }
    Err(Error::invalid(format!(
        "{what} is {secs}: use a number of seconds from 0 to {max}"
    )))
}

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

    /// A number of seconds (integer or decimal) option, above 0 and at most [`MAX_TIMEOUT`].
    pub fn seconds(&self, key: &str) -> Result<Option<std::time::Duration>> {
        self.seconds_in(key, MAX_TIMEOUT)
    }

    /// A number of seconds above 0 and at most `max`; anything else (negative, NaN, 1e20, a
    /// string) is an error naming the option and the range.
    pub fn seconds_in(&self, key: &str, max: f64) -> Result<Option<std::time::Duration>> {
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
                    .filter(|s| *s > 0.0 && *s <= max)
                    .ok_or_else(|| {
                        self.wrong(
                            key,
                            &format!("a number of seconds above 0, at most {max}"),
                            v,
                        )
                    })?;
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
    fn durations_out_of_range_are_errors_not_panics() {
        for bad in [
            Dynamic::from(1e20_f64),
            Dynamic::from(-1.0_f64),
            Dynamic::from(f64::NAN),
            Dynamic::from(f64::INFINITY),
            Dynamic::from(0_i64),
            Dynamic::from(i64::MAX),
        ] {
            let mut m = Map::new();
            m.insert("timeout".into(), bad.clone());
            let o = Options::new(m, "bastion", &["timeout"]).unwrap();
            let err = o.seconds("timeout").unwrap_err().to_string();
            assert!(
                err.contains("option `timeout` of bastion() must be a number of seconds above 0, at most 86400"),
                "{bad}: {err}"
            );
        }
        for bad in [1e20, -1.0, f64::NAN, f64::NEG_INFINITY] {
            let err = duration_in("sleep()", bad, MAX_SLEEP)
                .unwrap_err()
                .to_string();
            assert!(err.contains("from 0 to 2592000"), "{bad}: {err}");
        }
        assert_eq!(
            duration_in("sleep()", 1.5, MAX_SLEEP).unwrap(),
            std::time::Duration::from_millis(1500)
        );
    }
}
