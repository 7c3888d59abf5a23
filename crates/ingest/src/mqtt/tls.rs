//! MQTT over mutual TLS (dojot's port 8883): the same connection loop behind
//! tokio-rustls. TLS itself checks the client's certificate chain against the trusted
//! CAs (Ingot's and the tenants' own) and its validity dates; the CONNECT then asks the
//! certificate registry whether that certificate may speak for the device its CN names
//! (registered for it, not revoked, from that tenant's CA), so a revocation takes effect
//! at the next CONNECT on every node, and the revocation event ends the live connections
//! that used it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::FromDer;

use super::connection::{CONNECT_TIMEOUT, Transport};
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

/// The TLS handshake, within the time a client has for its CONNECT; `None` (counted and
/// logged) when it fails: no certificate, another CA's, expired, or not TLS at all.
pub(super) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Option<(Transport, Option<ClientCertificate>)> {
    let outcome = match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no handshake in time".to_string()),
    };
    match outcome {
        Ok(tls) => {
            let certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| client_certificate(der));
            Some((Transport::Tls(Box::new(tls)), certificate))
        }
        Err(error) => {
            metrics::counter!("ingot_mqtt_connections_refused_total", "reason" => "tls").increment(1);
            tracing::warn!(%error, "mqtts connection refused at the TLS handshake");
            None
        }
    }
}

/// The verified client certificate of a connection.
fn client_certificate(der: &[u8]) -> Option<ClientCertificate> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let common_name = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(ClientCertificate { fingerprint: model::secret::certificate_fingerprint(der), common_name, der: der.to_vec() })
}
