//! MQTT topic names: parse never panics, and what parses formats back to the same topic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::topic::DeviceTopic;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Some(t) = DeviceTopic::parse(s)
    {
        assert_eq!(DeviceTopic::format(&t.device, t.kind, t.form), s);
    }
});
