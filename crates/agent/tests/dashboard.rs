//! The service dashboard through the real binary over TLS (a self-signed certificate, as
//! the documentation's `--insecure` implies): the documentation's curl calls pasted as they
//! are, with the `curl` binary and its cookie jar, and the web page in headless Chromium
//! (driven by `playwright-core`; `tests/servers/chromium.sh` installs both and exports
//! `SB_TEST_CHROMIUM` and `SB_TEST_PLAYWRIGHT`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, binary};
use serde_json::Value;
use service_backup_testkit::free_port;

const TOKEN: &str = "tok-Dashboard-8d1e4b2a6c";
const INSTANCE: &str = "96aaef1d-be67-45fc-a121-25160bf83ab2";

/// The daemon with the API over TLS on a free port.
struct Agent {
    child: Child,
    env: Env,
    port: u16,
}

impl Agent {
    fn start() -> Self {
        Self::start_with("")
    }

    /// The agent with `api_extra` (YAML lines under `api:`) added to its API settings.
    fn start_with(api_extra: &str) -> Self {
        let env = Env::new();
        let d = env.dir.path().display();
        common::write_private(&env.path("tokens"), format!("{TOKEN}\n"));
        common::self_signed_certificate(env.dir.path());
        std::fs::create_dir_all(env.path("restored")).unwrap();
        let port = free_port();
        env.write_config(&format!(
            "cron_schedule: \"0 0 1 1 *\"\ninstance_id: {INSTANCE}\n\
             restore:\n  target_folder: {d}/restored\n\
             api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {d}/tokens\n\
             \x20 tls:\n    cert_file: {d}/cert.pem\n    key_file: {d}/key.pem\n{api_extra}"
        ));
        let child = Command::new(binary())
            .args(["run", "config.yml"])
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(env.path("daemon.log")).unwrap())
            .stderr(std::fs::File::create(env.path("daemon.err")).unwrap())
            .spawn()
            .unwrap();
        let agent = Self { child, env, port };
        let start = Instant::now();
        loop {
            let out = Command::new("curl")
                .args(["-sk", &format!("https://127.0.0.1:{port}/health")])
                .output()
                .expect("curl is needed");
            // The health answer: a JSON object with the status.
            if String::from_utf8_lossy(&out.stdout).contains("\"status\":") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{}",
                agent.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }

