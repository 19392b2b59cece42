#![no_main]
//! Any text: a property or an error with a position, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nncert_spec::parse_vnnlib(text, "fuzz");
    }
});
