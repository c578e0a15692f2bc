//! `fedhe plan init | check`: write and check a federation plan.

use std::path::PathBuf;

use anyhow::{Context, bail};

use fedhe::plan::{Plan, ProposeOptions, Quorum, Training};

#[derive(Debug, clap::Subcommand)]
pub enum PlanCommand {
    /// Propose a plan from one CSV, with a note on every choice.
    Init(Box<InitArgs>),
    /// Check a plan file (and, with --data, that a CSV fits it).
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// A CSV with the federation's columns (e.g. the operator's own site).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub schema: super::data_cmds::SchemaArgs,
    #[command(flatten)]
    pub model: super::data_cmds::ModelArgs,
    #[command(flatten)]
    pub gbdt: super::gbdt_args::GbdtArgs,
    /// Training rounds.
    #[arg(long, default_value_t = Training::default().rounds)]
    pub rounds: u64,
    #[command(flatten)]
    pub sgd: super::sgd_args::SgdArgs<super::sgd_args::Federation>,
    #[command(flatten)]
    pub server: super::sgd_args::ServerArgs,
    /// Share of each site's rows held out to validate the global model.
    #[arg(long, default_value_t = Training::default().validation_share)]
    pub validation_share: f64,
    /// Fewest contributors a round may close with (at its deadline);
    /// default 3 with pairwise masks, 2 with --no-masks.
    #[arg(long)]
    pub min_clients: Option<usize>,
    /// With masks, allow a quorum below 3: a round of two goes unmasked
    /// (each of the two can read the other's update from the sum).
    #[arg(long)]
    pub allow_unmasked_pairs: bool,
    /// Client ids allowed to join (comma-separated); default: anyone with the key.
    #[arg(long, value_delimiter = ',')]
    pub roster: Vec<String>,
    /// Seconds after which a training round closes with whoever submitted.
    #[arg(long, default_value_t = Quorum::default().round_deadline_secs)]
    pub deadline: u64,
    /// Allow a round of one contributor (its sum shows that client's update).
    #[arg(long)]
    pub allow_single_contributor: bool,
    #[command(flatten)]
    pub dp: super::data_cmds::DpArgs,
    /// No pairwise masks: any holder of the federation key who obtains one
    /// site's ciphertext can read that site's update (masks are on by
    /// default in rounds of three or more sites).
    #[arg(long)]
    pub no_masks: bool,
    /// Leave the categories out of the plan: the sites discover them in two
    /// encrypted rounds (values the federation holds fewer than
    /// --min-count times go to "other").
    #[arg(long)]
    pub discover_categories: bool,
    /// With --discover-categories: how often a value must occur across the
    /// federation to become a category.
    #[arg(long, default_value_t = 5)]
    pub min_count: u32,
    /// Encrypted federated validation in every round (`[evaluation]`);
    /// implied by --federated-test and --early-stopping.
    #[arg(long)]
    pub federated_validation: bool,
    /// A last round that pools every site's test figures (`fedhe client
    /// --test FILE`).
    #[arg(long)]
    pub federated_test: bool,
    /// Stop once the pooled validation loss has not improved for N rounds.
    #[arg(long, value_name = "N")]
    pub early_stopping: Option<u64>,
    /// Bins of the score histograms a binary model's pooled AUC is read from.
    #[arg(long, default_value_t = fedhe::plan::DEFAULT_AUC_BINS)]
    pub auc_bins: usize,
    /// A name for people.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Where to write the plan (TOML).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The plan file.
    pub plan: PathBuf,
    /// A site's CSV to map to the plan by column name.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The federation's public key: its client limit against the quorum,
    /// and its statistics range against --data (default: a standard64 key
    /// for 64 clients).
    #[arg(long)]
    pub public_key: Option<PathBuf>,
}

