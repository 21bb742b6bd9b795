//! Write the tiny random GGUF model of an architecture:
//! write_tiny ARCH OUT.gguf [moe] (`moe`: with experts, as `llama moe` is Mixtral)
fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 3 && !(a.len() == 4 && a[3] == "moe") {
        eprintln!("usage: write_tiny ARCH OUT.gguf [moe]");
        std::process::exit(2);
    }
    let path = std::path::Path::new(&a[2]);
    let r = if a.len() == 4 {
        suanli_models::tiny::write_tiny(&a[1], true, path, 7)
    } else {
        suanli_models::tiny::write_tiny_gguf(&a[1], path, 7)
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