    /// The dashboard URL as `cf service` shows it (the documentation copies it with its
    /// trailing slash).
    fn dashboard_url(&self) -> String {
        format!(
            "https://localhost:{}/service-instances/{INSTANCE}/",
            self.port
        )
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.env.path("daemon.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.env.path("daemon.err")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one documented command line with bash in `dir`, with the documentation's variables.
fn shell(dir: &Path, vars: &[(&str, &str)], line: &str) -> (bool, String) {
    let out = Command::new("bash")
        .args(["-c", line])
        .envs(vars.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The a9s Service Dashboard documentation's API calls, each pasted as written (flags,
/// cookie jar, quoting), against a running agent. The documentation (issue 23 quotes it)
/// gives the Authorization call as
/// `curl --cookie test.cookie --cookie-jar test.cookie --location --insecure
/// --header "Authorization: ${bearer_token}" "${dashboard_url}"`
/// and builds every other call as `"${dashboard_url}/backups…"` from the URL with its
/// trailing slash (so with a `//`), and the metrics as `"${metrics_api}/metrics?quantity=1"`.
/// Every failing call is reported, not only the first.
#[test]
fn the_documented_curl_calls_work_verbatim() {
    // The docs' token is a platform JWT (`cf oauth-token` prints `bearer <JWT>`): here one
    // of the OpenID Connect provider of tests/servers/oidc.sh, checked through `api.uaa`.
    let issuer = std::env::var("SB_TEST_OIDC_ISSUER").expect(
        "SB_TEST_OIDC_ISSUER is not set: run the tests through tests/run.sh, which starts \
         the OpenID Connect provider (tests/servers/oidc.sh)",
    );
    let agent = Agent::start_with(&format!(
        "  uaa:\n    jwks_url: {issuer}/jwks\n    issuer: {issuer}\n    \
         audience: service-backup\n    required_scopes: [backup.manage]\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let bearer = format!("bearer {}", platform_token(&issuer));
    let dashboard_url = agent.dashboard_url();
    let metrics_api = format!("https://localhost:{}/v1/instances/{INSTANCE}", agent.port);
    let vars = [
        ("bearer_token", bearer.as_str()),
        ("dashboard_url", dashboard_url.as_str()),
        ("metrics_api", metrics_api.as_str()),
    ];
    let mut failures: Vec<String> = Vec::new();
    let mut check = |what: &str, ok: bool, detail: &str| {
        if !ok {
            failures.push(format!("{what}: {detail}"));
        }
    };
    let flags = "curl --cookie test.cookie --cookie-jar test.cookie --location --insecure";

    // Authorization: the cookie jar gets the session; the answer is the page.
    let (ok, out) = shell(
        dir.path(),
        &vars,
        &format!("{flags} --header \"Authorization: ${{bearer_token}}\" \"${{dashboard_url}}\""),
    );
    let jar = std::fs::read_to_string(dir.path().join("test.cookie")).unwrap_or_default();
    check(
        "authorization call",
        ok && out.contains("service-backup dashboard"),
        &out,
    );
    check(
        "cookie jar",
        jar.contains("sb_session") && jar.contains("#HttpOnly_localhost"),
        &jar,
    );

    // Backups: trigger one, then list until it is done.
    let (ok, out) = shell(
        dir.path(),
        &vars,
        &format!(
            "{flags} --header \"Authorization: ${{bearer_token}}\" --request POST \"${{dashboard_url}}/backups\""
        ),
    );
    check("create a backup", ok && json(&out)["id"].is_i64(), &out);
    let list = format!(
        "{flags} --header \"Authorization: ${{bearer_token}}\" \"${{dashboard_url}}/backups\""
    );
    let start = Instant::now();
    let mut done = None;
    while start.elapsed() < Duration::from_mins(1) {
        let (_, out) = shell(dir.path(), &vars, &list);
        let body = json(&out);
        if body["instance_id"] != INSTANCE {
            check("list backups", false, &out);
            break;
        }
        if let Some(b) = body["backups"].as_array().and_then(|b| {
            b.iter()
                .find(|b| b["backup_agent_task"]["status"] == "done")
                .cloned()
        }) {
            done = Some(b["id"].as_i64().unwrap());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    check("a backup done", done.is_some(), &agent.logs());

    // The cookie alone (as the jar sends it) reads the list too.
    let (ok, out) = shell(
        dir.path(),
        &vars,
        &format!("{flags} \"${{dashboard_url}}/backups\""),
    );
    check(
        "list by the cookie alone",
        ok && json(&out)["instance_id"] == INSTANCE,
        &out,
    );

    if let Some(id) = done {
        let id = id.to_string();
        let vars_id = [
            vars[0],
            vars[1],
            vars[2],
            ("backup_id", &*id),
            ("instance_id", INSTANCE),
        ];
        let (ok, out) = shell(
            dir.path(),
            &vars_id,
            &format!(
                "{flags} --header \"Authorization: ${{bearer_token}}\" --output backup.tar.gz.enc \"${{dashboard_url}}/backups/${{backup_id}}/download\""
            ),
        );
        let size = std::fs::metadata(dir.path().join("backup.tar.gz.enc")).map_or(0, |m| m.len());
        check("download", ok && size > 0, &out);
        let (ok, out) = shell(
            dir.path(),
            &vars_id,
            &format!(
                "{flags} --header \"Authorization: ${{bearer_token}}\" --request POST --data \"instance_id=${{instance_id}}&backup_id=${{backup_id}}\" \"${{dashboard_url}}/backups/restore\""
            ),
        );
        check("restore", ok && json(&out)["restore_id"].is_i64(), &out);
    }

    let (ok, out) = shell(
        dir.path(),
        &vars,
        &format!(
            "{flags} --header \"Authorization: ${{bearer_token}}\" \"${{metrics_api}}/metrics?quantity=1\""
        ),
    );
    check("metrics", ok && json(&out).is_array(), &out);

    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn browser_tools() -> (PathBuf, PathBuf) {
    let get = |var: &str| {
        std::env::var_os(var).map_or_else(
            || panic!("{var} is not set: run this test through tests/run.sh, which installs Chromium and playwright-core (tests/servers/chromium.sh)"),
            PathBuf::from,
        )
    };
    (get("SB_TEST_CHROMIUM"), get("SB_TEST_PLAYWRIGHT"))
}

/// The page in headless Chromium through a whole flow: open the dashboard URL, sign in
/// with a token, see the list, create a backup and watch it finish, restore it after the
/// confirmation, download it, set a backup password; the screenshots go to the test output
/// folder.
#[test]
fn the_page_works_in_a_real_browser() {
    let (chromium, playwright) = browser_tools();
    let agent = Agent::start();
    let shots = std::env::var_os("SB_TEST_OUTPUT_DIR").map_or_else(
        || agent.env.path("screenshots"),
        |d| PathBuf::from(d).join("dashboard"),
    );
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dashboard_flow.cjs");
    let out = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", &playwright)
        .env("CHROMIUM", &chromium)
        .env("DASHBOARD_URL", agent.dashboard_url())
        .env("TOKEN", TOKEN)
        .env("SHOTS", &shots)
        .env("DOWNLOADS", agent.env.path("downloads"))
        .output()
        .expect("node is needed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.logs()
    );
    for step in [
        "signed-out",
        "list",
        "backup-done",
        "confirm",
        "restored",
        "downloaded",
        "password-set",
        "doubled-slashes",
        "restore-progress",
    ] {
        assert!(stdout.contains(&format!("step {step}")), "{stdout}");
        assert!(shots.join(format!("{step}.png")).is_file(), "{step}.png");
    }
    // The restore ran: the source's files are in the target folder.
    assert!(
        std::fs::read_dir(agent.env.path("restored"))
            .unwrap()
            .next()
            .is_some()
    );
    // The download is the stored archive.
    let downloaded: Vec<_> = std::fs::read_dir(agent.env.path("downloads"))
        .unwrap()
        .collect();
    assert_eq!(downloaded.len(), 1);
}

/// An access token of the provider's `backup-client` with the scope `backup.manage`, as
/// `cf oauth-token` would give one to a space developer; registered as a secret of the run.
fn platform_token(issuer: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-u",
            "backup-client:secret",
            "-d",
            "grant_type=client_credentials",
            "-d",
            "scope=backup.manage",
            &format!("{issuer}/token"),
        ])
        .output()
        .expect("curl");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)));
    let token = answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {answer}"))
        .to_string();
    common::secret(&token);
    token
}
