use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use herald::camunda::CamundaClient;
use herald::config::Settings;
use herald::runtime::{self, Components};

/// herald: communication ledger and delivery engine, as Camunda 7 external-task workers.
#[derive(Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    /// A TOML settings file (also HERALD_CONFIG); HERALD_* environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the database migrations to HERALD_DATABASE_URL and exit.
    Migrate,
    /// Deploy every BPMN file of bpmn/ to the engine (unchanged files are skipped).
    Deploy(DeployArgs),
    /// Run the workers, the delivery loop and the outbox relay until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Validate topics, templates and BPMN files offline; exit 1 naming each problem.
    Check(CheckArgs),
    /// Write the Camunda Modeler element templates of topics/ into
    /// element-templates/herald.json (paths.element_templates).
    ElementTemplates(ElementTemplatesArgs),
    /// Write the API's OpenAPI document (generated from the handlers) to docs/openapi.json.
    Openapi(OpenapiArgs),
    /// Inspect the settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage template releases (the record in templates/approved.lock).
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Manage the API's keys: each acts for one tenant (or, with --platform, for the tenant a
    /// request names in Herald-Tenant) with the scopes it was given.
    #[command(subcommand)]
    ApiKeys(ApiKeysCommand),
    /// Manage the keys of secrets at rest (HERALD_KEYS__ENCRYPTION).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum ApiKeysCommand {
    /// Make a key and print it alone on stdout: it is shown this once, herald keeps only its hash.
    Create(CreateKeyArgs),
    /// List the keys (never their secrets).
    List(ListKeysArgs),
    /// Revoke a key: it answers 401 from now on.
    Revoke(RevokeKeyArgs),
}

#[derive(Args)]
struct CreateKeyArgs {
    /// The tenant the key acts for (not with --platform).
    #[arg(
        long,
        value_name = "T",
        required_unless_present = "platform",
        conflicts_with = "platform"
    )]
    tenant: Option<String>,
    /// Its scopes, comma-separated: send, read, operate, admin.
    #[arg(long, value_name = "S[,S…]")]
    scope: String,
    /// What the key is for (shown by list).
    #[arg(long, value_name = "N", default_value = "")]
    name: String,
    /// It expires after this long (e.g. 90d, 12h); default: never.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    expires_in: Option<std::time::Duration>,
    /// A platform key: for operations staff, across tenants (each request names its tenant in
    /// the Herald-Tenant header).
    #[arg(long)]
    platform: bool,
}

