//! aarch64 twins of the reference kernels (NEON), behind one `cfg`.

pub(crate) mod neon;
