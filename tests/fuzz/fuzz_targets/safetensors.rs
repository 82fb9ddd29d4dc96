//! Fuzz target: the safetensors reader and the HF checkpoint source on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ternbench::model::fuzz::safetensors(data);
});
