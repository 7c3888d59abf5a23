//! MQTT topics devices use, in dojot's two forms.
//!
//! - VerneMQ form (dojot 0.5 default): `tenant:device/attrs`, `tenant:device/config`.
//! - mosca form (legacy): `/tenant/device/attrs`, `/tenant/device/config`.

use crate::ids::DeviceRef;

/// What a device topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// Device → platform readings.
    Attrs,
    /// Platform → device actuation.
    Config,
}

/// The two spellings of a device topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicForm {
    /// `tenant:device/kind`
    Colon,
    /// `/tenant/device/kind`
    Mosca,
}

/// A parsed device topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopic {
    pub device: DeviceRef,
    pub kind: TopicKind,
    pub form: TopicForm,
}

impl DeviceTopic {
    /// Parses either form; `None` for anything that is not a device topic.
    pub fn parse(topic: &str) -> Option<Self> {
        let (kind_of, rest, form) = if let Some(rest) = topic.strip_prefix('/') {
            let mut parts = rest.splitn(3, '/');
            let (tenant, device, kind) = (parts.next()?, parts.next()?, parts.next()?);
            (kind, DeviceRef::new(tenant, device).ok()?, TopicForm::Mosca)
        } else {
            let (ident, kind) = topic.split_once('/')?;
            (kind, DeviceRef::parse_colon(ident).ok()?, TopicForm::Colon)
        };
        let kind = match kind_of {
            "attrs" => TopicKind::Attrs,
            "config" => TopicKind::Config,
            _ => return None,
        };
        Some(Self { device: rest, kind, form })
    }

    /// The topic string for a device, kind and form.
    pub fn format(device: &DeviceRef, kind: TopicKind, form: TopicForm) -> String {
        let k = match kind {
            TopicKind::Attrs => "attrs",
            TopicKind::Config => "config",
        };
        match form {
            TopicForm::Colon => format!("{}:{}/{k}", device.tenant, device.device_id),
            TopicForm::Mosca => format!("/{}/{}/{k}", device.tenant, device.device_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        let t = DeviceTopic::parse("admin:0998/attrs").unwrap();
        assert_eq!((t.device.to_string().as_str(), t.kind, t.form), ("admin:0998", TopicKind::Attrs, TopicForm::Colon));
        let t = DeviceTopic::parse("/admin/0998/config").unwrap();
        assert_eq!(
            (t.device.to_string().as_str(), t.kind, t.form),
            ("admin:0998", TopicKind::Config, TopicForm::Mosca)
        );
        assert_eq!(DeviceTopic::format(&t.device, TopicKind::Config, TopicForm::Colon), "admin:0998/config");
    }

    #[test]
    fn not_device_topics() {
        for t in [
            "",
            "/",
            "admin:0998",
            "admin:0998/other",
            "/admin/0998",
            "/admin/0998/attrs/x",
            "a/b/c",
            "admin:09 98/attrs",
            "+/attrs",
            "#",
        ] {
            assert_eq!(DeviceTopic::parse(t), None, "{t}");
        }
    }
}
