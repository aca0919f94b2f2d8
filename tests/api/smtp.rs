//! A minimal SMTP server for tests: speaks EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT and
//! STARTTLS, in plain text, upgraded with STARTTLS, or in implicit TLS, with a throwaway CA made
//! for each test; it keeps every message it accepts, or refuses recipients for good.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::AbortHandle;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::ring, ServerConfig};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    /// Whether the message came over TLS (implicit, or after STARTTLS).
    pub tls: bool,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// How the server talks.
#[derive(Clone, Default)]
pub struct Behaviour {
    pub tls: ServerTls,
    /// Answer every RCPT with `550 5.1.1` (a permanent refusal).
    pub refuse_recipients: bool,
}

#[derive(Clone, Default)]
pub enum ServerTls {
    #[default]
    None,
    /// Offers STARTTLS and refuses mail before it (`530`).
    Starttls(TlsAcceptor),
    /// TLS from the first byte (port 465 style).
    Implicit(TlsAcceptor),
}

/// A CA made for one test and a certificate it signed for `localhost` and `127.0.0.1`: the CA
/// as PEM (what a client must trust) and an acceptor serving the certificate.
pub fn test_pki() -> (String, TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Vouch test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    (ca_cert.pem(), TlsAcceptor::from(Arc::new(config)))
}

pub struct SmtpServer {
    pub port: u16,
    inbox: Inbox,
    refusals: Arc<AtomicUsize>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

/// A local port bound but not listening: connections to it are refused until
/// [`SmtpServer::listen`] starts listening on the same socket (so no other test can take the
/// port in between).
pub fn reserve_port() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

impl SmtpServer {
    /// A server on any free port.
    pub fn start() -> Self {
        Self::listen(reserve_port().0)
    }

    /// A server on any free port that behaves as told.
    pub fn start_with(behaviour: Behaviour) -> Self {
        Self::listen_with(reserve_port().0, behaviour)
    }

    /// Starts accepting on a reserved socket.
    pub fn listen(socket: TcpSocket) -> Self {
        Self::listen_with(socket, Behaviour::default())
    }

    fn listen_with(socket: TcpSocket, behaviour: Behaviour) -> Self {
        let listener = socket.listen(64).expect("listening on the reserved port");
        let port = listener.local_addr().unwrap().port();
        let inbox = Inbox::default();
        let refusals = Arc::new(AtomicUsize::new(0));
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Default::default();
        let (i, r, t) = (inbox.clone(), refusals.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = tokio::spawn(session(stream, i.clone(), r.clone(), behaviour.clone()));
                t.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Self { port, inbox, refusals, tasks }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().clone()
    }

    /// Recipients refused so far (with `refuse_recipients`).
    pub fn refusals(&self) -> usize {
        self.refusals.load(Ordering::SeqCst)
    }
}

/// Dropping the server closes the listener and every open connection.
impl Drop for SmtpServer {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

fn address(arg: &str) -> String {
    arg.split(':').nth(1).unwrap_or_default().trim().trim_start_matches('<').split('>').next().unwrap().to_owned()
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn session(stream: TcpStream, inbox: Inbox, refusals: Arc<AtomicUsize>, b: Behaviour) -> std::io::Result<()> {
    let (stream, mut tls): (Box<dyn Io>, bool) = match &b.tls {
        ServerTls::Implicit(acceptor) => (Box::new(acceptor.accept(stream).await?), true),
        _ => (Box::new(stream), false),
    };
    let mut conn = BufReader::new(stream);
    conn.write_all(b"220 localhost test SMTP\r\n").await?;
    conn.flush().await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let offers_starttls = matches!(b.tls, ServerTls::Starttls(_)) && !tls;
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if offers_starttls => b"250-localhost\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
            "EHLO" => b"250-localhost\r\n250 8BITMIME\r\n",
            "STARTTLS" if offers_starttls => {
                conn.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                conn.flush().await?;
                let ServerTls::Starttls(acceptor) = &b.tls else { unreachable!() };
                let upgraded = acceptor.accept(conn.into_inner()).await?;
                conn = BufReader::new(Box::new(upgraded));
                tls = true;
                // The client starts over with EHLO, over TLS.
                (from, to) = (String::new(), Vec::new());
                continue;
            }
            "MAIL" if offers_starttls => b"530 5.7.0 Must issue a STARTTLS command first\r\n",
            "HELO" | "NOOP" => b"250 OK\r\n",
            "MAIL" => {
                from = address(&command);
                b"250 OK\r\n"
            }
            "RCPT" if b.refuse_recipients => {
                refusals.fetch_add(1, Ordering::SeqCst);
                b"550 5.1.1 No such mailbox here\r\n"
            }
            "RCPT" => {
                to.push(address(&command));
                b"250 OK\r\n"
            }
            "RSET" => {
                (from, to) = (String::new(), Vec::new());
                b"250 OK\r\n"
            }
            "DATA" => {
                conn.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                conn.flush().await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if conn.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let message = Received { from: std::mem::take(&mut from), to: std::mem::take(&mut to), data, tls };
                inbox.lock().unwrap().push(message);
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                conn.write_all(b"221 Bye\r\n").await?;
                conn.flush().await?;
                return Ok(());
            }
            _ => b"502 Command not implemented\r\n",
        };
        conn.write_all(reply).await?;
        conn.flush().await?;
    }
}
