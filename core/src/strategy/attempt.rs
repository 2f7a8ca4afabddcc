//! Trying strategies in order: what `connect()` and `aws-hop proxy` share.
//!
//! [`try_in_order`] asks each plugin, in the configured order, whether it
//! `applies(target, opts)` (or `applies(target)`, for plugins written before options reached it);
//! the first that applies and whose `open(target, opts)` (for `connect()`) or
//! `route(target, opts)` (for `aws-hop proxy`) returns a [`Hop`] wins. Every plugin asked
//! leaves one line in the [`Report`]: `eice: skipped (no endpoint in vpc-0abc)`,
//! `ssm: failed (agent offline)`, `bastion: ok`. When none wins, the report is the error.
//!
//! Plugins are Rhai; they run on the calling thread with the same engine (and so the same
//! bindings and context) as the script that called `connect()`.

use std::fmt;

use rhai::{AST, Dynamic, Engine, EvalAltResult, Map, Scope};

use super::Plugins;
use crate::hop::Hop;

/// What a strategy is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// `open(target, opts)`: a hop logged in to the target (what `connect()` returns).
    Session,
    /// `route(target, opts)`: a hop whose streams reach the target's own ports (what
    /// `aws-hop proxy` pipes to OpenSSH). Plugins without `route` are skipped.
    Route,
}

impl Goal {
    fn function(self) -> &'static str {
        match self {
            Goal::Session => "open",
            Goal::Route => "route",
        }
    }
}

/// How one plugin's turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `applies` said no, with its reason.
    Skipped(String),
    /// `open`/`route` failed, with the error.
    Failed(String),
    /// It returned this hop (described).
    Ok(String),
}

/// One plugin's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The plugin's name.
    pub plugin: String,
    /// What happened.
    pub outcome: Outcome,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Skipped(why) => write!(f, "{}: skipped ({why})", self.plugin),
            Outcome::Failed(why) => write!(f, "{}: failed ({why})", self.plugin),
            Outcome::Ok(hop) => write!(f, "{}: ok ({hop})", self.plugin),
        }
    }
}

/// Every turn taken for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The target as the user gave it.
    pub target: String,
    /// In order.
    pub attempts: Vec<Attempt>,
    /// Set when the run stopped because of Ctrl-C.
    pub interrupted: bool,
}

impl Report {
    /// One line per attempt, `; `-separated: for an event line after a fallback.
    pub fn summary(&self) -> String {
        self.attempts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Report {
    /// The failure text: a headline, then every attempt on its own line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.interrupted {
            return f.write_str("interrupted (Ctrl-C)");
        }
        if self.attempts.is_empty() {
            return write!(f, "no strategy to reach {}", self.target);
        }
        write!(f, "no strategy reached {}:", self.target)?;
        for a in &self.attempts {
            write!(f, "\n  {a}")?;
        }
        f.write_str(
            "\n(fix the first cause that applies to you, or choose strategies: \
             connect(t, #{ strategies: [...] }), aws-hop proxy --via)",
        )
    }
}

/// Which plugins to ask, in order: all of them, or the ones `via` names (a name or a
/// comma-separated list), in that order. An unknown name is an error naming the known ones.
pub fn choose(plugins: &Plugins, via: Option<&str>) -> Result<Vec<(String, AST)>, String> {
    let all = plugins.list();
    let Some(via) = via else {
        return Ok(all
            .iter()
            .map(|p| (p.name.clone(), p.ast.clone()))
            .collect());
    };
    let mut chosen = Vec::new();
    for name in via.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(p) = plugins.get(name) else {
            let known: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
            let hint = crate::suggest::closest(name, &known)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "no strategy plugin named `{name}`{hint}; loaded: {}",
                known.join(", ")
            ));
        };
        chosen.push((p.name.clone(), p.ast.clone()));
    }
    if chosen.is_empty() {
        return Err("`via` names no strategy".into());
    }
    Ok(chosen)
}

/// Refuses an option that none of the `chosen` strategies takes (the union of their
/// `options` constants), naming the nearest known one. `what` is how the user gave it
/// (`connect()`, `aws-hop proxy -o`). A chosen plugin that does not list its options may take
/// anything, so with one of them nothing is refused.
pub fn check_options<'a>(
    plugins: &Plugins,
    chosen: &[(String, AST)],
    keys: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> Result<(), String> {
    let mut known: Vec<&str> = Vec::new();
    for (name, _) in chosen {
        match plugins.get(name).and_then(|p| p.options.as_ref()) {
            Some(list) => known.extend(list.iter().map(String::as_str)),
            None => return Ok(()),
        }
    }
    known.sort_unstable();
    known.dedup();
    for key in keys {
        if key == "strategies" || known.contains(&key) {
            continue;
        }
        let hint = crate::suggest::closest(key, &known)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let names: Vec<&str> = chosen.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format!(
            "unknown option `{key}` for {what}{hint}: the strategies {} take {}",
            names.join(", "),
            known.join(", ")
        ));
    }
    Ok(())
}

