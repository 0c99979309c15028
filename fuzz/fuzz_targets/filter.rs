//! Any JSON given as a filter parses to a plan or is refused with invalid_filter; it never
//! panics, however deep or strange.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(filter) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = prismdb::fuzzing::parse_filter(&filter);
    }
});
