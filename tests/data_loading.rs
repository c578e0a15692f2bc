//! CSV loading: every bad input gives a located error; schema decisions are
//! reported as notices.

use std::path::PathBuf;

use fedhe::data::{CsvOptions, DataError, LoadedCsv, load_csv, load_csv_reader};

fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    (dir, path)
}

fn load(name: &str, bytes: &[u8], opts: &CsvOptions) -> Result<LoadedCsv, DataError> {
    let (_dir, path) = write(name, bytes);
    load_csv(&path, opts)
}

fn err(name: &str, bytes: &[u8]) -> String {
    match load(name, bytes, &CsvOptions::default()) {
        Ok(l) => panic!("expected an error, loaded {} rows", l.dataset.rows()),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

#[test]
fn missing_cell_names_file_line_and_column() {
    let m = err("missing.csv", b"label,a,b\n1,2,3\n0,,4\n");
    assert_has(&m, &["missing.csv:3", "column 2", "\"a\"", "missing value"]);
}

#[test]
fn non_numeric_feature_names_the_value() {
    let m = err("text.csv", b"label,a,b\n1,2,3\n0,4,abc\n");
    assert_has(
        &m,
        &[
            "text.csv:3",
            "column 3",
            "\"b\"",
            "\"abc\"",
            "not a finite number",
        ],
    );
    let m = err("nan.csv", b"label,a\n1,2\n0,NaN\n");
    assert_has(&m, &["nan.csv:3", "\"NaN\""]);
}

#[test]
fn third_label_value_is_located() {
    let m = err("labels.csv", b"label,a\nM,1\nB,2\nX,3\n");
    assert_has(
        &m,
        &[
            "labels.csv:4",
            "column 1",
            "third label value \"X\"",
            "\"M\"",
            "\"B\"",
        ],
    );
}

#[test]
fn ragged_row_gives_line_and_counts() {
    let m = err("ragged.csv", b"label,a,b\n1,2,3\n0,4\n");
    assert_has(&m, &["ragged.csv:3", "2 fields", "header has 3"]);
}

#[test]
fn empty_and_header_only_files() {
    assert_has(&err("empty.csv", b""), &["empty.csv", "empty"]);
    assert_has(&err("blank.csv", b"\n\n"), &["blank.csv", "empty"]);
    assert_has(
        &err("header.csv", b"label,a,b\n"),
        &["header.csv", "no data rows"],
    );
}

#[test]
fn duplicate_column_names_both_positions() {
    let m = err("dup.csv", b"label,a,a\n1,2,3\n");
    assert_has(
        &m,
        &["dup.csv", "duplicate column name \"a\"", "columns 2 and 3"],
    );
}

#[test]
fn invalid_utf8_is_located() {
    let m = err("bytes.csv", b"label,a\n1,2\n0,\xff\xfe\n");
    assert_has(&m, &["bytes.csv:3", "column 2", "invalid UTF-8"]);
    let m = err("hdr.csv", b"label,\xc3\x28\n1,2\n");
    assert_has(&m, &["hdr.csv:1", "column 2", "invalid UTF-8"]);
}

#[test]
fn unknown_label_lists_the_columns() {
    let m = err("nolabel.csv", b"a,b\n1,2\n");
    assert_has(&m, &["nolabel.csv", "diagnosis", "columns are: a, b"]);
    let opts = CsvOptions {
        label: Some("outcome".into()),
        ..CsvOptions::default()
    };
    let m = load("x.csv", b"a,b\n1,2\n", &opts).unwrap_err().to_string();
    assert_has(&m, &["no column named \"outcome\"", "columns are: a, b"]);
}

#[test]
fn id_columns_are_left_out_with_a_notice() {
    let csv = b"ID,serial,label,a\n7,100,1,0.5\n8,205,0,1.5\n9,301,1,2.5\n";
    let l = load("ids.csv", csv, &CsvOptions::default()).unwrap();
    assert_eq!(l.dataset.feature_names, vec!["a"]);
    let notes = l.notices.join("\n");
    assert_has(
        &notes,
        &["\"ID\"", "identifier", "\"serial\"", "distinct integer"],
    );
    // --keep brings a distinct-integer column back.
    let opts = CsvOptions {
        keep: vec!["serial".into()],
        ..CsvOptions::default()
    };
    let l = load("ids.csv", csv, &opts).unwrap();
    assert_eq!(l.dataset.feature_names, vec!["serial", "a"]);
}

#[test]
fn ignore_and_label_by_name() {
    let opts = CsvOptions {
        label: Some("outcome".into()),
        ignore: vec!["b".into()],
        ..CsvOptions::default()
    };
    let l = load("o.csv", b"a,b,outcome\n1.5,2,yes\n2.5,3,no\n", &opts).unwrap();
    assert_eq!(l.dataset.feature_names, vec!["a"]);
    assert_eq!(l.dataset.y.to_vec(), vec![1.0, 0.0]);
    assert_eq!(l.dataset.label.binary().unwrap().positive, "yes");
    let bad = CsvOptions {
        ignore: vec!["zzz".into()],
        ..opts
    };
    let m = load("o.csv", b"a,b,outcome\n1,2,yes\n", &bad)
        .unwrap_err()
        .to_string();
    assert_has(&m, &["\"zzz\"", "--ignore"]);
}

#[test]
fn label_kinds_and_positive_class() {
    let l = load(
        "tf.csv",
        b"y,a\nfalse,1.5\nTRUE,2.5\n",
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(l.dataset.y.to_vec(), vec![0.0, 1.0]);
    let l = load(
        "01.csv",
        b"target,a\n1,1.5\n0,2.5\n",
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(l.dataset.y.to_vec(), vec![1.0, 0.0]);
    let mb = b"diagnosis,a\nB,1.5\nM,2.5\nB,3.5\n";
    let l = load("mb.csv", mb, &CsvOptions::default()).unwrap();
    assert_eq!(l.dataset.label.binary().unwrap().positive, "M");
    let opts = CsvOptions {
        positive: Some("B".into()),
        ..CsvOptions::default()
    };
    let l = load("mb.csv", mb, &opts).unwrap();
    assert_eq!(l.dataset.y.to_vec(), vec![1.0, 0.0, 1.0]);
    assert_eq!(l.dataset.label.binary().unwrap().negative, "M");
    let opts = CsvOptions {
        positive: Some("Q".into()),
        ..CsvOptions::default()
    };
    let m = load("mb.csv", mb, &opts).unwrap_err().to_string();
    assert_has(&m, &["--positive \"Q\"", "B, M"]);
    let m = err("one.csv", b"label,a\n1,1.5\n1,2.5\n");
    assert_has(&m, &["only the value \"1\"", "two classes"]);
}

#[test]
fn trailing_comma_column_is_dropped_with_notice() {
    let l = load(
        "trail.csv",
        b"label,a,b,\n1,1.5,2.5,\n0,3.5,4.5,\n",
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(l.dataset.feature_names, vec!["a", "b"]);
    assert_eq!(l.dataset.x[[1, 1]], 4.5);
    assert_has(&l.notices.join("\n"), &["column 4", "empty on every row"]);
}

#[test]
fn wdbc_sample_loads_with_30_features() {
    let l = load_csv(
        std::path::Path::new("sample_data/breast_cancer_wdbc.csv"),
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(l.dataset.rows(), 569);
    assert_eq!(l.dataset.feature_names.len(), 30);
    assert_eq!(l.dataset.positives(), 212);
    assert_eq!(l.dataset.x[[0, 0]], 17.99);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic sweep of mutations of a valid file.
    let base = b"label,a,b\n1,2.5,3\n0,4,5.5\n".to_vec();
    for i in 0..base.len() {
        for byte in [b',', b'\n', b'"', 0xff, b'x', b'\r', 0] {
            let mut m = base.clone();
            m[i] = byte;
            let _ = load_csv_reader(&m[..], "m.csv", &CsvOptions::default());
            let _ = load_csv_reader(&base[..i], "t.csv", &CsvOptions::default());
        }
    }
}

proptest::proptest! {
    #[test]
    fn random_csv_text_never_panics(text in "[a-c0-9,.\\n\"\\r -]{0,120}") {
        let _ = load_csv_reader(text.as_bytes(), "p.csv", &CsvOptions::default());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let _ = load_csv_reader(&bytes[..], "p.csv", &CsvOptions::default());
    }
}

/// A file of several parallel-parsed blocks reads like a sequential one, and
/// errors deep inside it keep their true line numbers.
#[test]
fn large_files_parse_in_blocks_with_true_line_numbers() {
    let rows = 600_000usize;
    let mut text = String::from("label,a,\"b, quoted\"\n");
    for i in 0..rows {
        text += &format!(
            "{},{}.25,\"{}\"\n",
            if i % 3 == 0 { "yes" } else { "no" },
            i,
            i % 7
        );
    }
    assert!(
        text.len() > 9 << 20,
        "the test needs more than two 4 MB blocks"
    );
    let opts = CsvOptions {
        auto_ignore_ids: false,
        ..CsvOptions::default()
    };
    let l = load_csv_reader(text.as_bytes(), "big.csv", &opts).unwrap();
    assert_eq!(l.dataset.rows(), rows);
    assert_eq!(l.dataset.feature_names, vec!["a", "b, quoted"]);
    assert_eq!(l.dataset.x[[rows - 1, 0]], (rows - 1) as f64 + 0.25);
    assert_eq!(l.dataset.x[[rows - 1, 1]], ((rows - 1) % 7) as f64);
    assert_eq!(l.dataset.positives(), rows.div_ceil(3));

    // Row i is on line i + 2.
    let bad_line = 550_002;
    let mut lines: Vec<&str> = text.lines().collect();
    lines[bad_line - 1] = "no,12x,3";
    let broken = lines.join("\n");
    let m = load_csv_reader(broken.as_bytes(), "big.csv", &opts)
        .unwrap_err()
        .to_string();
    assert_has(&m, &["big.csv:550002", "column 2", "\"12x\""]);

    lines[bad_line - 1] = "maybe,1,3";
    let third = lines.join("\n");
    let m = load_csv_reader(third.as_bytes(), "big.csv", &opts)
        .unwrap_err()
        .to_string();
    assert_has(&m, &["big.csv:550002", "third label value \"maybe\""]);
}

/// Plain files take a fast splitter, files with quotes or CR the csv reader:
/// both must read the same data and report the same locations.
#[test]
fn fast_and_general_paths_agree() {
    let lf = "label, a ,b,\n1, 2.5 ,3,\n\n0,4,-5e-1,\n1,  6 ,7.25,\n";
    let crlf = lf.replace('\n', "\r\n");
    let opts = CsvOptions::default();
    let a = load_csv_reader(lf.as_bytes(), "f.csv", &opts).unwrap();
    let b = load_csv_reader(crlf.as_bytes(), "f.csv", &opts).unwrap();
    assert_eq!(a.dataset, b.dataset);
    assert_eq!(a.notices, b.notices);
    assert_eq!(a.dataset.x[[1, 1]], -0.5);
    assert_eq!(a.dataset.rows(), 3);
    for bad in [
        "label,a\n1,2\n\n0,x\n",
        "label,a\n1,2\n0\n",
        "label,a\n1,2\n0,\n",
        "label,a\n1,2\nq,3\nr,4\n",
    ] {
        let e1 = load_csv_reader(bad.as_bytes(), "e.csv", &opts)
            .unwrap_err()
            .to_string();
        let e2 = load_csv_reader(bad.replace('\n', "\r\n").as_bytes(), "e.csv", &opts)
            .unwrap_err()
            .to_string();
        assert_eq!(e1, e2);
    }
    let e = load_csv_reader("label,a\n1,2\n\n0,x\n".as_bytes(), "e.csv", &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("e.csv:4"), "{e}");
}
