//! `serve`, `client`, `simulate` and the federation benchmark.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use fedhe::client::{AggregatorClient, ClientEvent};
use fedhe::crypto::{self, Accumulator, ParamSet, PublicKeyFile, SecretKey};
use fedhe::data::split::Partition;
use fedhe::federation::{
    RoundRecord, SimData, SimEvent, SimulationConfig, max_param_diff, records_csv, simulate,
};
use fedhe::model::TrainConfig;
use fedhe::plan::{Plan, Training};
use fedhe::protocol::RegisterRequest;
use fedhe::server::{EmbeddedServer, ServerConfig, TlsPem};
use fedhe::session::{self, ConnectOptions, Notifier};

use super::sgd_args::{Federation, SgdArgs};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The session's public key file (or upload it later: PUT /api/v1/session).
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// The federation plan (`fedhe plan init`); needs --public-key. Rounds
    /// then close by its quorum.
    #[arg(long, requires = "public_key")]
    pub plan: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Folder for the durable state (created if missing).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Longest vector per update (values); default: stated by the first client.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Fewest contributors a round closes with (overrides the plan's quorum).
    #[arg(long)]
    pub min_clients: Option<usize>,
    /// Without a plan: close rounds automatically (a plan's quorum always does).
    #[arg(long)]
    pub auto_aggregate: bool,
    /// PEM certificate (HTTPS); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (HTTPS); needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Read the operator token from this file (created with a new token if missing).
    #[arg(long)]
    pub operator_token_file: Option<PathBuf>,
    /// Keep the running sum in the SQLite database instead of the state
    /// folder's sum file (slower; for comparison).
    #[arg(long, hide = true)]
    pub sum_in_database: bool,
    /// Forget client ID's identity key and token before serving (repeat
    /// for several): a site that lost its state file registers again with
    /// a new identity. Nobody else can re-register an id.
    #[arg(long = "reset-identity", value_name = "ID")]
    pub reset_identity: Vec<String>,
    /// Keep a consistent copy of the state folder in this folder: written
    /// at start and after every round close (restart from it with
    /// --state-dir).
    #[arg(long, value_name = "DIR")]
    pub backup: Option<PathBuf>,
    /// Log lines (stderr) as text or JSON; the level comes from RUST_LOG
    /// (default info: one line per request, round closes, refusals).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log redirected to a file stays text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second subscriber (only possible in tests) keeps the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn operator_token(file: Option<&Path>) -> anyhow::Result<(Option<String>, bool)> {
    let Some(path) = file else {
        return Ok((None, true));
    };
    if path.exists() {
        let t =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t = t.trim().to_string();
        if t.len() < 16 {
            bail!(
                "{}: operator token shorter than 16 characters",
                path.display()
            );
        }
        return Ok((Some(t), false));
    }
    let t = fedhe::server::new_token();
    fedhe::fsutil::write_atomic(path, format!("{t}\n").as_bytes(), false, true)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok((Some(t), false))
}

