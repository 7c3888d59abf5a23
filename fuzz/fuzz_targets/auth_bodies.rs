//! The auth API's JSON bodies (`POST /auth`, `POST|PUT /auth/user`, `POST
//! /auth/password/update`, `POST /auth/tokens`, `PUT /tenant/settings`), through the same
//! `model::account` functions the routes and the auth service call. Any JSON must give a
//! request or a `BodyError`, never a panic; what is accepted keeps the rules it promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::account::{
    LoginRequest, MAX_EMAIL_BYTES, MAX_PASSWORD_BYTES, MAX_RETENTION_DAYS, MAX_TOKEN_NAME_CHARS, MAX_USERNAME_BYTES,
    NewToken, NewUser, PasswordChange, SCOPES, TenantSettings, UserUpdate, group_id, validate_password,
};

const MIN_PASSWORD: usize = 8;

fuzz_target!(|data: &[u8]| {
    // The API's JsonBody extractor: anything that is not JSON is a 400 before any of this.
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };

    if let Ok(l) = LoginRequest::parse(&v) {
        assert!(!l.username.is_empty());
    }
    if let Ok(p) = PasswordChange::parse(&v)
        && validate_password(&p.newpasswd, MIN_PASSWORD).is_ok()
    {
        assert!(p.newpasswd.chars().count() >= MIN_PASSWORD && p.newpasswd.len() <= MAX_PASSWORD_BYTES);
    }
    if let Ok(u) = NewUser::from_json(v.clone())
        && u.validate(MIN_PASSWORD).is_ok()
    {
        assert!(u.username.len() <= MAX_USERNAME_BYTES && u.username.starts_with(|c: char| c.is_ascii_lowercase()));
        assert!(u.email.len() <= MAX_EMAIL_BYTES && u.email.matches('@').count() == 1);
        assert!(model::ids::validate_id("service", &u.service).is_ok());
        assert!(group_id(&u.profile).is_some());
    }
    if let Ok(update) = UserUpdate::from_json(v.clone())
        && update.validate(MIN_PASSWORD).is_ok()
    {
        // An accepted update applied to a valid user leaves a user that creation would accept.
        let mut user = NewUser {
            username: "bob".into(),
            service: "acme".into(),
            email: "bob@example.com".into(),
            name: "Bob".into(),
            profile: "user".into(),
            passwd: Some("password1".into()),
        };
        user.email = update.email.unwrap_or(user.email);
        user.name = update.name.unwrap_or(user.name);
        user.profile = update.profile.unwrap_or(user.profile);
        user.passwd = update.passwd.or(user.passwd);
        if let Err(e) = user.validate(MIN_PASSWORD) {
            panic!("update accepted but leaves an invalid user: {e}");
        }
    }
    if let Ok(t) = NewToken::from_json(v.clone())
        && let Ok(name) = t.validate()
    {
        assert!(!name.is_empty() && name.chars().count() <= MAX_TOKEN_NAME_CHARS && name.trim() == name);
        assert!(!t.scopes.is_empty() && t.scopes.iter().all(|s| SCOPES.contains(&s.as_str())));
    }
    if let Ok(s) = TenantSettings::from_json(v)
        && s.validate("acme").is_ok()
    {
        assert!((1..=MAX_RETENTION_DAYS).contains(&s.history_retention_days));
        // What GET /tenant/settings shows, PUT takes back.
        let shown = TenantSettings { tenant: "acme".into(), ..s.clone() };
        match TenantSettings::from_json(serde_json::to_value(&shown).unwrap())
            .and_then(|b| b.validate("acme").map(|()| b))
        {
            Ok(back) => assert_eq!(
                (back.unsecured_mqtt, back.history_retention_days),
                (s.unsecured_mqtt, s.history_retention_days)
            ),
            Err(e) => panic!("GET /tenant/settings output refused by PUT: {e}"),
        }
    }
});
