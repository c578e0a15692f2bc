//! An audit-style sweep (issue 21, "Done means"): bad inputs and faults
//! across the CLI — CSVs, plans, keys, models, flags and paths — each run
//! through the real binary on real files and classified:
//!
//! - **handled**: refused (exit status 1), the first line of stderr is the
//!   error, it names where (the file, line or flag the case expects), and
//!   no input changed and no output was written;
//! - **unclear**: refused without saying where (or after notes);
//! - **damaging**: accepted (exit 0), a crash (a signal or a panic), an
//!   input changed, or an output written by a refused command.
//!
//! The test prints the table and every unclear case, and fails on any
//! damaging one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::sample;

/// One case: a name, the arguments (`{D}` is the scratch folder, `{W}` the
/// sample CSV), what its message must name, and the files that must stay
/// as they are or not appear.
struct Case {
    name: String,
    args: Vec<String>,
    needles: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Handled,
    Unclear,
    Damaging,
}

fn case(name: &str, args: &[&str], needles: &[&str]) -> Case {
    Case {
        name: name.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        needles: needles.iter().map(|a| a.to_string()).collect(),
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// The scratch folder's inputs: bad CSVs, plans, keys and models.
fn inputs(dir: &Path) -> Vec<&'static str> {
    let text = std::fs::read_to_string(sample("breast_cancer_wdbc.csv")).unwrap();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    let edit = |row: usize, col: usize, v: &str| -> String {
        let mut l = lines.clone();
        let mut cells: Vec<String> = l[row + 1].split(',').map(String::from).collect();
        cells[col] = v.to_string();
        l[row + 1] = cells.join(",");
        l.join("\n") + "\n"
    };
    write(dir, "good.csv", &text);
    let mut csvs = Vec::new();
    let mut add = |name: &'static str, bytes: Vec<u8>| {
        write(dir, name, bytes);
        csvs.push(name);
    };
    add("empty.csv", Vec::new());
    add("header_only.csv", format!("{}\n", lines[0]).into_bytes());
    add(
        "one_row.csv",
        format!("{}\n{}\n", lines[0], lines[1]).into_bytes(),
    );
    add("hex_cell.csv", edit(16, 1, "0x1").into_bytes());
    add("inf_cell.csv", edit(16, 2, "inf").into_bytes());
    add("nan_word.csv", edit(16, 3, "nanx").into_bytes());
    add("newline_cell.csv", edit(16, 1, "\"1.5\n2\"").into_bytes());
    add("ragged_long.csv", {
        let mut l = lines.clone();
        l[200].push_str(",5,6");
        (l.join("\n") + "\n").into_bytes()
    });
    add("ragged_short.csv", {
        let mut l = lines.clone();
        l[100] = "1,2".into();
        (l.join("\n") + "\n").into_bytes()
    });
    add("open_quote.csv", edit(20, 0, "\"1").into_bytes());
    add("latin1.csv", {
        let mut b = edit(30, 1, "X").into_bytes();
        let at = b.iter().position(|&c| c == b'X').unwrap();
        b[at] = 0xfc;
        b
    });
    add("latin1_header.csv", {
        let mut b = text.clone().into_bytes();
        b[2] = 0xe9;
        b
    });
    add("no_labels.csv", {
        let rows: Vec<String> = lines[1..]
            .iter()
            .map(|l| format!(",{}", l.split_once(',').unwrap().1))
            .collect();
        format!("{}\n{}\n", lines[0], rows.join("\n")).into_bytes()
    });
    add("huge_value.csv", edit(5, 4, "1e200").into_bytes());
    add(
        "long_label.csv",
        edit(3, 0, &"x".repeat(1 << 20)).into_bytes(),
    );
    add("dup_header.csv", {
        let mut l = lines.clone();
        l[0] = l[0].replacen("mean_texture", "mean_radius", 1);
        (l.join("\n") + "\n").into_bytes()
    });
    add(
        "binary_junk.csv",
        (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
    );
    add("nul_bytes.csv", vec![0u8; 2048]);
    add("only_label.csv", {
        let rows: Vec<String> = lines
            .iter()
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect();
        (rows.join("\n") + "\n").into_bytes()
    });
    add("utf16.csv", {
        let mut b = vec![0xff, 0xfe];
        for u in text.encode_utf16().take(4000) {
            b.extend(u.to_le_bytes());
        }
        b
    });
    csvs
}

/// The plan files and their expected field.
fn plans(dir: &Path) -> Vec<(&'static str, &'static str)> {
    let o = crate::common::fedhe(&[
        "plan",
        "init",
        "--data",
        sample("breast_cancer_wdbc.csv").to_str().unwrap(),
        "--out",
        dir.join("good.toml").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let good = std::fs::read_to_string(dir.join("good.toml")).unwrap();
    let mut out = Vec::new();
    let mut add = |name: &'static str, field: &'static str, text: String| {
        write(dir, name, text);
        out.push((name, field));
    };
    add("p_empty.toml", "p_empty.toml", String::new());
    add("p_garbage.toml", "p_garbage.toml", "{{{ not toml".into());
    add(
        "p_missing_class.toml",
        "preprocessing.missing",
        good.replace("    \"?\",\n", "    \"?\",\n    \"0\",\n"),
    );
    add(
        "p_epsilon.toml",
        "target_epsilon",
        good.clone() + "\n[privacy.dp]\nclip = 1.0\ntarget_epsilon = 1e-9\n",
    );
    add(
        "p_clip.toml",
        "clip",
        good.clone() + "\n[privacy.dp]\nclip = -1.0\nnoise_multiplier = 1.0\n",
    );
    add(
        "p_rounds.toml",
        "training.rounds",
        good.replace("rounds = 20\n", "rounds = 0\n"),
    );
    add(
        "p_lr.toml",
        "training.lr",
        good.replace("lr = 0.005\n", "lr = -1.0\n"),
    );
    add(
        "p_batch.toml",
        "training.batch_size",
        good.replace("batch_size = 32\n", "batch_size = 0\n"),
    );
    add(
        "p_share.toml",
        "training.validation_share",
        good.replace("validation_share = 0.2\n", "validation_share = 0.95\n"),
    );
    add(
        "p_min1.toml",
        "quorum.min_clients",
        good.replace("min_clients = 3", "min_clients = 1"),
    );
    add(
        "p_min0.toml",
        "quorum.min_clients",
        good.replace("min_clients = 3", "min_clients = 0"),
    );
    add(
        "p_min2_masked.toml",
        "quorum.min_clients",
        good.replace("min_clients = 3", "min_clients = 2"),
    );
    add(
        "p_deadline.toml",
        "quorum.round_deadline_secs",
        good.replace("round_deadline_secs = 600", "round_deadline_secs = 0"),
    );
    add(
        "p_roster.toml",
        "quorum.roster",
        good.replace("roster = []", "roster = [\"a b\"]"),
    );
    add(
        "p_roster_short.toml",
        "quorum.roster",
        good.replace("roster = []", "roster = [\"a\", \"b\"]"),
    );
    add(
        "p_no_label.toml",
        "columns.label",
        good.replace("label = \"diagnosis\"", "label = \"\""),
    );
    add(
        "p_same_classes.toml",
        "task.negative",
        good.replace("negative = \"0\"", "negative = \"1\""),
    );
    add(
        "p_dup_column.toml",
        "columns",
        good.replace("    \"mean_texture\",\n", "    \"mean_radius\",\n"),
    );
    add(
        "p_hidden_linear.toml",
        "model.hidden",
        good.replace("kind = \"linear\"", "kind = \"linear\"\nhidden = [4]"),
    );
    add(
        "p_unknown_field.toml",
        "p_unknown_field.toml",
        good.replace("[model]", "[model]\ncolour = \"red\""),
    );
    add(
        "p_format.toml",
        "p_format.toml",
        good.replace("format = \"fedhe-plan\"", "format = \"other\""),
    );
    add(
        "p_version.toml",
        "p_version.toml",
        good.replace("version = 1", "version = 99"),
    );
    add(
        "p_momentum.toml",
        "training.momentum",
        good.replace("lr = 0.005\n", "lr = 0.005\nmomentum = 1.5\n"),
    );
    add(
        "p_big_quorum.toml",
        "quorum.min_clients",
        good.replace("min_clients = 3", "min_clients = 100000"),
    );
    out
}

fn cases(dir: &Path) -> Vec<Case> {
    let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let csvs = inputs(dir);
    let plans = plans(dir);
    // Keys and models.
    let o = crate::common::fedhe(&["keygen", "--out", &d("keys")]);
    assert!(o.status.success());
    let public = std::fs::read(dir.join("keys/public.key")).unwrap();
    write(dir, "k_empty.key", b"");
    write(dir, "k_garbage.key", b"garbage garbage garbage");
    write(dir, "k_truncated.key", &public[..public.len() / 2]);
    write(dir, "k_flipped.key", {
        let mut p = public.clone();
        p[10] ^= 0x40;
        p
    });
    std::fs::create_dir(dir.join("k_dir.key")).unwrap();
    for k in [
        "k_empty.key",
        "k_garbage.key",
        "k_truncated.key",
        "k_flipped.key",
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(k), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let model = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/wdbc_linear.json"),
    )
    .unwrap();
    write(dir, "good.json", &model);
    write(dir, "m_empty.json", b"");
    write(dir, "m_garbage.json", b"{ not json");
    write(dir, "m_truncated.json", &model[..model.len() / 2]);
    write(dir, "m_array.json", b"[1, 2, 3]");
    write(
        dir,
        "m_version.json",
        model.replacen("\"version\": 2", "\"version\": 99", 1),
    );
    write(
        dir,
        "m_nan.json",
        b"{\"format\": \"fedhe-model\", \"version\": 2, \"params\": [NaN]}",
    );
    std::fs::create_dir(dir.join("m_dir.json")).unwrap();
    let keys: Vec<&str> = vec![
        "k_empty.key",
        "k_garbage.key",
        "k_truncated.key",
        "k_flipped.key",
        "k_dir.key",
        "missing.key",
    ];
    let models = [
        "m_empty.json",
        "m_garbage.json",
        "m_truncated.json",
        "m_array.json",
        "m_version.json",
        "m_nan.json",
        "m_dir.json",
        "missing.json",
    ];

    let mut out = Vec::new();
    let out_json = d("out/model.json");
    std::fs::create_dir(dir.join("out")).unwrap();
    // Bad CSVs through every command that reads one.
    for f in &csvs {
        let p = d(f);
        let needle = if *f == "empty.csv"
            || *f == "binary_junk.csv"
            || *f == "nul_bytes.csv"
            || *f == "utf16.csv"
            || *f == "only_label.csv"
            || *f == "dup_header.csv"
        {
            f.to_string()
        } else {
            format!("{f}:")
        };
        let loose = [f.to_string()];
        let strict = [needle.clone()];
        let n = |located: bool| -> Vec<String> {
            if located {
                strict.to_vec()
            } else {
                loose.to_vec()
            }
        };
        for (cmd, args, located) in [
            (
                "train",
                vec!["train", "--data", &p, "--out", &out_json],
                true,
            ),
            (
                "plan init",
                vec!["plan", "init", "--data", &p, "--out", &d("out/plan.toml")],
                true,
            ),
            (
                "split",
                vec!["split", "--data", &p, "--out", &d("out/split")],
                true,
            ),
            (
                "plan check",
                vec!["plan", "check", &d("good.toml"), "--data", &p],
                false,
            ),
            (
                "predict",
                vec![
                    "predict",
                    "--model",
                    &d("good.json"),
                    "--data",
                    &p,
                    "--out",
                    &d("out/pred.csv"),
                ],
                false,
            ),
            (
                "simulate",
                vec![
                    "simulate",
                    "--data",
                    &p,
                    "--rounds",
                    "1",
                    "--plain",
                    "--model-out",
                    &out_json,
                ],
                true,
            ),
        ] {
            // Scoring one row, or rows without labels, is no error; nor is
            // a plan site of one row.
            let fine = matches!(
                (cmd, *f),
                ("predict", "one_row.csv" | "no_labels.csv") | ("plan check", "one_row.csv")
            );
            if fine {
                continue;
            }
            let needles = n(located);
            let refs: Vec<&str> = needles.iter().map(String::as_str).collect();
            out.push(case(&format!("{cmd} {f}"), &args, &refs));
        }
    }
    // Bad plans: check, serve, and check with data.
    for (f, field) in &plans {
        let p = d(f);
        let key = d("keys/public.key");
        out.push(case(
            &format!("plan check {f}"),
            &["plan", "check", &p, "--public-key", &key],
            &[field],
        ));
        out.push(case(
            &format!("serve {f}"),
            &[
                "serve",
                "--public-key",
                &key,
                "--plan",
                &p,
                "--bind",
                "127.0.0.1:0",
                "--state-dir",
                &d("out/state"),
            ],
            &[field],
        ));
    }
    // Bad keys: client, serve, plan check.
    for k in &keys {
        let p = d(k);
        out.push(case(
            &format!("client --key {k}"),
            &[
                "client",
                "--server",
                "http://127.0.0.1:9",
                "--key",
                &p,
                "--data",
                &d("good.csv"),
                "--name",
                "a",
                "--wait",
                "1",
            ],
            &[k],
        ));
        out.push(case(
            &format!("serve --public-key {k}"),
            &[
                "serve",
                "--public-key",
                &p,
                "--bind",
                "127.0.0.1:0",
                "--state-dir",
                &d("out/state"),
            ],
            &[k],
        ));
        out.push(case(
            &format!("plan check --public-key {k}"),
            &["plan", "check", &d("good.toml"), "--public-key", &p],
            &[k],
        ));
    }
    out.push(case(
        "client --key /dev/zero",
        &[
            "client",
            "--server",
            "http://127.0.0.1:9",
            "--key",
            "/dev/zero",
            "--data",
            &d("good.csv"),
            "--name",
            "a",
        ],
        &["/dev/zero"],
    ));
    out.push(case(
        "client public key as secret",
        &[
            "client",
            "--server",
            "http://127.0.0.1:9",
            "--key",
            &d("keys/public.key"),
            "--data",
            &d("good.csv"),
            "--name",
            "a",
        ],
        &["public.key"],
    ));
    // Bad models: predict and export.
    for m in &models {
        let p = d(m);
        out.push(case(
            &format!("predict --model {m}"),
            &["predict", "--model", &p, "--data", &d("good.csv")],
            &[m],
        ));
        out.push(case(
            &format!("export --model {m}"),
            &["export", "--model", &p, "--onnx", &d("out/m.onnx")],
            &[m],
        ));
    }
    out.push(case(
        "predict --model /dev/zero",
        &["predict", "--model", "/dev/zero", "--data", &d("good.csv")],
        &["/dev/zero", "268435456"],
    ));
    out.push(case(
        "plan check /dev/zero",
        &["plan", "check", "/dev/zero"],
        &["/dev/zero"],
    ));
    out.push(case(
        "predict --model a plan",
        &[
            "predict",
            "--model",
            &d("good.toml"),
            "--data",
            &d("good.csv"),
        ],
        &["good.toml"],
    ));
    out.push(case(
        "predict --model a CSV",
        &[
            "predict",
            "--model",
            &d("good.csv"),
            "--data",
            &d("good.csv"),
        ],
        &["good.csv"],
    ));
    // Bad flags.
    let g = d("good.csv");
    for (name, args, needle) in [
        (
            "split --test-fraction 2",
            vec![
                "split",
                "--data",
                &g,
                "--out",
                &d("out/s"),
                "--test-fraction",
                "2",
            ],
            "test",
        ),
        (
            "split --test-fraction -0.1",
            vec![
                "split",
                "--data",
                &g,
                "--out",
                &d("out/s"),
                "--test-fraction=-0.1",
            ],
            "test",
        ),
        (
            "split --clients 0",
            vec![
                "split",
                "--data",
                &g,
                "--out",
                &d("out/s"),
                "--clients",
                "0",
            ],
            "client",
        ),
        (
            "split --split dirichlet:-1",
            vec![
                "split",
                "--data",
                &g,
                "--out",
                &d("out/s"),
                "--split",
                "dirichlet:-1",
            ],
            "dirichlet",
        ),
        (
            "split --split bogus",
            vec![
                "split",
                "--data",
                &g,
                "--out",
                &d("out/s"),
                "--split",
                "bogus",
            ],
            "--split",
        ),
        (
            "train --delimiter xx",
            vec![
                "train",
                "--data",
                &g,
                "--out",
                &out_json,
                "--delimiter",
                "xx",
            ],
            "--delimiter",
        ),
        (
            "train --task foo",
            vec!["train", "--data", &g, "--out", &out_json, "--task", "foo"],
            "--task",
        ),
        (
            "train --label nosuch",
            vec![
                "train", "--data", &g, "--out", &out_json, "--label", "nosuch",
            ],
            "nosuch",
        ),
        (
            "train --positive 7",
            vec!["train", "--data", &g, "--out", &out_json, "--positive", "7"],
            "7",
        ),
        (
            "train --lr -1",
            vec!["train", "--data", &g, "--out", &out_json, "--lr=-1"],
            "learning rate",
        ),
        (
            "train --epochs 0",
            vec!["train", "--data", &g, "--out", &out_json, "--epochs", "0"],
            "epoch",
        ),
        (
            "train --batch-size 0",
            vec![
                "train",
                "--data",
                &g,
                "--out",
                &out_json,
                "--batch-size",
                "0",
            ],
            "batch",
        ),
        (
            "train --hidden 0",
            vec![
                "train", "--data", &g, "--out", &out_json, "--model", "mlp", "--hidden", "0",
            ],
            "hidden",
        ),
        (
            "train --ignore nosuch",
            vec![
                "train", "--data", &g, "--out", &out_json, "--ignore", "nosuch",
            ],
            "nosuch",
        ),
        (
            "train --dp-clip 0",
            vec![
                "train",
                "--data",
                &g,
                "--out",
                &out_json,
                "--dp-clip",
                "0",
                "--dp-noise",
                "1",
            ],
            "clip",
        ),
        (
            "train --dp-epsilon 1e-9",
            vec![
                "train",
                "--data",
                &g,
                "--out",
                &out_json,
                "--dp-clip",
                "1",
                "--dp-epsilon",
                "1e-9",
            ],
            "ε",
        ),
        (
            "plan init --min-clients 0",
            vec![
                "plan",
                "init",
                "--data",
                &g,
                "--out",
                &d("out/p.toml"),
                "--min-clients",
                "0",
            ],
            "min_clients",
        ),
        (
            "plan init --roster bad id",
            vec![
                "plan",
                "init",
                "--data",
                &g,
                "--out",
                &d("out/p.toml"),
                "--roster",
                "a b",
            ],
            "roster",
        ),
        (
            "plan init --rounds 0",
            vec![
                "plan",
                "init",
                "--data",
                &g,
                "--out",
                &d("out/p.toml"),
                "--rounds",
                "0",
            ],
            "rounds",
        ),
        (
            "plan init --validation-share 1",
            vec![
                "plan",
                "init",
                "--data",
                &g,
                "--out",
                &d("out/p.toml"),
                "--validation-share",
                "1",
            ],
            "validation_share",
        ),
        (
            "keygen --max-clients 0",
            vec!["keygen", "--out", &d("out/k0"), "--max-clients", "0"],
            "clients",
        ),
        (
            "keygen --max-clients 10^9",
            vec![
                "keygen",
                "--out",
                &d("out/k1"),
                "--max-clients",
                "1000000000",
            ],
            "clients",
        ),
        (
            "keygen --scale-bits 99",
            vec!["keygen", "--out", &d("out/k2"), "--scale-bits", "99"],
            "scale",
        ),
        (
            "keygen over existing",
            vec!["keygen", "--out", &d("keys")],
            "exists",
        ),
        (
            "serve --min-clients 65",
            vec![
                "serve",
                "--public-key",
                &d("keys/public.key"),
                "--bind",
                "127.0.0.1:0",
                "--state-dir",
                &d("out/state"),
                "--min-clients",
                "65",
            ],
            "--min-clients",
        ),
        (
            "client --server no scheme",
            vec![
                "client",
                "--server",
                "127.0.0.1:9",
                "--key",
                &d("keys/secret.key"),
                "--data",
                &g,
                "--name",
                "a",
                "--wait",
                "1",
            ],
            "127.0.0.1:9",
        ),
        (
            "client --server closed port",
            vec![
                "client",
                "--server",
                "http://127.0.0.1:9",
                "--key",
                &d("keys/secret.key"),
                "--data",
                &g,
                "--name",
                "a",
                "--wait",
                "1",
            ],
            "127.0.0.1:9",
        ),
        (
            "client --ca-cert missing",
            vec![
                "client",
                "--server",
                "https://127.0.0.1:9",
                "--key",
                &d("keys/secret.key"),
                "--data",
                &g,
                "--name",
                "a",
                "--ca-cert",
                &d("nosuch.pem"),
            ],
            "nosuch.pem",
        ),
        (
            "serve --tls-cert garbage",
            vec![
                "serve",
                "--public-key",
                &d("keys/public.key"),
                "--bind",
                "127.0.0.1:0",
                "--state-dir",
                &d("out/state"),
                "--tls-cert",
                &g,
                "--tls-key",
                &g,
            ],
            "good.csv",
        ),
        (
            "simulate --clients 0",
            vec![
                "simulate",
                "--data",
                &g,
                "--clients",
                "0",
                "--plain",
                "--rounds",
                "1",
            ],
            "client",
        ),
        (
            "simulate --rounds 0",
            vec!["simulate", "--data", &g, "--rounds", "0", "--plain"],
            "round",
        ),
        (
            "dp epsilon --sample-rate 2",
            vec![
                "dp",
                "epsilon",
                "--sample-rate",
                "2",
                "--noise-multiplier",
                "1",
                "--steps",
                "10",
            ],
            "sample rate",
        ),
        (
            "dp noise --epsilon 1e-9",
            vec![
                "dp",
                "noise",
                "--sample-rate",
                "0.1",
                "--steps",
                "1000",
                "--epsilon",
                "1e-9",
            ],
            "ε = 0.000000001",
        ),
        ("no such command", vec!["frobnicate"], "frobnicate"),
    ] {
        out.push(case(name, &args, &[needle]));
    }
    // Paths: outputs over inputs (every spelling), missing inputs, folders.
    let link = dir.join("link.csv");
    std::os::unix::fs::symlink(dir.join("good.csv"), &link).unwrap();
    std::fs::hard_link(dir.join("good.csv"), dir.join("hard.csv")).unwrap();
    std::fs::hard_link(dir.join("good.json"), dir.join("hard.json")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::create_dir(dir.join("sp")).unwrap();
    std::fs::copy(dir.join("good.csv"), dir.join("sp/train.csv")).unwrap();
    let (l, h, dotted) = (d("link.csv"), d("hard.csv"), d("sub/../good.csv"));
    for (name, args) in [
        (
            "train --out the data",
            vec!["train", "--data", &g, "--out", &g],
        ),
        (
            "train --out a symlink to the data",
            vec!["train", "--data", &g, "--out", &l],
        ),
        (
            "train --out a hard link to the data",
            vec!["train", "--data", &g, "--out", &h],
        ),
        (
            "train --out the data via ..",
            vec!["train", "--data", &g, "--out", &dotted],
        ),
        (
            "predict --out the data",
            vec![
                "predict",
                "--model",
                &d("good.json"),
                "--data",
                &g,
                "--out",
                &l,
            ],
        ),
        (
            "predict --out the model",
            vec![
                "predict",
                "--model",
                &d("good.json"),
                "--data",
                &g,
                "--out",
                &d("hard.json"),
            ],
        ),
        (
            "plan init --force --out the data",
            vec!["plan", "init", "--data", &g, "--force", "--out", &h],
        ),
        (
            "export --onnx the model",
            vec![
                "export",
                "--model",
                &d("good.json"),
                "--onnx",
                &d("hard.json"),
            ],
        ),
        (
            "simulate --model-out the data",
            vec![
                "simulate",
                "--data",
                &g,
                "--plain",
                "--rounds",
                "1",
                "--model-out",
                &l,
            ],
        ),
        (
            "simulate --metrics-out the data",
            vec![
                "simulate",
                "--data",
                &g,
                "--plain",
                "--rounds",
                "1",
                "--metrics-out",
                &dotted,
            ],
        ),
        (
            "simulate --metrics-out --test",
            vec![
                "simulate",
                "--client-data",
                &g,
                &h,
                "--test",
                &l,
                "--plain",
                "--rounds",
                "1",
                "--metrics-out",
                &g,
            ],
        ),
        (
            "simulate two outputs one file",
            vec![
                "simulate",
                "--data",
                &g,
                "--plain",
                "--rounds",
                "1",
                "--metrics-out",
                &d("out/x"),
                "--model-out",
                &d("out/x"),
            ],
        ),
        (
            "client --model-out the data",
            vec![
                "client",
                "--server",
                "http://127.0.0.1:9",
                "--key",
                &d("keys/secret.key"),
                "--data",
                &g,
                "--name",
                "a",
                "--model-out",
                &h,
            ],
        ),
        (
            "client --state the data",
            vec![
                "client",
                "--server",
                "http://127.0.0.1:9",
                "--key",
                &d("keys/secret.key"),
                "--data",
                &g,
                "--name",
                "a",
                "--state",
                &l,
            ],
        ),
        (
            "client --state the key",
            vec![
                "client",
                "--server",
                "http://127.0.0.1:9",
                "--key",
                &d("keys/secret.key"),
                "--data",
                &g,
                "--name",
                "a",
                "--state",
                &d("keys/secret.key"),
            ],
        ),
        (
            "split --out the data's folder",
            vec![
                "split",
                "--data",
                &d("sp/../sp/train.csv"),
                "--out",
                &d("sp"),
                "--force",
            ],
        ),
    ] {
        out.push(case(name, &args, &["is the same file as"]));
    }
    for (name, args, needle) in [
        (
            "train missing data",
            vec!["train", "--data", &d("nosuch.csv"), "--out", &out_json],
            "nosuch.csv",
        ),
        (
            "train data is a folder",
            vec!["train", "--data", &d("sub"), "--out", &out_json],
            "sub",
        ),
        (
            "train --out in a missing folder",
            vec!["train", "--data", &g, "--out", &d("nosuch/m.json")],
            "nosuch",
        ),
        (
            "train --out a folder",
            vec!["train", "--data", &g, "--out", &d("sub")],
            "sub",
        ),
        (
            "plan init --out exists",
            vec!["plan", "init", "--data", &g, "--out", &d("good.toml")],
            "good.toml",
        ),
        (
            "plan check missing",
            vec!["plan", "check", &d("nosuch.toml")],
            "nosuch.toml",
        ),
        (
            "plan check a folder",
            vec!["plan", "check", &d("sub")],
            "sub",
        ),
        (
            "predict missing data",
            vec![
                "predict",
                "--model",
                &d("good.json"),
                "--data",
                &d("nosuch.csv"),
            ],
            "nosuch.csv",
        ),
        (
            "export --onnx in a missing folder",
            vec![
                "export",
                "--model",
                &d("good.json"),
                "--onnx",
                &d("nosuch/m.onnx"),
            ],
            "nosuch",
        ),
        (
            "serve --plan missing",
            vec![
                "serve",
                "--public-key",
                &d("keys/public.key"),
                "--plan",
                &d("nosuch.toml"),
                "--bind",
                "127.0.0.1:0",
                "--state-dir",
                &d("out/state"),
            ],
            "nosuch.toml",
        ),
        (
            "serve --state-dir a file",
            vec![
                "serve",
                "--public-key",
                &d("keys/public.key"),
                "--bind",
                "127.0.0.1:0",
                "--state-dir",
                &g,
            ],
            "good.csv",
        ),
    ] {
        out.push(case(name, &args, &[needle]));
    }
    out.extend(class_token_cases(&g, &out_json, &d));
    out
}

/// A `--missing` token that is a class of the label (WDBC's 0 and 1), for
/// every command that reads a CSV without a plan: refused by name and
/// place (before, the class's rows were skipped as unlabelled).
fn class_token_cases(g: &str, out_json: &str, d: &dyn Fn(&str) -> String) -> Vec<Case> {
    let mut out = Vec::new();
    for (missing, line) in [
        ("1", "good.csv:2,"),
        ("NA,0", "good.csv:21,"),
        ("?,1", "good.csv:2,"),
    ] {
        let token = missing.rsplit(',').next().unwrap_or(missing);
        let class = format!("\"{token}\" is a class of label column \"diagnosis\"");
        let out_plan = d("out/plan.toml");
        let out_split = d("out/split");
        for (cmd, args) in [
            ("train", vec!["train", "--data", g, "--out", out_json]),
            (
                "plan init",
                vec!["plan", "init", "--data", g, "--out", &out_plan],
            ),
            ("split", vec!["split", "--data", g, "--out", &out_split]),
            (
                "simulate",
                vec!["simulate", "--data", g, "--rounds", "1", "--plain"],
            ),
        ] {
            let mut args = args;
            args.extend(["--missing", missing]);
            out.push(case(
                &format!("{cmd} --missing {missing} (a class)"),
                &args,
                &[line, &class, "--missing"],
            ));
        }
    }
    out
}

fn trunc(s: &str) -> String {
    let s = s.replace('\n', " / ");
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn run(c: &Case, dir: &Path) -> (Verdict, String) {
    let before = snapshot(dir);
    let start = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args(&c.args)
        .current_dir(dir)
        .output()
        .expect("run fedhe");
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let after = snapshot(dir);
    let changed: Vec<String> = before
        .iter()
        .filter(|(p, b)| after.get(*p) != Some(*b))
        .map(|(p, _)| p.display().to_string())
        .collect();
    let written: Vec<String> = after
        .keys()
        .filter(|p| !before.contains_key(*p))
        .map(|p| p.display().to_string())
        .collect();
    // A refused command may leave only its (empty) state folder's lock.
    let written: Vec<String> = written
        .into_iter()
        .filter(|p| !p.contains("/out/state"))
        .collect();
    let first = err.lines().next().unwrap_or_default().to_string();
    let why = if o.status.code().is_none() || err.contains("panicked at") {
        Some(format!("crash: {:?} {first}", o.status))
    } else if o.status.success() {
        Some("accepted (exit 0)".to_string())
    } else if !changed.is_empty() {
        Some(format!("changed {}", changed.join(", ")))
    } else if !written.is_empty() {
        Some(format!("wrote {}", written.join(", ")))
    } else {
        None
    };
    if let Some(why) = why {
        return (Verdict::Damaging, why);
    }
    let located = c.needles.iter().all(|n| err.contains(n.as_str()));
    // The binary's errors and clap's both start with "error:".
    let clear = first.starts_with("error:");
    if located && clear && took < Duration::from_secs(30) {
        (Verdict::Handled, String::new())
    } else {
        (
            Verdict::Unclear,
            format!(
                "{} in {:.1} s: {}",
                if located {
                    "notes first"
                } else {
                    "not located"
                },
                took.as_secs_f64(),
                trunc(&err)
            ),
        )
    }
}

#[test]
fn audit_sweep_of_bad_inputs_has_no_damaging_case() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases = cases(dir);
    assert!(cases.len() >= 150, "{} cases", cases.len());
    let mut counts: BTreeMap<Verdict, usize> = BTreeMap::new();
    let mut named = Vec::new();
    for c in &cases {
        let (v, why) = run(c, dir);
        *counts.entry(v).or_default() += 1;
        if v != Verdict::Handled {
            named.push(format!("{v:?}: {}: {why}", c.name));
        }
    }
    println!("| result | count |\n|---|---|");
    for (v, n) in &counts {
        println!("| {v:?} | {n} |");
    }
    println!("| total | {} |", cases.len());
    for n in &named {
        println!("{n}");
    }
    let damaging: Vec<&String> = named.iter().filter(|n| n.starts_with("Damaging")).collect();
    assert!(damaging.is_empty(), "damaging cases:\n{}", named.join("\n"));
}
