//! The desktop app driven headless with egui_kittest (no GPU, no window):
//! real clicks, real drops, real background jobs.

#![cfg(feature = "gui")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use fedhe_app::app::{DemoDataset, FedheApp, Settings, Tab};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn harness(initial_csv: Option<PathBuf>) -> Harness<'static, FedheApp> {
    harness_with(test_settings(), initial_csv)
}

/// Default settings, with the embedded aggregator's state folder in a
/// fresh temporary folder (never the real app data folder).
fn test_settings() -> Settings {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("aggregator");
    // Kept for the test's life (a restarted app reopens it).
    std::mem::forget(dir);
    Settings {
        server_state_dir: state.display().to_string(),
        ..Settings::default()
    }
}

fn harness_with(settings: Settings, initial_csv: Option<PathBuf>) -> Harness<'static, FedheApp> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, 860.0))
        .build_eframe(move |_cc| FedheApp::with_settings(settings, initial_csv))
}

/// Steps frames (with real time passing) until `done` holds.
fn wait_until(
    h: &mut Harness<'static, FedheApp>,
    what: &str,
    timeout: Duration,
    done: impl Fn(&FedheApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    // A few more frames so the UI shows the final state.
    h.run_steps(3);
}

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_file(h: &mut Harness<'static, FedheApp>, path: &Path) {
    h.input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.to_path_buf())));
    h.step();
}

fn label_of(h: &Harness<'static, FedheApp>, contains: &str) -> String {
    let node = h.get_by_label_contains(contains);
    // A Label keeps its text in the AccessKit value; other widgets in the label.
    node.value()
        .or_else(|| node.accesskit_node().label())
        .unwrap_or_default()
}

/// Clicks the first widget labelled `label`, scrolled into view first
/// when the tab shows it only in part (a click lands where the widget is
/// drawn: not under the notes bar).
fn click(h: &mut Harness<'static, FedheApp>, label: &str) {
    let node = |h: &Harness<'static, FedheApp>| -> egui::Rect {
        h.get_all_by_label(label)
            .next()
            .unwrap_or_else(|| panic!("no widget labelled {label:?}"))
            .rect()
    };
    let shown = h.state().tab_rect.is_none_or(|t| t.contains_rect(node(h)));
    if !shown {
        h.get_all_by_label(label).next().unwrap().scroll_to_me();
        h.run_steps(3);
    }
    h.get_all_by_label(label).next().unwrap().click();
    h.step();
    // A note the click added is in the notes bar from the next frame.
    h.step();
}

#[test]
fn tabs_switch_and_every_input_is_named() {
    let mut h = harness(None);
    h.run();
    // First run opens on the demo.
    assert_eq!(h.state().settings.tab, Tab::Demo);
    h.get_by_label("Encrypted federated learning in one click");

    click(&mut h, "Client");
    h.run();
    assert_eq!(h.state().settings.tab, Tab::Client);
    h.get_by_label("1. Data");

    click(&mut h, "Server");
    h.run();
    assert_eq!(h.state().settings.tab, Tab::Server);
    h.get_by_label("▶ Start aggregator");

    click(&mut h, "Predict");
    h.run();
    assert_eq!(h.state().settings.tab, Tab::Predict);
    h.get_by_label("Use latest global model");

    click(&mut h, "▶ Run demo");
    h.run();
    assert_eq!(h.state().settings.tab, Tab::Demo);
}

#[test]
fn demo_three_clients_three_rounds_converges() {
    let mut h = harness(None);
    h.run();
    h.get_by_label("Rounds").set_value_accesskit(3.0);
    h.run();
    assert_eq!(h.state().settings.demo.rounds, 3);
    assert_eq!(h.state().settings.demo.clients, 3);

    click(&mut h, "▶ Start demo");
    assert!(h.state().demo.is_running());
    wait_until(&mut h, "the demo", Duration::from_secs(180), |a| {
        !a.demo.is_running()
    });
    h.run();
    assert!(
        h.state().demo.notes.is_empty(),
        "demo reported: {:?}",
        h.state().demo.notes
    );
    assert_eq!(h.state().demo.encrypted.len(), 3);
    assert_eq!(h.state().demo.plain.len(), 3);

    // The final accuracy, as the window shows it.
    let text = label_of(&h, "Final test accuracy");
    let shown: f64 = text
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {text:?}"));
    let outcome = h.state().demo.outcome.as_ref().expect("outcome");
    assert!((shown - outcome.test.score()).abs() < 1e-3, "{text}");
    assert!(shown > 0.9, "final accuracy {shown}");
    assert_eq!(h.state().demo.encrypted[2].contributors, 3);
    assert!(h.state().demo.encrypted[2].bytes_up > 0);

    // And can be saved.
    h.get_by_label("Save model…");
    // The global model is now offered to Predict, with the held-out rows.
    click(&mut h, "Open in Predict »");
    wait_until(&mut h, "scoring", Duration::from_secs(30), |a| {
        a.predict.scored.is_some()
    });
    h.run();
    let acc = h
        .state()
        .predict
        .scored
        .as_ref()
        .unwrap()
        .scored
        .evaluation
        .clone()
        .unwrap()
        .score();
    assert!((acc - outcome_accuracy(&h)).abs() < 1e-9);
}

#[test]
fn demo_on_the_wine_data_with_an_mlp_reports_multiclass_figures() {
    let mut h = harness(None);
    h.run();
    // Pick the data set and the model in the demo's own controls.
    use egui::accesskit::Role;
    h.get_by_role_and_label(Role::ComboBox, "Data").click();
    h.run();
    click(&mut h, "wine (3 classes, 178 rows)");
    h.get_by_role_and_label(Role::ComboBox, "Model").click();
    h.run();
    click(&mut h, "MLP");
    h.get_by_label("Rounds").set_value_accesskit(4.0);
    h.run();
    let demo = &h.state().settings.demo;
    assert_eq!(demo.dataset, fedhe_app::app::DemoDataset::Wine);
    assert_eq!(
        demo.architecture,
        fedhe::model::Architecture::Mlp { hidden: vec![32] }
    );
    click(&mut h, "▶ Start demo");
    wait_until(&mut h, "the demo", Duration::from_secs(180), |a| {
        !a.demo.is_running()
    });
    h.run();
    assert!(
        h.state().demo.notes.is_empty(),
        "{:?}",
        h.state().demo.notes
    );
    let outcome = h.state().demo.outcome.clone().expect("outcome");
    let fedhe::model::Evaluation::Multiclass(m) = &outcome.test else {
        panic!("{:?}", outcome.test)
    };
    assert!(m.accuracy > 0.85, "{m:?}");
    assert_eq!(
        outcome.model.architecture,
        fedhe::model::Architecture::Mlp { hidden: vec![32] }
    );
    label_of(&h, "Final test accuracy (encrypted)");
    h.get_by_label_contains("macro F1");
    h.get_by_label("Global accuracy per round");
    // Predict shows the per-class figures and the heat map of this model.
    click(&mut h, "Open in Predict »");
    wait_until(&mut h, "scoring", Duration::from_secs(30), |a| {
        a.predict.scored.is_some() && !a.predict.is_busy()
    });
    h.run();
    h.get_by_label("Per class");
    h.get_by_label("Macro F1");
}

fn outcome_accuracy(h: &Harness<'static, FedheApp>) -> f64 {
    h.state().demo.outcome.as_ref().unwrap().test.score()
}