pub fn run(cmd: PlanCommand) -> anyhow::Result<()> {
    match cmd {
        PlanCommand::Init(a) => init(*a),
        PlanCommand::Check(a) => check(a),
    }
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    fedhe::fsutil::check_outputs(&[("--out", &a.out)], &[("--data", &a.data)])?;
    fedhe::fsutil::check_output_folder("--out", &a.out)?;
    let model = if a.model.is_gbdt() {
        // `[model.gbdt]`: the trees' settings (`--lr` is their shrinkage).
        fedhe::plan::ModelSpec {
            kind: fedhe::plan::ModelKind::Gbdt,
            hidden: Vec::new(),
            gbdt: Some(a.gbdt.settings(a.sgd.lr, a.sgd.seed)?),
        }
    } else {
        fedhe::plan::ModelSpec::of(&a.model.architecture()?)
    };
    if a.out.exists() && !a.force {
        bail!(
            "{} exists; choose another --out or add --force to replace it",
            a.out.display()
        );
    }
    let opts = ProposeOptions {
        label: a.schema.label.clone(),
        positive: a.schema.positive.clone(),
        task: a.schema.task.0,
        model,
        ignore: a.schema.ignore.clone(),
        keep: a.schema.keep.clone(),
        delimiter: a.schema.delimiter,
        missing: a.schema.missing.clone(),
        vocabulary: a.discover_categories.then_some(fedhe::plan::Vocabulary {
            min_count: a.min_count,
            ..fedhe::plan::Vocabulary::default()
        }),
        training: Training {
            rounds: a.rounds,
            sgd: a.server.local(&a.sgd, a.dp.dp_clip.is_some()),
            validation_share: a.validation_share,
        },
        quorum: Quorum {
            min_clients: a
                .min_clients
                .unwrap_or(fedhe::plan::default_min_clients(!a.no_masks)),
            roster: a.roster.clone(),
            round_deadline_secs: a.deadline,
            allow_single_contributor: a.allow_single_contributor,
        },
        privacy: fedhe::plan::Privacy {
            masks: !a.no_masks,
            allow_unmasked_pairs: a.allow_unmasked_pairs,
            ..fedhe::plan::Privacy::default()
        },
        name: a.name.clone(),
    };
    let (mut plan, mut notes) = fedhe::plan::propose(&a.data, &opts)?;
    if a.federated_validation || a.federated_test || a.early_stopping.is_some() {
        plan.evaluation = Some(fedhe::plan::FedEvaluation {
            auc_bins: a.auc_bins,
            test: a.federated_test,
            early_stopping: a
                .early_stopping
                .map(|patience| fedhe::plan::EarlyStopping { patience }),
        });
        notes.push(
            "evaluation: every round's encrypted update carries the site's validation sums; \
             every site learns the pooled figures, nobody one site's"
                .into(),
        );
        plan.validate(&a.out.display().to_string())?;
    }
    notes.push(if a.no_masks {
        "privacy: no pairwise masks (--no-masks): whoever holds the federation key and obtains \
         one site's ciphertext can read that site's update"
            .into()
    } else {
        "privacy: pairwise masks under the encryption in every round of 3 or more sites: one \
         site's update is unreadable alone, even with the federation key (privacy.masks = false \
         turns them off)"
            .into()
    });
    if let Some(dp) = a.dp.settings()? {
        plan.privacy.dp = Some(dp);
        notes.push(format!(
            "privacy: DP-SGD at every site (clip {}, {}); each site's ε is reported per round",
            dp.clip,
            match (dp.noise_multiplier, dp.target_epsilon) {
                (Some(s), _) => format!("noise multiplier {s}"),
                (None, Some(e)) => format!("noise chosen to spend ε = {e} over all rounds"),
                (None, None) => String::new(),
            }
        ));
        plan.validate(&a.out.display().to_string())?;
    }
    let mut header = vec![
        format!(
            "FedHE federation plan, proposed by `fedhe plan init` from {}.",
            a.data.display()
        ),
        "Edit it, then serve it: fedhe serve --public-key public.key --plan THIS_FILE ...".into(),
    ];
    header.extend(notes.iter().map(|n| format!("- {n}")));
    plan.save(&a.out, &header)?;
    for n in &notes {
        println!("note: {n}");
    }
    println!("plan {} written to {}", plan.fingerprint(), a.out.display());
    Ok(())
}

fn check(a: CheckArgs) -> anyhow::Result<()> {
    let plan = Plan::load(&a.plan)?;
    let (params, scale_bits, max_clients) = match &a.public_key {
        Some(p) => {
            let k = fedhe::crypto::PublicKeyFile::load(p)?;
            plan.validate_for_key(&a.plan.display().to_string(), k.max_clients())?;
            (k.params(), k.scale_bits(), k.max_clients())
        }
        None => {
            let (p, m) = (
                fedhe::crypto::ParamSet::Standard64,
                fedhe::crypto::DEFAULT_MAX_CLIENTS,
            );
            (p, p.default_scale_bits(m), m)
        }
    };
    println!(
        "{}: valid plan {} ({})",
        a.plan.display(),
        plan.fingerprint(),
        plan.summary()
    );
    if let Some(data) = &a.data {
        let loaded = plan
            .load_site_data(data)
            .with_context(|| format!("{} does not fit the plan", data.display()))?;
        let limb_bits = fedhe::client::limb_bits_for(params, scale_bits, max_clients);
        fedhe::session::check_site(&plan, &loaded.dataset, limb_bits).with_context(|| {
            format!(
                "{}: the federation would refuse this site's rows",
                data.display()
            )
        })?;
        for n in &loaded.notices {
            println!("note: {n}");
        }
        let ds = &loaded.dataset;
        let about = match &ds.label {
            fedhe::data::Target::Binary(_) => format!("{} positive", ds.positives()),
            fedhe::data::Target::Multiclass { classes, .. } => {
                let seen: std::collections::BTreeSet<usize> =
                    ds.y.iter().map(|v| *v as usize).collect();
                format!(
                    "{} of the plan's {} classes present",
                    seen.len(),
                    classes.len()
                )
            }
            fedhe::data::Target::Regression { .. } => "a numeric target".to_string(),
        };
        println!(
            "{}: {} rows fit the plan ({about})",
            data.display(),
            ds.rows()
        );
    }
    Ok(())
}
