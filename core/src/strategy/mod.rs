//! Strategy plugins: Rhai modules that know one way to reach a target.
//!
//! A plugin is a `.rhai` file with this contract (checked at load, with file:line errors):
//!
//! ```rhai
//! export const name = "nlb";
//! export const summary = "SSH straight to a Network Load Balancer that forwards port 22";
//! fn applies(target) { ... }     // true, or a string saying why not
//! fn open(target, opts) { ... }  // returns a Hop; throw to let connect() fall back
//! fn route(target, opts) { ... } // optional: a Hop whose streams reach the target's own
//!                                // ports, for `aws-hop proxy` (OpenSSH does the SSH)
//! ```
//!
//! [`attempt`] runs them in order for `connect()` and `aws-hop proxy`, with a report of every
//! attempt.
//!
//! Built-in plugins (plugins/ in the source tree) are compiled into the binary. User plugins
//! come from the directories in `AWS_HOP_PLUGIN_PATH` (colon-separated), then
//! `~/.config/aws-hop/plugins`; a user plugin with a built-in's name replaces it. A plugin that
//! fails to load is reported and skipped: the others, and the script, go on.

pub mod attempt;

use std::path::{Path, PathBuf};

use rhai::{AST, Engine, Module, Scope};

use crate::script::diagnostic::Diagnostic;

/// Plugins compiled into the binary, in their default order.
/// The order is `connect()`'s: the AWS-native ways in first (they need nothing but IAM), a
/// bastion when one is given, and plain SSH last.
const BUILTIN: &[(&str, &str)] = &[
    ("eice.rhai", include_str!("../../../plugins/eice.rhai")),
    ("ssm.rhai", include_str!("../../../plugins/ssm.rhai")),
    (
        "bastion.rhai",
        include_str!("../../../plugins/bastion.rhai"),
    ),
    ("direct.rhai", include_str!("../../../plugins/direct.rhai")),
];

/// One loaded plugin.
pub struct Plugin {
    /// Its `name` constant.
    pub name: String,
    /// Its `summary` constant.
    pub summary: String,
    /// `built-in` or the file it came from.
    pub origin: String,
    /// The compiled module, for calling `applies` and `open`.
    pub ast: AST,
}

/// The loaded plugins and the load errors.
#[derive(Default)]
pub struct Plugins {
    list: Vec<Plugin>,
    /// Rendered errors of plugins that did not load.
    pub errors: Vec<String>,
}

impl Plugins {
    /// Loads the built-ins, then every `*.rhai` in `dirs` (sorted by file name).
    pub fn load(engine: &Engine, dirs: &[PathBuf]) -> Plugins {
        let mut plugins = Plugins::default();
        for (file, text) in BUILTIN {
            plugins.add(load_one(
                engine,
                &format!("built-in:{file}"),
                text,
                "built-in",
            ));
        }
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                .collect();
            files.sort();
            for path in files {
                let shown = path.display().to_string();
                match std::fs::read_to_string(&path) {
                    Ok(text) => plugins.add(load_one(engine, &shown, &text, &shown)),
                    Err(e) => plugins
                        .errors
                        .push(format!("error: cannot read plugin {shown}: {e}")),
                }
            }
        }
        plugins
    }

    fn add(&mut self, loaded: Result<Plugin, String>) {
        match loaded {
            Ok(p) => {
                if let Some(slot) = self.list.iter_mut().find(|q| q.name == p.name) {
                    *slot = p;
                } else {
                    self.list.push(p);
                }
            }
            Err(e) => self.errors.push(e),
        }
    }

    /// The plugins, in order.
    pub fn list(&self) -> &[Plugin] {
        &self.list
    }

    /// A plugin by name.
    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.list.iter().find(|p| p.name == name)
    }
}

/// The user plugin directories: `AWS_HOP_PLUGIN_PATH`, then `~/.config/aws-hop/plugins`.
pub fn plugin_dirs(home: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("AWS_HOP_PLUGIN_PATH")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let config =
        std::env::var_os("XDG_CONFIG_HOME").map_or_else(|| home.join(".config"), PathBuf::from);
    dirs.push(config.join("aws-hop").join("plugins"));
    dirs
}

/// Compiles one plugin and checks its contract; the error is a rendered diagnostic.
fn load_one(engine: &Engine, shown: &str, text: &str, origin: &str) -> Result<Plugin, String> {
    let source = |_: &str| Some(text.to_string());
    let mut ast = engine
        .compile(text)
        .map_err(|e| Diagnostic::from_parse(&e, shown).render(&source))?;
    ast.set_source(shown);
    let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
        .map_err(|e| Diagnostic::from_eval(&e, shown, &|_| None).render(&source))?;
    let constant = |key: &str| -> Result<String, String> {
        module
            .get_var_value::<rhai::ImmutableString>(key)
            .map(|s| s.to_string())
            .ok_or_else(|| {
                format!(
                    "error: plugin {shown} does not export `{key}`: add `export const {key} = \"...\";`"
                )
            })
    };
    let name = constant("name")?;
    let summary = constant("summary")?;
    for (func, arity, sig) in [
        ("applies", 1, "fn applies(target)"),
        ("open", 2, "fn open(target, opts)"),
    ] {
        if !ast
            .iter_functions()
            .any(|f| f.name == func && f.params.len() == arity)
        {
            return Err(format!(
                "error: plugin {shown} ({name}) has no `{sig}`: a strategy must define it (see the book, \"Strategy plugins\")"
            ));
        }
    }
    Ok(Plugin {
        name,
        summary,
        origin: origin.to_string(),
        ast,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load() {
        let engine = Engine::new();
        let p = Plugins::load(&engine, &[]);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let names: Vec<_> = p.list().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["eice", "ssm", "bastion", "direct"]);
    }

    #[test]
    fn contract_violations_are_named() {
        let engine = Engine::new();
        let e = load_one(
            &engine,
            "x.rhai",
            "export const name = \"x\";\nexport const summary = \"s\";\nfn applies(t) { true }",
            "x",
        )
        .err()
        .unwrap();
        assert!(e.contains("has no `fn open(target, opts)`"), "{e}");
        let e = load_one(
            &engine,
            "y.rhai",
            "fn applies(t) { true }\nfn open(t, o) { 1 }",
            "y",
        )
        .err()
        .unwrap();
        assert!(e.contains("does not export `name`"), "{e}");
        let e = load_one(&engine, "z.rhai", "export const name = \"z\"\nfn (", "z")
            .err()
            .unwrap();
        assert!(e.contains("--> z.rhai:"), "{e}");
    }
}
