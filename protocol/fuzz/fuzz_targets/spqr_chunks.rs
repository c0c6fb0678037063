#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(hush_protocol::e2e::fuzzing::spqr_chunks(data));
});
