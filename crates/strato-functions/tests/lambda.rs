//! Functions written for AWS Lambda, run by a real Strato over real sockets: Python handlers through AWS's own
//! runtime client (`awslambdaric` from PyPI), a `provided` runtime speaking the Runtime API with curl, the Invoke
//! API's headers and error shapes, warm instances, time limits, crashes, concurrency limits, scale to zero,
//! asynchronous invocations on the job queue, and grants.
//!
//! Needs `STRATO_TEST_LAMBDA_PYTHON`: an interpreter with `awslambdaric` installed (`.ci/run` makes one); each
//! test says so and returns when it is unset.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_handler_runs_unchanged_under_awslambdaric() {
    let Some(py) = python() else { return };
    let s = Server::start(&py, |_| {}, true).await;
    let made = s.create(python_function("echo", json!({}))).await;
    assert_eq!(made["arn"], "arn:aws:lambda:us-east-1:000000000000:function:echo");
    assert_eq!((made["version"].as_str(), made["timeout"].as_u64()), (Some("$LATEST"), Some(2)));

    // Cold, then warm: the same instance (module state kept), init reported once.
    let t = Instant::now();
    let (status, headers, v) = body(s.invoke("echo", &json!({"n": 1}), &[("x-amz-log-type", "Tail")]).await).await;
    let cold = t.elapsed();
    assert_eq!((status, &v), (200, &json!({"event": {"n": 1}, "count": 1})));
    assert_eq!(h(&headers, "x-amz-executed-version"), Some("$LATEST"));
    assert!(h(&headers, "x-amz-function-error").is_none());
    let log = log_of(&headers);
    let id = h(&headers, "x-amzn-requestid").unwrap().to_string();
    assert!(log.contains(&format!("START RequestId: {id} Version: $LATEST")), "{log}");
    assert!(log.contains("init: importing app") && log.contains("handling echo #1"), "{log}");
    assert!(log.contains(&format!("END RequestId: {id}")), "{log}");
    assert!(log.contains("Memory Size: 256 MB") && log.contains("Init Duration: "), "{log}");
    let t = Instant::now();
    let (_, headers, v) = body(s.invoke("echo", &json!({"n": 2}), &[("x-amz-log-type", "Tail")]).await).await;
    let warm = t.elapsed();
    assert_eq!(v["count"], 2, "the warm instance served it");
    assert!(!log_of(&headers).contains("Init Duration"), "a warm invocation reports no init");
    eprintln!("cold invoke {cold:?}, warm invoke {warm:?}");
    assert_eq!(s.functions.instances("echo"), (0, 1));

    // The context: request id, deadline, ARN, memory, client context, the caller's identity.
    let cc = b64(br#"{"custom": {"tenant": "t-1"}, "client": {}, "env": {}}"#);
    let (_, headers, v) =
        body(s.invoke("echo", &json!({"action": "context"}), &[("x-amz-client-context", &cc)]).await).await;
    assert_eq!(v["request_id"].as_str(), h(&headers, "x-amzn-requestid"));
    assert_eq!(v["arn"], "arn:aws:lambda:us-east-1:000000000000:function:echo");
    let remaining = v["remaining_ms"].as_i64().unwrap();
    assert!((1_000..=2_000).contains(&remaining), "remaining {remaining} ms of a 2 s limit");
    assert_eq!(
        (v["memory"].as_str(), v["name"].as_str(), v["version"].as_str()),
        (Some("256"), Some("echo"), Some("$LATEST"))
    );
    assert_eq!(v["log_group"], "/aws/lambda/echo");
    assert_eq!(v["client_custom"], json!({"tenant": "t-1"}));
    assert_eq!(v["identity"], "admin", "the caller reaches the handler");

    // The environment: the function's own variables and Lambda's, none of the server's.
    std::env::set_var("STRATO_TEST_SECRET_NOT_FOR_FUNCTIONS", "s3cr3t");
    let (_, _, v) = body(s.invoke("echo", &json!({"action": "env"}), &[]).await).await;
    let env = &v["env"];
    assert_eq!(env["GREETING"], "hello");
    for k in [
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "_HANDLER",
        "AWS_REGION",
        "LAMBDA_TASK_ROOT",
        "TZ",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_LOG_GROUP_NAME",
    ] {
        assert!(env[k].is_string(), "{k} missing from {env}");
    }
    assert_eq!((env["_HANDLER"].as_str(), env["TZ"].as_str()), (Some("app.handler"), Some(":UTC")));
    assert!(env["AWS_LAMBDA_RUNTIME_API"].as_str().unwrap().starts_with("127.0.0.1:"), "loopback only");
    assert_eq!(v["cwd"], env["LAMBDA_TASK_ROOT"], "the code's directory is the working directory");
    let leaked: Vec<&String> =
        env.as_object().unwrap().keys().filter(|k| k.starts_with("STRATO_") || k.starts_with("CARGO")).collect();
    assert!(leaked.is_empty(), "the server's variables reached the function: {leaked:?}");

    // A handler's exception: 200, X-Amz-Function-Error, and the runtime client's error document.
    let (status, headers, v) =
        body(s.invoke("echo", &json!({"action": "raise", "why": 42}), &[("x-amz-log-type", "Tail")]).await).await;
    assert_eq!((status, h(&headers, "x-amz-function-error")), (200, Some("Unhandled")));
    assert_eq!((v["errorType"].as_str(), v["errorMessage"].as_str()), (Some("ValueError"), Some("bad input: 42")));
    assert!(v["stackTrace"].as_array().is_some_and(|t| !t.is_empty()), "{v}");
    assert!(log_of(&headers).contains("ValueError"), "the error is in the log");

    // A timeout: the instance is killed and replaced; the next call starts a fresh one.
    let (status, headers, v) =
        body(s.invoke("echo", &json!({"action": "sleep", "seconds": 5}), &[("x-amz-log-type", "Tail")]).await).await;
    assert_eq!((status, h(&headers, "x-amz-function-error")), (200, Some("Unhandled")));
    assert_eq!(v["errorType"], "Sandbox.Timedout");
    assert!(v["errorMessage"].as_str().unwrap().ends_with("Task timed out after 2.00 seconds"), "{v}");
    assert!(log_of(&headers).contains("Task timed out after 2.00 seconds"));
    let (_, _, v) = body(s.invoke("echo", &json!({}), &[]).await).await;
    assert_eq!(v["count"], 1, "a new instance after the timeout");

    // A crash.
    let (_, headers, v) = body(s.invoke("echo", &json!({"action": "exit"}), &[]).await).await;
    assert_eq!(
        (h(&headers, "x-amz-function-error"), v["errorType"].as_str()),
        (Some("Unhandled"), Some("Runtime.ExitError"))
    );
    assert!(v["errorMessage"].as_str().unwrap().contains("exit status 3"), "{v}");
    let (_, _, v) = body(s.invoke("echo", &json!({}), &[]).await).await;
    assert_eq!(v["count"], 1, "a new instance after the crash");

    // Memory: within the function's size it works; past it the allocation is refused (`prlimit`'s RLIMIT_DATA),
    // reported as Lambda reports an out-of-memory end, and the instance replaced.
    let (_, _, v) = body(s.invoke("echo", &json!({"action": "alloc", "mb": 64}), &[]).await).await;
    assert_eq!(v, json!(64 << 20), "64 MB fit in 256 MB");
    let (_, headers, v) = body(s.invoke("echo", &json!({"action": "alloc", "mb": 400}), &[]).await).await;
    assert_eq!(
        (h(&headers, "x-amz-function-error"), v["errorType"].as_str()),
        (Some("Unhandled"), Some("Runtime.OutOfMemory"))
    );
    assert!(v["errorMessage"].as_str().unwrap().contains("memory size 256 MB"), "{v}");
    let (_, _, v) = body(s.invoke("echo", &json!({}), &[]).await).await;
    assert_eq!(v["count"], 1, "a new instance after running out of memory");

    // A response over 6 MB.
    let (_, headers, v) = body(s.invoke("echo", &json!({"action": "big"}), &[]).await).await;
    assert_eq!(
        (h(&headers, "x-amz-function-error"), v["errorType"].as_str()),
        (Some("Function.ResponseSizeTooLarge"), Some("Function.ResponseSizeTooLarge"))
    );
    // A request over 6 MB.
    let big = json!({"x": "y".repeat(6 * 1024 * 1024)});
    let (status, headers, _) = body(s.invoke("echo", &big, &[]).await).await;
    assert_eq!((status, h(&headers, "x-amzn-errortype")), (413, Some("RequestTooLargeException")));

    // Each instance has its own temporary directory, gone with it.
    let (_, _, first) = body(s.invoke("echo", &json!({"action": "tmp"}), &[]).await).await;
    let (_, _, again) = body(s.invoke("echo", &json!({"action": "tmp"}), &[]).await).await;
    assert_eq!(
        (first["existed"].as_bool(), again["existed"].as_bool()),
        (Some(false), Some(true)),
        "the answers were {first} and {again}"
    );
    let r = s
        .client
        .patch(s.url("/v1/functions/echo"))
        .bearer_auth(ADMIN)
        .json(&json!({"description": "v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a configuration change retires the warm instance");
    let (_, _, fresh) = body(s.invoke("echo", &json!({"action": "tmp"}), &[]).await).await;
    assert_eq!(fresh["existed"], false);
    assert_ne!(fresh["tmp"], first["tmp"]);
    assert!(!Path::new(first["tmp"].as_str().unwrap()).exists(), "the retired instance's directory is removed");

    // DryRun, and what does not exist.
    let (status, _, _) = body(s.invoke("echo", &json!({}), &[("x-amz-invocation-type", "DryRun")]).await).await;
    assert_eq!(status, 204);
    let (status, headers, v) = body(s.invoke("nope", &json!({}), &[]).await).await;
    assert_eq!((status, h(&headers, "x-amzn-errortype")), (404, Some("ResourceNotFoundException")));
    assert!(v["message"].as_str().unwrap().contains("Function not found"), "{v}");

    // Published versions are immutable: $LATEST changes, version 1 does not.
    let r = s.client.post(s.url("/v1/functions/echo/versions")).bearer_auth(ADMIN).send().await.unwrap();
    let v1: Value = r.json().await.unwrap();
    assert_eq!(
        (v1["version"].as_str(), v1["arn"].as_str()),
        (Some("1"), Some("arn:aws:lambda:us-east-1:000000000000:function:echo:1"))
    );
    let r = s
        .client
        .patch(s.url("/v1/functions/echo"))
        .bearer_auth(ADMIN)
        .json(&json!({"environment": {"GREETING": "changed"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, headers, v) = body(s.invoke("echo:1", &json!({"action": "env"}), &[]).await).await;
    assert_eq!((h(&headers, "x-amz-executed-version"), v["env"]["GREETING"].as_str()), (Some("1"), Some("hello")));
    let (_, headers, v) =
        body(s.invoke("arn:aws:lambda:us-east-1:000000000000:function:echo", &json!({"action": "env"}), &[]).await)
            .await;
    assert_eq!(
        (h(&headers, "x-amz-executed-version"), v["env"]["GREETING"].as_str()),
        (Some("$LATEST"), Some("changed"))
    );

    // The function's log, through the API.
    let logs =
        s.client.get(s.url("/v1/functions/echo/logs")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
    assert!(logs.contains("REPORT RequestId:") && logs.contains("handling env"), "{logs}");
    let r = s.client.delete(s.url("/v1/functions/echo")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(body(s.invoke("echo", &json!({}), &[]).await).await.0, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failures_concurrency_limits_and_scale_to_zero() {
    let Some(py) = python() else { return };
    let s = Server::start(&py, |o| o.idle_timeout = Duration::from_millis(1500), true).await;
    // A module that cannot be imported: reported as Lambda reports an init failure.
    s.create(python_function("broken", json!({"handler": "broken.handler"}))).await;
    let (status, headers, v) = body(s.invoke("broken", &json!({}), &[]).await).await;
    assert_eq!((status, h(&headers, "x-amz-function-error")), (200, Some("Unhandled")));
    assert_eq!(v["errorType"], "Runtime.ImportModuleError", "{v}");
    assert!(v["errorMessage"].as_str().unwrap().contains("Unable to import module 'broken'"), "{v}");

    // One instance at most: a second concurrent call is throttled.
    s.create(python_function("single", json!({"reserved_concurrency": 1, "timeout": 10}))).await;
    let sleep = json!({"action": "sleep", "seconds": 1.5});
    let slow = s.invoke("single", &sleep, &[]);
    let quick = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        s.invoke("single", &json!({}), &[]).await
    };
    let (slow, quick) = tokio::join!(slow, quick);
    assert_eq!(body(slow).await.2, "slept");
    let (status, headers, _) = body(quick).await;
    assert_eq!((status, h(&headers, "x-amzn-errortype")), (429, Some("TooManyRequestsException")));
    assert_eq!(body(s.invoke("single", &json!({}), &[]).await).await.0, 200, "free again once the first ended");

    // Idle instances stop; the next call is a cold start again.
    assert_eq!(s.functions.instances("single"), (0, 1));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(s.functions.instances("single"), (0, 0), "scaled to zero");
    let (_, headers, v) = body(s.invoke("single", &json!({}), &[("x-amz-log-type", "Tail")]).await).await;
    assert_eq!(v["count"], 1);
    assert!(log_of(&headers).contains("Init Duration"), "a cold start again");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provided_bootstrap_speaks_the_runtime_api_unchanged() {
    let Some(py) = python() else { return };
    let s = Server::start(&py, |_| {}, true).await;
    s.create(json!({
        "name": "shell",
        "runtime": "provided.al2023",
        "handler": "function.handler",
        "zip_base64": b64(&zip_of(&fixture("provided"))),
    }))
    .await;
    for n in 0..3 {
        let (status, headers, v) = body(s.invoke("shell", &json!({"n": n}), &[("x-amz-log-type", "Tail")]).await).await;
        assert_eq!((status, &v), (200, &json!({"echo": {"n": n}, "handler": "function.handler"})));
        let id = h(&headers, "x-amzn-requestid").unwrap();
        assert!(log_of(&headers).contains(&format!("bootstrap handling {id}")));
    }
    // A provided function without a bootstrap is refused where it is made.
    let r = s
        .client
        .post(s.url("/v1/functions"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "nobootstrap", "runtime": "provided", "handler": "x", "zip_base64": b64(&zip_of(&fixture("python")))}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("bootstrap"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_invocations_are_retried_dead_lettered_and_replayed() {
    let Some(py) = python() else { return };
    let s = Server::start(&py, |_| {}, true).await;
    s.create(python_function("events", json!({}))).await;
    let r = s
        .client
        .patch(s.url("/v1/functions/events"))
        .bearer_auth(ADMIN)
        .json(&json!({"maximum_retry_attempts": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A good event runs once, in the background.
    let (status, headers, _) =
        body(s.invoke("events", &json!({"n": 7}), &[("x-amz-invocation-type", "Event")]).await).await;
    assert_eq!(status, 202);
    let ok_id = h(&headers, "x-amzn-requestid").unwrap().to_string();
    // A failing event: the first attempt and one retry, then the dead-letter queue with the event and the error.
    let (status, headers, _) = body(
        s.invoke("events", &json!({"action": "raise", "why": "always"}), &[("x-amz-invocation-type", "Event")]).await,
    )
    .await;
    assert_eq!(status, 202);
    let bad_id = h(&headers, "x-amzn-requestid").unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dl: Value = s.client.get(s.url("/v1/dlq")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        let jobs = dl["jobs"].as_array().into_iter().flatten();
        let found = jobs.into_iter().find(|j| j["error"].as_str().is_some_and(|e| e.contains(&bad_id))).cloned();
        if let Some(j) = found {
            break j;
        }
        assert!(Instant::now() < until, "the failing event reached the dead-letter queue within 30 s: {dl}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (dead["kind"].as_str(), dead["queue"].as_str(), dead["attempt_count"].as_i64()),
        (Some("function.invoke"), Some("functions"), Some(2))
    );
    let stored = s.strato.store().queue().get(dead["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.payload["payload"], json!({"action": "raise", "why": "always"}).to_string(), "the event is kept");
    assert_eq!(stored.payload["request_id"], bad_id.as_str());
    assert!(dead["error"].as_str().unwrap().contains("bad input: always"), "{dead}");
    let logs = s.functions.logs("events", 1 << 20).await;
    assert!(logs.contains(&format!("START RequestId: {ok_id}")), "the good event ran: {logs}");
    assert_eq!(logs.matches(&format!("START RequestId: {bad_id}")).count(), 2, "one request id across its attempts");
    // Replayed after a fix: it runs again, once, and succeeds.
    let fix = json!({"environment": {"FIXED": "1"}});
    let r = s.client.patch(s.url("/v1/functions/events")).bearer_auth(ADMIN).json(&fix).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = dead["id"].as_str().unwrap();
    let r = s.client.post(s.url(&format!("/v1/dlq/{id}/replay"))).bearer_auth(ADMIN).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let until = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let job = s.strato.store().queue().get(id).await.unwrap().unwrap();
        if job.status.is_final() || Instant::now() > until {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job.result.as_ref().map(|r| &r["result"]), Some(&json!({"fixed": true})), "{job:?}");
    let logs = s.functions.logs("events", 1 << 20).await;
    assert_eq!(logs.matches(&format!("START RequestId: {bad_id}")).count(), 3, "replayed once: {logs}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_decide_who_invokes_and_the_emulators_curl_works_as_written() {
    let Some(py) = python() else { return };
    let s = Server::start(&py, |_| {}, true).await;
    s.create(python_function("team-a-echo", json!({}))).await;
    s.create(python_function("team-b-echo", json!({}))).await;
    let r = s
        .client
        .post(s.url("/v1/api-keys"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"name": "team a", "grants": [{"kind": "function", "id": "team-a-*", "actions": ["read", "use"]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
    let invoke = |name: &str| {
        s.client
            .post(s.url(&format!("/2015-03-31/functions/{name}/invocations")))
            .header("x-api-key", &key)
            .body("{}")
            .send()
    };
    assert_eq!(invoke("team-a-echo").await.unwrap().status(), 200, "granted by pattern");
    let r = invoke("team-b-echo").await.unwrap();
    assert_eq!(r.status(), 403, "another team's function is refused");
    assert_eq!(h(r.headers(), "x-amzn-errortype"), Some("AccessDeniedException"));
    assert_eq!(invoke("no-such-function").await.unwrap().status(), 403, "the same answer as for one that exists");
    let native = |m: reqwest::Method, p: &str| s.client.request(m, s.url(p)).header("x-api-key", &key).send();
    assert_eq!(native(reqwest::Method::GET, "/v1/functions/team-b-echo").await.unwrap().status(), 403);
    assert_eq!(
        native(reqwest::Method::DELETE, "/v1/functions/team-a-echo").await.unwrap().status(),
        403,
        "use is not edit"
    );
    assert_eq!(native(reqwest::Method::POST, "/v1/functions/team-b-echo/invoke").await.unwrap().status(), 403);
    let listed: Value = native(reqwest::Method::GET, "/v1/functions").await.unwrap().json().await.unwrap();
    let names: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["team-a-echo"]);
    s.stop().await;

    // The Runtime Interface Emulator's command from the seeds, on a local server without credentials:
    // curl -XPOST "http://localhost:9000/2015-03-31/functions/function/invocations" -d '{}'
    let local = Server::start(&py, |o| o.rie_function = Some("handler".into()), false).await;
    local.create(python_function("handler", json!({}))).await;
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-XPOST",
            &local.url("/2015-03-31/functions/function/invocations"),
            "-d",
            r#"{"payload": "hello world!"}"#,
        ])
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"event": {"payload": "hello world!"}, "count": 1}));
    local.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_run_as_the_unprivileged_user_they_are_given() {
    let Some(py) = python() else { return };
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")));
    if !root {
        eprintln!("SKIPPED: switching instances to another user needs Strato to run as root");
        return;
    }
    let nobody = strato_functions::RunAs::parse("65534:65534").unwrap();
    // Outside /tmp, so the instances can have a /tmp of their own mounted over it.
    let work = std::path::PathBuf::from(format!("/var/tmp/strato-it-{}", std::process::id()));
    let s = Server::start(
        &py,
        |o| {
            o.run_as = Some(nobody);
            o.work_dir = work.clone();
        },
        true,
    )
    .await;
    // A file of Strato's on a path the instance can reach: only its mode keeps it out.
    std::fs::create_dir_all(&work).unwrap();
    let secret = work.join("secrets.key");
    std::fs::write(&secret, "strato's own").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    s.create(json!({"name": "whoami", "runtime": "provided.al2023", "handler": "none",
        "environment": {"SECRET_FILE": secret.display().to_string()},
        "zip_base64": b64(&zip_of(&fixture("whoami")))}))
        .await;
    let (status, _, v) = body(s.invoke("whoami", &json!({}), &[]).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"uid": "65534", "gid": "65534", "groups": "65534", "secret": "denied", "tmp": "writable",
            "tmpdir": "/tmp", "own_tmp": "yes"})
    );
    assert!(!Path::new("/tmp/strato-whoami-probe").exists(), "what it wrote to /tmp stayed in its own /tmp");
    s.stop().await;
    let _ = std::fs::remove_dir_all(&work);
}