/// "Open in Predict »" scores the demo model's own held-out rows, whatever
/// file was in the Test CSV field (before: the stale WDBC test.csv, and
/// "no column named 'island'" for the penguins model).
#[test]
fn open_in_predict_scores_the_demos_own_held_out_rows() {
    let mut h = harness(None);
    h.state_mut().settings.demo.dataset = DemoDataset::Penguins;
    h.state_mut().settings.demo.rounds = 2;
    h.state_mut().settings.test_csv_path = repo("sample_data/test.csv").display().to_string();
    h.run();
    click(&mut h, "▶ Start demo");
    wait_until(&mut h, "the demo", Duration::from_secs(180), |a| {
        !a.demo.is_running()
    });
    h.run();
    click(&mut h, "Open in Predict »");
    wait_until(&mut h, "scoring", Duration::from_secs(30), |a| {
        a.predict.scored.is_some() || a.predict.notes.iter().any(|n| n.is_error())
    });
    h.run();
    let app = h.state();
    assert!(
        !app.predict.notes.iter().any(|n| n.is_error()),
        "{:?}",
        app.predict.notes
    );
    let scored = app.predict.scored.as_ref().unwrap();
    assert_eq!(Some(&scored.path), app.shared.demo_test_csv.as_ref());
    let acc = scored.scored.evaluation.clone().unwrap().score();
    assert!((acc - outcome_accuracy(&h)).abs() < 1e-9);
    // Another data set picked: the penguins results go from the demo.
    h.state_mut().settings.demo.dataset = DemoDataset::Wine;
    click(&mut h, "▶ Run demo");
    h.run();
    assert!(h.state().demo.outcome.is_none() && h.state().demo.encrypted.is_empty());
}

/// Opening another CSV forgets what depended on the old one: its label
/// (before: "sex", chosen on penguins, stayed on for the next file) and the
/// federation joined with its rows.
#[test]
fn switching_the_csv_clears_the_old_label() {
    let mut h = harness(None);
    h.run();
    drop_file(&mut h, &repo("sample_data/penguins.csv"));
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.is_some() && !a.client.is_loading_csv()
    });
    // The user picks "sex" as the label (as the label box does).
    h.state_mut().settings.label = Some("sex".into());
    let path = repo("sample_data/penguins.csv");
    let ctx = h.ctx.clone();
    let app = h.state_mut();
    app.client.open_csv(&ctx, &path, &mut app.settings);
    wait_until(&mut h, "the reload", Duration::from_secs(30), |a| {
        !a.client.is_loading_csv()
    });
    let ds = h.state().client.csv.as_ref().unwrap().dataset().unwrap();
    assert_eq!(ds.label.column(), "sex");
    h.state_mut().client.registered = Some("Registered as a: 114 rows of penguins.csv".into());
    // Another file that also has a "sex" column, and a "diagnosis" label.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.csv");
    let rows: String = (0..40)
        .map(|i| format!("{},{},{}\n", ["B", "M"][i % 2], i % 3 % 2, i as f64 * 0.5))
        .collect();
    std::fs::write(&other, format!("diagnosis,sex,x1\n{rows}")).unwrap();
    drop_file(&mut h, &other);
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        !a.client.is_loading_csv()
            && a.client
                .csv
                .as_ref()
                .is_some_and(|c| c.path.ends_with("other.csv"))
    });
    h.run();
    let app = h.state();
    assert!(
        !app.client.notes.iter().any(|n| n.is_error()),
        "{:?}",
        app.client.notes
    );
    let ds = app.client.csv.as_ref().unwrap().dataset().expect("loads");
    assert_eq!(ds.label.column(), "diagnosis");
    assert_eq!(app.settings.label.as_deref(), Some("diagnosis"));
    assert!(app.client.registered.is_none() && app.client.federation.is_none());
}

/// "Use sample data" loads this site's share of the training rows, never
/// the test rows (before: the whole WDBC file, 569 rows).
#[test]
fn use_sample_data_loads_this_sites_share() {
    let mut h = harness(None);
    h.state_mut().settings.client_id = "client-b".into();
    h.run();
    click(&mut h, "Client");
    click(&mut h, "Use sample data");
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.as_ref().is_some_and(|c| c.dataset().is_some())
    });
    let csv = h.state().client.csv.as_ref().unwrap();
    assert!(csv.path.ends_with("client_2.csv"), "{}", csv.path.display());
    assert_eq!(csv.total_rows, 114);
    h.get_by_label_contains("the bundled sample data (client_2.csv)");
}

/// Help: the guides, the zoom shortcuts (which work) and the theme.
#[test]
fn the_help_menu_has_the_docs_zoom_and_theme() {
    let mut h = harness(None);
    h.run();
    click(&mut h, "Help");
    h.run();
    h.get_by_label_contains("The app, tab by tab");
    h.get_by_label_contains("Ctrl + and Ctrl − zoom");
    let before = h.ctx.zoom_factor();
    h.get_by_label_contains("Zoom In").click();
    h.run();
    assert!(h.ctx.zoom_factor() > before);
}

/// A first-run checklist says what each site needs, ticking what is done.
#[test]
fn the_checklists_say_what_goes_where() {
    let mut h = harness(None);
    h.run();
    click(&mut h, "Client");
    h.get_by_label_contains("The federation's secret.key: the same file at every site");
    click(&mut h, "Server");
    h.get_by_label_contains("never secret.key");
}

/// At 1024×700 a long status line wraps inside the window (before: it ran
/// off the right edge).
#[test]
fn at_1024_by_700_a_long_status_line_wraps() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1024.0, 700.0))
        .build_eframe(move |_cc| FedheApp::with_settings(test_settings(), None));
    h.run();
    click(&mut h, "Client");
    h.state_mut().client.run.status = "training round 2: 1 of 3 submitted, waiting for \
        hospital-b and hospital-c (closes with at least 2 at its deadline, in 119 s); \
        aggregator unreachable (connection refused), retrying in 8 s"
        .into();
    h.run();
    let line = h.get_by_label_contains("waiting for hospital-b");
    assert!(line.rect().max.x <= 1024.0, "{:?}", line.rect());
}

#[test]
fn dropped_csv_is_previewed_and_loaded() {
    let mut h = harness(None);
    h.run();
    drop_file(&mut h, &repo("sample_data/breast_cancer_wdbc.csv"));
    assert_eq!(h.state().settings.tab, Tab::Client);
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.is_some() && !a.client.is_loading_csv()
    });
    h.run();
    let csv = h.state().client.csv.as_ref().unwrap();
    assert_eq!(csv.total_rows, 569);
    let ds = csv.dataset().expect("loads");
    assert_eq!(ds.feature_names.len(), 30);
    assert_eq!(ds.label.column(), "diagnosis");
    h.get_by_label_contains("569 rows, 30 features");
    // The preview shows the header.
    h.get_by_label("mean_radius");
}

#[test]
fn csv_from_the_command_line_uses_the_same_path() {
    let mut h = harness(Some(repo("sample_data/test.csv")));
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.is_some() && !a.client.is_loading_csv()
    });
    assert_eq!(h.state().settings.tab, Tab::Client);
    assert!(h.state().client.csv.as_ref().unwrap().dataset().is_some());
}

#[test]
fn the_preview_shows_column_kinds_and_missing_cells() {
    let mut h = harness(None);
    h.run();
    drop_file(&mut h, &repo("sample_data/penguins.csv"));
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.is_some() && !a.client.is_loading_csv()
    });
    h.run();
    // No column has a usual label name: pick `species` in the tab.
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Label column")
        .click();
    h.run();
    // The header cell and the list's entry: the entry is the later one.
    let items: Vec<_> = h.query_all_by_label("species").collect();
    assert_eq!(items.len(), 2);
    items[1].click();
    wait_until(&mut h, "the reload", Duration::from_secs(30), |a| {
        a.client.csv.as_ref().is_some_and(|c| c.dataset().is_some()) && !a.client.is_loading_csv()
    });
    h.run();
    // Under the header: island, bill_length_mm, ..., sex.
    // island and year have 3 categories; four measurements miss 2 cells.
    assert_eq!(h.query_all_by_label("categorical (3)").count(), 2);
    assert_eq!(h.query_all_by_label("numeric, 2 missing").count(), 4);
    h.get_by_label("categorical (2), 11 missing");
    h.get_by_label("label");
    // The loader's notes say why.
    assert!(
        h.state()
            .client
            .notes
            .iter()
            // Debug escapes the quotes around the column's name.
            .any(|n| format!("{n:?}").contains("column \\\"sex\\\" categorical")),
        "{:?}",
        h.state().client.notes
    );
}