/// Asks `plugins` in order for `goal`; the first hop wins. `interrupted` is polled between
/// plugins so Ctrl-C stops the fallback instead of starting the next strategy.
pub fn try_in_order(
    engine: &Engine,
    plugins: &[(String, AST)],
    target: &Dynamic,
    opts: &Map,
    goal: Goal,
    interrupted: &dyn Fn() -> bool,
) -> Result<(Hop, Report), Report> {
    let mut report = Report {
        target: target_label(target),
        attempts: Vec::new(),
        interrupted: false,
    };
    for (name, ast) in plugins {
        if interrupted() {
            report.interrupted = true;
            return Err(report);
        }
        let outcome = one(engine, ast, target, opts, goal);
        let hop = match outcome {
            Ok(hop) => hop,
            Err(outcome) => {
                report.attempts.push(Attempt {
                    plugin: name.clone(),
                    outcome,
                });
                continue;
            }
        };
        report.attempts.push(Attempt {
            plugin: name.clone(),
            outcome: Outcome::Ok(hop.describe()),
        });
        return Ok((hop, report));
    }
    report.interrupted = interrupted();
    Err(report)
}

/// One plugin's turn: `applies`, then `open` or `route`.
fn one(
    engine: &Engine,
    ast: &AST,
    target: &Dynamic,
    opts: &Map,
    goal: Goal,
) -> Result<Hop, Outcome> {
    let func = goal.function();
    if goal == Goal::Route
        && !ast
            .iter_functions()
            .any(|f| f.name == func && f.params.len() == 2)
    {
        return Err(Outcome::Skipped(
            "it has no `fn route(target, opts)`, so it cannot serve `aws-hop proxy`".into(),
        ));
    }
    // `applies(target, opts)` sees `profile`, `region` ... as `open` does; a plugin written
    // before options reached `applies` defines `applies(target)`, and still works.
    let with_opts = ast
        .iter_functions()
        .any(|f| f.name == "applies" && f.params.len() == 2);
    let applies = if with_opts {
        engine.call_fn::<Dynamic>(
            &mut Scope::new(),
            ast,
            "applies",
            (target.clone(), Dynamic::from_map(opts.clone())),
        )
    } else {
        engine.call_fn::<Dynamic>(&mut Scope::new(), ast, "applies", (target.clone(),))
    }
    .map_err(|e| Outcome::Failed(format!("applies(): {}", message(&e))))?;
    if let Some(yes) = applies.clone().try_cast::<bool>() {
        if !yes {
            return Err(Outcome::Skipped("it does not apply to this target".into()));
        }
    } else {
        return Err(Outcome::Skipped(applies.to_string()));
    }
    let value = engine
        .call_fn::<Dynamic>(
            &mut Scope::new(),
            ast,
            func,
            (target.clone(), Dynamic::from_map(opts.clone())),
        )
        .map_err(|e| Outcome::Failed(message(&e)))?;
    let type_name = value.type_name().to_string();
    value.try_cast::<Hop>().ok_or_else(|| {
        Outcome::Failed(format!(
            "{func}() returned a {type_name}, not a Hop (a plugin bug: see the book, \"Strategy plugins\")"
        ))
    })
}

/// The innermost message of a Rhai error: what the failing binding or `throw` said, without
/// the "in call to function" wrappers and positions.
pub fn message(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => message(inner),
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        other => {
            let mut s = other.to_string();
            if let Some(i) = s.rfind(" (line ") {
                s.truncate(i);
            }
            s
        }
    }
}

