//! A small, real SMTP server on loopback that records what it receives.
//!
//! Used by the integration tests (in-process, one per test) and by `examples/smtp-sink.rs`
//! (the stack's sink process, which also writes every message into a maildir folder).
//! It speaks enough SMTP for lettre: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
//! Recipients can be scripted to answer a sequence of codes (e.g. 451 then 250) on RCPT.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub queue_id: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent after DATA (headers and body, dot-unstuffed, CRLF line ends).
    pub data: String,
}

impl ReceivedMail {
    /// The value of the first header with this name (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(value) = found.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    value.push(' ');
                    value.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((key, value)) = line.split_once(':') {
                if key.eq_ignore_ascii_case(name) {
                    found = Some(value.trim().to_string());
                }
            }
        }
        found
    }

    /// The body with quoted-printable soft line breaks and `=XX` escapes undone (what a mail
    /// client shows, for the text and html parts alike).
    pub fn body_text(&self) -> String {
        let joined = self.body().replace("=\r\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The raw body after the header block.
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    received: Vec<ReceivedMail>,
    /// Scripted RCPT answers per recipient address (lower-case), consumed in order.
    scripted: HashMap<String, VecDeque<u16>>,
    connections: u64,
    /// How long the server thinks before it answers RCPT TO (a slow provider).
    rcpt_delay: Duration,
    /// An outage: every connection is answered 421 and closed.
    outage: bool,
}

/// Handle to a running sink. Dropping it does not stop the server task (it lives with the runtime).
#[derive(Clone)]
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    maildir: Option<PathBuf>,
    started: u64,
}

static QUEUE_SEQ: AtomicU64 = AtomicU64::new(1);

impl SmtpSink {
    /// Starts a sink on 127.0.0.1 with a free port.
    pub async fn start() -> std::io::Result<SmtpSink> {
        Self::start_on("127.0.0.1:0".parse().unwrap(), None).await
    }

