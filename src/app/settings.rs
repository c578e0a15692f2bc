//! Settings that persist between runs (eframe persistence, RON in the
//! platform's app-data folder). Only choices live here, never data, keys or
//! tokens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The views of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tab {
    Demo,
    Client,
    Server,
    Predict,
}

/// How the demo deals the sample data to its virtual clients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DemoSplit {
    Iid,
    Dirichlet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoSettings {
    pub clients: usize,
    pub split: DemoSplit,
    /// Dirichlet concentration: small = very uneven clients.
    pub alpha: f64,
    pub rounds: u64,
    pub epochs: usize,
    /// Also run plaintext FedAvg and draw it for comparison.
    pub overlay_plain: bool,
    pub dataset: super::demo::DemoDataset,
    pub architecture: fedhe::model::Architecture,
    /// Gradient-boosted trees' settings (used when `architecture` is Gbdt).
    pub gbdt: fedhe::model::GbdtSettings,
}

/// The demo's trees: small enough to grow in seconds on the sample data.
pub fn demo_gbdt() -> fedhe::model::GbdtSettings {
    fedhe::model::GbdtSettings {
        trees: 20,
        depth: 3,
        bins: 64,
        learning_rate: 0.3,
        ..Default::default()
    }
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            clients: 3,
            split: DemoSplit::Iid,
            alpha: 0.5,
            rounds: 10,
            epochs: 3,
            overlay_plain: true,
            dataset: super::demo::DemoDataset::BreastCancer,
            architecture: fedhe::model::Architecture::Linear,
            gbdt: demo_gbdt(),
        }
    }
}

/// Everything remembered between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub tab: Tab,
    pub client_name: String,
    pub client_id: String,
    pub last_csv: Option<PathBuf>,
    pub label: Option<String>,
    /// The task of the label column; `None` decides from its values.
    pub task: Option<fedhe::data::TaskKind>,
    pub positive: Option<String>,
    pub ignored: Vec<String>,
    pub key_path: String,
    pub server_url: String,
    /// Connect the client to the aggregator of the Server tab.
    pub use_embedded: bool,
    /// The Client tab's training settings: the plan's own type, so that
    /// every setting a plan has can be set here (and is proposed in plans).
    #[serde(deserialize_with = "saved_training")]
    pub training: fedhe::plan::Training,
    /// The model trained locally and proposed in plans.
    pub architecture: fedhe::model::Architecture,
    /// Gradient-boosted trees' settings (`architecture` Gbdt), trained
    /// locally and proposed in plans.
    pub gbdt: fedhe::model::GbdtSettings,
    /// Port of the embedded aggregator; 0 lets the system choose (once:
    /// then it comes back on `server_last_port`).
    pub server_port: u16,
    /// The port the embedded aggregator had last.
    pub server_last_port: u16,
    /// The embedded aggregator's state folder (in the app's data folder);
    /// empty: in memory.
    pub server_state_dir: String,
    /// It ran when the app closed: the next start restarts it.
    pub server_was_running: bool,
    /// Listen on every interface instead of this machine only.
    pub server_public: bool,
    pub auto_aggregate: bool,
    /// Quorum of a plan proposed in the Server tab.
    pub quorum_min_clients: usize,
    pub allow_single_contributor: bool,
    /// DP-SGD in a proposed plan: the ε all of training may spend at each
    /// site (`None`: no DP).
    pub dp_epsilon: Option<f64>,
    /// Pairwise masks in a proposed plan (on by default).
    pub masks: bool,
    pub round_deadline_secs: u64,
    pub plan_path: String,
    pub public_key_path: String,
    pub remote_url: String,
    pub model_path: String,
    pub test_csv_path: String,
    pub demo: DemoSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // A first-time user lands on the demo.
            tab: Tab::Demo,
            client_name: "Hospital A".into(),
            client_id: "client-a".into(),
            last_csv: None,
            label: None,
            task: None,
            positive: None,
            ignored: Vec::new(),
            key_path: default_key_path().display().to_string(),
            server_url: "http://127.0.0.1:8080".into(),
            use_embedded: true,
            // The library's federation defaults (one place: `plan::Training`).
            training: fedhe::plan::Training::default(),
            architecture: fedhe::model::Architecture::Linear,
            gbdt: demo_gbdt(),
            server_port: 0,
            server_last_port: 0,
            server_state_dir: default_state_dir(),
            server_was_running: false,
            server_public: false,
            auto_aggregate: true,
            quorum_min_clients: fedhe::plan::Quorum::default().min_clients,
            allow_single_contributor: false,
            dp_epsilon: None,
            masks: true,
            round_deadline_secs: fedhe::plan::Quorum::default().round_deadline_secs,
            plan_path: String::new(),
            public_key_path: String::new(),
            remote_url: "http://127.0.0.1:8080".into(),
            model_path: String::new(),
            test_csv_path: String::new(),
            demo: DemoSettings::default(),
        }
    }
}

