//! Write the tiny random GGUF model of an architecture:
//! write_tiny ARCH OUT.gguf [moe] [yarn] (`moe`: with experts, as `llama moe`
//! is Mixtral; `yarn`: YaRN RoPE scaling, factor 4 over 64 positions)
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let flags = a.get(3..).unwrap_or(&[]);
    if a.len() < 3 || flags.iter().any(|f| f != "moe" && f != "yarn") {
        eprintln!("usage: write_tiny ARCH OUT.gguf [moe] [yarn]");
        std::process::exit(2);
    }
    let has = |f: &str| flags.iter().any(|x| x == f);
    let moe = has("moe")
        || suanli_models::arch::REGISTRY
            .iter()
            .any(|e| e.name == a[1] && e.moe);
    let yarn = has("yarn").then_some((4.0, 64));
    let path = std::path::Path::new(&a[2]);
    if let Err(e) = suanli_models::tiny::write_tiny_with(&a[1], moe, yarn, path, 7) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