#[test]
fn malformed_csv_shows_an_error_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    // A value that would overflow the statistics (text is a category now).
    std::fs::write(&bad, "diagnosis,a,b\n1,2.5,3\n0,1e308,4\n1,1,1\n").unwrap();
    let mut h = harness(None);
    h.run();
    drop_file(&mut h, &bad);
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.is_some() && !a.client.is_loading_csv()
    });
    h.run();
    let text = label_of(&h, "This CSV cannot be used");
    assert!(text.contains("1e308 is out of range"), "{text}");
    assert!(text.contains("bad.csv:3"), "{text}");
    // The federated start stays disabled; nothing panicked.
    assert!(h.state().client.csv.as_ref().unwrap().dataset().is_none());

    // A file that does not exist also ends up in words in the window.
    drop_file(&mut h, &dir.path().join("missing.csv"));
    wait_until(&mut h, "the error", Duration::from_secs(30), |a| {
        !a.client.is_loading_csv() && a.client.notes.iter().any(|n| n.is_error())
    });
    h.get_by_label_contains("missing.csv: it does not exist");
}

/// Trains and saves a model with the library, as `fedhe train` would.
fn saved_model(dir: &Path) -> (PathBuf, fedhe::model::Metrics) {
    let (path, e) = trained(
        dir,
        "sample_data/train.csv",
        "sample_data/test.csv",
        None,
        &fedhe::model::Architecture::Linear,
    );
    (path, e.binary().cloned().unwrap())
}

/// Trains `train` with `fedhe::session::train_local`, saves the model and
/// scores `test` with it.
fn trained(
    dir: &Path,
    train: &str,
    test: &str,
    label: Option<&str>,
    arch: &fedhe::model::Architecture,
) -> (PathBuf, fedhe::model::Evaluation) {
    use fedhe::data::{CsvOptions, TargetSpec, load_csv};
    use fedhe::model::TrainConfig;
    let opts = CsvOptions {
        label: label.map(str::to_string),
        target: TargetSpec::Auto,
        ..CsvOptions::default()
    };
    let ds = load_csv(&repo(train), &opts).unwrap().dataset;
    let cfg = TrainConfig {
        epochs: 20,
        ..TrainConfig::default()
    };
    let settings = fedhe::session::LocalTraining {
        architecture: arch.clone(),
        train: cfg,
        validation_share: 0.0,
        missing: Default::default(),
        missing_tokens: fedhe::data::default_missing_tokens(),
        dp: None,
    };
    let run = fedhe::session::train_local(&ds, &settings, vec![train.into()], &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let path = dir.join("model.json");
    run.model.save(&path).unwrap();
    let scored = fedhe::model::score_csv(&run.model, &repo(test)).unwrap();
    (path, scored.evaluation.unwrap())
}

/// Loads a model and a test file into the Predict tab by dropping them.
fn predict_with(model: &Path, test: &Path) -> Harness<'static, FedheApp> {
    let mut h = harness(None);
    h.run();
    click(&mut h, "Predict");
    drop_file(&mut h, model);
    wait_until(&mut h, "the model", Duration::from_secs(30), |a| {
        a.predict.model.is_some() && !a.predict.is_busy()
    });
    drop_file(&mut h, test);
    wait_until(&mut h, "scoring", Duration::from_secs(30), |a| {
        a.predict.scored.is_some() && !a.predict.is_busy()
    });
    h.run();
    h
}

#[test]
fn predict_shows_a_multiclass_model_with_its_confusion_heat_map() {
    let dir = tempfile::tempdir().unwrap();
    let (model, expected) = trained(
        dir.path(),
        "sample_data/wine.csv",
        "sample_data/wine.csv",
        Some("cultivar"),
        &fedhe::model::Architecture::Linear,
    );
    let fedhe::model::Evaluation::Multiclass(m) = &expected else {
        panic!("{expected:?}")
    };
    let h = predict_with(&model, &repo("sample_data/wine.csv"));
    h.get_by_label("Macro F1");
    h.get_by_label("Per class");
    h.get_by_label("Confusion matrix");
    let macro_f1 = format!("{:.3}", m.macro_f1);
    assert!(
        h.query_all_by_label(&macro_f1).next().is_some(),
        "{macro_f1}"
    );
    let shown = &h.state().predict.scored.as_ref().unwrap().scored;
    assert_eq!(shown.evaluation.as_ref(), Some(&expected));
    assert!(
        h.query_by_label("ROC curve").is_none(),
        "no ROC for 3 classes"
    );
    // The per-class rows name the classes.
    h.get_by_label("cultivar_2");
}

#[test]
fn predict_shows_a_regression_model_with_scatter_and_residuals() {
    let dir = tempfile::tempdir().unwrap();
    let (model, expected) = trained(
        dir.path(),
        "sample_data/diabetes.csv",
        "sample_data/diabetes.csv",
        Some("progression"),
        &fedhe::model::Architecture::Mlp { hidden: vec![8] },
    );
    let fedhe::model::Evaluation::Regression(m) = &expected else {
        panic!("{expected:?}")
    };
    let h = predict_with(&model, &repo("sample_data/diabetes.csv"));
    h.get_by_label("R²");
    h.get_by_label("RMSE");
    h.get_by_label("Predicted vs actual");
    h.get_by_label("Residuals (actual − predicted)");
    h.get_by_label(&format!("{:.3}", m.r2));
    h.get_by_label(&format!("{:.4}", m.rmse));
    assert!(h.query_by_label("Accuracy").is_none());
}

#[test]
fn predict_shows_the_metrics_of_a_saved_model() {
    let dir = tempfile::tempdir().unwrap();
    let (model, expected) = saved_model(dir.path());
    let mut h = harness(None);
    h.run();
    click(&mut h, "Predict");
    drop_file(&mut h, &model);
    wait_until(&mut h, "the model", Duration::from_secs(30), |a| {
        a.predict.model.is_some() && !a.predict.is_busy()
    });
    drop_file(&mut h, &repo("sample_data/test.csv"));
    wait_until(&mut h, "scoring", Duration::from_secs(30), |a| {
        a.predict.scored.is_some() && !a.predict.is_busy()
    });
    h.run();
    h.get_by_label("Accuracy");
    h.get_by_label("Confusion matrix");
    h.get_by_label("ROC curve");
    h.get_by_label(&format!("{:.3}", expected.accuracy));
    h.get_by_label(&format!("{:.4}", expected.log_loss));
    let m = h
        .state()
        .predict
        .scored
        .as_ref()
        .unwrap()
        .scored
        .evaluation
        .clone()
        .unwrap();
    let m = m.binary().unwrap();
    assert_eq!(m.confusion, expected.confusion);
    assert_eq!(m.rows, expected.rows);
}

