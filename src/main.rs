//! The `portcullis` command: `serve`, `check-config`, `policy test`, `quarantine`,
//! `version`. Wiring only: the options (one global `--config`, taken before or after the
//! subcommand), and how results and errors are printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser, Subcommand};
use portcullis::config::{self, Config, schema::LogFormat};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Anti-spam inbound SMTP gateway")]
struct Cli {
    /// YAML config file (before or after the subcommand). `serve` and `policy test` use the
    /// built-in defaults without it; `quarantine` needs it; `check-config` takes it or FILE.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (built-in defaults without --config: 127.0.0.1:2525 → ./data/mail).
    Serve,
    /// Validate a config file; prints every error as file:line:column and exits 1.
    CheckConfig {
        /// YAML config file (or --config FILE).
        file: Option<PathBuf>,
    },
    /// Review quarantined messages (--config names `quarantine.dir`, and the backend for
    /// release).
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCmd,
    },
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum QuarantineCmd {
    /// One line per message: id, sender, recipients, why, subject.
    List,
    /// Print a message as stored.
    Show {
        /// The id from `list`.
        id: String,
    },
    /// Relay a message to the backend, then remove it from the quarantine.
    Release {
        /// The id from `list`.
        id: String,
    },
    /// Remove a message.
    Delete {
        /// The id from `list`.
        id: String,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Run the real checks and policy on a message (a file, a directory or an mbox) and
    /// explain the verdict; nothing is sent anywhere.
    Test {
        /// The message: an .eml file, a directory of them, or an mbox.
        #[arg(long)]
        message: PathBuf,
        /// The client's IP address.
        #[arg(long, default_value = "127.0.0.1")]
        client_ip: std::net::IpAddr,
        /// The EHLO name.
        #[arg(long, default_value = "localhost")]
        helo: String,
        /// MAIL FROM (empty for the null sender).
        #[arg(long, default_value = "")]
        from: String,
        /// RCPT TO (repeatable).
        #[arg(long, required = true)]
        rcpt: Vec<String>,
        /// No DNS at all: SPF, DKIM, ARC, DMARC, rDNS/HELO and DNSBL lookups are skipped.
        #[arg(long, conflicts_with = "dns")]
        dns_offline: bool,
        /// Ask this name server (ip:port) instead of the configured ones.
        #[arg(long)]
        dns: Option<std::net::SocketAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command {
        Cmd::Version if config.is_some() => usage("version reads no config: drop --config"),
        Cmd::Version => {
            println!("portcullis {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::Policy {
            command:
                PolicyCmd::Test {
                    message,
                    client_ip,
                    helo,
                    from,
                    rcpt,
                    dns_offline,
                    dns,
                },
        } => {
            let Some(mut config) = config_or_default(config) else {
                return ExitCode::FAILURE;
            };
            if dns_offline {
                config.auth.enabled = false;
                config.client_checks.rdns = false;
                config.client_checks.helo_dns = false;
                config.dnsbl.zones.clear();
            }
            if let Some(ns) = dns {
                config.dns.nameservers = vec![ns];
            }
            let input = portcullis::dryrun::Input {
                client: client_ip,
                helo,
                from,
                rcpts: rcpt,
            };
            match policy_test(config, &input, &message) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failed(&e),
            }
        }
        Cmd::Quarantine { command } => {
            let Some(path) = config else {
                usage("quarantine needs --config FILE (the config naming quarantine.dir)")
            };
            match config::load(&path) {
                Ok(c) => match quarantine(&c, command) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => failed(&e),
                },
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::CheckConfig { file } => {
            let file = match (file, config) {
                (Some(f), Some(c)) if f != c => {
                    usage("check-config takes one FILE: the argument or --config, not both")
                }
                (Some(f), _) | (None, Some(f)) => f,
                (None, None) => usage("check-config needs a FILE (or --config FILE)"),
            };
            check_config(&file)
        }
        Cmd::Serve => {
            let Some(config) = config_or_default(config) else {
                return ExitCode::FAILURE;
            };
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failed(&e),
            }
        }
    }
}

/// `check-config`: every problem of the file, or `FILE: ok`.
fn check_config(file: &std::path::Path) -> ExitCode {
    let checked = config::load(file)
        .and_then(|c| portcullis::policy::set::PolicySet::load(&c).map_err(config::ConfigErrors));
    match checked {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// A command line clap accepts but that cannot be run: said like clap's own errors, exit 2.
fn usage(message: &str) -> ! {
    Cli::command()
        .error(ErrorKind::ArgumentConflict, message)
        .exit()
}

/// Prints a failure on one line, its causes after colons; a cause already in the text
/// before it (an I/O error that repeats its source) is not printed twice.
fn failed(e: &anyhow::Error) -> ExitCode {
    let mut text = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            // A list of config problems goes below, one `file:line:column` per line.
            text.push_str(if cause.contains('\n') { ":\n" } else { ": " });
        }
        text.push_str(&cause);
    }
    eprintln!("portcullis: {text}");
    ExitCode::FAILURE
}

/// The config at `path` (errors printed), or the built-in defaults without one.
fn config_or_default(path: Option<PathBuf>) -> Option<Config> {
    match path {
        Some(path) => config::load(&path)
            .map_err(|errors| eprintln!("{errors}"))
            .ok(),
        None => Some(Config::default()),
    }
}

fn quarantine(config: &Config, command: QuarantineCmd) -> anyhow::Result<()> {
    let q = portcullis::quarantine::required(config)?;
    let id = match &command {
        QuarantineCmd::List => None,
        QuarantineCmd::Show { id }
        | QuarantineCmd::Delete { id }
        | QuarantineCmd::Release { id } => Some(id),
    };
    if let Some(id) = id
        && !q.contains(id)?
    {
        anyhow::bail!("no quarantined message {id} in {}", q.dir().display());
    }
    match command {
        QuarantineCmd::List => {
            let entries = q.list()?;
            if entries.is_empty() {
                // On stderr: stdout stays one line per message, for scripts.
                eprintln!("no quarantined messages in {}", q.dir().display());
            }
            for e in entries {
                println!(
                    "{}\t<{}>\t{}\t{}\t{}",
                    e.id,
                    e.from,
                    e.to.join(","),
                    e.why,
                    e.subject
                );
            }
        }
        QuarantineCmd::Show { id } => {
            use std::io::Write as _;
            std::io::stdout().write_all(&q.read(&id)?)?;
        }
        QuarantineCmd::Delete { id } => {
            q.delete(&id)?;
            println!("{id}: deleted");
        }
        QuarantineCmd::Release { id } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let reply = runtime.block_on(q.release(config, &id))?;
            if !reply.is_positive() {
                anyhow::bail!("{id}: the backend refused it: {reply}");
            }
            println!("{id}: released ({reply})");
        }
    }
    Ok(())
}

fn policy_test(
    config: Config,
    input: &portcullis::dryrun::Input,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let engine =
            portcullis::dryrun::DryRun::new(config).context("cannot build the pipeline")?;
        let messages = portcullis::dryrun::messages(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut outcomes = Vec::new();
        for (name, data) in messages {
            let outcome = engine.run(input, &data).await;
            println!("== {name}\n{}", outcome.report);
            outcomes.push((name, outcome));
        }
        if outcomes.len() > 1 {
            print!("{}", portcullis::dryrun::summary(&outcomes));
        }
        Ok(())
    })
}

