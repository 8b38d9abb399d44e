//! AWS's own clients against a running Strato: the AWS CLI and boto3 (both from PyPI, unmodified) manage and invoke
//! functions through Lambda's REST API, signing with Strato access keys (SigV4). A wrong secret, a stale date, a
//! body changed after signing and an unknown key are each refused with 403 in AWS's error shape, and a team's key
//! is refused every call on another team's function. Aliases route invocations to the version they name.
//!
//! Needs `STRATO_TEST_LAMBDA_PYTHON`: an interpreter with `awslambdaric`, `boto3` and `awscli` installed, its `aws`
//! beside it (`.ci/run` makes one); each test says so and returns when it is unset.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use sha2::Digest;
use strato_service::NewApiKey;
use strato_types::{Actions, Grant};

/// An access key for a team: every action on its own functions and on nothing else.
async fn team_key(s: &Server, team: &str) -> (String, String) {
    let req = NewApiKey {
        name: format!("{team} deploys"),
        role: Some("editor".into()),
        grants: vec![Grant::new("function", format!("{team}-*"), Actions::ALL)],
        ..Default::default()
    };
    let (key, secret) = s.strato.keys().create_access_key(req).await.unwrap();
    (key.access_key_id.unwrap(), secret)
}

/// The AWS CLI beside the interpreter, run with only the given credentials (no profile, no metadata service).
struct AwsCli {
    exe: PathBuf,
    endpoint: String,
    home: PathBuf,
    key: (String, String),
}

