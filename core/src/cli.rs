//! The command line: `aws-hop` (REPL), `aws-hop run FILE`, `aws-hop check FILE...`,
//! `aws-hop -e CODE`, `aws-hop proxy TARGET [PORT]`, `aws-hop ssh-config`, and [`run`], the
//! whole program behind the tiny `main`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rhai::{Array, Dynamic, Engine, Scope};

use crate::diagnostic::Diagnostic;
use crate::script::bindings::runtime::hold_forwards;
use crate::script::checker;
use crate::script::{Context, build_engine};
use crate::strategy::{Plugins, plugin_dirs};

/// Exit code for scripts that failed to compile or check.
const EXIT_SCRIPT_INVALID: u8 = 2;
/// Exit code for a run ended by Ctrl-C, as shells report SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "aws-hop",
    version,
    about = "A scriptable shell for reaching private AWS networks: SSH bastions, multi-hop, local port forwards",
    long_about = "A scriptable shell for reaching private AWS networks.\n\n\
        With no arguments, aws-hop opens the `aws-hop>` REPL. Scripts are Rhai; their bindings open \
        hops and local forwards, e.g.\n\n\
        \x20 let b = bastion(\"ec2-user@bastion.example.com\");\n\
        \x20 forward(3307, \"mydb.abc.eu-west-1.rds.amazonaws.com:3306\", b);\n\
        \x20 wait();\n\n\
        then `mysql -h 127.0.0.1 -P 3307` reaches the private database. Host keys are checked against \
        ~/.ssh/known_hosts; ~/.ssh/config aliases work as destinations.",
    after_help = "Examples:\n  aws-hop                          open the REPL\n  \
        aws-hop run scripts/db.rhai prod  run a script (it sees `args`), hold its forwards until Ctrl-C\n  \
        aws-hop check scripts/*.rhai     check scripts without connecting (for CI)\n  \
        aws-hop proxy i-0abc 22          ProxyCommand for OpenSSH (see `aws-hop ssh-config`)\n  \
        aws-hop -e 'bastion(\"bastion\").exec(\"uptime\").stdout'"
)]
struct Cli {
    /// Evaluate CODE, print its value, and hold any forwards it opened until Ctrl-C.
    #[arg(short = 'e', long = "eval", value_name = "CODE")]
    eval: Option<String>,

    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// AWS profile for lookups and AWS hops where a script names none (else AWS_PROFILE).
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,