fn init_logging(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let running = portcullis::app::start(config)
            .await
            .context("start-up failed")?;
        let mut signals = Signals::new()?;
        // Every listener is bound: a Type=notify unit is started now, not at exec.
        let notify = portcullis::notify::Notifier::from_env();
        notify.ready();
        // SIGHUP reloads the policy and the TLS certificate (each old one stays if its
        // replacement is refused).
        while signals.next().await == Sig::Reload {
            notify.reloading();
            let _ = running.reload();
            let _ = running.reload_tls();
            notify.ready();
        }
        notify.stopping();
        // A second SIGTERM/SIGINT during the drain exits at once.
        tokio::spawn(async move {
            while signals.next().await == Sig::Reload {}
            tracing::warn!("second signal: exiting now");
            std::process::exit(1);
        });
        running.stop().await;
        Ok(())
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Sig {
    Reload,
    Stop,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Sig {
        // Why select: any of the three may come first.
        tokio::select! {
            _ = self.term.recv() => {
                tracing::info!(signal = "SIGTERM", "shutdown requested");
                Sig::Stop
            }
            _ = self.int.recv() => {
                tracing::info!(signal = "SIGINT", "shutdown requested");
                Sig::Stop
            }
            _ = self.hup.recv() => {
                tracing::info!(signal = "SIGHUP", "reload requested");
                Sig::Reload
            }
        }
    }
}
