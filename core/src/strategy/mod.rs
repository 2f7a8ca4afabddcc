//! Strategy plugins: Rhai modules that know one way to reach a target.
//!
//! A plugin is a `.rhai` file with this contract (checked at load, with file:line errors):
//!
//! ```rhai
//! export const name = "nlb";
//! export const summary = "SSH straight to a Network Load Balancer that forwards port 22";
//! export const options = ["user", "key"];  // optional: the options it takes
//! fn applies(target, opts) { ... } // true, or a string saying why not
//!                                  // (`fn applies(target)`, without opts, works too)
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

use crate::diagnostic::Diagnostic;

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
    /// The options it takes (its `options` constant), if it says.
    pub options: Option<Vec<String>>,
    /// True when it defines `fn applies(target, opts)` (else `fn applies(target)`).
    pub applies_takes_opts: bool,
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
            let Ok(meta) = std::fs::metadata(dir) else {
                continue;
            };
            if let Err(e) = check_not_shared("plugin directory", dir, &meta) {
                plugins.errors.push(e);
                continue;
            }
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
                if let Err(e) = std::fs::metadata(&path)
                    .map_err(|e| format!("error: cannot read plugin {shown}: {e}"))
                    .and_then(|meta| check_not_shared("plugin", &path, &meta))
                {
                    plugins.errors.push(e);
                    continue;
                }
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

/// Refuses a plugin file or directory that group or others may write: whoever can write a
/// plugin runs code as the user the next time `connect()` asks it (ssh refuses such config
/// files for the same reason).
fn check_not_shared(what: &str, path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 == 0 {
        return Ok(());
    }
    Err(format!(
        "error: {what} {} is writable by group or others (mode {mode:04o}), so anyone who can \
         write there could run code as you; it was not loaded. Fix: chmod go-w {}",
        path.display(),
        path.display()
    ))
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
    let has = |func: &str, arity: usize| {
        ast.iter_functions()
            .any(|f| f.name == func && f.params.len() == arity)
    };
    let applies_takes_opts = has("applies", 2);
    if !applies_takes_opts && !has("applies", 1) {
        return Err(format!(
            "error: plugin {shown} ({name}) has no `fn applies(target, opts)`: a strategy must define it (see the book, \"Strategy plugins\")"
        ));
    }
    if !has("open", 2) {
        return Err(format!(
            "error: plugin {shown} ({name}) has no `fn open(target, opts)`: a strategy must define it (see the book, \"Strategy plugins\")"
        ));
    }
    let options = match module.get_var_value::<rhai::Array>("options") {
        None => None,
        Some(list) => Some(
            list.into_iter()
                .map(|v| v.into_immutable_string().map(|s| s.to_string()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    format!(
                        "error: plugin {shown} ({name}) exports `options` with a value that is not a string: write `export const options = [\"user\", \"key\"];`"
                    )
                })?,
        ),
    };
    Ok(Plugin {
        name,
        summary,
        origin: origin.to_string(),
        ast,
        options,
        applies_takes_opts,
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
        for plugin in p.list() {
            assert!(plugin.applies_takes_opts, "{} takes no opts", plugin.name);
            assert!(plugin.options.is_some(), "{} lists no options", plugin.name);
        }
    }

    #[test]
    fn plugins_others_can_write_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let engine = Engine::new();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine.rhai");
        std::fs::write(
            &file,
            "export const name = \"mine\";\nexport const summary = \"s\";\nfn applies(t, o) { true }\nfn open(t, o) { 1 }",
        )
        .unwrap();
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        set(dir.path(), 0o700);
        set(&file, 0o600);
        let ok = Plugins::load(&engine, &[dir.path().to_path_buf()]);
        assert!(ok.errors.is_empty(), "{:?}", ok.errors);
        assert!(ok.get("mine").is_some());

        set(&file, 0o666);
        let p = Plugins::load(&engine, &[dir.path().to_path_buf()]);
        assert!(p.get("mine").is_none());
        assert!(
            p.errors[0].contains("writable by group or others (mode 0666)"),
            "{:?}",
            p.errors
        );
        assert!(p.errors[0].contains("chmod go-w"), "{:?}", p.errors);

        set(&file, 0o600);
        set(dir.path(), 0o777);
        let p = Plugins::load(&engine, &[dir.path().to_path_buf()]);
        assert!(p.get("mine").is_none());
        assert!(
            p.errors[0].starts_with("error: plugin directory"),
            "{:?}",
            p.errors
        );
        set(dir.path(), 0o700);
    }

    #[test]
    fn one_argument_applies_still_loads() {
        let engine = Engine::new();
        let p = load_one(
            &engine,
            "old.rhai",
            "export const name = \"old\";\nexport const summary = \"s\";\nfn applies(t) { true }\nfn open(t, o) { 1 }",
            "old",
        )
        .unwrap();
        assert!(!p.applies_takes_opts);
        assert!(p.options.is_none());
    }

    /// The built-in names, in order, as the docs write them: `eice`, `ssm`, ...
    fn builtin_list() -> String {
        let engine = Engine::new();
        Plugins::load(&engine, &[])
            .list()
            .iter()
            .map(|p| format!("`{}`", p.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn the_docs_list_the_built_in_strategies_that_are_built_in() {
        let list = builtin_list();
        let book = include_str!("../../../book/src/plugins.md");
        assert!(
            book.contains(&format!("compiled into aws-hop: {list};")),
            "book/src/plugins.md does not list the built-ins as {list}"
        );
        let plain = list.replace('`', "");
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&format!("one .rhai file each ({plain})")),
            "README.md's layout does not list the built-ins as ({plain})"
        );
        let lib = include_str!("../lib.rs");
        assert!(
            lib.contains(&format!("built-in strategies: {list}")),
            "lib.rs does not list the built-ins as {list}"
        );
        // The book shows the `direct` plugin in full: it must be the file.
        let file = BUILTIN
            .iter()
            .find(|(f, _)| *f == "direct.rhai")
            .map(|(_, text)| *text)
            .unwrap();
        let body = &file[file.find("export const name").unwrap()..];
        assert!(
            book.contains(body.trim_end()),
            "book/src/plugins.md's copy of plugins/direct.rhai is out of date"
        );
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
            "w.rhai",
            "export const name = \"w\";\nexport const summary = \"s\";\nfn open(t, o) { 1 }",
            "w",
        )
        .err()
        .unwrap();
        assert!(e.contains("has no `fn applies(target, opts)`"), "{e}");
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