/// The target as the report names it: the string, or the `id` of an instance map.
fn target_label(target: &Dynamic) -> String {
    if let Some(m) = target.read_lock::<Map>()
        && let Some(id) = m.get("id")
    {
        return id.to_string();
    }
    target.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Plugins;

    fn plugins_from(engine: &Engine, sources: &[&str]) -> Vec<(String, AST)> {
        sources
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("p{i}"), engine.compile(s).unwrap()))
            .collect()
    }

    #[test]
    fn reports_every_attempt_and_stops_at_the_first_hop() {
        let mut engine = Engine::new();
        engine.register_type_with_name::<Hop>("Hop");
        engine.register_fn("direct", || Hop::Direct);
        let ps = plugins_from(
            &engine,
            &[
                r#"fn applies(t) { "no endpoint in vpc-1" } fn open(t, o) { direct() }"#,
                r#"fn applies(t) { true } fn open(t, o) { throw "agent offline" }"#,
                r"fn applies(t) { true } fn open(t, o) { 42 }",
                r"fn applies(t) { true } fn open(t, o) { direct() }",
                r#"fn applies(t) { true } fn open(t, o) { throw "never asked" }"#,
            ],
        );
        let (hop, report) = try_in_order(
            &engine,
            &ps,
            &Dynamic::from("web-1"),
            &Map::new(),
            Goal::Session,
            &|| false,
        )
        .ok()
        .unwrap();
        assert!(matches!(hop, Hop::Direct));
        assert_eq!(
            report.summary(),
            "p0: skipped (no endpoint in vpc-1); p1: failed (agent offline); \
             p2: failed (open() returned a i64, not a Hop (a plugin bug: see the book, \"Strategy plugins\")); \
             p3: ok (direct)"
        );
    }

    #[test]
    fn all_failing_is_an_error_listing_each_cause() {
        let engine = Engine::new();
        let ps = plugins_from(
            &engine,
            &[
                r"fn applies(t) { false } fn open(t, o) { 1 }",
                r#"fn applies(t) { true } fn open(t, o) { throw "refused" }"#,
            ],
        );
        let report = try_in_order(
            &engine,
            &ps,
            &Dynamic::from("db"),
            &Map::new(),
            Goal::Session,
            &|| false,
        )
        .err()
        .unwrap();
        let text = report.to_string();
        assert!(text.starts_with("no strategy reached db:\n  p0: skipped (it does not apply to this target)\n  p1: failed (refused)"), "{text}");
    }

    #[test]
    fn applies_sees_the_options_and_one_argument_applies_still_works() {
        let mut engine = Engine::new();
        engine.register_type_with_name::<Hop>("Hop");
        engine.register_fn("direct", || Hop::Direct);
        let ps = plugins_from(
            &engine,
            &[
                r#"fn applies(t, o) { if o.region == "eu-west-1" { "saw eu-west-1" } else { "no region" } } fn open(t, o) { direct() }"#,
                r"fn applies(t) { true } fn open(t, o) { direct() }",
            ],
        );
        let mut opts = Map::new();
        opts.insert("region".into(), "eu-west-1".into());
        let (_, report) = try_in_order(
            &engine,
            &ps,
            &Dynamic::from("web-1"),
            &opts,
            Goal::Session,
            &|| false,
        )
        .ok()
        .unwrap();
        assert_eq!(
            report.summary(),
            "p0: skipped (saw eu-west-1); p1: ok (direct)"
        );
    }

    #[test]
    fn route_needs_a_route_function() {
        let engine = Engine::new();
        let ps = plugins_from(&engine, &[r"fn applies(t) { true } fn open(t, o) { 1 }"]);
        let report = try_in_order(
            &engine,
            &ps,
            &Dynamic::from("db"),
            &Map::new(),
            Goal::Route,
            &|| false,
        )
        .err()
        .unwrap();
        assert!(
            report.to_string().contains("no `fn route(target, opts)`"),
            "{report}"
        );
    }

    #[test]
    fn interrupt_stops_the_fallback() {
        let engine = Engine::new();
        let ps = plugins_from(&engine, &[r"fn applies(t) { true } fn open(t, o) { 1 }"]);
        let report = try_in_order(
            &engine,
            &ps,
            &Dynamic::from("db"),
            &Map::new(),
            Goal::Session,
            &|| true,
        )
        .err()
        .unwrap();
        assert!(report.interrupted);
        assert!(report.attempts.is_empty());
    }

    #[test]
    fn via_chooses_and_orders() {
        let engine = Engine::new();
        let plugins = Plugins::load(&engine, &[]);
        let names = |v| {
            choose(&plugins, v)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Some("bastion, eice")), ["bastion", "eice"]);
        let e = choose(&plugins, Some("eicee")).err().unwrap();
        assert!(e.contains("did you mean `eice`"), "{e}");
    }

    #[test]
    fn a_misspelt_option_is_refused_with_the_nearest_known_one() {
        let engine = Engine::new();
        let plugins = Plugins::load(&engine, &[]);
        let all = choose(&plugins, None).unwrap();
        let e = check_options(&plugins, &all, ["regoin"], "connect()")
            .err()
            .unwrap();
        assert!(
            e.starts_with("unknown option `regoin` for connect() (did you mean `region`?)"),
            "{e}"
        );
        assert!(check_options(&plugins, &all, ["region", "user", "bastion"], "connect()").is_ok());
        // `endpoint` is eice's: with only ssm chosen, it is unknown.
        let ssm = choose(&plugins, Some("ssm")).unwrap();
        assert!(check_options(&plugins, &ssm, ["endpoint"], "connect()").is_err());
    }
}
