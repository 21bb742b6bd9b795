//! Chat templates rendered byte-identical to transformers'
//! apply_chat_template (goldens: tests/goldens/templates.json, made by
//! scripts/gen_template_goldens.py with each template's source).

use suanli_tokenizer::{ChatMessage, ChatTemplate};

#[test]
fn templates_render_like_transformers() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/goldens/templates.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("goldens")).expect("JSON");
    let mut n = 0;
    for case in doc["cases"].as_array().expect("cases") {
        let name = case["template"].as_str().expect("template");
        let t = &doc["templates"][name];
        let tmpl = ChatTemplate::new(
            t["source"].as_str().expect("source"),
            t["bos_token"].as_str().unwrap_or(""),
            t["eos_token"].as_str().unwrap_or(""),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let messages: Vec<ChatMessage> =
            serde_json::from_value(case["messages"].clone()).expect("messages");
        let tools = case["tools"].as_array().map(|_| &case["tools"]);
        let kwargs = case["kwargs"].as_object();
        let agp = case["add_generation_prompt"].as_bool().unwrap_or(false);
        let got = tmpl.render(&messages, agp, tools, kwargs);
        let label = format!("{name}/{}", case["case"].as_str().unwrap_or("?"));
        // A template that writes the time (Hunyuan's `strftime_now`: the
        // date, the clock and the weekday's name) is compared with its
        // digits and weekday masked (the goldens were made on another day).
        let clock = t["source"]
            .as_str()
            .is_some_and(|s| s.contains("strftime_now"));
        let mask = |s: &str| match clock {
            true => {
                let days = ["一", "二", "三", "四", "五", "六", "日", "天"];
                let mut out = s.replace(|c: char| c.is_ascii_digit(), "0");
                for d in days {
                    out = out.replace(&format!("星期{d}"), "星期?");
                }
                for d in [
                    "Monday",
                    "Tuesday",
                    "Wednesday",
                    "Thursday",
                    "Friday",
                    "Saturday",
                    "Sunday",
                ] {
                    out = out.replace(d, "?day");
                }
                out
            }
            false => s.to_string(),
        };
        match case["expected"].as_str() {
            Some(want) => assert_eq!(
                mask(&got.unwrap_or_else(|e| panic!("{label}: {e}"))),
                mask(want),
                "{label}"
            ),
            None => assert!(
                got.is_err(),
                "{label}: transformers' rendering raised, ours did not"
            ),
        }
        n += 1;
    }
    assert!(n >= 30, "too few cases: {n}");
}