    /// Starts a sink on the given address; with `maildir`, every message is also written there.
    pub async fn start_on(addr: SocketAddr, maildir: Option<PathBuf>) -> std::io::Result<SmtpSink> {
        if let Some(dir) = &maildir {
            std::fs::create_dir_all(dir)?;
        }
        let listener = TcpListener::bind(addr).await?;
        let sink = SmtpSink {
            addr: listener.local_addr()?,
            state: Arc::new(Mutex::new(State::default())),
            notify: Arc::new(Notify::new()),
            maildir,
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let server = sink.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                server.state.lock().unwrap().connections += 1;
                let conn = server.clone();
                tokio::spawn(async move {
                    let _ = conn.serve(stream).await;
                });
            }
        });
        Ok(sink)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:port`, the form herald's `HERALD_SMTP_URL` takes.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The next RCPT TO answers for `recipient`, consumed in order; afterwards it answers 250.
    pub fn script_recipient(&self, recipient: &str, codes: &[u16]) {
        let mut state = self.state.lock().unwrap();
        state
            .scripted
            .entry(recipient.to_ascii_lowercase())
            .or_default()
            .extend(codes.iter().copied());
    }

    /// What was received, but the fallout alerts herald sends to operators when a critical
    /// communication fails for good (other tests of the shared engine fill the group).
    pub fn received_except_alerts(&self) -> Vec<ReceivedMail> {
        self.received()
            .into_iter()
            .filter(|m| m.header("X-Herald-Communication-Type").as_deref() != Some("FALLOUT_ALERT"))
            .collect()
    }

    /// An outage (or its end): while on, new connections and the next command of open ones
    /// get `421` and the connection is closed.
    pub fn set_outage(&self, on: bool) {
        self.state.lock().unwrap().outage = on;
    }

    /// Makes the server wait this long before answering each RCPT TO.
    pub fn set_rcpt_delay(&self, delay: Duration) {
        self.state.lock().unwrap().rcpt_delay = delay;
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn connections(&self) -> u64 {
        self.state.lock().unwrap().connections
    }

    /// Waits until at least `count` messages arrived, or the timeout passed; returns what arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.received();
            }
        }
    }

    fn rcpt_answer(&self, recipient: &str) -> u16 {
        let mut state = self.state.lock().unwrap();
        state
            .scripted
            .get_mut(&recipient.to_ascii_lowercase())
            .and_then(|q| q.pop_front())
            .unwrap_or(250)
    }

    fn store(&self, mail: ReceivedMail) {
        if let Some(dir) = &self.maildir {
            let path = dir.join(format!("{}.eml", mail.queue_id));
            let envelope = format!(
                "X-Sink-Mail-From: {}\r\nX-Sink-Rcpt-To: {}\r\n",
                mail.mail_from,
                mail.rcpt_to.join(", ")
            );
            if let Err(err) = std::fs::write(&path, format!("{envelope}{}", mail.data)) {
                eprintln!("smtp-sink: cannot write {}: {err}", path.display());
            }
        }
        self.state.lock().unwrap().received.push(mail);
        self.notify.notify_waiters();
    }

    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let outage = b"421 4.3.2 Service not available, closing transmission channel\r\n";
        if self.state.lock().unwrap().outage {
            write.write_all(outage).await?;
            return Ok(());
        }
        write.write_all(b"220 herald-sink ESMTP ready\r\n").await?;
        let mut mail_from: Option<String> = None;
        let mut rcpt_to: Vec<String> = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if self.state.lock().unwrap().outage {
                write.write_all(outage).await?;
                return Ok(());
            }
            let command = line.trim_end_matches(['\r', '\n']);
            let verb = command
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let reply: String = match verb.as_str() {
                "EHLO" => "250-herald-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into(),
                "HELO" => "250 herald-sink\r\n".into(),
                "MAIL" => {
                    mail_from = Some(angle_arg(command));
                    rcpt_to.clear();
                    "250 2.1.0 Ok\r\n".into()
                }
                "RCPT" => {
                    if mail_from.is_none() {
                        "503 5.5.1 Error: need MAIL command\r\n".into()
                    } else {
                        let recipient = angle_arg(command);
                        let delay = self.state.lock().unwrap().rcpt_delay;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        match self.rcpt_answer(&recipient) {
                            250 => {
                                rcpt_to.push(recipient);
                                "250 2.1.5 Ok\r\n".into()
                            }
                            code if (400..500).contains(&code) => {
                                format!("{code} 4.3.0 <{recipient}>: temporarily rejected, try later\r\n")
                            }
                            code => format!("{code} 5.1.1 <{recipient}>: recipient rejected\r\n"),
                        }
                    }
                }
                "DATA" => {
                    if rcpt_to.is_empty() {
                        "554 5.5.1 Error: no valid recipients\r\n".into()
                    } else {
                        write
                            .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                            .await?;
                        let data = read_data(&mut reader).await?;
                        // Unique across restarts of the sink (the maildir keeps earlier mail).
                        let queue_id = format!(
                            "Q{:x}{:06}",
                            self.started,
                            QUEUE_SEQ.fetch_add(1, Ordering::Relaxed)
                        );
                        self.store(ReceivedMail {
                            queue_id: queue_id.clone(),
                            mail_from: mail_from.take().unwrap_or_default(),
                            rcpt_to: std::mem::take(&mut rcpt_to),
                            data,
                        });
                        format!("250 2.0.0 Ok: queued as {queue_id}\r\n")
                    }
                }
                "RSET" => {
                    mail_from = None;
                    rcpt_to.clear();
                    "250 2.0.0 Ok\r\n".into()
                }
                "NOOP" => "250 2.0.0 Ok\r\n".into(),
                "QUIT" => {
                    write.write_all(b"221 2.0.0 Bye\r\n").await?;
                    return Ok(());
                }
                _ => "502 5.5.2 Error: command not recognized\r\n".into(),
            };
            write.write_all(reply.as_bytes()).await?;
        }
    }
}

fn angle_arg(command: &str) -> String {
    match (command.find('<'), command.rfind('>')) {
        (Some(start), Some(end)) if end > start => command[start + 1..end].to_string(),
        _ => command
            .split_once(':')
            .map(|(_, a)| a.trim().to_string())
            .unwrap_or_default(),
    }
}

async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof in DATA",
            ));
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            return Ok(data);
        }
        let unstuffed = content.strip_prefix('.').unwrap_or(content);
        data.push_str(unstuffed);
        data.push_str("\r\n");
    }
}
