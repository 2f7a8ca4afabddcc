//! The `aws-hop>` REPL, shaped like rhai-repl.
//!
//! Session state is a [`rhai::Scope`] plus an AST of the functions defined so far: each line
//! is compiled with the scope, merged into `main_ast`, evaluated, and then its statements are
//! cleared, so variables and `fn`s persist across lines. Lines that start with `.` are
//! meta-commands ([`meta`]). Editing help lives in [`helper`].
//!
//! Ctrl-C at the prompt clears the line; while a line runs it cancels that line only (open
//! forwards stay). Ctrl-D (or `.quit`) closes every forward and leaves. Events from forwards
//! print above the prompt while the user is typing.

pub mod helper;
pub mod meta;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rhai::{AST, Dynamic, Engine, Scope};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor, ExternalPrinter};

use crate::diagnostic::Diagnostic;
use crate::events;
use crate::script::Context;
use helper::HopHelper;
use meta::MetaOutcome;

const PROMPT: &str = "aws-hop> ";

/// The history file: `$XDG_DATA_HOME/aws-hop/history` (or ~/.local/share/...).
fn history_path(home: &std::path::Path) -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map_or_else(|| home.join(".local/share"), PathBuf::from)
        .join("aws-hop")
        .join("history")
}

/// Runs the REPL until Ctrl-D or `.quit`.
pub fn run(ctx: &Arc<Context>, engine: &Engine) -> ExitCode {
    let helper = HopHelper::new(engine);
    let vars = helper.vars.clone();
    let config = Config::builder()
        .history_ignore_space(true)
        .auto_add_history(false)
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut rl: Editor<HopHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(rl) => rl,
        Err(e) => {
            eprintln!("error: cannot start the line editor: {e}");
            return ExitCode::FAILURE;
        }
    };
    rl.set_helper(Some(helper));
    let hist = history_path(&ctx.home);
    let _ = rl.load_history(&hist);

    // Events print above the prompt while editing, and straight to stderr while a line runs.
    let reading = Arc::new(AtomicBool::new(false));
    if let Ok(mut printer) = rl.create_external_printer() {
        let reading = reading.clone();
        events::set_sink(move |msg| {
            if reading.load(Ordering::SeqCst) {
                let _ = printer.print(format!("{msg}\n"));
            } else {
                events::say(&msg);
            }
        });
    }

    println!(
        "aws-hop {} — .help for help, Ctrl-D to quit",
        env!("CARGO_PKG_VERSION")
    );
    let mut scope = Scope::new();
    let mut main_ast = AST::empty();

    loop {
        reading.store(true, Ordering::SeqCst);
        let line = rl.readline(PROMPT);
        reading.store(false, Ordering::SeqCst);
        let input = match line {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                println!("(Ctrl-C cancels a running line; Ctrl-D or .quit leaves)");
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                // A hung-up terminal (EIO) is where this usually comes from: stderr is gone
                // too, and the forwards and sessions must still be closed below.
                events::say(&format!("error: reading input: {e}"));
                break;
            }
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(input.as_str());
        if trimmed.starts_with('.') {
            match meta::handle(trimmed, ctx) {
                MetaOutcome::Continue => continue,
                MetaOutcome::Quit => break,
            }
        }
        ctx.rt.reset_interrupt();
        eval_line(engine, &mut scope, &mut main_ast, &input);
        *vars.lock().expect("vars lock") = scope.iter().map(|(n, _, _)| n.to_string()).collect();
    }

    let _ = std::fs::create_dir_all(hist.parent().unwrap_or(&hist));
    let _ = rl.save_history(&hist);
    events::clear_sink();
    let n = ctx.forwards.list().len();
    ctx.shutdown();
    if n > 0 {
        events::say(&format!(
            "closed {n} forward{}",
            if n == 1 { "" } else { "s" }
        ));
    }
    ExitCode::SUCCESS
}

/// Compiles and runs one line, printing its value or its error.
fn eval_line(engine: &Engine, scope: &mut Scope, main_ast: &mut AST, input: &str) {
    let source = |_: &str| Some(input.to_string());
    let ast = match engine.compile_with_scope(scope, input) {
        Ok(a) => a,
        Err(e) => {
            eprint!("{}", Diagnostic::from_parse(&e, "<repl>").render(&source));
            return;
        }
    };
    *main_ast += ast;
    match engine.eval_ast_with_scope::<Dynamic>(scope, main_ast) {
        Ok(v) if v.is_unit() => {}
        Ok(v) => println!("=> {}", show(&v)),
        Err(e) => {
            let suggest = crate::script::checker::suggester(engine);
            eprint!(
                "{}",
                Diagnostic::from_eval(&e, "<repl>", &suggest).render(&source)
            );
        }
    }
    main_ast.clear_statements();
}

/// A value as the REPL shows it.
pub fn show(v: &Dynamic) -> String {
    if let Some(h) = v.clone().try_cast::<crate::hop::Hop>() {
        return format!("Hop({h})");
    }
    if let Some(f) = v.clone().try_cast::<crate::forward::Forward>() {
        return f.to_string();
    }
    if v.is_string() {
        return format!("{v:?}");
    }
    if v.is_array() {
        let items: Vec<String> = v
            .clone()
            .into_array()
            .unwrap_or_default()
            .iter()
            .map(show)
            .collect();
        return if items.iter().any(|i| i.len() > 40) {
            format!("[\n  {}\n]", items.join(",\n  "))
        } else {
            format!("[{}]", items.join(", "))
        };
    }
    v.to_string()
}
