//! The stack's SMTP sink: `smtp-sink --listen 127.0.0.1:2525 --maildir .stack/mail`.
//! Accepts every message and writes it as `<queue-id>.eml` into the maildir folder.
//! The same server code serves the integration tests (tests/support/smtp_sink.rs).

#[path = "../tests/it/support/smtp_sink.rs"]
mod smtp_sink;

use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: smtp-sink --listen HOST:PORT [--maildir DIR]");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut listen = None;
    let mut maildir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next(),
            "--maildir" => maildir = args.next().map(PathBuf::from),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("smtp-sink: unknown argument {other}");
                usage()
            }
        }
    }
    let Some(listen) = listen else { usage() };
    let addr = match listen.parse() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("smtp-sink: --listen {listen}: {err}");
            std::process::exit(2)
        }
    };
    let sink = match smtp_sink::SmtpSink::start_on(addr, maildir.clone()).await {
        Ok(sink) => sink,
        Err(err) => {
            eprintln!("smtp-sink: cannot listen on {listen}: {err}");
            std::process::exit(1)
        }
    };
    eprintln!(
        "smtp-sink: listening on {} (maildir: {})",
        sink.addr(),
        maildir
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "none".into())
    );
    let mut seen = 0;
    loop {
        let received = sink
            .wait_for(seen + 1, std::time::Duration::from_secs(3600))
            .await;
        for mail in &received[seen..] {
            eprintln!(
                "smtp-sink: {} from <{}> to {} recipient(s), {} bytes",
                mail.queue_id,
                mail.mail_from,
                mail.rcpt_to.len(),
                mail.data.len()
            );
        }
        seen = received.len();
    }
}
