//! Any bytes where a stored record, grant, import chunk's rows or bitmap row should be
//! decode to one or to an error; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = prismdb::fuzzing::decode_record(data);
    let _ = prismdb::fuzzing::decode_grant(data);
    let _ = prismdb::fuzzing::decode_job_rows(data);
    let _ = prismdb::fuzzing::decode_bitmap_row(data);
});
