//! A minimal SMTP server for tests: speaks EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP and QUIT in
//! plain text (lettre with `tls = "none"`), and keeps every message it accepts.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::AbortHandle;

#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

pub struct SmtpServer {
    pub port: u16,
    inbox: Inbox,
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

    /// Starts accepting on a reserved socket.
    pub fn listen(socket: TcpSocket) -> Self {
        let listener = socket.listen(64).expect("listening on the reserved port");
        let port = listener.local_addr().unwrap().port();
        let inbox = Inbox::default();
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Default::default();
        let (i, t) = (inbox.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = tokio::spawn(session(stream, i.clone()));
                t.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Self { port, inbox, tasks }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().clone()
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

async fn session(stream: TcpStream, inbox: Inbox) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 localhost test SMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-localhost\r\n250 8BITMIME\r\n",
            "HELO" | "NOOP" => b"250 OK\r\n",
            "MAIL" => {
                from = address(&command);
                b"250 OK\r\n"
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
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let message = Received { from: std::mem::take(&mut from), to: std::mem::take(&mut to), data };
                inbox.lock().unwrap().push(message);
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 Command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}