    /// AWS region where a script names none (else AWS_REGION, then the profile's).
    #[arg(long, global = true, value_name = "REGION")]
    region: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a script; if it leaves forwards open, hold them until Ctrl-C (like `ssh -N`).
    Run {
        /// The script (.rhai).
        file: PathBuf,
        /// Arguments, visible to the script as the array `args`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Check scripts without connecting: syntax, and calls to functions that do not exist.
    Check {
        /// The scripts to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Open the REPL (the default).
    Repl,
    /// Connect stdin/stdout to TARGET:PORT, for OpenSSH's ProxyCommand (`aws-hop proxy %h %p`).
    ///
    /// The route is found as connect() would find it: each strategy plugin in order (eice,
    /// ssm, bastion, direct, and user plugins), or only those --via names. OpenSSH then logs
    /// in over it.
    Proxy {
        /// An instance id, Name tag, private IP or host name.
        target: String,
        /// The port on the target.
        #[arg(default_value_t = 22)]
        port: u16,
        /// Use only these strategies, in this order (comma-separated): eice, ssm, bastion,
        /// direct ...
        #[arg(long, value_name = "STRATEGY")]
        via: Option<String>,
        /// An option for the strategies, e.g. -o bastion=ec2-user@bastion.example.com,
        /// -o endpoint=eice-0abc, -o mode=forward (ssm: port forwarding instead of
        /// AWS-StartSSHSession) (repeatable).
        #[arg(short = 'o', value_name = "KEY=VALUE")]
        options: Vec<String>,
    },
    /// Print a ~/.ssh/config block that sends `ssh i-...` and `ssh <Name tag>` through `aws-hop proxy`.
    SshConfig {
        /// Strategies for the ProxyCommand (as for `proxy --via`: eice, ssm, bastion, direct ...).
        #[arg(long, value_name = "STRATEGY")]
        via: Option<String>,
        /// An option written into the ProxyCommand (as for `proxy -o`), e.g.
        /// -o bastion=ec2-user@bastion.example.com with --via bastion (repeatable).
        #[arg(short = 'o', value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// The login user to write (`User`), e.g. ec2-user or ubuntu.
        #[arg(long)]
        user: Option<String>,
        /// Do not list instances (only `i-*` patterns; no AWS call).
        #[arg(long)]
        no_lookup: bool,
    },
}

/// The whole program: parse the command line, set up, dispatch.
pub fn run() -> ExitCode {
    crate::tls::install_crypto_provider();
    let cli = Cli::parse();
    crate::logging::init(cli.verbose);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the runtime, context, engine and plugins; then runs the chosen command.
fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.eval.is_some() && !matches!(cli.command, None | Some(Command::Repl)) {
        eprintln!("error: -e runs code on its own; it cannot be combined with a subcommand");
        return Ok(ExitCode::from(EXIT_SCRIPT_INVALID));
    }
    let interactive = cli.eval.is_none() && matches!(cli.command, None | Some(Command::Repl));
    let rt = crate::runtime::Runtime::new().context("starting aws-hop")?;
    let home = crate::keys::home_dir();
    let aws_defaults = crate::aws::config::ConfigKey {
        profile: cli.profile.clone(),
        region: cli.region.clone(),
    };
    let ctx = Arc::new(Context {
        rt,
        forwards: crate::forward::Registry::default(),
        interactive,
        plugins: std::sync::RwLock::new(Plugins::default()),
        home: home.clone(),
        hops: std::sync::Mutex::new(Vec::new()),
        aws: crate::aws::config::AwsConfigs::with_defaults(aws_defaults.clone()),
    });
    // After SIGHUP/SIGTERM, if the main thread is stuck (the REPL reading a line), close
    // forwards and hops from the signal's thread before exiting.
    let weak = Arc::downgrade(&ctx);
    ctx.rt.on_terminate(move || {
        if let Some(ctx) = weak.upgrade() {
            ctx.shutdown();
        }
    });
    let engine = build_engine(&ctx);
    let plugins = Plugins::load(&engine, &plugin_dirs(&home));
    for e in &plugins.errors {
        eprint!("warning: a plugin was skipped\n{e}");
    }
    *ctx.plugins.write().expect("plugins lock") = plugins;

    Ok(match cli.command {
        Some(Command::Run { file, args }) => run_file(&ctx, &engine, &file, args),
        Some(Command::Check { files }) => check_files(&engine, &files),
        Some(Command::Proxy {
            target,
            port,
            via,
            options,
        }) => match crate::proxy::options_map(&options) {
            Ok(opts) => crate::proxy::proxy(&ctx, &engine, &target, port, via.as_deref(), &opts),
            Err(e) => {
                eprintln!("aws-hop proxy: {e}");
                ExitCode::from(EXIT_SCRIPT_INVALID)
            }
        },
        Some(Command::SshConfig {
            via,
            options,
            user,
            no_lookup,
        }) => match crate::proxy::ssh_config_options(&ctx, via.as_deref(), &options) {
            Ok(()) => {
                print!(
                    "{}",
                    crate::proxy::ssh_config(
                        &ctx,
                        &aws_defaults,
                        via.as_deref(),
                        &options,
                        user.as_deref(),
                        !no_lookup
                    )
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("aws-hop ssh-config: {e}");
                ExitCode::from(EXIT_SCRIPT_INVALID)
            }
        },
        Some(Command::Repl) | None => match cli.eval {
            Some(code) => run_source(&ctx, &engine, "<-e>", &code, Vec::new(), true),
            None => crate::repl::run(&ctx, &engine),
        },
    })
}

fn read_script(file: &Path) -> Result<String, ExitCode> {
    std::fs::read_to_string(file).map_err(|e| {
        eprintln!("error: cannot read script {}: {e}", file.display());
        ExitCode::from(EXIT_SCRIPT_INVALID)
    })
}

fn run_file(ctx: &Arc<Context>, engine: &Engine, file: &Path, args: Vec<String>) -> ExitCode {
    match read_script(file) {
        Ok(text) => run_source(ctx, engine, &file.display().to_string(), &text, args, false),
        Err(code) => code,
    }
}

/// Runs a whole script; holds its forwards afterwards; maps the outcome to an exit code.
fn run_source(
    ctx: &Arc<Context>,
    engine: &Engine,
    name: &str,
    text: &str,
    args: Vec<String>,
    print_value: bool,
) -> ExitCode {
    let source = |_: &str| Some(text.to_string());
    let read_other = |f: &str| {
        if f == name {
            Some(text.to_string())
        } else {
            std::fs::read_to_string(f).ok()
        }
    };
    let mut ast = match engine.compile(text) {
        Ok(a) => a,
        Err(e) => {
            eprint!("{}", Diagnostic::from_parse(&e, name).render(&source));
            return ExitCode::from(EXIT_SCRIPT_INVALID);
        }
    };
    ast.set_source(name);
    let mut scope = Scope::new();
    let args: Array = args.into_iter().map(Dynamic::from).collect();
    scope.push("args", args);
    let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
    match result {
        Ok(v) => {
            if print_value && !v.is_unit() {
                println!("{}", crate::repl::show(&v));
            }
            hold_forwards(ctx);
            ctx.shutdown();
            ExitCode::SUCCESS
        }
        Err(e) => {
            let interrupted = ctx.rt.interrupted();
            let suggest = crate::script::checker::suggester(engine);
            // Not eprint!: after SIGHUP from a closed terminal stderr is a dead pty, and a
            // panic here would skip the shutdown below (sessions left Connected).
            crate::events::say(
                Diagnostic::from_eval(&e, name, &suggest)
                    .render(&read_other)
                    .trim_end(),
            );
            ctx.shutdown();
            if interrupted {
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `aws-hop check`: compile each file and look for unknown functions; nothing connects.
fn check_files(engine: &Engine, files: &[PathBuf]) -> ExitCode {
    let mut failed = 0;
    for file in files {
        let name = file.display().to_string();
        let Ok(text) = read_script(file) else {
            failed += 1;
            continue;
        };
        let source = |_: &str| Some(text.clone());
        match engine.compile(&text) {
            Err(e) => {
                eprint!("{}", Diagnostic::from_parse(&e, &name).render(&source));
                failed += 1;
            }
            Ok(ast) => {
                let unknown = checker::unknown_calls(engine, &ast);
                for u in &unknown {
                    let hint = u
                        .suggestion
                        .as_ref()
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    let d = Diagnostic {
                        message: format!("unknown function `{}`{hint}", u.name),
                        frames: vec![crate::diagnostic::Frame {
                            file: name.clone(),
                            pos: u.pos,
                            note: None,
                        }],
                    };
                    eprint!("{}", d.render(&source));
                }
                if unknown.is_empty() {
                    println!("ok: {name}");
                } else {
                    failed += 1;
                }
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{failed} of {} script{} failed the check",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
        ExitCode::from(EXIT_SCRIPT_INVALID)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