/// Trains gradient-boosted trees on `train` with the library (what
/// `fedhe train --model gbdt` runs) and saves the model file.
fn trained_gbdt(dir: &Path, train: &str, label: Option<&str>) -> PathBuf {
    use fedhe::data::{CsvOptions, TargetSpec, load_csv};
    let opts = CsvOptions {
        label: label.map(str::to_string),
        target: TargetSpec::Auto,
        ..CsvOptions::default()
    };
    let ds = load_csv(&repo(train), &opts).unwrap().dataset;
    let settings = fedhe::model::GbdtSettings {
        trees: 40,
        depth: 3,
        bins: 32,
        learning_rate: 0.3,
        ..Default::default()
    };
    let fit = fedhe::model::gbdt::fit_dataset(
        &ds,
        &settings,
        fedhe::data::default_missing_tokens(),
        vec![train.into()],
        &mut |_, _| std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    let path = dir.join("gbdt.json");
    fit.model.save(&path).unwrap();
    path
}

#[test]
fn predict_scores_a_gbdt_model_and_charts_its_feature_importance() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_gbdt(dir.path(), "sample_data/train.csv", None);
    let file = fedhe::model::ModelFile::load(&model).unwrap();
    // The library's one scoring path gives the figures the tab must show.
    let expected = fedhe::model::score_csv(&file, &repo("sample_data/test.csv"))
        .unwrap()
        .evaluation
        .unwrap();
    let expected = expected.binary().unwrap();
    let h = predict_with(&model, &repo("sample_data/test.csv"));
    h.get_by_label("Accuracy");
    h.get_by_label(&format!("{:.3}", expected.accuracy));
    h.get_by_label(&format!("{:.4}", expected.log_loss));
    h.get_by_label("ROC curve");
    // The model's description: its kind, trees and settings.
    label_of(&h, "gradient-boosted trees from");
    let trees = label_of(&h, "40 trees, ");
    assert!(
        trees.contains("depth ≤ 3, 32 bins, learning rate 0.3"),
        "{trees}"
    );
    // 30 features: the chart shows the 20 with the most gain (the trees
    // split on more than 20 of them).
    let split_on = file.ensemble.as_ref().unwrap().importance();
    let split_on = split_on.iter().filter(|v| **v > 0.0).count();
    assert!(split_on > 20, "{split_on}");
    let title = label_of(&h, "Feature importance (gain)");
    assert!(title.contains("top 20 of 30 features"), "{title}");
    let shown = &h.state().predict.scored.as_ref().unwrap().scored;
    assert_eq!(shown.evaluation.as_ref().unwrap().binary(), Some(expected));
}

#[test]
fn the_demo_grows_gradient_boosted_trees_and_predict_opens_them() {
    let mut h = harness(None);
    h.state_mut().settings.demo.clients = 2;
    h.run();
    // The model picker offers the trees; picking them shows their settings.
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Model")
        .click();
    h.run();
    click(&mut h, "gradient-boosted trees");
    h.run();
    assert_eq!(
        h.state().settings.demo.architecture,
        fedhe::model::Architecture::Gbdt
    );
    h.get_by_label("Trees").set_value_accesskit(4.0);
    h.get_by_label("Depth").set_value_accesskit(2.0);
    h.run();
    assert!(h.query_by_label("Epochs per round").is_none());
    click(&mut h, "▶ Start demo");
    assert!(h.state().demo.is_running());
    wait_until(&mut h, "the demo", Duration::from_secs(240), |a| {
        !a.demo.is_running()
    });
    h.run();
    assert!(
        h.state().demo.notes.is_empty(),
        "demo reported: {:?}",
        h.state().demo.notes
    );
    assert_eq!(h.state().demo.trees, Some((4, 4)));
    h.get_by_label_contains("tree 4 of 4");
    let outcome = h.state().demo.outcome.clone().expect("outcome");
    assert_eq!(outcome.trees, Some(4));
    let e = outcome.model.ensemble.as_ref().expect("the trees");
    assert_eq!(e.trees.len(), 4);
    let text = label_of(&h, "Final test accuracy");
    assert!(
        text.contains(&format!("{:.3}", outcome.test.score())),
        "{text}"
    );
    assert!(outcome.test.score() > 0.85, "{text}");
    label_of(&h, "Done: 2 clients × 4 trees");
    // Predict opens the trees on the demo's held-out rows.
    click(&mut h, "Open in Predict »");
    wait_until(&mut h, "scoring", Duration::from_secs(30), |a| {
        a.predict.scored.is_some() || a.predict.notes.iter().any(|n| n.is_error())
    });
    h.run();
    let scored = h.state().predict.scored.as_ref().expect("scored");
    let acc = scored.scored.evaluation.clone().unwrap().score();
    assert!((acc - outcome.test.score()).abs() < 1e-9, "{acc}");
    label_of(&h, "4 trees, ");
    label_of(&h, "Feature importance (gain)");
}

#[test]
fn the_client_tab_grows_trees_locally_and_federated() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready_with(dir.path(), |s| {
        s.architecture = fedhe::model::Architecture::Gbdt;
        s.gbdt.trees = 3;
        s.gbdt.depth = 2;
    });
    // The plan proposed carries the Client tab's trees.
    let plan = h.state().server.plan.clone().expect("a plan").0;
    let g = plan.gbdt().expect("a gbdt plan");
    assert_eq!((g.trees, g.depth), (3, 2));
    h.get_by_label("Trees");
    h.get_by_label("Depth");
    assert!(h.query_by_label("Epochs").is_none());
    click(&mut h, "🔒 Start federated training");
    wait_until(&mut h, "training", Duration::from_secs(180), |a| {
        !a.client.is_training()
    });
    h.run();
    let app = h.state();
    assert!(
        !app.client.notes.iter().any(|n| n.is_error()),
        "{:?}",
        app.client.notes
    );
    let model = app.client.model.as_ref().expect("the trees").clone();
    assert_eq!(model.ensemble.as_ref().unwrap().trees.len(), 3);
    assert!(
        app.client.run.status.contains("Tree 3 of 3 grown"),
        "{}",
        app.client.run.status
    );
    // Locally, the same settings grow the same number of trees.
    click(&mut h, "Train locally (plaintext)");
    wait_until(&mut h, "local trees", Duration::from_secs(60), |a| {
        !a.client.is_training()
    });
    h.run();
    let app = h.state();
    let local = app.client.model.as_ref().expect("the local trees");
    assert_eq!(local.ensemble.as_ref().unwrap().trees.len(), 3);
    assert_eq!(local.provenance.kind, fedhe::model::CENTRALIZED);
    assert!(
        app.client.run.status.contains("Done: 3 of 3 trees"),
        "{}",
        app.client.run.status
    );
}

#[test]
fn a_linear_model_has_no_importance_chart() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = saved_model(dir.path());
    let h = predict_with(&model, &repo("sample_data/test.csv"));
    h.get_by_label("Accuracy");
    assert!(
        h.query_by_label_contains("Feature importance").is_none(),
        "only trees have gain importance"
    );
}

#[test]
fn a_secret_key_is_refused_by_the_server_tab() {
    let dir = tempfile::tempdir().unwrap();
    let key = fedhe::crypto::SecretKey::generate(fedhe::crypto::ParamSet::Standard64);
    let secret = dir.path().join("secret.key");
    key.save(&secret, false).unwrap();
    let mut h = harness(None);
    h.run();
    click(&mut h, "Server");
    drop_file(&mut h, &secret);
    h.run();
    assert!(h.state().server.public_key.is_none());
    let text = label_of(&h, "SECRET key file");
    assert!(text.contains("public"), "{text}");
}

/// Clicks through: sample data, a new key, the embedded aggregator with the
/// key's public part and a plan proposed from the CSV, joining. Returns the
/// harness on the Client tab.
fn one_client_ready(dir: &Path, auto_aggregate: bool) -> Harness<'static, FedheApp> {
    one_client_ready_with(dir, |s| s.auto_aggregate = auto_aggregate)
}

/// One client joined to the embedded aggregator, with `settings` changed
/// before the plan is proposed.
fn one_client_ready_with(
    dir: &Path,
    settings: impl FnOnce(&mut Settings),
) -> Harness<'static, FedheApp> {
    let mut h = harness(None);
    h.state_mut().settings.key_path = dir.join("secret.key").display().to_string();
    h.state_mut().settings.training.rounds = 2;
    h.state_mut().settings.training.sgd.epochs = 2;
    h.state_mut().settings.auto_aggregate = true;
    settings(&mut h.state_mut().settings);
    // One client: the plan must allow a sum of one update.
    h.state_mut().settings.quorum_min_clients = 1;
    h.state_mut().settings.allow_single_contributor = true;
    h.run();
    click(&mut h, "Client");
    click(&mut h, "Use sample data");
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.as_ref().is_some_and(|c| c.dataset().is_some())
    });
    click(&mut h, "Generate new key");
    wait_until(&mut h, "the key", Duration::from_secs(60), |a| {
        a.client.key.is_some()
    });
    assert!(dir.join("public.key").exists());

    click(&mut h, "Server");
    click(&mut h, "▶ Start aggregator");
    assert!(h.state().server.is_running());
    click(&mut h, "Use the Client tab's key");
    assert!(h.state().server.public_key.is_some());
    click(&mut h, "Propose from the Client tab's CSV");
    let plan = h.state().server.plan.clone().expect("a plan").0;
    assert_eq!(plan.training.rounds, 2);
    assert_eq!(plan.features(), 30);
    h.get_by_label_contains(&format!("📋 Plan {}", plan.fingerprint()));

    click(&mut h, "Client");
    click(&mut h, "Join federation");
    wait_until(&mut h, "registration", Duration::from_secs(30), |a| {
        a.client.registered.is_some() || a.client.notes.iter().any(|n| n.is_error())
    });
    assert!(
        h.state().client.registered.is_some(),
        "{:?}",
        h.state().client.notes
    );
    h
}