/// Makes glibc hand update-sized buffers (about 1 MB each) back to the OS on
/// free. By default glibc raises its mmap threshold to the size of the first
/// large block freed, after which such buffers come from heaps it rarely
/// trims, and the aggregator's resident size grows with its upload history
/// instead of its live data. Measured with `fedhe bench federation`
/// (100 × 100,000 values, docs/bench-federation.md): peak 39 MB above idle by
/// default (104 MB at 400 clients), 12 MB with the threshold fixed (22 MB),
/// for about 30 % less upload throughput (fresh mappings fault their pages
/// in again). Bounded memory wins for a server.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one of the documented unsafe sites (ARCHITECTURE.md)
fn return_large_buffers_to_the_os() {
    // SAFETY: mallopt only changes allocator tuning; called before the
    // server starts its threads.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    if ok != 1 {
        eprintln!("note: could not set the allocator's mmap threshold; memory use may be higher");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_buffers_to_the_os() {}

pub fn serve(a: ServeArgs) -> anyhow::Result<()> {
    init_logs(a.log_format);
    return_large_buffers_to_the_os();
    let public_key = match &a.public_key {
        Some(p) => {
            Some(PublicKeyFile::load(p).with_context(|| format!("loading {}", p.display()))?)
        }
        None => None,
    };
    let plan = a.plan.as_deref().map(Plan::load).transpose()?;
    // A quorum beyond the key's client limit could never close a round.
    if let Some(k) = &public_key {
        if let (Some(p), Some(path)) = (&plan, &a.plan) {
            p.validate_for_key(&path.display().to_string(), k.max_clients())?;
        }
        if let Some(m) = a.min_clients {
            fedhe::plan::within_key("the command line", "--min-clients", m, k.max_clients())?;
        }
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(TlsPem::from_files(c, k)?),
        _ => None,
    };
    let (token, print_token) = operator_token(a.operator_token_file.as_deref())?;
    let server = EmbeddedServer::start(ServerConfig {
        bind: a.bind,
        state_dir: Some(a.state_dir.clone()),
        public_key,
        plan,
        max_len: a.max_len,
        min_clients: a.min_clients,
        auto_aggregate: a.auto_aggregate,
        sum_in_database: a.sum_in_database,
        reset_identities: a.reset_identity.clone(),
        backup_dir: a.backup.clone(),
        operator_token: token,
        tls,
        ..ServerConfig::default()
    })
    .map_err(|e| match (&e, &a.tls_cert, &a.tls_key) {
        // The library checks PEM bytes; the files are named here.
        (fedhe::server::StartError::Tls(_), Some(c), Some(k)) => anyhow::anyhow!(
            "--tls-cert {} / --tls-key {}: {e}",
            c.display(),
            k.display()
        ),
        _ => e.into(),
    })?;
    let st = server.status();
    let mut out = std::io::stdout().lock();
    writeln!(out, "FedHE aggregator listening on {}", server.url())?;
    if print_token {
        writeln!(out, "operator token: {}", server.operator_token())?;
    } else if let Some(p) = &a.operator_token_file {
        writeln!(out, "operator token: in {}", p.display())?;
    }
    match &st.session {
        Some(s) => writeln!(
            out,
            "session: key {} ({}, up to {} clients per round), max_len {}, open round {}",
            s.fingerprint,
            s.params,
            s.max_clients,
            s.max_len.map_or("not set".into(), |n| n.to_string()),
            st.round
        )?,
        None => writeln!(
            out,
            "no session yet: registrations and uploads are refused until a public key is loaded (PUT /api/v1/session)"
        )?,
    }
    match server.plan() {
        Some(p) => {
            let q = &p.quorum;
            writeln!(
                out,
                "plan {}: {}; a round closes when its whole roster submitted, or after {} s with at least {} (the statistics round waits for everyone{}){}",
                p.fingerprint(),
                p.summary(),
                q.round_deadline_secs,
                a.min_clients.unwrap_or(q.min_clients),
                if p.privacy.masks && q.roster.is_empty() {
                    " until its deadline"
                } else {
                    ""
                },
                if p.privacy.masks {
                    "; pairwise masks in rounds of 3 or more"
                } else {
                    "; no pairwise masks"
                }
            )?;
        }
        None => writeln!(
            out,
            "no plan: clients (fedhe client, the app) join once a plan is loaded (--plan, or PUT /api/v1/plan)"
        )?,
    }
    if let Some(b) = &a.backup {
        writeln!(
            out,
            "backup: a consistent copy in {} after every round close",
            b.display()
        )?;
    }
    writeln!(out, "state folder: {}; Ctrl-C stops", a.state_dir.display())?;
    out.flush()?;
    drop(out);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    eprintln!("shutting down");
    server.shutdown();
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Aggregator URL, e.g. http://10.0.0.5:8080.
    #[arg(long)]
    pub server: String,
    /// The federation's shared secret key file.
    #[arg(long)]
    pub key: PathBuf,
    /// This client's training CSV (columns are matched to the plan by name).
    #[arg(long)]
    pub data: PathBuf,
    /// Field separator of --data (default: comma, or what its header shows).
    #[arg(long, value_parser = super::data_cmds::parse_delimiter)]
    pub delimiter: Option<u8>,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Client id (default: derived from the name).
    #[arg(long)]
    pub id: Option<String>,
    /// Credentials file for resuming after a restart (owner-only; default:
    /// client-ID.state.json beside the key).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// PEM certificate to trust for an HTTPS aggregator (self-signed).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Longest wait, in seconds, for the aggregator and its operator (key and plan).
    #[arg(long, default_value_t = 3600)]
    pub wait: u64,
    /// Save the final global model here (for `fedhe predict` or the app).
    #[arg(long)]
    pub model_out: Option<PathBuf>,
    /// This site's test CSV for the plan's federated test (`[evaluation]
    /// test = true`): the kept model's figures on every site's test rows,
    /// pooled under encryption.
    #[arg(long)]
    pub test: Option<PathBuf>,
}

pub fn client(a: ClientArgs) -> anyhow::Result<()> {
    let id =
        a.id.clone()
            .unwrap_or_else(|| session::id_from_name(&a.name));
    let state = a
        .state
        .clone()
        .unwrap_or_else(|| session::default_state_file(&a.key, &id));
    // Both outputs are written after a whole federation: refused now.
    let mut outputs = vec![("--state", state.as_path())];
    outputs.extend(a.model_out.as_deref().map(|p| ("--model-out", p)));
    let mut inputs = vec![("--key", a.key.as_path()), ("--data", a.data.as_path())];
    inputs.extend(a.ca_cert.as_deref().map(|p| ("--ca-cert", p)));
    inputs.extend(a.test.as_deref().map(|p| ("--test", p)));
    fedhe::fsutil::check_outputs(&outputs, &inputs)?;
    if let Some(p) = &a.model_out {
        fedhe::fsutil::check_output_folder("--model-out", p)?;
    }
    // Loaded first: a file that is no key at all (a public key, a CSV)
    // gets that error, not a warning about its permissions.
    let key = SecretKey::load(&a.key).with_context(|| format!("loading {}", a.key.display()))?;
    if let Some(p) = SecretKey::permission_problem(&a.key) {
        // As ssh: a key others can replace is not used; one they can read
        // is used with a warning.
        if p.writable_by_others {
            bail!("{}; refusing to use it", p.explain(&a.key));
        }
        eprintln!("WARNING: {}", p.explain(&a.key));
    }
    let ca_cert_pem = match &a.ca_cert {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let notify: Notifier = Arc::new(|s: &str| println!("{s}"));
    let cancel = AtomicBool::new(false);
    let connected = session::connect(
        &ConnectOptions {
            server: a.server.clone(),
            ca_cert_pem,
            wait: Duration::from_secs(a.wait),
        },
        Arc::new(key),
        Some(notify),
        &cancel,
    )?;
    let plan = &connected.plan;
    println!("plan {}: {}", connected.plan_fingerprint, plan.summary());
    // The CSV is checked against the plan before anything is sent.
    let loaded = connected.load_site_delimited(&a.data, a.delimiter)?;
    for n in &loaded.notices {
        eprintln!("note: {n}");
    }
    // The test rows too, read as the training rows are.
    let test = match &a.test {
        Some(p) => Some(connected.load_site_delimited(p, a.delimiter)?.dataset),
        None => None,
    };
    let joined = connected.join(&id, &a.name, Some(&state))?;
    println!(
        "{} `{id}` at {} ({} rows of {} read by column name); credentials in {}",
        if joined.resumed {
            "resumed as"
        } else {
            "registered as"
        },
        a.server,
        loaded.dataset.rows(),
        a.data.display(),
        state.display()
    );
    if joined.plan.privacy.masks {
        // Compared out of band, it rules out an identity swapped by the relay.
        println!(
            "pairwise masks on; this site's identity key: {}",
            fedhe::privacy::masks::fingerprint(&joined.identity.public())
        );
    }
    if joined.plan.gbdt().is_some() {
        let files = (a.data.as_path(), a.model_out.as_deref());
        return super::gbdt_cmds::client(&joined, &loaded.dataset, files, test.as_ref(), &cancel);
    }
    let task = joined.plan.target().kind();
    let (loss_name, score_name) = (round_loss_name(task), task.score_name());
    let run = joined.run_tested(
        &loaded.dataset,
        test.as_ref(),
        vec![a.data.display().to_string()],
        &mut |e| match e {
            ClientEvent::Standardized { global_rows, .. } => {
                println!("statistics: {global_rows} rows across the federation");
            }
            ClientEvent::Round(r) if !r.contributed => println!(
                "round {:>3}: closed before this client rejoined; {} contributors ({})",
                r.round,
                r.contributors,
                r.counted.join(", ")
            ),
            ClientEvent::Round(r) => println!(
                "round {:>3}: {} contributors ({}){}, local loss {:.4}, validation {loss_name} {}, {score_name} {}, up {} B, down {} B{}{}",
                r.round,
                r.contributors,
                r.counted.join(", "),
                if r.masked { ", masked" } else { "" },
                r.local_loss.unwrap_or(f64::NAN),
                r.validation_loss.map_or("-".into(), |v| format!("{v:.4}")),
                r.validation_score.map_or("-".into(), |v| format!("{v:.4}")),
                r.cost.bytes_up,
                r.cost.bytes_down,
                // With DP-SGD: ε spent on this site's rows so far.
                r.epsilon.map_or(String::new(), |e| format!(", ε {e:.3}")),
                federated_words(r.round, r.federated_validation.as_deref())
            ),
            ClientEvent::Epoch(_) | ClientEvent::Tree(_) => {}
        },
        &cancel,
    )?;
    if let Some(s) = &run.outcome.stopped {
        println!("{s}");
    }
    if let Some(f) = &run.outcome.federated {
        print_federated(f, &run.model);
    }
    if let Some(p) = &run.outcome.privacy {
        println!(
            "DP-SGD: ε = {:.3} at δ = {:e} on this site's rows (σ {:.3}, clip {}, {} steps)",
            p.epsilon, p.delta, p.noise_multiplier, p.clip, p.steps
        );
    }
    println!(
        "done: global {} ({} parameters) after {} rounds",
        run.model.architecture.describe(run.model.head()),
        run.model.params.len(),
        run.outcome.rounds.len()
    );
    // The aggregator's word that the federation is finished.
    if let Some(c) = joined.api.status().ok().and_then(|s| s.complete) {
        println!("federation complete: {}", c.describe());
    }
    if let Some(path) = &a.model_out {
        run.model.save(path)?;
        println!("global model written to {}", path.display());
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// One CSV to split into a test set and client parts.
    #[arg(long, conflicts_with_all = ["client_data", "test"])]
    pub data: Option<PathBuf>,
    /// One CSV per client (needs --test or --client-test).
    #[arg(long, num_args = 1..)]
    pub client_data: Vec<PathBuf>,
    /// Test CSV (with --client-data).
    #[arg(long, conflicts_with = "client_test")]
    pub test: Option<PathBuf>,
    /// One test CSV per client (with --client-data, in the same order): the
    /// federated test pools every site's figures under encryption.
    #[arg(long, num_args = 1..)]
    pub client_test: Vec<PathBuf>,
    /// Encrypted federated validation in every round (each site holds out
    /// the plan's validation share); implied by --client-test and
    /// --early-stopping.
    #[arg(long)]
    pub federated_validation: bool,
    /// Stop once the pooled validation loss has not improved for N rounds.
    #[arg(long, value_name = "N")]
    pub early_stopping: Option<u64>,
    /// Bins of the score histograms a binary model's pooled AUC is read from.
    #[arg(long, default_value_t = fedhe::plan::DEFAULT_AUC_BINS)]
    pub auc_bins: usize,
    #[command(flatten)]
    pub csv: super::data_cmds::SchemaArgs,
    /// Number of clients (with --data).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// iid or dirichlet:ALPHA (with --data).
    #[arg(long, default_value = "iid")]
    pub split: Partition,
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Training rounds.
    #[arg(long, default_value_t = Training::default().rounds)]
    pub rounds: u64,
    #[command(flatten)]
    pub sgd: SgdArgs<Federation>,
    #[command(flatten)]
    pub server: super::sgd_args::ServerArgs,
    #[command(flatten)]
    pub model: super::data_cmds::ModelArgs,
    #[command(flatten)]
    pub gbdt: super::gbdt_args::GbdtArgs,
    #[command(flatten)]
    pub dp: super::data_cmds::DpArgs,
    /// No pairwise masks (on by default with 3 or more clients): to measure
    /// what they cost; the models are identical.
    #[arg(long)]
    pub no_masks: bool,
    /// Plaintext FedAvg (no encryption, no HTTP) with the same seeds.
    #[arg(long, conflicts_with = "compare")]
    pub plain: bool,
    /// Run both and print the largest weight difference per round.
    #[arg(long)]
    pub compare: bool,
    /// Parameter set: standard64 or compact32.
    #[arg(long, default_value = "standard64")]
    pub params: ParamSet,
    /// Write the per-round figures to this file (.csv or .json).
    #[arg(long)]
    pub metrics_out: Option<PathBuf>,
    /// Save the final global model (of the encrypted run) for `fedhe predict`.
    #[arg(long)]
    pub model_out: Option<PathBuf>,
}

/// The loss a round's table shows: log-loss, or RMSE in the target's unit.
fn round_loss_name(task: fedhe::data::TaskKind) -> &'static str {
    match task {
        fedhe::data::TaskKind::Regression => "RMSE",
        _ => "log-loss",
    }
}

/// ", federated validation of round 2's model: log-loss 0.1234, accuracy
/// 0.9561" (round `round`'s sums are of round − 1's model).
fn federated_words(round: u64, e: Option<&fedhe::model::Evaluation>) -> String {
    e.map_or(String::new(), |e| {
        format!(
            ", federated validation of round {}'s model: {} {:.4}, {} {:.4}",
            round - 1,
            match e {
                fedhe::model::Evaluation::Regression(_) => "RMSE",
                _ => "log-loss",
            },
            e.loss(),
            e.score_name(),
            e.score()
        )
    })
}

/// The best round, early stopping and the federated test.
fn print_federated(f: &fedhe::model::FederatedFigures, model: &fedhe::model::ModelFile) {
    if let Some(r) = f.stopped_after {
        println!(
            "early stopping: the pooled validation loss stopped improving; training stopped after \
             round {r}"
        );
    }
    if let Some(best) = f.best_round {
        let figures = f.validation_of(best).map_or(String::new(), |e| e.summary());
        println!("federated validation, best round {best} (the model kept): {figures}",);
    }
    if let Some(t) = &f.test {
        // The line, then the table under `fedhe predict`'s metric names.
        println!("{}", fedhe::client::federated_test_line(f.best_round, t));
        print!("{}", super::data_cmds::evaluation_table(t, model));
    }
}

fn print_round(r: &RoundRecord) {
    // With DP-SGD, the largest ε any client has spent so far.
    let mut eps = r.epsilon.map_or(String::new(), |e| format!(" {e:>8.3}"));
    if let (Some(l), Some(s)) = (r.federated_loss, r.federated_score) {
        eps.push_str(&format!("   federated {l:.5} {s:.4}"));
    }
    println!(
        "{:>5} {:>10.5} {:>9.4} {:>11} {:>11} {:>9.3} {:>9.3} {:>9.3}{eps}",
        r.round,
        r.global_loss,
        r.global_score,
        r.bytes_up,
        r.bytes_down,
        r.encrypt_ms,
        r.aggregate_ms,
        r.decrypt_ms
    );
}

/// Refuses `--model-out` or `--metrics-out` over an input (or each other).
fn check_simulate_outputs(a: &SimulateArgs) -> anyhow::Result<()> {
    let outputs: Vec<(&str, &Path)> = [
        ("--model-out", &a.model_out),
        ("--metrics-out", &a.metrics_out),
    ]
    .into_iter()
    .filter_map(|(f, p)| Some((f, p.as_deref()?)))
    .collect();
    let mut inputs: Vec<(&str, &Path)> = a.data.iter().map(|p| ("--data", p.as_path())).collect();
    inputs.extend(a.client_data.iter().map(|p| ("--client-data", p.as_path())));
    inputs.extend(a.test.iter().map(|p| ("--test", p.as_path())));
    inputs.extend(a.client_test.iter().map(|p| ("--client-test", p.as_path())));
    fedhe::fsutil::check_outputs(&outputs, &inputs)?;
    for (flag, p) in outputs {
        fedhe::fsutil::check_output_folder(flag, p)?;
    }
    Ok(())
}

/// Where a simulation's sites' rows come from, and its federated
/// evaluation (`--federated-validation`, `--client-test`,
/// `--early-stopping`).
fn sim_data(a: &SimulateArgs) -> anyhow::Result<(SimData, Option<fedhe::plan::FedEvaluation>)> {
    let data = match (&a.data, a.client_data.is_empty(), &a.test) {
        (Some(d), true, None) => SimData::Split {
            data: d.clone(),
            clients: a.clients,
            partition: a.split,
            test_fraction: a.test_fraction,
            seed: a.sgd.seed,
        },
        (None, false, Some(t)) => SimData::Files {
            clients: a.client_data.clone(),
            test: t.clone(),
        },
        (None, false, None) if a.client_test.len() == a.client_data.len() => SimData::SiteTests {
            clients: a.client_data.clone(),
            tests: a.client_test.clone(),
        },
        _ => bail!(
            "give either --data FILE, or --client-data A.csv B.csv ... with --test T.csv or \
             with one --client-test file per client"
        ),
    };
    let evaluation = (a.federated_validation
        || a.early_stopping.is_some()
        || !a.client_test.is_empty())
    .then(|| fedhe::plan::FedEvaluation {
        auc_bins: a.auc_bins,
        test: !a.client_test.is_empty(),
        early_stopping: a
            .early_stopping
            .map(|patience| fedhe::plan::EarlyStopping { patience }),
    });
    Ok((data, evaluation))
}

/// The SGD model of a simulation; trees have none (`--model gbdt` runs
/// `gbdt_cmds::simulate`).
fn sim_architecture(m: &super::data_cmds::ModelArgs) -> anyhow::Result<fedhe::model::Architecture> {
    if m.is_gbdt() {
        return Ok(fedhe::model::Architecture::Linear);
    }
    m.architecture()
}

pub fn simulate_cmd(a: SimulateArgs) -> anyhow::Result<()> {
    check_simulate_outputs(&a)?;
    let (data, evaluation) = sim_data(&a)?;
    let cfg = SimulationConfig {
        data,
        csv: match (&a.data, a.client_data.first()) {
            (Some(d), _) | (None, Some(d)) => a.csv.options_for(d, a.model.missing())?,
            (None, None) => a.csv.options(),
        },
        rounds: a.rounds,
        train: TrainConfig::from(a.server.local(&a.sgd, a.dp.dp_clip.is_some())),
        architecture: sim_architecture(&a.model)?,
        dp: a.dp.settings()?,
        masks: !a.no_masks,
        plain: a.plain,
        params: a.params,
        round_timeout: Duration::from_secs(120),
        evaluation,
    };
    if a.model.is_gbdt() {
        let settings = a.gbdt.settings(a.sgd.lr, a.sgd.seed)?;
        return super::gbdt_cmds::simulate(&cfg, settings, a.compare, a.model_out.as_deref());
    }
    // The task names the table's columns; the data decides it (--task auto).
    let (_, test) = fedhe::federation::load_sim_data(&cfg.data, &cfg.csv)?;
    let task = test.label.kind();
    let (loss_name, score_name) = (round_loss_name(task), task.score_name());
    drop(test);
    let runs: Vec<bool> = if a.compare {
        vec![false, true]
    } else {
        vec![a.plain]
    };
    let mut all = Vec::new();
    for plain in runs {
        let cfg = SimulationConfig {
            plain,
            ..cfg.clone()
        };
        println!(
            "{} run: {} rounds",
            if plain {
                "plaintext FedAvg"
            } else {
                "encrypted"
            },
            cfg.rounds
        );
        println!(
            "{:>5} {:>10} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9}{}",
            "round",
            loss_name,
            score_name,
            "bytes up",
            "bytes down",
            "enc ms",
            "agg ms",
            "dec ms",
            if cfg.dp.is_some() { "        ε" } else { "" }
        );
        if cfg.evaluation.is_some() {
            println!(
                "(federated: the pooled validation {loss_name} and {score_name} of the model \
                 the round started from, round − 1's)"
            );
        }
        let t = Instant::now();
        let res = simulate(
            &cfg,
            &mut |e| {
                if let SimEvent::Round(r) = e {
                    print_round(r);
                }
            },
            Arc::new(AtomicBool::new(false)),
        )?;
        let m = &res.test;
        println!(
            "test ({} rows, {}): {}",
            m.rows(),
            res.model.architecture().describe(res.model.head()),
            m.summary()
        );
        if let Some(p) = &res.privacy {
            println!(
                "DP-SGD: ε = {:.3} at δ = {:e} per client (σ {:.3}, clip {}, sample rate {:.4}, {} steps)",
                p.epsilon, p.delta, p.noise_multiplier, p.clip, p.sample_rate, p.steps
            );
        }
        if let Some(s) = &res.stopped {
            println!("{s}");
        }
        if let Some(f) = &res.federated {
            print_federated(f, &res.model_file(&cfg));
        }
        let masked = res.records.iter().filter(|r| r.masked).count();
        let clients = a
            .client_data
            .len()
            .max(if a.data.is_some() { a.clients } else { 0 });
        if !plain && !a.no_masks && clients < fedhe::plan::MIN_MASKED_MEMBERS {
            println!(
                "pairwise masks: off ({clients} clients: a masked round needs {} members, so the \
                 simulated plan says masks = false)",
                fedhe::plan::MIN_MASKED_MEMBERS
            );
        } else if masked == 0 && !plain {
            println!("pairwise masks: off (--no-masks)");
        } else if !plain {
            println!(
                "pairwise masks: {masked} of {} training rounds masked (every update unreadable alone, even with the umbrella key; masks need 3 or more clients)",
                res.records.len()
            );
        }
        println!("total {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
        all.push(res);
    }
    if let (Some(path), Some(res)) = (&a.model_out, all.first()) {
        res.model_file(&cfg).save(path)?;
        println!("global model written to {}", path.display());
    }
    if a.compare {
        let d = max_param_diff(&all[0].records, &all[1].records);
        let worst = d.iter().copied().fold(0.0, f64::max);
        println!("largest |encrypted - plaintext| global parameter over all rounds: {worst:.3e}");
        println!(
            "final test {}: encrypted {:.4}, plaintext {:.4}",
            all[0].test.score_name(),
            all[0].test.score(),
            all[1].test.score()
        );
    }
    if let Some(path) = &a.metrics_out {
        let records: Vec<RoundRecord> = all.iter().flat_map(|r| r.records.clone()).collect();
        let text = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            serde_json::to_string_pretty(&records)?
        } else {
            records_csv(&records)?
        };
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("per-round figures written to {}", path.display());
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct BenchFederationArgs {
    /// Clients (one update each).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Model values per update.
    #[arg(long, default_value_t = 100_000)]
    pub weights: usize,
    /// Concurrent uploads.
    #[arg(long, default_value_t = 4)]
    pub upload_threads: usize,
    #[arg(long, default_value = "standard64")]
    pub params: ParamSet,
    /// Run the aggregator with its running sum in SQLite (the older, slower
    /// durable path) instead of the sum file, for a side-by-side.
    #[arg(long)]
    pub sum_in_database: bool,
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Kills the child it holds when dropped (the benchmark's own aggregator).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn bench_federation(a: BenchFederationArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let key = SecretKey::generate_for(a.params, crypto::max_clients_for(a.clients), None)?;
    let token = "bench-operator-token-0123456789abcdef";
    let (child, url) = spawn_bench_aggregator(&a, &key, &dir, token)?;
    let pid = child.0.id();
    std::thread::sleep(Duration::from_millis(300));
    let idle_kb = proc_status_kb(pid, "VmRSS:").unwrap_or(0);

    println!(
        "encrypting {} updates of {} values ({}, key for up to {} clients, scale 2^{})...",
        a.clients,
        a.weights,
        a.params,
        key.max_clients(),
        key.scale_bits()
    );
    let t = Instant::now();
    let (updates, plain_sum) = synthetic_updates(&key, a.clients, a.weights)?;
    let enc_s = t.elapsed().as_secs_f64();
    let update_bytes = updates.first().map_or(0, Vec::len);

    let mut apis = Vec::new();
    let session = AggregatorClient::new(&url).health()?.session;
    let aud = crypto::Audience {
        session: &session,
        plan: None,
    };
    for i in 0..a.clients {
        let mut api = AggregatorClient::new(&url);
        let identity = fedhe::privacy::masks::Identity::generate()?;
        api.register(&RegisterRequest::signed(
            &key,
            &aud,
            format!("bench-{i}"),
            format!("bench {i}"),
            None,
            &identity,
        ))?;
        apis.push(api);
    }
    let t_round = Instant::now();
    upload_all(&apis, &updates, a.upload_threads)?;
    let upload_s = t_round.elapsed().as_secs_f64();
    let peak_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let op = AggregatorClient::new(&url).with_token(token);
    op.close_round(1)?;
    let (sum, contributors) = apis[0].download_sum(1)?;
    let round_s = t_round.elapsed().as_secs_f64();
    let acc = Accumulator::from_bytes(&sum, a.weights)?;
    let mean = crypto::decrypt_mean(&key, &acc)?;
    let max_err = mean
        .values
        .iter()
        .zip(&plain_sum)
        .map(|(m, s)| (m - s / a.clients as f64).abs())
        .fold(0.0, f64::max);
    let peak_after_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(peak_kb);
    let total_mb = (update_bytes * a.clients) as f64 / 1e6;
    println!(
        "clients {}, values {}, contributors {contributors}",
        a.clients, a.weights
    );
    println!(
        "update size {:.3} MB, published sum {:.3} MB",
        update_bytes as f64 / 1e6,
        sum.len() as f64 / 1e6
    );
    println!(
        "client-side encryption: {:.2} s total ({:.1} ms per update)",
        enc_s,
        enc_s * 1e3 / a.clients as f64
    );
    println!(
        "uploads: {:.2} s for {:.1} MB = {:.1} MB/s accepted ({} concurrent)",
        upload_s,
        total_mb,
        total_mb / upload_s,
        a.upload_threads
    );
    println!(
        "one round (uploads + close + download): {:.2} s = {:.3} rounds/s",
        round_s,
        1.0 / round_s
    );
    println!(
        "server memory: idle {:.1} MB, peak {:.1} MB, peak above idle {:.1} MB",
        idle_kb as f64 / 1024.0,
        peak_after_kb as f64 / 1024.0,
        peak_after_kb.saturating_sub(idle_kb) as f64 / 1024.0
    );
    println!("max |decrypted mean - plaintext mean| = {max_err:.3e}");
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts `fedhe serve` on a loopback port in `dir`, with `key`'s public
/// half and the operator `token`; returns it and its URL.
fn spawn_bench_aggregator(
    a: &BenchFederationArgs,
    key: &SecretKey,
    dir: &Path,
    token: &str,
) -> anyhow::Result<(ChildGuard, String)> {
    let pk_path = dir.join("public.key");
    std::fs::write(&pk_path, key.public().to_bytes())?;
    let token_path = dir.join("operator.token");
    std::fs::write(&token_path, token)?;
    let exe = std::env::current_exe()?;
    let mut child = ChildGuard(
        std::process::Command::new(exe)
            .args(["serve", "--bind", "127.0.0.1:0", "--max-len"])
            .arg(a.weights.to_string())
            .arg("--public-key")
            .arg(&pk_path)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--operator-token-file")
            .arg(&token_path)
            .args(a.sum_in_database.then_some("--sum-in-database"))
            // One log line per upload would drown the figures.
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().context("no stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().context("aggregator exited")??;
        if let Some(u) = line.strip_prefix("FedHE aggregator listening on ") {
            break u.trim().to_string();
        }
    };
    Ok((child, url))
}

/// `clients` encrypted updates of `weights` deterministic values in
/// [-1, 1), and their plaintext sum.
fn synthetic_updates(
    key: &SecretKey,
    clients: usize,
    weights: usize,
) -> anyhow::Result<(Vec<Vec<u8>>, Vec<f64>)> {
    let mut rng_state = 0x1234_5678_u64;
    let mut plain_sum = vec![0.0; weights];
    let mut updates = Vec::with_capacity(clients);
    for _ in 0..clients {
        let values: Vec<f64> = (0..weights)
            .map(|_| {
                // xorshift: deterministic values in [-1, 1)
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                (rng_state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect();
        for (s, v) in plain_sum.iter_mut().zip(&values) {
            *s += v;
        }
        updates.push(crypto::encrypt_weighted(key, &values, 1.0)?.to_bytes());
    }
    Ok((updates, plain_sum))
}

/// Uploads `updates[i]` as client `i` into round 1 from `threads` threads.
fn upload_all(
    apis: &[AggregatorClient],
    updates: &[Vec<u8>],
    threads: usize,
) -> anyhow::Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= updates.len() {
                        break;
                    }
                    if let Err(e) = apis[i].upload(1, &updates[i])
                        && let Ok(mut v) = errors.lock()
                    {
                        v.push(format!("client {i}: {e}"));
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_default();
    if !errors.is_empty() {
        bail!("{} uploads failed, first: {}", errors.len(), errors[0]);
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    // The benchmark's own scratch folder, removed at the end.
    #[allow(clippy::disallowed_methods)]
    let dir = std::env::temp_dir().join(format!(
        "fedhe-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
