//! Meta-commands: lines starting with `.`, handled before anything reaches Rhai.

use crate::forward::Registry;
use crate::script::Context;
use std::fmt::Write as _;

/// Name and one-line description of each meta-command.
pub const META_COMMANDS: &[(&str, &str)] = &[
    ("help", "this help, and the bindings"),
    ("forwards", "the open forwards, with their counters"),
    (
        "plugins",
        "the loaded strategy plugins (and any that failed to load)",
    ),
    (
        "quit",
        "close every forward and leave (also .exit and Ctrl-D)",
    ),
];

/// What the REPL does after a meta-command.
pub enum MetaOutcome {
    Continue,
    Quit,
}

/// Runs meta-command `line` (starting with `.`).
pub fn handle(line: &str, ctx: &Context) -> MetaOutcome {
    let cmd = line.trim().trim_start_matches('.');
    let word = cmd.split_whitespace().next().unwrap_or("");
    match word {
        "help" | "h" | "?" => println!("{}", help_text()),
        "forwards" | "f" => print_forwards(&ctx.forwards),
        "plugins" => print_plugins(ctx),
        "quit" | "q" | "exit" => return MetaOutcome::Quit,
        other => {
            let known: Vec<&str> = META_COMMANDS.iter().map(|(c, _)| *c).collect();
            let hint = crate::suggest::closest(other, &known)
                .map(|c| format!(" (did you mean .{c}?)"))
                .unwrap_or_default();
            println!("unknown command .{other}{hint}; .help lists them");
        }
    }
    MetaOutcome::Continue
}

fn print_forwards(reg: &Registry) {
    let list = reg.list();
    if list.is_empty() {
        println!("no forwards open");
    }
    for f in list {
        println!("{}", f.summary());
    }
}

fn print_plugins(ctx: &Context) {
    let plugins = ctx.plugins.read().expect("plugins lock");
    for p in plugins.list() {
        println!("{:<12} {}  [{}]", p.name, p.summary, p.origin);
    }
    for e in &plugins.errors {
        println!("{e}");
    }
}

/// The `.help` text.
pub fn help_text() -> String {
    let mut s = String::from(
        "aws-hop: a Rhai shell for reaching private networks. Statements end with `;`.\n\n\
         Hops\n\
         \x20 bastion(\"user@host[:port]\"[, opts])   SSH to a bastion (or a ~/.ssh/config alias)\n\
         \x20 hop.ssh(\"user@host\"[, opts])          SSH through a hop (multi-hop)\n\
         \x20 direct()                              no hop: connect from this machine\n\
         \x20 hop.exec(\"cmd\")                       run a command: #{status, stdout, stderr}\n\
         \x20 hop.shell()                           interactive shell on the hop\n\
         \x20 opts: key, user, port, known_hosts (\"strict\"|\"accept-new\"|\"ask\"|path), agent, via, timeout, server_nodelay\n\n\
         Forwards\n\
         \x20 forward(local, \"host:port\", hop)      listen on local (3307, \"0.0.0.0:3307\", 0 = any free)\n\
         \x20 hop.forward(local, \"host:port\")       the same\n\
         \x20 f.local_port  f.stats()  f.close()    forwards()  wait()  sleep(secs)\n\n\
         AWS\n\
         \x20 instance(\"web-1\")  instances(#{ \"tag:Role\": \"web\" })   find instances (id, Name tag, private IP)\n\
         \x20 eic_endpoint(\"web-1\"[, opts])          EC2 Instance Connect Endpoint hop; .ssh(\"ec2-user\") pushes a key\n\
         \x20 ssm(\"web-1\"[, opts])                   Session Manager hop: .forward(), .ssh(\"ec2-user\"), .shell()\n\
         \x20 ssm_status(\"web-1\")                    is its SSM agent online?\n\n\
         Strategies\n\
         \x20 connect(\"web-1\"[, opts])               eice, ssm, bastion, direct in order; opts.strategies picks\n\
         \x20 plugins()                             loaded strategies\n\n\
         Commands\n",
    );
    for (c, d) in META_COMMANDS {
        let _ = writeln!(s, "  .{c:<10} {d}");
    }
    s.push_str("\nTab completes names; an unfinished block continues on the next line; Ctrl-C cancels the running line.");
    s
}