#[test]
fn one_client_trains_through_the_embedded_aggregator() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready(dir.path(), true);
    click(&mut h, "🔒 Start federated training");
    wait_until(&mut h, "training", Duration::from_secs(120), |a| {
        !a.client.is_training()
    });
    wait_until(&mut h, "the server history", Duration::from_secs(10), |a| {
        a.server.history.len() >= 3
    });
    // Plots, the round log and (below) the Server tab's tables: all named.
    h.run();
    click(&mut h, "Server");
    h.run();
    h.get_by_label("client-a");
    click(&mut h, "Client");
    let app = h.state();
    assert!(app.client.model.is_some(), "{:?}", app.client.notes);
    assert_eq!(app.client.run.rounds.len(), 2);
    let last = &app.client.run.rounds[1];
    assert_eq!(last.contributors, 1);
    assert!(last.validation_score.unwrap() > 0.85);
    assert!(last.cost.bytes_up > 0 && last.cost.bytes_down > 0);
    // The aggregator saw the standardization round and two training rounds.
    assert_eq!(app.server.history.len(), 3);
    // The client says the federation is complete, as the aggregator records it.
    assert!(
        app.client
            .run
            .status
            .contains("Federation complete: 2 of 2 rounds, 1 site"),
        "{}",
        app.client.run.status
    );
    assert_eq!(
        app.shared
            .latest_model
            .as_ref()
            .unwrap()
            .model
            .provenance
            .kind,
        "federated"
    );
    // The round log as CSV: a row per round, the figures the table shows.
    let target = dir.path().join("round_log.csv");
    save_as(&mut h, "Export round log (CSV)…", &target);
    h.get_by_label_contains("Round log written to");
    let log = std::fs::read_to_string(&target).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines[0],
        "round,contributors,accuracy,log_loss,bytes_sent,bytes_received,encrypt_ms,\
         aggregate_ms,decrypt_ms,epsilon"
    );
    assert_eq!(lines.len(), 3, "{log}");
    let last = &h.state().client.run.rounds[1];
    let cells: Vec<&str> = lines[2].split(',').collect();
    assert_eq!(cells[0], "2");
    assert_eq!(
        cells[2].parse::<f64>().unwrap(),
        last.validation_score.unwrap()
    );
    assert_eq!(cells[4].parse::<u64>().unwrap(), last.cost.bytes_up);
    h.state_mut().server.stop();
}

/// After the plan's last round the Server tab says the federation is
/// complete, and no round after it opens (before: "Round 4 (training round
/// 3): open, 0 of 1", waiting for mask keys with a deadline at 0 s).
#[test]
fn the_server_tab_shows_complete_after_the_last_round() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready(dir.path(), true);
    click(&mut h, "🔒 Start federated training");
    wait_until(&mut h, "training", Duration::from_secs(120), |a| {
        !a.client.is_training()
    });
    click(&mut h, "Server");
    wait_until(&mut h, "the completion", Duration::from_secs(10), |a| {
        a.server
            .snapshot
            .as_ref()
            .is_some_and(|s| s.status.complete.is_some())
    });
    h.run();
    h.get_by_label_contains("Federation complete: 2 of 2 rounds, 1 site (last round 3)");
    let st = &h.state().server.snapshot.as_ref().unwrap().status;
    assert_eq!(st.round, 3);
    assert!(h.query_by_label_contains("Round 4").is_none());
    assert!(
        h.query_by_label_contains("collecting the clients' mask keys")
            .is_none()
    );
    assert!(
        h.get_by_label("Aggregate now")
            .accesskit_node()
            .is_disabled()
    );
    h.state_mut().server.stop();
}

/// ■ Stop while the client rides out an aggregator that went away ends the
/// run within a second (before: "Stopping…", then "aggregator unreachable …
/// retrying in 8 s" until the round deadline plus a minute).
#[test]
fn stop_during_backoff_ends_the_job_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    // Rounds closed by hand: round 1 waits with this site's update in.
    let mut h = one_client_ready(dir.path(), false);
    click(&mut h, "🔒 Start federated training");
    wait_until(&mut h, "an update", Duration::from_secs(60), |a| {
        a.server
            .snapshot
            .as_ref()
            .is_some_and(|s| s.status.submitted.len() == 1)
    });
    h.state_mut().server.stop();
    wait_until(&mut h, "the retries", Duration::from_secs(30), |a| {
        a.client.run.status.contains("aggregator unreachable")
    });
    // Into the backoff.
    std::thread::sleep(Duration::from_millis(300));
    click(&mut h, "■ Stop");
    let t = Instant::now();
    wait_until(&mut h, "the stop", Duration::from_secs(5), |a| {
        !a.client.is_training()
    });
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(h.state().client.model.is_none());
}

/// A plan proposed with DP-SGD in the Server tab: the Client tab plots the
/// ε this site has spent, round by round, up to the plan's target.
#[test]
fn a_dp_plan_shows_the_privacy_spent_per_round() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready_with(dir.path(), |s| s.dp_epsilon = Some(5.0));
    let plan = h.state().server.plan.clone().unwrap().0;
    assert_eq!(plan.privacy.dp.unwrap().target_epsilon, Some(5.0));
    click(&mut h, "🔒 Start federated training");
    wait_until(&mut h, "training", Duration::from_secs(120), |a| {
        !a.client.is_training()
    });
    h.run();
    let rounds = &h.state().client.run.rounds;
    assert_eq!(rounds.len(), 2);
    let eps: Vec<f64> = rounds.iter().map(|r| r.epsilon.unwrap()).collect();
    // σ is found to 0.1 %: the last round spends the target, or just under.
    assert!(eps[0] < eps[1] && eps[1] <= 5.0 && eps[1] > 4.9, "{eps:?}");
    h.get_by_label("Privacy spent (DP-SGD ε) per round");
    let model = h.state().client.model.clone().unwrap();
    assert_eq!(model.provenance.privacy.unwrap().epsilon, eps[1]);
    h.state_mut().server.stop();
}

#[test]
fn local_training_plots_the_loss_and_offers_the_model() {
    let mut h = harness(None);
    h.state_mut().settings.training.sgd.epochs = 7;
    h.run();
    click(&mut h, "Client");
    click(&mut h, "Use sample data");
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.as_ref().is_some_and(|c| c.dataset().is_some())
    });
    click(&mut h, "Train locally (plaintext)");
    wait_until(&mut h, "training", Duration::from_secs(60), |a| {
        !a.client.is_training()
    });
    h.run();
    let app = h.state();
    assert_eq!(app.client.run.epochs.len(), 7);
    let first = app.client.run.epochs[0].loss;
    let last = app.client.run.epochs[6].loss;
    assert!(last < first, "loss {first} -> {last}");
    assert_eq!(
        app.client.model.as_ref().unwrap().provenance.kind,
        "centralized"
    );
    h.get_by_label_contains("validation accuracy");
    h.get_by_label("Save model…");
}

