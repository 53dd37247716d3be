//! The webhook channel: Standard Webhooks signing (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`), an SSRF guard on
//! every endpoint (when it is registered and at every connection), and a circuit breaker per
//! endpoint.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument::WithSubscriber;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use url::Url;

use crate::camunda::worker::BoxFuture;
use crate::config::WebhookSettings;
use crate::delivery::endpoints::{self, Endpoint, Slot};
use crate::keyring::Keyring;
use crate::ledger::wakeup::{Heard, Wakeup};
use crate::ledger::{Channel, SubscriptionStatus};

use super::adapter::{ChannelAdapter, DeliveryOutcome, OutboundMessage};
use super::failure::{classify_http, parse_retry_after, FailureClass};

/// The Standard Webhooks signature of a message: `v1,<base64>`.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Addresses no endpoint may have unless its host is allow-listed: loopback, private,
/// link-local, shared (CGNAT), unspecified, multicast and broadcast ranges, in IPv4 and IPv6.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || a == 0
                || a >= 240 // reserved
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // IPv6 forms that carry an IPv4 address: judged by that address.
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_internal(embedded(s[6], s[7])); // IPv4-compatible ::a.b.c.d
            }
            if s[0] == 0x64 && s[1] == 0xff9b {
                return true; // NAT64: reaches IPv4 through the operator's gateway
            }
            if s[0] == 0x2002 {
                return is_internal(embedded(s[1], s[2])); // 6to4
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
        }
    }
}

/// Refuses endpoints herald must not call: other schemes, plain http (unless allowed),
/// credentials in the URL, and hosts that are or resolve to internal addresses (unless the
/// host is allow-listed).
#[derive(Debug, Clone)]
pub struct EndpointGuard {
    allow_http: bool,
    allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("SSRF guard: {0}")]
pub struct Refused(pub String);

