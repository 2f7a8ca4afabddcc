//! Static checks for `aws-hop check`: what can be known without connecting anywhere.
//!
//! Compiling catches syntax errors. On top of that, [`unknown_calls`] walks the AST for plain
//! function calls (`bastoin("x")`) whose name is neither a binding, a standard-library function,
//! nor a function the script defines, and suggests the closest known name. Method calls
//! (`b.forwrd(..)`) are left to run time: their receiver's type is not known statically.

use std::collections::BTreeSet;

use rhai::{AST, ASTNode, Engine, Expr, FnCallExpr, Position, Stmt};

use crate::suggest::closest;

/// Names Rhai handles as keywords or built-ins that `gen_fn_signatures` does not list.
const BUILTINS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_var",
    "is_def_fn",
    "eval",
    "this",
    "throw",
    "import",
    "export",
    "global",
];

/// Every function name the engine knows (bindings and the standard library).
pub fn known_functions(engine: &Engine) -> BTreeSet<String> {
    engine
        .gen_fn_signatures(true)
        .iter()
        .filter_map(|sig| {
            // "Namespace::name(a: T) -> R" or "name(a: T) -> R"
            let head = sig.split('(').next()?;
            let name = head.rsplit("::").next()?.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .chain(BUILTINS.iter().map(|s| (*s).to_string()))
        .collect()
}

/// A call to a function that does not exist.
#[derive(Debug)]
pub struct UnknownCall {
    pub name: String,
    pub pos: Position,
    pub suggestion: Option<String>,
}

/// Plain calls in `ast` to functions that are neither known nor defined in the script.
pub fn unknown_calls(engine: &Engine, ast: &AST) -> Vec<UnknownCall> {
    let mut known = known_functions(engine);
    known.extend(ast.iter_functions().map(|f| f.name.to_string()));
    let candidates: Vec<&str> = known.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        // A call is an expression (`let a = f()`) or, on its own, a statement (`f();`).
        let call: Option<(&FnCallExpr, &Position)> = match path.last() {
            Some(
                ASTNode::Expr(Expr::FnCall(call, pos)) | ASTNode::Stmt(Stmt::FnCall(call, pos)),
            ) => Some((call, pos)),
            _ => None,
        };
        if let Some((call, pos)) = call
            && call.namespace.is_empty()
            && call.op_token.is_none()
            && !call
                .name
                .starts_with(|c: char| !c.is_alphanumeric() && c != '_')
            && !known.contains(call.name.as_str())
        {
            found.push(UnknownCall {
                name: call.name.to_string(),
                pos: *pos,
                suggestion: closest(&call.name, &candidates).map(str::to_string),
            });
        }
        true
    });
    found
}

/// A suggestion function for unknown functions ("did you mean ...").
pub fn suggester(engine: &Engine) -> impl Fn(&str) -> Option<String> + use<> {
    let known: Vec<String> = known_functions(engine).into_iter().collect();
    move |name: &str| {
        let refs: Vec<&str> = known.iter().map(String::as_str).collect();
        closest(name, &refs).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typo_and_suggests() {
        let mut engine = Engine::new();
        engine.register_fn("bastion", |s: &str| i64::try_from(s.len()).unwrap_or(0));
        let ast = engine
            .compile(
                "fn helper() { 1 }\nlet a = bastoin(\"x\");\nhelper();\nprint(a);\nfowrard(1);",
            )
            .unwrap();
        let bad = unknown_calls(&engine, &ast);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[1].name, "fowrard");
        assert_eq!(bad[1].pos.line(), Some(5));
        assert_eq!(bad[0].name, "bastoin");
        assert_eq!(bad[0].suggestion.as_deref(), Some("bastion"));
        assert_eq!(bad[0].pos.line(), Some(2));
    }
}
