//! Fuzz target: the GGUF reader and the GGUF model source on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ternbench::model::fuzz::gguf(data);
});
