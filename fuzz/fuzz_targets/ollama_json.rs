//! The request JSON of Ollama's routes (`/api/chat`, `/api/generate`):
//! every check the handlers make before the engine (types, messages and
//! tool calls in the template's shape, tools, rendering through
//! Qwen2.5-Coder's chat template, options by name and range, num_predict
//! and num_ctx, stop strings, `format`), then the grammar asked for is
//! compiled against a small real vocabulary as the server compiles it.
//! Errors are fine; panics, hangs and unbounded allocations are findings.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use suanli_engine::Constrainer;
use suanli_server::ollama::check_body;
use suanli_tokenizer::{ChatTemplate, Tokenizer};

const TEMPLATES: &str = include_str!("../../tests/goldens/templates.json");
const TOKENIZER: &str = include_str!("../seeds/qwen3-small.tokenizer.json");

fn template() -> &'static ChatTemplate {
    static T: OnceLock<ChatTemplate> = OnceLock::new();
    T.get_or_init(|| {
        let all: serde_json::Value = serde_json::from_str(TEMPLATES).expect("templates.json");
        let t = &all["templates"]["qwen2.5-coder-0.5b-instruct"];
        let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
        ChatTemplate::new(&s("source"), &s("bos_token"), &s("eos_token")).expect("template")
    })
}

fn constrainer() -> &'static Constrainer {
    static C: OnceLock<Constrainer> = OnceLock::new();
    C.get_or_init(|| {
        let tok = Tokenizer::from_hf_json(TOKENIZER, None, Path::new("qwen3-small.json"))
            .expect("tokenizer");
        let n = tok.n_vocab();
        Constrainer::new(Arc::new(tok), n).expect("constrainer")
    })
}

fuzz_target!(|data: &[u8]| {
    for chat in [true, false] {
        if let Ok(c) = check_body(chat, data, template(), 4096) {
            assert!(c.max_tokens <= 4096);
            assert!(c.sampling.temperature.is_finite() && c.sampling.top_p > 0.0);
            if let Some(a) = c.asked {
                let _ = constrainer().compile(&a.grammar);
            }
        }
    }
});