impl EndpointGuard {
    pub fn new(settings: &WebhookSettings) -> EndpointGuard {
        EndpointGuard {
            allow_http: settings.allow_http,
            allowed_hosts: settings
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Checks what can be checked without DNS.
    pub fn check_url(&self, endpoint: &str) -> Result<Url, Refused> {
        let url = Url::parse(endpoint).map_err(|e| Refused(format!("not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(Refused(
                    "plain http is refused: use https (or set webhooks.allow_http)".into(),
                ))
            }
            other => return Err(Refused(format!("scheme '{other}' is refused"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused("credentials in the URL are refused".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| Refused("the URL has no host".into()))?;
        if let Some(ip) = literal_ip(host) {
            if is_internal(ip) && !self.host_allowed(host) {
                return Err(Refused(format!(
                    "{ip} is an internal address (allow-list it in webhooks.allowed_hosts)"
                )));
            }
        } else if host.eq_ignore_ascii_case("localhost") && !self.host_allowed(host) {
            return Err(Refused(
                "localhost is refused (allow-list it in webhooks.allowed_hosts)".into(),
            ));
        }
        Ok(url)
    }

    /// Checks the URL and every address its host resolves to (at registration).
    pub async fn check(&self, endpoint: &str) -> Result<Url, Refused> {
        let url = self.check_url(endpoint)?;
        let host = url.host_str().unwrap_or_default().to_string();
        if literal_ip(&host).is_none() {
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| Refused(format!("{host} does not resolve: {e}")))?;
            self.filter(&host, addrs.collect())?;
        }
        Ok(url)
    }

    fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        if self.host_allowed(host) {
            return Ok(addrs);
        }
        if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
            return Err(Refused(format!(
                "{host} resolves to the internal address {} (allow-list it in webhooks.allowed_hosts)",
                bad.ip()
            )));
        }
        Ok(addrs)
    }
}

fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The HTTP client's resolver: the guard runs on every connection, so a name that resolved to
/// a public address at registration cannot be pointed at an internal one later.
struct GuardedResolver(EndpointGuard);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = guard.filter(&host, addrs)?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub struct WebhookAdapter {
    pool: PgPool,
    client: reqwest::Client,
    guard: EndpointGuard,
    settings: WebhookSettings,
    endpoints: Arc<EndpointCache>,
    /// Opens the endpoints' signing secrets.
    keyring: Option<Keyring>,
}

/// Endpoints read within `endpoint_cache_ms`: one read per endpoint and interval, not one per
/// message. The cache is used only while it listens to `herald_subscription` (the database
/// names each subscription whose URL, secrets, status, limit or circuit changed, see migration
/// 15): a change is seen at once, not at the end of the interval. A failure forgets the
/// endpoint, so that its health is read afresh.
struct EndpointCache {
    ttl: Duration,
    entries: std::sync::Mutex<HashMap<String, (std::time::Instant, Arc<Endpoint>)>>,
    listening: std::sync::atomic::AtomicBool,
    started: std::sync::Once,
}

impl EndpointCache {
    fn get(&self, id: &str) -> Option<Arc<Endpoint>> {
        if !self.listening.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().expect("endpoint cache");
        let (read_at, endpoint) = entries.get(id)?;
        (read_at.elapsed() < self.ttl).then(|| endpoint.clone())
    }

    fn put(&self, id: &str, endpoint: Arc<Endpoint>) {
        if self.ttl.is_zero() || !self.listening.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries.lock().expect("endpoint cache");
        entries.retain(|_, (read_at, _)| read_at.elapsed() < self.ttl);
        entries.insert(id.to_string(), (std::time::Instant::now(), endpoint));
    }

    fn forget(&self, id: &str) {
        self.entries.lock().expect("endpoint cache").remove(id);
    }

    fn forget_all(&self) {
        self.listening
            .store(false, std::sync::atomic::Ordering::Release);
        self.entries.lock().expect("endpoint cache").clear();
    }

    /// Starts (once) the task that forgets changed endpoints; it ends with the cache.
    fn listen(self: &Arc<Self>, pool: &PgPool) {
        if self.ttl.is_zero() {
            return;
        }
        self.started.call_once(|| {
            let cache = Arc::downgrade(self);
            let mut wakeup = Wakeup::new(pool.clone(), "herald_subscription");
            tokio::spawn(
                async move {
                    // At once the first time (to learn that the listener is up), then at leisure.
                    let mut timeout = Duration::ZERO;
                    loop {
                        let heard = wakeup.hear(timeout).await;
                        let Some(live) = cache.upgrade() else { return };
                        match heard {
                            Heard::Payload(id) => live.forget(&id),
                            Heard::Quiet => {
                                live.listening
                                    .store(true, std::sync::atomic::Ordering::Release);
                                timeout = Duration::from_secs(30);
                            }
                            // Changes may have been missed: nothing cached is trusted until the
                            // listener is back.
                            Heard::Deaf => {
                                live.forget_all();
                                drop(live);
                                timeout = Duration::ZERO;
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
                .with_current_subscriber(),
            );
        });
    }
}

impl WebhookAdapter {
    pub fn new(
        pool: PgPool,
        settings: &WebhookSettings,
        keyring: Option<Keyring>,
    ) -> Result<WebhookAdapter, reqwest::Error> {
        let guard = EndpointGuard::new(settings);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            // A redirect could lead anywhere: the endpoint must answer itself.
            .redirect(reqwest::redirect::Policy::none())
            // Through a proxy the proxy would resolve the host, and the guard would never see
            // the address: no proxy from the environment.
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(32)
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookAdapter {
            pool,
            keyring,
            client,
            guard,
            settings: settings.clone(),
            endpoints: Arc::new(EndpointCache {
                ttl: settings.endpoint_cache,
                entries: std::sync::Mutex::new(HashMap::new()),
                listening: std::sync::atomic::AtomicBool::new(false),
                started: std::sync::Once::new(),
            }),
        })
    }

    async fn endpoint(&self, id: &str) -> Result<Option<Arc<Endpoint>>, sqlx::Error> {
        self.endpoints.listen(&self.pool);
        if let Some(endpoint) = self.endpoints.get(id) {
            return Ok(Some(endpoint));
        }
        let Some(endpoint) = endpoints::endpoint(&self.pool, self.keyring.as_ref(), id).await?
        else {
            return Ok(None);
        };
        let endpoint = Arc::new(endpoint);
        self.endpoints.put(id, endpoint.clone());
        Ok(Some(endpoint))
    }

    async fn record_health(&self, endpoint: &Endpoint, subscription_id: &str, healthy: bool) {
        if healthy && endpoint.consecutive_failures == 0 && endpoint.circuit_open_until.is_none() {
            // Healthy as last read: nothing to reset.
            return;
        }
        if !healthy {
            self.endpoints.forget(subscription_id);
        }
        if let Err(e) = endpoints::record_health(
            &self.pool,
            subscription_id,
            healthy,
            self.settings.breaker_threshold,
            self.settings.breaker_cooldown,
            self.settings.disable_after,
        )
        .await
        {
            tracing::warn!(error = %e, "could not record the endpoint's health");
        }
    }

    async fn deliver(&self, message: &OutboundMessage) -> DeliveryOutcome {
        let failed = |class, response_code, summary: String, retry_after| DeliveryOutcome::Failed {
            class,
            response_code,
            summary,
            retry_after,
        };
        let subscription_id = &message.address;
        let endpoint = match self.endpoint(subscription_id).await {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => {
                return failed(
                    FailureClass::Configuration,
                    None,
                    format!("webhook subscription {subscription_id} no longer exists"),
                    None,
                )
            }
            Err(e) => {
                return failed(
                    FailureClass::ProviderUnavailable,
                    None,
                    format!("the subscription could not be read: {e}"),
                    None,
                )
            }
        };
        if endpoint.tenant_id != message.tenant_id {
            return failed(
                FailureClass::Configuration,
                None,
                format!("subscription {subscription_id} belongs to another tenant"),
                None,
            );
        }
        if endpoint.status != SubscriptionStatus::Active {
            return failed(
                FailureClass::EndpointDisabled,
                None,
                format!("endpoint {subscription_id} is disabled: dead-lettered, replay it once the endpoint is enabled"),
                None,
            );
        }
        if let Some(until) = endpoint.circuit_open_until {
            let now = chrono::Utc::now();
            if until > now {
                return failed(
                    FailureClass::ProviderUnavailable,
                    None,
                    format!("circuit open for endpoint {subscription_id} until {until}"),
                    (until - now).to_std().ok(),
                );
            }
        }
        if endpoint.keys.keys.is_empty() {
            return failed(
                FailureClass::Configuration,
                None,
                match &endpoint.keys.problem {
                    Some(problem) => format!(
                        "subscription {subscription_id} has no valid signing secret ({problem})"
                    ),
                    None => format!("subscription {subscription_id} has no valid signing secret"),
                },
                None,
            );
        }
        let url = match self.guard.check_url(&endpoint.url) {
            Ok(url) => url,
            Err(refused) => {
                return failed(FailureClass::Configuration, None, refused.to_string(), None)
            }
        };
        if let Some(per_s) = endpoint.rate_limit_per_s {
            let max_wait = self.settings.rate_limit_max_wait;
            match endpoints::reserve_slot(&self.pool, subscription_id, per_s, max_wait).await {
                Ok(Slot::Reserved(wait)) => tokio::time::sleep(wait).await,
                Ok(Slot::TooFar(wait)) => {
                    return failed(
                        FailureClass::RateLimited,
                        None,
                        format!("endpoint {subscription_id} is limited to {per_s} messages a second: its next slot is in {} ms", wait.as_millis()),
                        Some(wait),
                    )
                }
                Err(e) => {
                    return failed(
                        FailureClass::ProviderUnavailable,
                        None,
                        format!("the endpoint's rate limit could not be read: {e}"),
                        None,
                    )
                }
            }
        }
        let data: serde_json::Value =
            serde_json::from_str(&message.text).unwrap_or(serde_json::Value::Null);
        let body = serde_json::to_vec(&serde_json::json!({
            "type": message.subject,
            "timestamp": message.requested_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        }))
        .expect("JSON values serialize");
        let msg_id = format!("msg_{}", message.origin_id.0.simple());
        let timestamp = chrono::Utc::now().timestamp();
        let signature = endpoint
            .keys
            .keys
            .iter()
            .map(|key| sign(key, &msg_id, timestamp, &body))
            .collect::<Vec<_>>()
            .join(" ");
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header("x-correlation-id", &message.correlation_id)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                let refused =
                    std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| {
                        e.source()
                    })
                    .find_map(|e| e.downcast_ref::<Refused>());
                if let Some(refused) = refused {
                    return failed(FailureClass::Configuration, None, refused.to_string(), None);
                }
                self.record_health(&endpoint, subscription_id, false).await;
                let class = if err.is_timeout() {
                    FailureClass::Timeout
                } else {
                    FailureClass::ProviderUnavailable
                };
                return failed(class, None, without_url(&err), None);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        match classify_http(status) {
            None => {
                self.record_health(&endpoint, subscription_id, true).await;
                DeliveryOutcome::Accepted {
                    provider_message_id: Some(msg_id),
                    response_code: Some(status as i32),
                    summary: format!("HTTP {status}"),
                }
            }
            Some(class) => {
                match class {
                    FailureClass::EndpointDisabled => {
                        if let Err(e) = endpoints::disable(
                            &self.pool,
                            subscription_id,
                            "the endpoint answered 410 Gone",
                        )
                        .await
                        {
                            tracing::warn!(error = %e, "could not disable the endpoint");
                        }
                    }
                    // The endpoint answered: a 4xx is about this message, not the endpoint.
                    FailureClass::PermanentRejection => {
                        self.record_health(&endpoint, subscription_id, true).await
                    }
                    // Asked to slow down: the schedule honours Retry-After; not a failure of
                    // the endpoint's health.
                    FailureClass::RateLimited => {}
                    _ => self.record_health(&endpoint, subscription_id, false).await,
                }
                failed(
                    class,
                    Some(status as i32),
                    format!("HTTP {status}"),
                    retry_after,
                )
            }
        }
    }
}

/// A transport error without the URL (an endpoint URL may carry a token in its path).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.without_url_ref().to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text.chars().take(300).collect()
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(url) => text.replace(url.as_str(), "<endpoint>"),
            None => text,
        }
    }
}

impl ChannelAdapter for WebhookAdapter {
    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    fn send<'a>(&'a self, message: &'a OutboundMessage) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(self.deliver(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow_http: bool, hosts: &[&str]) -> EndpointGuard {
        EndpointGuard {
            allow_http,
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn internal_addresses_are_refused_unless_allow_listed() {
        let strict = guard(false, &[]);
        for url in [
            "http://example.com/hook",
            "https://127.0.0.1/hook",
            "https://10.1.2.3/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[fd00::1]/hook",
            "https://[::ffff:192.168.0.1]/hook",
            "https://100.64.0.1/hook",
            "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "https://[2002:7f00:1::]/hook",
            "https://[::7f00:1]/hook",
            "https://[fec0::1]/hook",
            "https://240.0.0.1/hook",
            "https://198.18.0.1/hook",
            "https://2130706433/hook",
            "https://0x7f.1/hook",
            "https://localhost/hook",
            "https://user:pw@example.com/hook",
            "ftp://example.com/hook",
            "not a url",
        ] {
            assert!(strict.check_url(url).is_err(), "{url} must be refused");
        }
        assert!(strict.check_url("https://93.184.216.34/hook").is_ok());
        assert!(strict.check_url("https://example.com/hook").is_ok());
        let rig = guard(true, &["127.0.0.1"]);
        assert!(rig.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(rig.check_url("http://10.0.0.1:9000/hook").is_err());
    }
}
