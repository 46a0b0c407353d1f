//! The `portcullis` command: `serve`, `check-config`, `version`. Wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use portcullis::config::{self, Config, schema::LogFormat};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Anti-spam inbound SMTP gateway")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (built-in defaults without --config: 127.0.0.1:2525 → ./data/mail).
    Serve {
        /// YAML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file; prints every error as file:line:column and exits 1.
    CheckConfig {
        /// YAML config file.
        file: PathBuf,
    },
    /// Review quarantined messages.
    Quarantine {
        /// YAML config naming `quarantine.dir` (and the backend for release).
        #[arg(long, short)]
        config: PathBuf,
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
        /// YAML config (its `policy:` file is used); built-in defaults without it.
        #[arg(long, short)]
        config: Option<PathBuf>,
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
    match cli.command {
        Cmd::Version => {
            println!("portcullis {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::Policy {
            command:
                PolicyCmd::Test {
                    config,
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
                Err(e) => {
                    eprintln!("portcullis: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Quarantine { config, command } => match config::load(&config) {
            Ok(c) => match quarantine(&c, command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("portcullis: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Cmd::CheckConfig { file } => match config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Cmd::Serve { config } => {
            let Some(config) = config_or_default(config) else {
                return ExitCode::FAILURE;
            };
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("portcullis: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
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
    match command {
        QuarantineCmd::List => {
            for e in q.list()? {
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
