use super::*;

fn err(bytes: &str, f: DatasetFormat) -> String {
    parse_dataset(bytes.as_bytes(), f).unwrap_err().0
}

#[test]
fn csv_with_split_and_quotes() {
    let ds = parse_dataset(
        b"text,label,split\n\"hello, world\",greet,train\nbye,leave,val\nyo,greet,test\n",
        DatasetFormat::Csv,
    )
    .unwrap();
    assert_eq!(ds.examples.len(), 3);
    assert_eq!(ds.examples[0].text, "hello, world");
    assert_eq!(ds.examples[1].split, Some(Split::Val));
    assert_eq!(ds.labels(), vec!["greet", "leave"]);
}

#[test]
fn csv_errors_name_the_line() {
    assert!(err("text,label\nhi,a\nno label here\n", DatasetFormat::Csv).starts_with("line 3: expected 2 fields"));
    assert_eq!(err("text,label\nhi,a\n,b\n", DatasetFormat::Csv), "line 3: text is empty");
    assert!(err("words,tags\nhi,a\n", DatasetFormat::Csv).starts_with("line 1: the CSV header must have"));
    assert!(
        err("text,label,split\nhi,a,train\nho,b,holdout\n", DatasetFormat::Csv).starts_with("line 3: split must be")
    );
    assert!(err("text,label\nhi,a\nho,a\n", DatasetFormat::Csv).contains("at least 2"));
    assert!(err("text,label,split\nhi,a,train\nho,b,test\n", DatasetFormat::Csv).contains("label(s) b have no train"));
    assert_eq!(err("text,label\n", DatasetFormat::Csv), "the dataset has no examples");
}

#[test]
fn invalid_utf8_names_the_line() {
    let bytes = b"text,label\nok,a\nbad \xff,b\n";
    assert_eq!(parse_dataset(bytes, DatasetFormat::Csv).unwrap_err().0, "line 3: the file is not valid UTF-8");
}

#[test]
fn jsonl() {
    let ds =
        parse_dataset(b"{\"text\":\"a\",\"label\":\"x\"}\n\n{\"text\":\"b\",\"label\":\"y\"}\n", DatasetFormat::Jsonl)
            .unwrap();
    assert_eq!(ds.examples.len(), 2);
    assert!(err("{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\"\n", DatasetFormat::Jsonl)
        .starts_with("line 2: invalid JSON"));
    assert_eq!(
        err("{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":3,\"label\":\"y\"}\n", DatasetFormat::Jsonl),
        "line 2: \"text\" must be a string"
    );
}

#[test]
fn json_array_and_spacy() {
    let ds = parse_dataset(br#"[{"text":"a","label":"x"},{"text":"b","label":"y"}]"#, DatasetFormat::Json).unwrap();
    assert_eq!(ds.format, DatasetFormat::Json);
    assert_eq!(
        err(r#"[{"text":"a","label":"x"},{"label":"y"}]"#, DatasetFormat::Json),
        "item 1: \"text\" must be a string"
    );
    assert!(err(r#"{"text":"a"}"#, DatasetFormat::Json).starts_with("a JSON dataset must be an array"));

    let ds = parse_dataset(
        br#"[{"text":"save money","cats":{"SAVING":1.0,"DEBT":0.0}},["pay loan",{"cats":{"SAVING":0.0,"DEBT":1.0}}]]"#,
        DatasetFormat::Json,
    )
    .unwrap();
    assert_eq!(ds.format, DatasetFormat::Spacy);
    assert_eq!(ds.examples[1].label, "DEBT");
    let e = err(
        r#"[{"text":"a","cats":{"A":1.0,"B":0.0,"C":0.0}},{"text":"b","cats":{"A":0.0,"B":1.0,"C":0.0}}]"#,
        DatasetFormat::Json,
    );
    assert!(e.contains("label(s) C have no examples"), "{e}");
}

#[test]
fn content_types() {
    assert_eq!(DatasetFormat::from_content_type("text/csv; charset=utf-8"), Some(DatasetFormat::Csv));
    assert_eq!(DatasetFormat::from_content_type("application/x-ndjson"), Some(DatasetFormat::Jsonl));
    assert_eq!(DatasetFormat::from_content_type("text/plain"), None);
}
