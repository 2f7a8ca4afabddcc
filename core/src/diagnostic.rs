//! Errors as users read them: message, file:line:col, the source line and a caret.
//!
//! ```text
//! error: cannot connect to 10.0.0.9:22: Connection refused (os error 111); nothing listens ...
//!   --> scripts/prod-db.rhai:3:9
//!    |
//!  3 | let b = bastion("ec2-user@10.0.0.9");
//!    |         ^
//!    = in call to `open_db` at scripts/prod-db.rhai:9:1
//! ```
//!
//! Rhai nests errors raised inside script functions and modules (`ErrorInFunctionCall`,
//! `ErrorInModule`); [`Diagnostic::from_eval`] unwinds that chain into frames, innermost first,
//! so the caret points at the failing line and each caller is listed below it.

use std::fmt::Write as _;

use rhai::{EvalAltResult, ParseError, Position};

/// One place in a source.
#[derive(Clone, Debug)]
pub struct Frame {
    pub file: String,
    pub pos: Position,
    pub note: Option<String>,
}

/// A rendered-ready error.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// What failed, why, and what to try (may span lines).
    pub message: String,
    /// Innermost (where it failed) first, then its callers.
    pub frames: Vec<Frame>,
}

impl Diagnostic {
    /// From a syntax error in `file`.
    pub fn from_parse(err: &ParseError, file: &str) -> Self {
        Diagnostic {
            message: format!("syntax error: {}", err.err_type()),
            frames: vec![Frame {
                file: file.into(),
                pos: err.position(),
                note: None,
            }],
        }
    }

    /// From a runtime error raised while running `file`. `suggest` may propose a fix for an
    /// unknown function (the name, for "did you mean ...").
    pub fn from_eval(
        err: &EvalAltResult,
        file: &str,
        suggest: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let mut callers = Vec::new();
        let mut current = file.to_string();
        let mut err = err;
        loop {
            match err {
                EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                    callers.push(Frame {
                        file: current.clone(),
                        pos: *pos,
                        note: Some(format!("in call to `{name}`")),
                    });
                    if !src.is_empty() {
                        current.clone_from(src);
                    }
                    err = inner;
                }
                EvalAltResult::ErrorInModule(path, inner, pos) => {
                    callers.push(Frame {
                        file: current.clone(),
                        pos: *pos,
                        note: Some(format!("in module `{path}`")),
                    });
                    current.clone_from(path);
                    err = inner;
                }
                EvalAltResult::ErrorParsing(p, pos) => {
                    let mut frames = vec![Frame {
                        file: current,
                        pos: *pos,
                        note: None,
                    }];
                    callers.reverse();
                    frames.extend(callers);
                    return Diagnostic {
                        message: format!("syntax error: {p}"),
                        frames,
                    };
                }
                _ => break,
            }
        }
        let message = message_of(err, suggest);
        let mut frames = vec![Frame {
            file: current,
            pos: err.position(),
            note: None,
        }];
        callers.reverse();
        frames.extend(callers);
        Diagnostic { message, frames }
    }

    /// `file:line:col` of the innermost frame, if it has a position.
    pub fn location(&self) -> Option<String> {
        let f = self.frames.first()?;
        let line = f.pos.line()?;
        Some(format!(
            "{}:{}:{}",
            f.file,
            line,
            f.pos.position().unwrap_or(1)
        ))
    }

    /// The full text. `source_of(file)` returns a file's text, for the quoted line.
    pub fn render(&self, source_of: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        let mut lines = self.message.lines();
        out.push_str("error: ");
        out.push_str(lines.next().unwrap_or(""));
        out.push('\n');
        for l in lines {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
        let Some(first) = self.frames.first() else {
            return out;
        };
        if let Some(line) = first.pos.line() {
            let col = first.pos.position().unwrap_or(1);
            let _ = writeln!(out, "  --> {}:{line}:{col}", first.file);
            if let Some(text) = source_of(&first.file)
                && let Some(src) = text.lines().nth(line - 1)
            {
                let num = line.to_string();
                let pad = " ".repeat(num.len());
                let _ = write!(out, " {pad} |\n {num} | {src}\n {pad} | ");
                // Keep tabs so the caret lines up under tab-indented code.
                let lead: String = src
                    .chars()
                    .take(col.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                out.push_str(&lead);
                out.push_str("^\n");
            }
        }
        for f in &self.frames[1..] {
            let at = f.pos.line().map_or_else(
                || f.file.clone(),
                |l| format!("{}:{l}:{}", f.file, f.pos.position().unwrap_or(1)),
            );
            match &f.note {
                Some(n) => {
                    let _ = writeln!(out, "   = {n} at {at}");
                }
                None => {
                    let _ = writeln!(out, "   = at {at}");
                }
            }
        }
        out
    }
}

/// The message of a terminal (non-wrapper) error, without Rhai's position suffix.
fn message_of(err: &EvalAltResult, suggest: &dyn Fn(&str) -> Option<String>) -> String {
    match err {
        EvalAltResult::ErrorRuntime(d, _) if d.is_string() => d.to_string(),
        EvalAltResult::ErrorTerminated(..) => "interrupted (Ctrl-C)".into(),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            let name = sig
                .split(['(', ' '])
                .next()
                .unwrap_or(sig)
                .trim_start_matches("get$");
            match suggest(name) {
                Some(s) if s == name => format!(
                    "`{name}` exists, but not for these arguments: {sig}; see `.help` (or the book's \
                     bindings chapter) for how to call it"
                ),
                Some(s) => format!("unknown function or method: {sig} (did you mean `{s}`?)"),
                None => format!("unknown function or method: {sig}"),
            }
        }
        other => {
            let s = other.to_string();
            match s.rfind(" (line ") {
                Some(i) if s.ends_with(')') => s[..i].to_string(),
                _ => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_column() {
        let engine = rhai::Engine::new();
        let src = "let a = 1;\nlet b = a +* 2;\n";
        let err = engine.compile(src).unwrap_err();
        let d = Diagnostic::from_parse(&err, "x.rhai");
        let text = d.render(&|_| Some(src.to_string()));
        assert!(text.starts_with("error: syntax error"), "{text}");
        assert!(text.contains("--> x.rhai:2:"), "{text}");
        assert!(text.contains(" 2 | let b = a +* 2;"), "{text}");
        assert!(text.contains('^'), "{text}");
    }

    #[test]
    fn runtime_error_in_function_lists_caller() {
        let engine = rhai::Engine::new();
        let src = "fn f() {\n  throw \"boom\";\n}\nf();\n";
        let err = engine.run(src).unwrap_err();
        let d = Diagnostic::from_eval(&err, "s.rhai", &|_| None);
        let text = d.render(&|_| Some(src.to_string()));
        assert!(text.contains("error: boom"), "{text}");
        assert!(text.contains("--> s.rhai:2:3"), "{text}");
        assert!(text.contains("in call to `f` at s.rhai:4:1"), "{text}");
    }
}