impl AwsCli {
    fn run(&self, args: &[&str]) -> (i32, Value, String) {
        let out = std::process::Command::new(&self.exe)
            .args(["lambda", "--endpoint-url", &self.endpoint, "--output", "json"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("AWS_ACCESS_KEY_ID", &self.key.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.key.1)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.home.join("no-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.home.join("no-credentials"))
            .env("AWS_MAX_ATTEMPTS", "1")
            .current_dir(&self.home)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let v = serde_json::from_str(&stdout).unwrap_or(Value::String(stdout));
        (out.status.code().unwrap_or(-1), v, String::from_utf8_lossy(&out.stderr).to_string())
    }
}

fn refused(v: &Value, code: &str, what: &str) {
    assert_eq!(v["status"], 403, "{what}: {v}");
    assert_eq!(v["code"], code, "{what}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_and_boto3_manage_and_invoke_functions_with_access_keys() {
    let Some(py) = python() else { return };
    let aws = Path::new(&py).with_file_name("aws");
    let has_clients = std::process::Command::new(&py).args(["-c", "import boto3, awscli"]).status().unwrap();
    assert!(
        has_clients.success() && aws.exists(),
        "{py} needs boto3 and awscli (pip install boto3 awscli), with `aws` beside it"
    );
    let s = Server::start(&py, |_| {}, true).await;
    let (team_a, team_b) = (team_key(&s, "team-a").await, team_key(&s, "team-b").await);
    let code = zip_of(&fixture("python"));
    let zip = s.dir.path().join("code.zip");
    std::fs::write(&zip, &code).unwrap();
    let sha256 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&code));

    // The AWS CLI, as a team would deploy: create, list, configure, publish, invoke, read, delete.
    let cli = AwsCli { exe: aws, endpoint: s.base.clone(), home: s.dir.path().to_path_buf(), key: team_a.clone() };
    let (rc, v, err) = cli.run(&[
        "create-function",
        "--function-name",
        "team-a-cli",
        "--runtime",
        "python3.11",
        "--role",
        "arn:aws:iam::000000000000:role/app",
        "--handler",
        "app.handler",
        "--zip-file",
        &format!("fileb://{}", zip.display()),
        "--environment",
        "Variables={GREETING=from-cli}",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(v["FunctionName"], "team-a-cli");
    assert_eq!(v["FunctionArn"], "arn:aws:lambda:us-east-1:000000000000:function:team-a-cli");
    assert_eq!((v["Runtime"].as_str(), v["Handler"].as_str()), (Some("python3.11"), Some("app.handler")));
    assert_eq!(v["CodeSha256"], sha256.as_str(), "Lambda's CodeSha256: base64 of the archive's SHA-256");
    assert_eq!(v["CodeSize"], code.len());
    assert_eq!((v["Timeout"].as_u64(), v["MemorySize"].as_u64()), (Some(3), Some(128)), "Lambda's defaults");
    assert_eq!(v["Environment"]["Variables"]["GREETING"], "from-cli");
    assert_eq!(v["Version"], "$LATEST");

    let (rc, v, err) = cli.run(&["list-functions"]);
    assert_eq!(rc, 0, "{err}");
    let names: Vec<&str> =
        v["Functions"].as_array().unwrap().iter().filter_map(|f| f["FunctionName"].as_str()).collect();
    assert_eq!(names, ["team-a-cli"]);

    let (rc, v, err) = cli.run(&[
        "update-function-configuration",
        "--function-name",
        "team-a-cli",
        "--timeout",
        "11",
        "--memory-size",
        "256",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!((v["Timeout"].as_u64(), v["MemorySize"].as_u64()), (Some(11), Some(256)));

    let (rc, v, err) = cli.run(&[
        "update-function-code",
        "--function-name",
        "team-a-cli",
        "--zip-file",
        &format!("fileb://{}", zip.display()),
        "--publish",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(v["Version"], "1");
    assert_eq!(v["FunctionArn"], "arn:aws:lambda:us-east-1:000000000000:function:team-a-cli:1");

    let out = s.dir.path().join("response.json");
    let (rc, v, err) = cli.run(&[
        "invoke",
        "--function-name",
        "team-a-cli",
        "--payload",
        r#"{"action": "echo", "from": "cli"}"#,
        out.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!((v["StatusCode"].as_u64(), v["ExecutedVersion"].as_str()), (Some(200), Some("$LATEST")));
    let response: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(response["event"], json!({"action": "echo", "from": "cli"}));

    let (rc, v, err) = cli.run(&["get-function", "--function-name", "team-a-cli"]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(v["Configuration"]["Timeout"], 11);

    let (rc, _, err) = cli.run(&["get-function", "--function-name", "team-b-anything"]);
    assert_ne!(rc, 0);
    assert!(err.contains("(AccessDeniedException)"), "{err}");
    let wrong = AwsCli { key: (team_a.0.clone(), "x".repeat(40)), ..cli };
    let (rc, _, err) = wrong.run(&["list-functions"]);
    assert_ne!(rc, 0);
    assert!(err.contains("(InvalidSignatureException)") && err.contains("signature"), "{err}");
    let cli = AwsCli { key: team_a.clone(), ..wrong };
    let (rc, _, err) = cli.run(&["delete-function", "--function-name", "team-a-cli"]);
    assert_eq!(rc, 0, "{err}");
    let (rc, _, err) = cli.run(&["get-function", "--function-name", "team-a-cli"]);
    assert_ne!(rc, 0);
    assert!(err.contains("(ResourceNotFoundException)"), "{err}");

    // boto3, the same way, with the refusals made by the real client: wrong secret, stale date, tampered body.
    let b = s
        .client
        .post(s.url("/v1/functions"))
        .bearer_auth(ADMIN)
        .json(&python_function("team-b-private", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(b.status(), 201);
    let out = tokio::process::Command::new(&py)
        .arg(fixture("clients/boto3_session.py"))
        .args(["team-a-boto3", zip.to_str().unwrap(), "team-b-private"])
        .env("STRATO_ENDPOINT", &s.base)
        .env("AWS_ACCESS_KEY_ID", &team_a.0)
        .env("AWS_SECRET_ACCESS_KEY", &team_a.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", s.dir.path().join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", s.dir.path().join("no-credentials"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let created = &v["created"];
    assert_eq!(created["FunctionName"], "team-a-boto3");
    assert_eq!(created["CodeSha256"], v["expected_sha256"]);
    assert_eq!(created["Role"], "arn:aws:iam::000000000000:role/app");
    assert_eq!((created["Timeout"].as_u64(), created["State"].as_str()), (Some(5), Some("Active")));
    assert_eq!(v["listed"], json!(["team-a-boto3"]), "another team's functions are not listed");
    assert_eq!(v["updated"], json!({"Timeout": 9, "Description": "updated by boto3"}));
    assert_eq!(v["published_version"], "1");
    assert_eq!(v["invoke"]["status"], 200);
    assert_eq!(v["invoke"]["payload"]["event"], json!({"from": "boto3"}));
    assert_eq!(v["invoke"]["executed"], "$LATEST");
    let log = v["invoke"]["log"].as_str().unwrap();
    assert!(log.contains("START RequestId:") && log.contains("REPORT RequestId:"), "{log}");
    assert_eq!(v["invoke_version_1"], "1");
    assert_eq!(v["get"], 9);
    assert_eq!(v["versions"], json!(["$LATEST", "1"]));
    assert_eq!(
        v["alias"],
        json!({"AliasArn": "arn:aws:lambda:us-east-1:000000000000:function:team-a-boto3:live", "Name": "live",
            "FunctionVersion": "1", "Description": "what users get"})
    );
    assert_eq!((v["invoke_alias"].as_str(), v["invoke_alias_in_name"].as_str()), (Some("1"), Some("1")));
    assert_eq!(v["alias_moved"], json!(["$LATEST", "$LATEST"]));
    assert_eq!(v["alias_bad_version"]["code"], "ResourceNotFoundException", "{}", v["alias_bad_version"]);
    assert_eq!(v["aliases"], json!(["live"]));
    assert_eq!(v["alias_deleted"]["code"], "ResourceNotFoundException");

    refused(&v["wrong_secret"], "InvalidSignatureException", "wrong secret");
    assert!(v["wrong_secret"]["message"].as_str().unwrap().contains("signature we calculated does not match"));
    refused(&v["stale_date"], "InvalidSignatureException", "stale date");
    assert!(v["stale_date"]["message"].as_str().unwrap().starts_with("Signature expired"), "{}", v["stale_date"]);
    refused(&v["tampered_body"], "InvalidSignatureException", "tampered body");
    refused(&v["unknown_key"], "UnrecognizedClientException", "unknown key");
    for (call, e) in v["foreign"].as_object().unwrap() {
        refused(e, "AccessDeniedException", call);
    }
    assert_eq!(v["listed_after"], json!(["team-a-boto3"]));
    assert_eq!(v["after_delete"]["code"], "ResourceNotFoundException");

    // The other team's function was untouched by all of it, and its own key still reaches it.
    let f = s.functions.get("team-b-private", None).await.unwrap();
    assert_eq!((f.timeout, f.revision), (2, 1), "never changed");
    let cli_b = AwsCli { key: team_b, ..cli };
    let (rc, v, err) = cli_b.run(&["get-function-configuration", "--function-name", "team-b-private"]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(v["FunctionName"], "team-b-private");
    s.stop().await;
}