#[derive(Args)]
struct ListKeysArgs {
    /// Only this tenant's keys.
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RevokeKeyArgs {
    /// The key's id (from list).
    id: uuid::Uuid,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypt every stored ciphertext (webhook signing secrets, retained bodies, inbox
    /// bodies) under the current key, the first of HERALD_KEYS__ENCRYPTION; prints the counts.
    /// Exit 1 naming a row that does not open with the configured keys.
    Rotate(RotateArgs),
}

#[derive(Args)]
struct RotateArgs {
    /// Rows re-encrypted per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..))]
    batch: i64,
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// Withdraw a released template version: appends a WITHDRAW entry to the release record;
    /// the version is never resolved, nor released again (add a new version).
    Withdraw(WithdrawArgs),
    /// Print the version herald would use for a family, locale, market and time, and why (the
    /// fallback steps taken).
    Resolve(ResolveArgs),
}

#[derive(Args)]
struct ResolveArgs {
    /// The template family, e.g. quote-proposal-email.
    family: String,
    /// The recipient's locale, e.g. de-AT.
    #[arg(long, value_name = "L")]
    locale: String,
    /// The recipient's or the command's market, e.g. CH.
    #[arg(long, value_name = "M")]
    market: Option<String>,
    /// When (RFC 3339, default: now).
    #[arg(long, value_name = "T")]
    at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Args)]
struct WithdrawArgs {
    /// The released version.
    #[arg(value_name = "FAMILY:VERSION")]
    id: String,
    /// Why it is withdrawn (recorded).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Who withdraws it (recorded; default: the USER environment variable).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective settings (defaults, file, environment) as TOML; secrets show only
    /// as "[redacted]" when set.
    Show,
}

#[derive(Args)]
struct CheckArgs {
    /// Release the newly approved template versions: append their content hash, approver and
    /// time to templates/approved.lock (refused when anything else is wrong), then check.
    #[arg(long)]
    record_templates: bool,
}

#[derive(Args)]
struct ElementTemplatesArgs {
    /// Write nothing: fail unless the committed file is what topics/ generate.
    #[arg(long)]
    check: bool,
}

#[derive(Args)]
struct OpenapiArgs {
    /// Write nothing: fail unless the file is what the handlers generate.
    #[arg(long)]
    check: bool,
    /// Where the document is kept.
    #[arg(long, default_value = herald::api::spec::DOCUMENT_PATH)]
    path: PathBuf,
}

#[derive(Args)]
struct DeployArgs {
    /// The deployment's name in the engine.
    #[arg(long, default_value = "herald")]
    name: String,
    /// The folder of BPMN files (default: paths.bpmn of the settings).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// Run only these components (comma-separated: workers, delivery, relay, api); default all.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    only: Vec<Component>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Component {
    Workers,
    Delivery,
    Relay,
    Api,
}

fn init_logs(settings: &Settings) {
    // HERALD_LOG__FILTER (settings: log.filter), e.g. `info,herald=debug`.
    let filter = tracing_subscriber::EnvFilter::new(&settings.log.filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log.format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("loading settings")?;
    init_logs(&settings);
    match cli.command {
        Command::Migrate => {
            let ledger = runtime::ledger(&settings)?;
            ledger.migrate().await.context("applying migrations")?;
            println!("migrations applied");
        }
        Command::Deploy(args) => {
            let client = CamundaClient::new(&settings.camunda_url)?;
            let dir = args.dir.unwrap_or_else(|| settings.paths.bpmn.clone());
            let deployment = client.deploy_dir(&args.name, &dir).await.with_context(|| {
                format!("deploying {} to {}", dir.display(), settings.camunda_url)
            })?;
            let definitions = deployment
                .deployed_process_definitions
                .map(|d| d.len())
                .unwrap_or(0);
            println!(
                "deployment {} ({definitions} new process definition(s))",
                deployment.id
            );
        }
        Command::Check(args) => {
            if args.record_templates {
                let added = herald::templates::TemplateRegistry::record_approved(
                    &settings.paths.templates,
                )?;
                for id in &added {
                    println!("recorded approved template {id}");
                }
            }
            let (problems, notes) = herald::check::check(
                &settings.paths.topics,
                &settings.paths.templates,
                &settings.paths.bpmn,
                &settings.paths.rules,
                &settings.paths.element_templates,
            );
            for note in &notes {
                println!("{note}");
            }
            if problems.is_empty() {
                println!(
                    "ok: {}, {}, {}, {} and {} are consistent",
                    settings.paths.topics.display(),
                    settings.paths.templates.display(),
                    settings.paths.bpmn.display(),
                    settings.paths.rules.display(),
                    settings.paths.element_templates.display()
                );
            } else {
                for problem in &problems {
                    eprintln!("{problem}");
                }
                eprintln!("{} problem(s)", problems.len());
                std::process::exit(1);
            }
        }
        Command::ElementTemplates(args) => {
            use herald::workers::element_templates;
            let topics = herald::workers::load_topics(&settings.paths.topics)?;
            let (topics_dir, dir) = (&settings.paths.topics, &settings.paths.element_templates);
            let done = if args.check {
                element_templates::check(&topics, topics_dir, dir).map(|path| {
                    format!(
                        "ok: {} is what {} generate",
                        path.display(),
                        topics_dir.display()
                    )
                })
            } else {
                element_templates::write(&topics, topics_dir, dir)
                    .map(|path| format!("wrote {} ({} templates)", path.display(), topics.len()))
            };
            match done {
                Ok(message) => println!("{message}"),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Openapi(args) => {
            use herald::api::spec;
            let done = if args.check {
                spec::check_document(&args.path)
                    .map(|()| format!("ok: {} is what the handlers generate", args.path.display()))
            } else {
                spec::write_document(&args.path).map(|()| format!("wrote {}", args.path.display()))
            };
            match done {
                Ok(message) => println!("{message}"),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Config(ConfigCommand::Show) => print!("{}", settings.to_toml()),
        Command::Templates(TemplatesCommand::Resolve(args)) => {
            let registry = herald::templates::TemplateRegistry::load(&settings.paths.templates)?;
            let at = args.at.unwrap_or_else(chrono::Utc::now);
            let (found, steps) =
                registry.explain(&args.family, Some(&args.locale), args.market.as_deref(), at);
            println!(
                "{} for locale '{}', {}, at {}:",
                args.family,
                args.locale,
                args.market
                    .as_deref()
                    .map(|m| format!("market '{m}'"))
                    .unwrap_or_else(|| "no market".into()),
                at.to_rfc3339()
            );
            for (n, step) in steps.iter().enumerate() {
                println!("  {}. {step}", n + 1);
            }
            match found {
                Ok(template) => println!("{}", template.id()),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Templates(TemplatesCommand::Withdraw(args)) => {
            let by = args
                .by
                .or_else(|| std::env::var("USER").ok())
                .filter(|by| !by.trim().is_empty())
                .context("say who withdraws the version: --by NAME (or set USER)")?;
            let withdrawal = herald::templates::withdraw(
                &settings.paths.templates,
                &args.id,
                &args.reason,
                &by,
            )?;
            println!(
                "recorded in {}, entry {}: {withdrawal}",
                settings
                    .paths
                    .templates
                    .join(herald::templates::LOCK_FILE)
                    .display(),
                withdrawal.entry
            );
        }
        Command::ApiKeys(command) => api_keys(&settings, command).await?,
        Command::Keys(KeysCommand::Rotate(args)) => {
            match herald::keyring::rotate::rotate_configured(&settings, args.batch).await {
                Ok((key_id, rotated)) => println!(
                    "re-encrypted under key {key_id}: {} webhook signing secrets, {} retained bodies, {} inbox bodies, {} resend inputs",
                    rotated.webhook_secrets,
                    rotated.bodies,
                    rotated.inbox_bodies,
                    rotated.resend_inputs
                ),
                Err(e) => {
                    eprintln!("herald keys rotate: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Run(args) => {
            let components = if args.only.is_empty() {
                Components::all()
            } else {
                Components {
                    workers: args.only.contains(&Component::Workers),
                    delivery: args.only.contains(&Component::Delivery),
                    relay: args.only.contains(&Component::Relay),
                    api: args.only.contains(&Component::Api),
                }
            };
            let shutdown = CancellationToken::new();
            let signals = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutdown requested");
                signals.cancel();
            });
            runtime::run(settings, components, shutdown).await?;
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn api_keys(settings: &Settings, command: ApiKeysCommand) -> anyhow::Result<()> {
    use herald::api::keys::{parse_scopes, ApiKeys, NewKey};
    use secrecy::ExposeSecret;
    let ledger = runtime::ledger(settings)?;
    ledger.migrate().await.context("applying migrations")?;
    let keys = ApiKeys::new(runtime::pool(settings)?);
    match command {
        ApiKeysCommand::Create(args) => {
            let (key, secret) = keys
                .create(
                    &settings.api.key_environment,
                    NewKey {
                        tenant: args.tenant,
                        scopes: parse_scopes(&args.scope)?,
                        name: args.name,
                        expires_in: args.expires_in,
                    },
                )
                .await?;
            eprintln!(
                "created API key {} ({}) for {}, scopes {}{}; it is shown this once",
                key.key_id,
                key.hint,
                key.tenant_id
                    .as_deref()
                    .map_or("every tenant (platform)".to_string(), |t| format!(
                        "tenant {t}"
                    )),
                key.scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                key.expires_at
                    .map_or(String::new(), |at| format!(", expires {at}")),
            );
            println!("{}", secret.expose_secret());
        }
        ApiKeysCommand::List(args) => {
            let list = keys.list(args.tenant.as_deref()).await?;
            let now = chrono::Utc::now();
            for key in &list {
                if args.json {
                    println!("{}", serde_json::to_string(key)?);
                    continue;
                }
                let state = match (key.revoked_at, key.usable_at(now)) {
                    (Some(_), _) => "revoked",
                    (None, false) => "expired",
                    (None, true) => "active",
                };
                println!(
                    "{}  {:<8} {:<16} {:<24} {:<20} {:?}  last used {}",
                    key.key_id,
                    state,
                    key.tenant_id.as_deref().unwrap_or("(platform)"),
                    key.scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    key.hint,
                    key.name,
                    key.last_used_at
                        .map_or("never".to_string(), |at| at.to_rfc3339()),
                );
            }
            if list.is_empty() && !args.json {
                eprintln!("no API keys");
            }
        }
        ApiKeysCommand::Revoke(args) => {
            let key = keys.revoke(args.id).await?;
            println!(
                "revoked {} ({}) at {}",
                key.key_id,
                key.hint,
                key.revoked_at.map(|at| at.to_rfc3339()).unwrap_or_default()
            );
        }
    }
    Ok(())
}
