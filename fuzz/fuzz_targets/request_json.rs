//! The request JSON of the OpenAI routes: parsed as chat and completion
//! requests, then every check the handlers make before touching the
//! engine (types, roles, sampling ranges, stop strings, prompts, token
//! budgets). Errors are fine; panics are findings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use suanli_server::api::{max_tokens, prompts, ChatRequest, CompletionRequest};
use suanli_server::error::parse_json;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_json::<ChatRequest>(data) {
        let _ = r.check();
        let _ = r.common.sampling(0);
        let _ = r.common.stops();
        let _ = r.common.n();
        let _ = max_tokens("max_tokens", r.common.max_tokens, usize::MAX, 4096);
        for (i, m) in r.messages.iter().enumerate() {
            let _ = m.text(i);
        }
    }
    if let Ok(r) = parse_json::<CompletionRequest>(data) {
        let _ = r.common.check();
        let _ = prompts(&r.prompt);
        let _ = r.common.sampling(1);
    }
});
