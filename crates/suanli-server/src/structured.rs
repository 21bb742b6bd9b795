//! Structured output: `response_format` (`text`, `json_object`,
//! `json_schema` with or without `strict`) and the `grammar` extension
//! field, turned into engine [`Grammar`]s and compiled into one
//! [`Constraint`] per choice.
//!
//! `grammar` is a Lark grammar (llguidance's dialect) as a string, or
//! mistral.rs's tagged form `{"type": "lark" | "regex" | "json_schema",
//! "value": …}`.

use serde_json::Value;
use suanli_engine::constrain::ConstrainError;
use suanli_engine::{Constrainer, Constraint, Grammar, Trigger};

use crate::error::ApiError;
use crate::Shared;

/// A grammar and the request field it came from (for error messages).
#[derive(Debug, Clone)]
pub struct Asked {
    pub grammar: Grammar,
    pub field: String,
    /// Held only from this trigger on (a tool-call marker), when set.
    pub trigger: Option<Trigger>,
    /// With a trigger that reads a header: the grammars it picks, each
    /// with the key the header names (then these, not `grammar`, hold).
    pub keyed: Vec<(String, Grammar)>,
}

impl Asked {
    /// A grammar held from the first token.
    pub fn new(grammar: Grammar, field: &str) -> Asked {
        Asked {
            grammar,
            field: field.into(),
            trigger: None,
            keyed: Vec::new(),
        }
    }
}

/// `response_format`, when it asks for JSON.
pub fn response_format(v: Option<&Value>) -> Result<Option<Asked>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let field = "response_format";
    let ty = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_param(field, "needs a \"type\""))?;
    let grammar = match ty {
        "text" => return Ok(None),
        // llama-server takes a schema beside json_object too.
        "json_object" => match v.get("schema") {
            Some(schema) if schema.is_object() => Grammar::JsonSchema {
                schema: schema.clone(),
                strict: false,
            },
            _ => Grammar::json_object(),
        },
        "json_schema" => {
            let js = v.get("json_schema").ok_or_else(|| {
                ApiError::bad_param(field, "type json_schema needs a \"json_schema\" object")
            })?;
            let schema = js
                .get("schema")
                .or_else(|| v.get("schema"))
                .cloned()
                .unwrap_or_else(|| serde_json::json!({}));
            if !schema.is_object() && !schema.is_boolean() {
                return Err(ApiError::bad_param(
                    "response_format.json_schema.schema",
                    "must be a JSON schema object",
                ));
            }
            let strict = js.get("strict").and_then(Value::as_bool).unwrap_or(false);
            Grammar::JsonSchema { schema, strict }
        }
        other => {
            return Err(ApiError::bad_param(
                field,
                format!("unknown type '{other}' (text, json_object or json_schema)"),
            ))
        }
    };
    Ok(Some(Asked::new(grammar, field)))
}

/// The `grammar` extension field.
pub fn grammar_field(v: Option<&Value>) -> Result<Option<Asked>, ApiError> {
    let field = "grammar";
    let grammar = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(ApiError::bad_param(field, "the grammar is empty"))
        }
        Some(Value::String(s)) => Grammar::Lark(s.clone()),
        Some(Value::Object(o)) => {
            let ty = o.get("type").and_then(Value::as_str).unwrap_or("lark");
            let value = o
                .get("value")
                .ok_or_else(|| ApiError::bad_param(field, "needs a \"value\""))?;
            let text = || {
                value.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::bad_param(field, format!("a {ty} grammar's value is a string"))
                })
            };
            match ty {
                "lark" => Grammar::Lark(text()?),
                "regex" => Grammar::Regex(text()?),
                "json_schema" | "json" => Grammar::JsonSchema {
                    schema: match value {
                        Value::String(s) => serde_json::from_str(s).map_err(|e| {
                            ApiError::bad_param(field, format!("the schema is not JSON: {e}"))
                        })?,
                        v => v.clone(),
                    },
                    strict: true,
                },
                other => {
                    return Err(ApiError::bad_param(
                        field,
                        format!("unknown type '{other}' (lark, regex or json_schema)"),
                    ))
                }
            }
        }
        Some(_) => {
            return Err(ApiError::bad_param(
                field,
                "must be a Lark grammar or {\"type\", \"value\"}",
            ))
        }
    };
    Ok(Some(Asked::new(grammar, field)))
}

/// The one grammar a request asks for, from `response_format` or `grammar`
/// (not both).
pub fn asked(
    response_format_v: Option<&Value>,
    grammar_v: Option<&Value>,
) -> Result<Option<Asked>, ApiError> {
    let rf = response_format(response_format_v)?;
    let g = grammar_field(grammar_v)?;
    match (rf, g) {
        (Some(_), Some(_)) => Err(ApiError::bad_param(
            "grammar",
            "cannot be combined with a JSON response_format",
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// The model's constrainer, built on first use (the vocabulary's trie).
async fn constrainer(s: &Shared) -> Result<std::sync::Arc<Constrainer>, ApiError> {
    if let Some(c) = s.constrainer.get() {
        return c.clone().map_err(ApiError::bad_request);
    }
    let s2 = s.clone();
    let built = tokio::task::spawn_blocking(move || {
        s2.constrainer
            .get_or_init(|| {
                Constrainer::new(s2.tok.clone(), s2.engine.n_vocab())
                    .map(std::sync::Arc::new)
                    .map_err(|e| format!("constrained decoding is unavailable: {e}"))
            })
            .clone()
    })
    .await
    .map_err(|e| ApiError::bad_request(format!("constrained decoding: {e}")))?;
    built.map_err(ApiError::bad_request)
}

/// `n` independent constraints for `a` (400 naming the field when the
/// grammar does not compile).
pub async fn compile(s: &Shared, a: &Asked, n: usize) -> Result<Vec<Constraint>, ApiError> {
    let c = constrainer(s).await?;
    let g = a.grammar.clone();
    let trigger = a.trigger.clone();
    let keyed = match a.keyed.is_empty() {
        true => vec![(String::new(), g.clone())],
        false => a.keyed.clone(),
    };
    let first = tokio::task::spawn_blocking(move || match trigger {
        Some(t) => c.compile_lazy(&t, &keyed),
        None => c.compile(&g),
    })
    .await
    .map_err(|e| ApiError::bad_param(&a.field, format!("compiling the grammar: {e}")))?
    .map_err(|e| match e {
        ConstrainError::Compile(why) => {
            ApiError::bad_param(&a.field, format!("the grammar does not compile: {why}"))
        }
        e => ApiError::bad_request(e.to_string()),
    })?;
    let mut out = vec![first; n.max(1)];
    out.truncate(n);
    Ok(out)
}