/// Reads the saved training settings. Versions before the app held the
/// plan's `Training` saved their own struct: the architecture inside (now
/// [`Settings::architecture`], back to its default) and, earlier, the
/// validation share as `validation_fraction`. The rest carries over instead
/// of the plan's refusal of unknown keys discarding every saved setting.
fn saved_training<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<fedhe::plan::Training, D::Error> {
    struct Saved;
    impl<'de> serde::de::Visitor<'de> for Saved {
        type Value = fedhe::plan::Training;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("training settings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut keys = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "architecture" => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                    "validation_fraction" => {
                        keys.insert("validation_share".into(), map.next_value()?);
                    }
                    _ => {
                        keys.insert(key, map.next_value()?);
                    }
                }
            }
            Ok(training_from(keys))
        }
    }
    d.deserialize_any(Saved)
}

/// The saved training keys as the plan's `Training`. A key the plan does
/// not know (saved by a newer version) or a value it refuses is left out,
/// one key at a time, so the other settings still load.
fn training_from(keys: serde_json::Map<String, serde_json::Value>) -> fedhe::plan::Training {
    let all = serde_json::Value::Object(keys.clone());
    if let Ok(t) = serde_json::from_value(all) {
        return t;
    }
    let mut kept = match serde_json::to_value(fedhe::plan::Training::default()) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    for (key, value) in keys {
        let mut candidate = kept.clone();
        candidate.insert(key.clone(), value.clone());
        if serde_json::from_value::<fedhe::plan::Training>(serde_json::Value::Object(candidate))
            .is_ok()
        {
            kept.insert(key, value);
        }
    }
    // Every kept key was accepted on top of the defaults, so this parses;
    // the defaults are the answer if it somehow does not.
    serde_json::from_value(serde_json::Value::Object(kept)).unwrap_or_default()
}

/// The embedded aggregator's state folder: `aggregator/` in the app's
/// data folder (empty, in memory, where there is none).
fn default_state_dir() -> String {
    eframe::storage_dir(super::APP_ID)
        .map(|d| d.join("aggregator").display().to_string())
        .unwrap_or_default()
}

/// `keys/secret.key` when run from a FedHE checkout (its `keys/` folder is
/// git-ignored), else the app-data folder.
pub fn default_key_path() -> PathBuf {
    let local = PathBuf::from("keys");
    if local.is_dir() {
        return local.join("secret.key");
    }
    eframe::storage_dir(super::APP_ID)
        .map(|d| d.join("keys").join("secret.key"))
        .unwrap_or_else(|| local.join("secret.key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One value, as eframe stores the settings.
    struct Saved(String);

    impl eframe::Storage for Saved {
        fn get_string(&self, _key: &str) -> Option<String> {
            Some(self.0.clone())
        }
        fn set_string(&mut self, _key: &str, value: String) {
            self.0 = value;
        }
        fn remove_string(&mut self, _key: &str) {}
        fn flush(&mut self) {}
    }

    fn load(text: &str) -> Option<Settings> {
        eframe::get_value(&Saved(text.into()), eframe::APP_KEY)
    }

    #[test]
    fn settings_of_earlier_versions_still_load() {
        // The app's own training struct, with the architecture inside and
        // the validation share under its oldest name.
        let old = "(client_name:\"X\",training:(rounds:17,epochs:3,lr:0.5,batch_size:8,l2:0.0,\
                   validation_fraction:0.3,seed:7,architecture:(kind:\"mlp\",hidden:[16])))";
        let s = load(old).expect("loads");
        assert_eq!(s.client_name, "X");
        let t = s.training;
        assert_eq!(
            (t.rounds, t.sgd.epochs, t.sgd.batch_size, t.sgd.seed),
            (17, 3, 8, 7)
        );
        assert_eq!(
            (t.sgd.lr, t.sgd.momentum, t.validation_share),
            (0.5, 0.0, 0.3)
        );
        assert_eq!(s.architecture, fedhe::model::Architecture::Linear);
    }

    #[test]
    fn a_newer_or_bad_training_key_loses_only_itself() {
        let newer = "(client_name:\"Y\",training:(rounds:9,epochs:4,lr:0.2,batch_size:16,l2:0.0,\
                     momentum:1.5,seed:3,validation_share:0.1,warp_drive:true))";
        let s = load(newer).expect("loads");
        assert_eq!(s.client_name, "Y");
        let t = s.training;
        assert_eq!((t.rounds, t.sgd.epochs, t.sgd.batch_size), (9, 4, 16));
        assert_eq!((t.sgd.lr, t.validation_share), (0.2, 0.1));
        // A momentum of 1.5 parses (the plan's validation refuses it later),
        // so it is kept as saved.
        assert_eq!(t.sgd.momentum, 1.5);
    }

    #[test]
    fn settings_survive_a_round_trip() {
        let mut s = Settings::default();
        s.training.sgd.momentum = 0.9;
        s.architecture = fedhe::model::Architecture::Mlp { hidden: vec![8] };
        let mut saved = Saved(String::new());
        eframe::set_value(&mut saved, eframe::APP_KEY, &s);
        assert_eq!(load(&saved.0), Some(s));
    }
}
