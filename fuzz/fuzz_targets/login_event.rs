//! fakeiot's `POST /metrics` body through `model::seats::LoginEvent::parse` (what the route
//! calls): any bytes give an event or an error message, never a panic, and an accepted login
//! becomes a reading of a valid device with one attribute.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::seats::{LoginEvent, MAX_ID_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = LoginEvent::parse(data) {
        assert!(!e.account_id.is_empty() && e.account_id.len() <= MAX_ID_LEN);
        assert!(!e.user_id.is_empty() && e.user_id.len() <= MAX_ID_LEN);
        let d = e.to_device_data("admin", true);
        assert!(model::ids::validate_id("device", &d.device_id).is_ok());
        assert_eq!(d.attrs.len(), 1);
        assert_eq!(d.ts, e.timestamp);
        let _ = d.to_dojot_json();
        // The history API shows this time as RFC 3339; a client must be able to read it back.
        let shown = d.ts_string();
        assert!(chrono::DateTime::parse_from_rfc3339(&shown).is_ok(), "{shown}");
    }
});
