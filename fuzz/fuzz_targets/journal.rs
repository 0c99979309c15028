//! Any bytes read as writes, resizes, syncs and crashes of a journaled file: reads through
//! the journal give the image of the writes, a replay gives what the last sync held, and a
//! damaged journal never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    prismdb::fuzzing::journal_operations(data);
});
