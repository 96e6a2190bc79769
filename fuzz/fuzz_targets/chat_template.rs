#![no_main]
// Panics that engram catches on purpose (the tokenizers library's, see engram-tokenizer's `parse_json`) are not
// crashes, so Rust's default hook replaces libfuzzer-sys's aborting one; a panic that escapes still aborts.
libfuzzer_sys::fuzz_target!(init: drop(std::panic::take_hook()), |data: &[u8]| {
    let _ = engram_fuzz::chat_template(data);
});
