//! The fuzz targets' properties over a deterministic, generated corpus, so that every test
//! run exercises the parsers that see untrusted input (see fuzz/README.md).

use model::account::{LoginRequest, NewToken, NewUser, PasswordChange, TenantSettings, UserUpdate};
use model::catalog::{DeviceRequest, TemplateRequest};
use model::data::{PayloadLimits, http_agent_attrs};
use model::seats::LoginEvent;
use model::topic::DeviceTopic;
use model::{DeviceData, DeviceRef};

/// xorshift: reproducible pseudo-random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Seeds that look like the real inputs, to be mutated.
const SEEDS: &[&str] = &[
    r#"{"temperature": 10.6}"#,
    r#"{"a": [1, {"b": null}], "timestamp": "2020-01-01T00:00:00Z"}"#,
    r#"{"timestamp": 1700000000000, "x": true}"#,
    r#"{"label": "T", "attrs": [{"label": "t", "type": "dynamic", "value_type": "float", "metadata": [{"label": "u", "type": "meta", "value_type": "string", "static_value": "C"}]}]}"#,
    r#"{"label": "d", "templates": ["1", 2], "attrs": [{"id": 3, "static_value": "x", "metadata": [{"id": 4, "static_value": 1}]}]}"#,
    "admin:0998/attrs",
    "/admin/0998/config",
    r#"{"username":"bob_1","service":"acme","email":"bob@example.com","name":"Bob","profile":"user","passwd":"password1"}"#,
    r#"{"email":"b@x.io","name":"Robert","profile":"admin","passwd":"longer password"}"#,
    r#"{"name":"R","profile":"user"}"#,
    r#"{"name":"fakeiot","scopes":["metrics"],"oldpasswd":"a","newpasswd":"password2","username":"u","passwd":"p"}"#,
    r#"{"tenant":"acme","unsecured_mqtt":true,"history_retention_days":7}"#,
    r#"{"data":{"temperature":10.6},"ts":"2024-01-31T12:00:00.123Z"}"#,
    r#"{"account_id":"testacct-0000","user_id":"u","timestamp":"2024-01-31T12:00:00+05:30"}"#,
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..(rng.next() % 8) {
        let r = rng.next();
        match r % 4 {
            0 if !v.is_empty() => {
                let i = (r >> 8) as usize % v.len();
                v[i] = (r >> 16) as u8;
            }
            1 if !v.is_empty() => {
                let i = (r >> 8) as usize % v.len();
                v.remove(i);
            }
            2 => {
                let i = (r >> 8) as usize % (v.len() + 1);
                const BYTES: &[u8] = b"{}[]\":,0-e.\\ \xff";
                v.insert(i, BYTES[(r >> 16) as usize % BYTES.len()]);
            }
            _ => {
                let cut = (r >> 8) as usize % (v.len() + 1);
                v.truncate(cut);
            }
        }
    }
    v
}

#[test]
fn parsers_never_panic_and_keep_their_promises() {
    let device = DeviceRef::new("admin", "0998").unwrap();
    let limits = PayloadLimits { max_attrs: 8, max_label_len: 16, max_depth: 4 };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..200_000 {
        let input = mutate(&mut rng, SEEDS[i % SEEDS.len()].as_bytes());
        if let Ok(d) = DeviceData::from_payload(&device, &input, chrono::DateTime::UNIX_EPOCH, &limits) {
            assert!(!d.attrs.is_empty() && d.attrs.len() <= 8, "{}", String::from_utf8_lossy(&input));
            assert!(!d.attrs.contains_key("timestamp"));
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&input) {
            let _ = TemplateRequest::parse(&v);
            let _ = DeviceRequest::parse(&v);
        }
        if let Ok(s) = std::str::from_utf8(&input)
            && let Some(t) = DeviceTopic::parse(s)
        {
            assert_eq!(DeviceTopic::format(&t.device, t.kind, t.form), s);
        }
        if let Ok(e) = LoginEvent::parse(&input) {
            let d = e.to_device_data("admin", true);
            assert!(model::ids::validate_id("device", &d.device_id).is_ok());
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&input) {
            auth_bodies(&v);
            let ts = v.get("ts").cloned();
            if let Ok(attrs) = http_agent_attrs(v)
                && let Ok(d) = DeviceData::from_attrs(&device, attrs, chrono::DateTime::UNIX_EPOCH, &limits)
            {
                assert!(!d.attrs.contains_key("timestamp"));
                if let Some(ts) = ts {
                    assert_eq!(Some(d.ts), model::time::parse_device_timestamp(&ts));
                }
            }
        }
    }
}

/// The properties of fuzz/fuzz_targets/auth_bodies.rs.
fn auth_bodies(v: &serde_json::Value) {
    if let Ok(l) = LoginRequest::parse(v) {
        assert!(!l.username.is_empty());
    }
    let _ = PasswordChange::parse(v);
    if let Ok(u) = NewUser::from_json(v.clone())
        && u.validate(8).is_ok()
    {
        assert!(model::ids::validate_id("service", &u.service).is_ok());
    }
    if let Ok(update) = UserUpdate::from_json(v.clone())
        && update.validate(8).is_ok()
    {
        let user = NewUser {
            username: "bob".into(),
            service: "acme".into(),
            email: update.email.unwrap_or_else(|| "bob@example.com".into()),
            name: update.name.unwrap_or_else(|| "Bob".into()),
            profile: update.profile.unwrap_or_else(|| "user".into()),
            passwd: update.passwd,
        };
        assert!(user.validate(8).is_ok(), "an accepted update leaves a valid user");
    }
    if let Ok(t) = NewToken::from_json(v.clone())
        && let Ok(name) = t.validate()
    {
        assert_eq!(name.trim(), name);
    }
    if let Ok(s) = TenantSettings::from_json(v.clone())
        && s.validate("acme").is_ok()
    {
        let shown = TenantSettings { tenant: "acme".into(), ..s };
        let back = TenantSettings::from_json(serde_json::to_value(&shown).unwrap()).unwrap();
        assert!(back.validate("acme").is_ok(), "what GET shows, PUT takes back");
    }
}
