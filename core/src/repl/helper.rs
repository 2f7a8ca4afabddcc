//! The rustyline helper: completion, multi-line validation and history hints.
//!
//! - Completion offers bindings and standard functions, methods and properties after a `.`,
//!   the session's variables, Rhai keywords, and meta-commands at the start of a line; inside
//!   the string argument of `instance("`, `eic_endpoint("`, `ssm("`, `connect("` ..., the
//!   instance names and ids that lookups have returned in this session.
//! - Validation keeps the editor open while the input is unfinished (`fn f() {`, an open
//!   string, `foo(1,`): Rhai reports those as errors *at the end of the input*. Real syntax
//!   errors are accepted as complete, so the REPL prints them with a caret.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rhai::{Engine, LexError, ParseErrorType};
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::{Hinter, HistoryHinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::meta::META_COMMANDS;

/// Bindings whose first argument names an instance: their string argument completes with the
/// instances seen so far.
const INSTANCE_FUNCTIONS: &[&str] = &["instance", "eic_endpoint", "ssm", "ssm_status", "connect"];

/// When `line` ends inside the string argument of an [`INSTANCE_FUNCTIONS`] call, the byte
/// offset where that string's text starts.
fn instance_argument_start(line: &str) -> Option<usize> {
    if line.matches('"').count().is_multiple_of(2) {
        return None;
    }
    let quote = line.rfind('"')?;
    let before = line[..quote].trim_end().strip_suffix('(')?.trim_end();
    let name_start = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    INSTANCE_FUNCTIONS
        .contains(&&before[name_start..])
        .then_some(quote + 1)
}

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "for", "in", "while", "loop", "do", "until", "break",
    "continue", "return", "throw", "try", "catch", "import", "export", "as", "true", "false",
    "switch", "private", "this",
];

/// The editor helper of one REPL session.
pub struct HopHelper {
    /// Function names (bindings and the standard library).
    functions: BTreeSet<String>,
    /// Method and property names usable after a `.`.
    methods: BTreeSet<String>,
    /// Variables in the session's scope; refreshed by the REPL after each line.
    pub vars: Arc<Mutex<Vec<String>>>,
    /// Compiles input to tell unfinished from finished.
    syntax: Engine,
    hinter: HistoryHinter,
}

impl HopHelper {
    /// Builds the helper from the session engine's signatures.
    pub fn new(engine: &Engine) -> Self {
        let mut functions = BTreeSet::new();
        let mut methods = BTreeSet::new();
        for sig in engine.gen_fn_signatures(true) {
            let Some(head) = sig.split('(').next() else {
                continue;
            };
            let name = head.rsplit("::").next().unwrap_or(head).trim();
            if name.is_empty() || !name.starts_with(|c: char| c.is_alphabetic() || c == '_') {
                continue;
            }
            if let Some(prop) = name.strip_prefix("get$") {
                methods.insert(prop.to_string());
                continue;
            }
            if name.contains('$') {
                continue;
            }
            // A first parameter of a custom type means it reads as a method too.
            let first = sig.split('(').nth(1).unwrap_or("");
            if first.contains("Hop") || first.contains("Forward") || first.contains("&mut") {
                methods.insert(name.to_string());
            }
            functions.insert(name.to_string());
        }
        functions.extend(["print", "debug", "type_of"].map(String::from));
        HopHelper {
            functions,
            methods,
            vars: Arc::new(Mutex::new(Vec::new())),
            syntax: Engine::new_raw(),
            hinter: HistoryHinter::new(),
        }
    }

    /// Candidates for `word` in its position.
    fn candidates(&self, line: &str, start: usize, word: &str) -> Vec<String> {
        let before = line[..start].trim_end();
        if before.is_empty() && line.trim_start().starts_with('.') {
            return Vec::new();
        }
        if line[..start].ends_with('.') {
            return self
                .methods
                .iter()
                .filter(|m| m.starts_with(word))
                .cloned()
                .collect();
        }
        let vars = self.vars.lock().expect("vars lock").clone();
        let mut out: BTreeSet<String> = BTreeSet::new();
        out.extend(vars.into_iter().filter(|v| v.starts_with(word)));
        out.extend(
            self.functions
                .iter()
                .filter(|f| f.starts_with(word))
                .cloned(),
        );
        out.extend(
            KEYWORDS
                .iter()
                .filter(|k| k.starts_with(word))
                .map(|k| (*k).to_string()),
        );
        out.into_iter().collect()
    }
}

impl Completer for HopHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let line = &line[..pos];
        // Meta-commands: `.fo<TAB>` at the start of the line.
        if let Some(rest) = line.strip_prefix('.')
            && !rest.contains(' ')
        {
            let pairs = META_COMMANDS
                .iter()
                .filter(|(c, _)| c.starts_with(rest))
                .map(|(c, _)| Pair {
                    display: format!(".{c}"),
                    replacement: format!(".{c}"),
                })
                .collect();
            return Ok((0, pairs));
        }
        if let Some(start) = instance_argument_start(line) {
            let word = &line[start..];
            let pairs = crate::aws::instances::seen()
                .into_iter()
                .filter(|n| n.starts_with(word))
                .map(|n| Pair {
                    display: n.clone(),
                    replacement: n,
                })
                .collect();
            return Ok((start, pairs));
        }
        let start = line
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &line[start..];
        let pairs = self
            .candidates(line, start, word)
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for HopHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<String> {
        self.hinter.hint(line, pos, ctx)
    }
}

impl Highlighter for HopHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }
}

impl Validator for HopHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if is_incomplete(&self.syntax, ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for HopHelper {}

/// True when `input` is an unfinished statement (more lines should follow).
pub fn is_incomplete(engine: &Engine, input: &str) -> bool {
    let trimmed = input.trim();
    if trimmed.is_empty() || trimmed.starts_with('.') {
        return false;
    }
    if input.ends_with('\\') {
        return true;
    }
    let Err(err) = engine.compile(input) else {
        return false;
    };
    let at_end = {
        let last_line = input.lines().count().max(1);
        err.position().line().is_none_or(|l| l >= last_line)
    };
    at_end
        && matches!(
            err.err_type(),
            ParseErrorType::MissingToken(..)
                | ParseErrorType::UnexpectedEOF
                | ParseErrorType::BadInput(LexError::UnterminatedString)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_arguments_are_found() {
        assert_eq!(instance_argument_start("ssm(\"we"), Some(5));
        assert_eq!(instance_argument_start("let h = connect( \""), Some(18));
        assert_eq!(instance_argument_start("print(\"we"), None);
        assert_eq!(instance_argument_start("ssm(\"web-1\")"), None);
        assert_eq!(instance_argument_start("x.ssm(\"w"), Some(7));
    }

    #[test]
    fn unfinished_input_is_incomplete() {
        let e = Engine::new_raw();
        assert!(is_incomplete(&e, "fn f() {"));
        assert!(is_incomplete(&e, "let a = [1, 2,"));
        assert!(is_incomplete(&e, "foo(1,"));
        assert!(is_incomplete(&e, "let s = \"abc"));
        assert!(!is_incomplete(&e, "let a = 1;"));
        assert!(!is_incomplete(&e, "fn f() {\n 1\n}"));
        // A real error mid-input is complete: the REPL prints it with a caret.
        assert!(!is_incomplete(&e, "let = 5;\nlet b = 2;"));
        assert!(!is_incomplete(&e, ".forwards"));
    }
}
