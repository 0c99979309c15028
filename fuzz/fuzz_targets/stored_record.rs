//! Any bytes where a stored record should be decode to a record or an error; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = prismdb::fuzzing::decode_record(data);
});
