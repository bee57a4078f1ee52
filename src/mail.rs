//! Outgoing mail: plain-text messages handed to an SMTP server by lettre.
//!
//! The server is named by a URL, as lettre reads it: `smtps://host:465`
//! (TLS from the start), `smtp://host:587?tls=required` (STARTTLS, refused
//! without it), `smtp://host:25?tls=opportunistic`, or `smtp://host:25`
//! (no TLS: loopback only), each with optional `user:password@`. The URL
//! may hold a password, so it is kept as a secret and never printed.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport as _, Tokio1Executor};

use crate::secret::SecretString;

/// How long one delivery may take (connect, TLS, the SMTP dialogue).
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The SMTP URL cannot be used (the URL itself is not repeated: it may hold a password).
    #[error("the SMTP URL: {0}")]
    Url(#[source] lettre::transport::smtp::Error),

    /// Not an address a mail can go to or come from.
    #[error("{address:?} is not a mail address: {source}")]
    Address {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },

    #[error("composing the message: {0}")]
    Compose(#[source] lettre::error::Error),

    /// The server could not be reached, or refused the message.
    #[error("the SMTP server: {0}")]
    Send(#[source] lettre::transport::smtp::Error),
}

/// Sends mail through one SMTP server, from one address. Cheap to share.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for the server at `url`, sending as `from` (`Name <address>` or an address).
    pub fn new(url: &SecretString, from: &str) -> Result<Self, MailError> {
        let from = parse_mailbox(from)?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose().trim())
            .map_err(MailError::Url)?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        Ok(Self { transport, from })
    }

    /// Sends a plain-text message to `to`.
    pub async fn send_text(&self, to: &str, subject: &str, text: String) -> Result<(), MailError> {
        // RFC 5322 §3.6.4: an id unique to this message, in the sender's domain.
        let message_id = format!("<{}@{}>", uuid::Uuid::new_v4(), self.from.email.domain());
        let message = Message::builder()
            .message_id(Some(message_id))
            .from(self.from.clone())
            .to(parse_mailbox(to)?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(MailError::Compose)?;
        self.transport.send(message).await.map_err(MailError::Send)?;
        Ok(())
    }
}

fn parse_mailbox(text: &str) -> Result<Mailbox, MailError> {
    text.trim()
        .parse::<Mailbox>()
        .map_err(|source| MailError::Address { address: text.trim().to_owned(), source })
}

/// Whether `text` is one address a mail can be sent to (`local@domain`,
/// no display name).
pub fn is_mail_address(text: &str) -> bool {
    text.parse::<lettre::Address>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_without_repeating_the_url() {
        let url = SecretString::new("smtp://user:hunter2@127.0.0.1:2525");
        assert!(Mailer::new(&url, "Portcullis <portcullis@example.com>").is_ok());
        let error = Mailer::new(&url, "not an address").unwrap_err().to_string();
        assert!(error.contains("not a mail address"), "{error}");
        let bad = SecretString::new("ftp://user:hunter2@host");
        let error = Mailer::new(&bad, "portcullis@example.com").unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn mail_addresses_are_told_apart() {
        assert!(is_mail_address("ada@example.com"));
        assert!(!is_mail_address("ada"));
        assert!(!is_mail_address("Ada <ada@example.com>"));
        assert!(!is_mail_address("ada@example.com\r\nBcc: eve@example.com"));
    }
}
