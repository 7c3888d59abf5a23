//! JSON request bodies of /template and /device: any bytes that parse as JSON must give a
//! request or a CatalogError, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::catalog::{DeviceRequest, TemplateRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = TemplateRequest::parse(&v);
        let _ = DeviceRequest::parse(&v);
    }
});