#[test]
fn the_demo_can_be_stopped() {
    let mut h = harness(None);
    h.state_mut().settings.demo.rounds = 500;
    h.state_mut().settings.demo.overlay_plain = false;
    h.run();
    click(&mut h, "▶ Start demo");
    wait_until(&mut h, "a first round", Duration::from_secs(60), |a| {
        !a.demo.encrypted.is_empty() || !a.demo.is_running()
    });
    click(&mut h, "■ Stop demo");
    wait_until(&mut h, "the stop", Duration::from_secs(60), |a| {
        !a.demo.is_running()
    });
    assert!(h.state().demo.encrypted.len() < 500);
    assert!(h.state().demo.outcome.is_none());
    h.get_by_label_contains("The demo was stopped");
}

#[derive(Default)]
struct MemoryStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

/// ■ Stop aggregator with a site registered asks first and says what
/// happens; "Keep running" keeps it (before: stopped at once, silently).
#[test]
fn stopping_the_aggregator_with_registered_sites_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready(dir.path(), true);
    click(&mut h, "Server");
    h.run();
    click(&mut h, "■ Stop aggregator");
    h.run();
    assert!(h.state().server.is_running(), "stopped without asking");
    h.get_by_label("Stop the aggregator?");
    h.get_by_label_contains("1 site registered, round 1 open");
    click(&mut h, "Keep running");
    h.run();
    assert!(h.state().server.is_running());
    assert!(h.query_by_label("Stop the aggregator?").is_none());
    // Asked again, and this time stopped.
    click(&mut h, "■ Stop aggregator");
    h.run();
    click(&mut h, "Stop aggregator");
    h.run();
    assert!(!h.state().server.is_running());
    assert!(!h.state().settings.server_was_running);
}

/// The app reopened over the same data folder brings its aggregator back
/// on the same port with its key, plan and registered site, and says
/// where training was interrupted (before: a new port, empty state, no
/// key, no plan).
#[test]
fn the_app_restarted_over_the_same_data_folder_resumes_the_federation() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready(dir.path(), true);
    click(&mut h, "Server");
    h.run();
    let url = h.state().server.url().unwrap();
    let plan = h.state().server.plan.clone().unwrap().0.fingerprint();
    let mut storage = MemoryStorage::default();
    eframe::App::save(h.state_mut(), &mut storage);
    // The window closes (its aggregator stops with it).
    eframe::App::on_exit(h.state_mut());
    drop(h);
    let back: Settings = eframe::get_value(&storage, eframe::APP_KEY).expect("saved");
    assert!(back.server_was_running);
    let mut h = harness_with(back, None);
    h.run_steps(2);
    click(&mut h, "Server");
    wait_until(&mut h, "the aggregator", Duration::from_secs(10), |a| {
        a.server.snapshot.is_some()
    });
    let app = h.state();
    assert_eq!(app.server.url().as_deref(), Some(url.as_str()));
    assert_eq!(app.server.plan.as_ref().unwrap().0.fingerprint(), plan);
    assert!(app.server.public_key.is_some());
    let st = &app.server.snapshot.as_ref().unwrap().status;
    assert_eq!(st.registered, 1);
    assert_eq!(app.server.interrupted, Some(1));
    h.get_by_label_contains("Training was interrupted in round 1");
    // The site joins again (its state file resumes it) and trains on.
    click(&mut h, "Client");
    click(&mut h, "Use sample data");
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.as_ref().is_some_and(|c| c.dataset().is_some())
    });
    let ctx = h.ctx.clone();
    let key = dir.path().join("secret.key");
    let app = h.state_mut();
    app.client.load_key(&ctx, &key);
    wait_until(&mut h, "the key", Duration::from_secs(30), |a| {
        a.client.key.is_some()
    });
    // The Server tab's Resume: join again and train on, in one step.
    click(&mut h, "Server");
    click(&mut h, "▶ Resume");
    wait_until(&mut h, "rejoining", Duration::from_secs(30), |a| {
        a.client.registered.is_some() || a.client.notes.iter().any(|n| n.is_error())
    });
    assert_eq!(h.state().settings.tab, Tab::Client);
    let joined = h.state().client.registered.clone().unwrap_or_default();
    assert!(
        joined.starts_with("Resumed as client-a"),
        "{joined} {:?}",
        h.state().client.notes
    );
    wait_until(&mut h, "training to start", Duration::from_secs(30), |a| {
        a.client.is_training() || a.client.model.is_some()
    });
    wait_until(&mut h, "training", Duration::from_secs(120), |a| {
        !a.client.is_training()
    });
    assert!(
        h.state().client.model.is_some(),
        "{:?}",
        h.state().client.notes
    );
    h.state_mut().server.stop();
}

#[test]
fn settings_survive_a_restart() {
    let mut h = harness(None);
    h.run();
    click(&mut h, "Server");
    h.state_mut().settings.training.rounds = 17;
    h.state_mut().settings.demo.clients = 5;
    h.state_mut().settings.last_csv = Some(repo("sample_data/test.csv"));
    let mut storage = MemoryStorage::default();
    eframe::App::save(h.state_mut(), &mut storage);
    let back: Settings = eframe::get_value(&storage, eframe::APP_KEY).expect("saved");
    assert_eq!(back, h.state().settings);
    assert_eq!(back.tab, Tab::Server);
    assert_eq!(back.training.rounds, 17);

    // The next session starts where this one stopped, with its CSV reopened.
    let mut h = harness_with(back, None);
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.is_some() && !a.client.is_loading_csv()
    });
    assert_eq!(h.state().settings.tab, Tab::Server);
    assert_eq!(h.state().client.csv.as_ref().unwrap().total_rows, 113);
}

#[test]
fn the_server_tab_watches_a_remote_aggregator() {
    use fedhe::server::{EmbeddedServer, ServerConfig};
    let key = fedhe::crypto::SecretKey::generate(fedhe::crypto::ParamSet::Standard64);
    let srv = EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        ..ServerConfig::default()
    })
    .unwrap();
    let mut api = fedhe::client::AggregatorClient::new(srv.url());
    api.register(&crate::common::registration(
        &key,
        srv.url(),
        None,
        "remote-1",
        "Remote clinic",
        Some(31),
    ))
    .unwrap();
    let mut h = harness(None);
    h.run();
    click(&mut h, "Server");
    click(&mut h, "Remote");
    h.state_mut().settings.remote_url = srv.url().to_string();
    h.state_mut().server.remote_token = srv.operator_token().to_string();
    click(&mut h, "Connect");
    wait_until(&mut h, "a snapshot", Duration::from_secs(30), |a| {
        a.server.snapshot.is_some()
    });
    // The watch spinner keeps repainting: check the names directly.
    h.run_steps(2);
    h.check_accessibility();
    let snap = h.state().server.snapshot.clone().unwrap();
    assert_eq!(snap.status.registered, 1);
    h.get_by_label("Remote clinic");
    click(&mut h, "Disconnect");
    srv.shutdown();
}

#[test]
fn aggregate_now_closes_each_round() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready(dir.path(), false);
    click(&mut h, "🔒 Start federated training");
    click(&mut h, "Server");
    // Standardization + 2 training rounds, each closed by hand.
    for round in 1..=3u64 {
        wait_until(&mut h, "an update", Duration::from_secs(60), |a| {
            a.server
                .snapshot
                .as_ref()
                .is_some_and(|s| s.status.round == round && s.status.submitted.len() == 1)
        });
        h.get_by_label("✔ submitted");
        click(&mut h, "Aggregate now");
    }
    wait_until(&mut h, "training", Duration::from_secs(60), |a| {
        !a.client.is_training()
    });
    assert!(
        h.state().client.model.is_some(),
        "{:?}",
        h.state().client.notes
    );
    assert_eq!(h.state().client.run.rounds.len(), 2);
    h.state_mut().server.stop();
}

