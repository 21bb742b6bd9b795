//! Write the tiny random GGUF model of an architecture: write_tiny ARCH OUT.gguf
fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 3 {
        eprintln!("usage: write_tiny ARCH OUT.gguf");
        std::process::exit(2);
    }
    if let Err(e) = suanli_models::tiny::write_tiny_gguf(&a[1], std::path::Path::new(&a[2]), 7) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
