//! Any text given as a cursor decodes to a cursor or is refused; it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = prismdb::fuzzing::decode_cursor(text, 0x5eed);
    }
});