/// Steps frames until a widget labelled `label` exists.
fn wait_for_label(h: &mut Harness<'static, FedheApp>, label: &str, timeout: Duration) {
    let start = Instant::now();
    while h.query_by_label(label).is_none() {
        assert!(start.elapsed() < timeout, "no widget labelled {label:?}");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn open_csv_falls_back_to_a_path_field_without_a_desktop_portal() {
    let mut h = harness(None);
    h.run();
    click(&mut h, "Client");
    click(&mut h, "Open CSV…");
    // No desktop portal here: the system dialog comes back empty at once,
    // and the in-app path field takes over, explaining why.
    wait_for_label(&mut h, "Path", Duration::from_secs(20));
    h.get_by_label_contains("did not open");
    // Complete the path from the working directory (the crate root).
    let root = format!(
        "{}{}",
        env!("CARGO_MANIFEST_DIR"),
        std::path::MAIN_SEPARATOR
    );
    let folder = format!("{root}sample_data{}", std::path::MAIN_SEPARATOR);
    h.run();
    click(&mut h, &folder);
    let file = format!("{folder}test.csv");
    wait_for_label(&mut h, &file, Duration::from_secs(5));
    h.run();
    click(&mut h, &file);
    h.run();
    assert_eq!(
        h.get_by_label("Path").value().as_deref(),
        Some(file.as_str())
    );
    click(&mut h, "Open");
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.as_ref().is_some_and(|c| c.dataset().is_some())
    });
    assert_eq!(h.state().client.csv.as_ref().unwrap().total_rows, 113);
    assert!(h.query_by_label("Path").is_none(), "the field closes");
}

#[test]
fn notes_are_an_overlay_that_never_moves_the_controls() {
    let mut h = harness(None);
    h.run();
    click(&mut h, "Client");
    h.run();
    let before = h.get_by_label("Open CSV…").rect();
    click(&mut h, "Use sample data");
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.as_ref().is_some_and(|c| c.dataset().is_some())
    });
    // The loader's note is shown...
    assert!(!h.state().client.notes.is_empty());
    h.get_by_label_contains("as the label");
    // ...and the button stayed where it was.
    assert_eq!(h.get_by_label("Open CSV…").rect(), before);
    // An error stays until dismissed; dismissing it removes it.
    h.state_mut()
        .client
        .notes
        .push(fedhe_app::app::Note::Error("test error".into()));
    h.run();
    assert_eq!(h.get_by_label("Open CSV…").rect(), before);
    h.get_by_label("test error");
    let n = h.state().client.notes.len();
    h.get_all_by_label("✖").last().unwrap().click();
    h.run();
    assert_eq!(h.state().client.notes.len(), n - 1);
    assert!(h.query_by_label("test error").is_none());
}

#[test]
fn the_server_tab_proposes_masked_plans_and_shows_the_mask_phase() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready_with(dir.path(), |_| {});
    let plan = h.state().server.plan.clone().unwrap().0;
    assert!(plan.privacy.masks, "masks are on by default");
    click(&mut h, "Server");
    h.get_by_label_contains("pairwise masks on (3 or more clients)");
    // Unticking the box proposes a plan without masks.
    click(&mut h, "Pairwise masks");
    assert!(!h.state().settings.masks);
    h.state_mut().server.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready_with(dir.path(), |s| s.masks = false);
    assert!(!h.state().server.plan.clone().unwrap().0.privacy.masks);
    click(&mut h, "Server");
    h.get_by_label_contains("no pairwise masks");
    // Masks with a quorum of two: refused in this tab's words.
    h.state_mut().settings.masks = true;
    h.state_mut().settings.quorum_min_clients = 2;
    h.state_mut().settings.allow_single_contributor = false;
    click(&mut h, "Propose from the Client tab's CSV");
    h.get_by_label_contains("set \u{201c}At least\u{201d} to 3");
    assert!(!h.state().server.plan.clone().unwrap().0.privacy.masks);
    h.state_mut().server.stop();
}

#[test]
fn predict_exports_the_model_to_onnx() {
    exports_to_onnx("tests/fixtures/onnx/penguins_species_mlp.json");
}

/// The trees too: one `TreeEnsembleRegressor` graph, the bytes `fedhe
/// export` writes.
#[test]
fn predict_exports_a_gbdt_model_to_onnx() {
    exports_to_onnx("tests/fixtures/onnx/penguins_species_gbdt.json");
}

/// Loads `model` (trained on penguins) in the Predict tab, exports it with
/// "Export ONNX…" through the in-app path field and compares the file with
/// what `fedhe export` writes (the graph onnxruntime was checked on).
fn exports_to_onnx(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model = repo(model);
    let mut h = predict_with(&model, &repo("sample_data/penguins.csv"));
    click(&mut h, "Export ONNX…");
    // No desktop portal here: the in-app path field takes the file name.
    wait_for_label(&mut h, "Path", Duration::from_secs(20));
    let target = dir.path().join("penguins.onnx");
    h.get_by_label("Path").focus();
    h.run();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run();
    h.get_by_label("Path").type_text(target.to_str().unwrap());
    h.run();
    click(&mut h, "Save");
    wait_until(&mut h, "the ONNX file", Duration::from_secs(30), |a| {
        !a.predict.is_busy() && target.exists()
    });
    h.run();
    h.get_by_label_contains("Model exported to ONNX");
    let expected = fedhe::export::to_onnx(&fedhe::model::ModelFile::load(&model).unwrap()).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), expected.bytes);
}

/// Saves through the in-app path field (no desktop portal here): presses
/// `button`, waits for the field, types `target` and presses Save.
fn save_as(h: &mut Harness<'static, FedheApp>, button: &str, target: &Path) {
    // Under load the system dialog's quick failure may come too late to
    // count as "no portal": press again.
    for _ in 0..4 {
        click(h, button);
        let start = Instant::now();
        while h.query_by_label("Path").is_none() && start.elapsed() < Duration::from_secs(5) {
            h.step();
            std::thread::sleep(Duration::from_millis(20));
        }
        if h.query_by_label("Path").is_some() {
            break;
        }
    }
    type_path(h, target);
}

/// Types `target` into the in-app path field and presses Save.
fn type_path(h: &mut Harness<'static, FedheApp>, target: &Path) {
    wait_for_label(h, "Path", Duration::from_secs(20));
    h.get_by_label("Path").focus();
    h.run();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run();
    h.get_by_label("Path").type_text(target.to_str().unwrap());
    h.run();
    click(h, "Save");
    h.run();
}

/// The screenshot the app asked the window for, within a few frames.
fn screenshot_asked(h: &mut Harness<'static, FedheApp>) -> egui::ScreenshotCallback {
    for _ in 0..10 {
        h.step();
        let asked = h
            .output()
            .viewport_output
            .values()
            .flat_map(|v| v.commands.iter())
            .find_map(|c| match c {
                egui::ViewportCommand::Screenshot(cb) => Some(cb.clone()),
                _ => None,
            });
        if let Some(cb) = asked {
            return cb;
        }
    }
    panic!("no screenshot asked for");
}

/// "Save plot as PNG…" asks the window for a screenshot and writes the
/// plot's part of it: here the screenshot is answered with an image whose
/// every pixel encodes its own position, so that the PNG's first pixel
/// and size say exactly which rect was cut out (the plot, above its
/// button).
#[test]
fn a_plot_is_saved_as_a_png_cut_from_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(None);
    h.state_mut().settings.training.sgd.epochs = 3;
    h.run();
    click(&mut h, "Client");
    click(&mut h, "Use sample data");
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.as_ref().is_some_and(|c| c.dataset().is_some())
    });
    click(&mut h, "Train locally (plaintext)");
    wait_until(&mut h, "training", Duration::from_secs(60), |a| {
        !a.client.is_training()
    });
    h.run();
    h.get_by_label("Save plot as PNG…").scroll_to_me();
    h.run_steps(3);
    let button = h.get_by_label("Save plot as PNG…").rect();
    h.get_by_label("Save plot as PNG…").click();
    let shot = screenshot_asked(&mut h);
    let (w, h_px) = (1280usize, 860usize);
    let pixels = (0..h_px)
        .flat_map(|y| {
            (0..w).map(move |x| {
                egui::Color32::from_rgb(
                    (x % 256) as u8,
                    (y % 256) as u8,
                    (x / 256 * 40 + y / 256) as u8,
                )
            })
        })
        .collect();
    shot.complete(Arc::new(egui::ColorImage::new([w, h_px], pixels)));
    let target = dir.path().join("loss.png");
    type_path(&mut h, &target);
    wait_until(&mut h, "the PNG", Duration::from_secs(10), |_| {
        target.exists()
    });
    h.get_by_label_contains("Plot saved to");
    let png = image::open(&target).unwrap().to_rgba8();
    let [r, g, b, _] = png.get_pixel(0, 0).0;
    let (x0, y0) = (
        usize::from(b) / 40 * 256 + usize::from(r),
        usize::from(b) % 40 * 256 + usize::from(g),
    );
    let (pw, ph) = (png.width() as f32, png.height() as f32);
    // The plot: as wide as the column it fills, 150 points high and more
    // with its axes, right above its own button.
    assert!(pw > 600.0 && (150.0..260.0).contains(&ph), "{pw}×{ph}");
    let bottom = y0 as f32 + ph;
    assert!(
        bottom <= button.min.y && button.min.y - bottom < 30.0,
        "{y0} {ph} {button:?}"
    );
    assert!((x0 as f32) <= button.min.x + 1.0, "{x0} {button:?}");
}

