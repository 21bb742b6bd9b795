//! Dequantize one tensor of a GGUF file to raw f32 on stdout (debug aid).
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&a[1]).unwrap();
    let ty = suanli_kernels::DType::from_ggml_id(a[2].parse().unwrap()).unwrap();
    let n: usize = a[3].parse().unwrap();
    let mut out = vec![0f32; n];
    (ty.traits().to_float.unwrap())(&bytes, &mut out);
    let b: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::io::Write::write_all(&mut std::io::stdout(), &b).unwrap();
}
