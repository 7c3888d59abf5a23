//! MQTT over mutual TLS (dojot's port 8883): the same MQTT service behind ntex-tls's
//! rustls acceptor. TLS itself checks the client's certificate chain against the
//! trusted CAs (Ingot's and the tenants' own) and its validity dates; the CONNECT then
//! asks the certificate registry whether that certificate may speak for the device its
//! CN names (registered for it, not revoked, from that tenant's CA), so a revocation
//! takes effect at the next CONNECT on every node, and the revocation event ends the
//! live connections that used it.

use std::net::SocketAddr;
use std::sync::Arc;

use ntex_io::IoBoxed;
use ntex_tls::rustls::PeerCert;
use x509_parser::prelude::FromDer;

use crate::ClientCertificate;

/// The mutual-TLS listener of the MQTT server.
#[derive(Clone)]
pub struct MqttTls {
    /// Address to listen on (dojot: 8883).
    pub listen: SocketAddr,
    /// rustls configuration that requires and verifies client certificates.
    pub config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for MqttTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttTls").field("listen", &self.listen).finish_non_exhaustive()
    }
}

/// The verified client certificate of a connection, if it came over TLS with one.
pub(super) fn client_certificate(io: &IoBoxed) -> Option<ClientCertificate> {
    let query = io.query::<PeerCert<'static>>();
    let der = query.as_ref()?.0.as_ref().to_vec();
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).ok()?;
    let common_name = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(ClientCertificate { fingerprint: model::secret::certificate_fingerprint(&der), common_name, der })
}