/// Predict's "Export metrics (CSV)…": one `metric,value` row per figure,
/// the same figures the tab shows.
#[test]
fn predict_exports_the_metrics_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo("tests/fixtures/onnx/penguins_species_mlp.json");
    let mut h = predict_with(&model, &repo("sample_data/penguins.csv"));
    let target = dir.path().join("metrics.csv");
    save_as(&mut h, "Export metrics (CSV)…", &target);
    h.get_by_label_contains("Metrics written to");
    let eval = h
        .state()
        .predict
        .scored
        .as_ref()
        .unwrap()
        .scored
        .evaluation
        .clone()
        .unwrap();
    let mut r = csv::Reader::from_path(&target).unwrap();
    assert_eq!(r.headers().unwrap(), vec!["metric", "value"]);
    let rows: Vec<(String, String)> = r
        .records()
        .map(|x| {
            let x = x.unwrap();
            (x[0].to_string(), x[1].to_string())
        })
        .collect();
    assert!(
        rows.contains(&("task".into(), "multiclass".into())),
        "{rows:?}"
    );
    let acc: f64 = rows
        .iter()
        .find(|(m, _)| m == "accuracy")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(acc, eval.score());
    assert!(
        rows.iter().any(|(m, _)| m.starts_with("confusion.")),
        "{rows:?}"
    );
}

/// Picking MLP in the demo adds its width on the first row: neither row
/// wraps and "Start demo" stays where it was (before: the one row wrapped
/// and the button moved down).
#[test]
fn picking_mlp_in_the_demo_moves_nothing() {
    use egui::accesskit::Role;
    for size in [egui::vec2(1280.0, 860.0), egui::vec2(1024.0, 700.0)] {
        let mut h = Harness::builder()
            .with_size(size)
            .build_eframe(move |_cc| FedheApp::with_settings(test_settings(), None));
        h.run();
        let start = h.get_by_label("▶ Start demo").rect();
        let clients = h.get_all_by_label("Clients").next().unwrap().rect();
        h.get_by_role_and_label(Role::ComboBox, "Model").click();
        h.run();
        click(&mut h, "MLP");
        h.run();
        assert!(h.get_all_by_label("Hidden units").next().is_some());
        assert_eq!(h.get_by_label("▶ Start demo").rect(), start, "at {size:?}");
        let now = h.get_all_by_label("Clients").next().unwrap().rect();
        assert_eq!(now, clients, "at {size:?}");
    }
}

/// At 1024×700 the notes never cover a control: they are in a bar below
/// the tab (before: an overlay over the tab's bottom-right corner).
#[test]
fn at_1024_by_700_the_notes_cover_no_control() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1024.0, 700.0))
        .build_eframe(move |_cc| FedheApp::with_settings(test_settings(), None));
    h.run();
    click(&mut h, "Client");
    click(&mut h, "Use sample data");
    wait_until(&mut h, "the CSV", Duration::from_secs(30), |a| {
        a.client.csv.as_ref().is_some_and(|c| c.dataset().is_some())
    });
    h.state_mut().client.notes.push(fedhe_app::app::Note::Error(
        "a long error that takes its room: ".repeat(6),
    ));
    h.run();
    let notes = h.state().notes_rect.expect("the notes bar");
    let tab = h.state().tab_rect.unwrap();
    assert!(notes.max.y <= 700.0 && notes.height() > 20.0, "{notes:?}");
    // Nothing of the tab is under the notes...
    assert!(!tab.intersects(notes.shrink(0.5)), "{tab:?} {notes:?}");
    // ...so no button the tab shows is covered.
    use egui::accesskit::Role;
    let mut seen = 0;
    for b in h.get_all_by_role(Role::Button) {
        let r = b.rect();
        let shown = r.intersect(tab);
        if shown.is_positive() && notes.contains_rect(r) {
            continue; // the note's own ✖
        }
        if shown.is_positive() {
            seen += 1;
            assert!(
                !shown.intersects(notes.shrink(0.5)),
                "{:?} at {r:?} under {notes:?}",
                b.accesskit_node().label()
            );
        }
    }
    assert!(seen > 3);
}

/// The embedded aggregator's operator token is kept in its state folder
/// (owner-only): the app restarted over the same folder has the same one
/// (before: a new token on every start).
#[test]
fn the_operator_token_survives_a_restart() {
    let settings = test_settings();
    let start = |settings: Settings| {
        let mut h = harness_with(settings, None);
        h.run();
        click(&mut h, "Server");
        click(&mut h, "▶ Start aggregator");
        assert!(h.state().server.is_running());
        h
    };
    let mut h = start(settings.clone());
    let first = h.state().server.operator_token().unwrap();
    h.state_mut().server.stop_for_exit();
    let mut h = start(settings.clone());
    assert_eq!(h.state().server.operator_token().unwrap(), first);
    let file = Path::new(&settings.server_state_dir).join("operator.token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    h.state_mut().server.stop_for_exit();
}

/// Steps frames until the Client tab's waiting line contains `text`.
fn wait_line(h: &mut Harness<'static, FedheApp>, text: &str, timeout: Duration) {
    let start = Instant::now();
    while !h
        .state()
        .client
        .waiting_line()
        .is_some_and(|l| l.contains(text))
    {
        assert!(
            start.elapsed() < timeout,
            "waiting line {:?}, status {:?}",
            h.state().client.waiting_line(),
            h.state().client.run.status
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(2);
}

/// While federated training waits, the Client tab says who is in, and a
/// second site joining changes the line at once (before: a snapshot of
/// the last notice).
#[test]
fn the_waiting_line_changes_when_a_site_joins() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = one_client_ready_with(dir.path(), |s| {
        s.auto_aggregate = false;
        s.masks = false;
    });
    click(&mut h, "🔒 Start federated training");
    wait_line(
        &mut h,
        "in: client-a (1 of 1 registered)",
        Duration::from_secs(60),
    );
    let url = h.state().server.url().unwrap();
    let key = h.state().client.key.clone().unwrap();
    let mut api = fedhe::client::AggregatorClient::new(&url);
    let plan_fp = h
        .state()
        .server
        .plan
        .clone()
        .unwrap()
        .0
        .fingerprint()
        .to_string();
    let mut join =
        crate::common::registration(&key, &url, Some(&plan_fp), "client-b", "Hospital B", None);
    join.plan = Some(plan_fp);
    api.register(&join).unwrap();
    wait_line(
        &mut h,
        "in: client-a (1 of 2 registered)",
        Duration::from_secs(5),
    );
    h.get_by_label_contains("in: client-a (1 of 2 registered)");
    click(&mut h, "■ Stop");
    wait_until(&mut h, "the stop", Duration::from_secs(10), |a| {
        !a.client.is_training()
    });
    assert!(h.query_by_label_contains("Aggregator, round").is_none());
    h.state_mut().server.stop_for_exit();
}
