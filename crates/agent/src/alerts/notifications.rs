//! The platform's notifications service, as the original's service-alerts-client used it:
//! the UAA (given, or named by the Cloud Controller's `/v2/info`), a Cloud Controller user's
//! token to find the space by its org's and its own name, a client-credentials token, then
//! `POST /spaces/{guid}` on the notifications service with the e-mail's subject and text.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder};
use serde::Deserialize;

use super::body::Alert;
use super::delivery::{self, Budget};
use crate::config::alerts::NotificationsConfig;

/// The kind of every notification, as the original's client sent it.
const KIND_ID: &str = "service-alerts";

/// `GET /v2/info`: where the UAA is.
#[derive(Deserialize)]
struct Info {
    token_endpoint: String,
}

/// A UAA token response.
#[derive(Deserialize)]
struct Token {
    access_token: String,
}

/// A Cloud Controller v2 list of resources.
#[derive(Deserialize)]
struct Resources {
    #[serde(default)]
    resources: Vec<Resource>,
}

/// One resource of a list.
#[derive(Deserialize)]
struct Resource {
    metadata: Metadata,
}

/// Its metadata.
#[derive(Deserialize)]
struct Metadata {
    guid: String,
}

/// Sends `alert` to the space's notifications, within the configured budget.
pub async fn send(config: &NotificationsConfig, alert: &Alert) -> Result<(), String> {
    let budget = Budget::new(config.retry_limit, config.timeout);
    tokio::time::timeout(config.timeout, flow(config, alert, budget))
        .await
        .map_err(|_| "sending service alert timed out".to_string())?
}

/// The HTTP client: certificates unchecked only when `skip_ssl_validation` says so.
fn client(config: &NotificationsConfig) -> Result<Client, String> {
    if config.skip_ssl_validation {
        Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot make the HTTP client of alerts: {e}"))
    } else {
        crate::api::auth::platform_client(None, "alerts.config")
    }
}

async fn flow(config: &NotificationsConfig, alert: &Alert, budget: Budget) -> Result<(), String> {
    let client = client(config)?;
    let cc = config.cloud_controller_url.as_str();
    let uaa = if let Some(url) = &config.uaa_url {
        url.clone()
    } else {
        let response =
            delivery::send("CF INFO", budget, || client.get(format!("{cc}/v2/info"))).await?;
        let info: Info = delivery::json("CF", response).await?;
        info.token_endpoint.trim_end_matches('/').to_string()
    };
    // The Cloud Controller user's token: the password grant of the `cf` client.
    let form = serde_urlencoded::to_string([
        ("grant_type", "password"),
        ("username", config.cloud_controller_user.as_str()),
        ("scope", ""),
        ("password", config.cloud_controller_password.expose()),
    ])
    .map_err(|e| e.to_string())?;
    let cf_token = token(&client, &uaa, budget, form, |r| {
        r.basic_auth("cf", Some(""))
    })
    .await?;
    let org = guid(
        &client,
        budget,
        &cf_token,
        &format!("{cc}/v2/organizations"),
        &config.cf_org,
    )
    .await
    .map_err(|e| e.unwrap_or_else(|| format!("CF org not found: '{}'", config.cf_org)))?;
    let space = guid(
        &client,
        budget,
        &cf_token,
        &format!("{cc}/v2/organizations/{org}/spaces"),
        &config.cf_space,
    )
    .await
    .map_err(|e| e.unwrap_or_else(|| format!("CF space not found: '{}'", config.cf_space)))?;
    let notify_token = token(
        &client,
        &uaa,
        budget,
        "grant_type=client_credentials".to_string(),
        |r| r.basic_auth(&config.client_id, Some(config.client_secret.expose())),
    )
    .await?;
    let mut body = serde_json::json!({
        "kind_id": KIND_ID,
        "subject": alert.subject(),
        "text": alert.text(),
    });
    if let Some(reply_to) = &config.reply_to {
        body["reply_to"] = reply_to.clone().into();
    }
    let body = body.to_string();
    let url = format!(
        "{}/spaces/{space}",
        config.service_url.trim_end_matches('/')
    );
    delivery::send("CF Notifications", budget, || {
        client
            .post(&url)
            .header("X-NOTIFICATIONS-VERSION", "1")
            .header(AUTHORIZATION, format!("Bearer {notify_token}"))
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
    })
    .await
    .map(drop)
}

/// A token from the UAA's `/oauth/token` for the form `form`, authenticated by `auth`.
async fn token(
    client: &Client,
    uaa: &str,
    budget: Budget,
    form: String,
    auth: impl Fn(RequestBuilder) -> RequestBuilder,
) -> Result<String, String> {
    let response = delivery::send("UAA", budget, || {
        auth(
            client
                .post(format!("{uaa}/oauth/token"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.clone()),
        )
    })
    .await?;
    let token: Token = delivery::json("UAA", response).await?;
    Ok(token.access_token)
}

/// The guid of the first resource at `url` named `name`; `Err(None)` when there is none.
async fn guid(
    client: &Client,
    budget: Budget,
    token: &str,
    url: &str,
    name: &str,
) -> Result<String, Option<String>> {
    let query = [("q", format!("name:{name}"))];
    let response = delivery::send("CF API", budget, || {
        client
            .get(url)
            .query(&query)
            .header(AUTHORIZATION, format!("Bearer {token}"))
    })
    .await
    .map_err(Some)?;
    let list: Resources = delivery::json("CF", response).await.map_err(Some)?;
    let guid = list
        .resources
        .into_iter()
        .next()
        .map(|r| r.metadata.guid)
        .ok_or(None)?;
    // The guid goes into later URLs: one that could change their path (`../admin`) is
    // refused rather than followed with the token.
    if is_guid(&guid) {
        Ok(guid)
    } else {
        Err(Some(
            "CF API answered with a guid that is not one (only letters, digits, '-' and '_' \
             are allowed); the alert was not sent"
                .to_string(),
        ))
    }
}

/// Whether `text` looks like a Cloud Controller guid: 1 to 64 letters, digits, `-` and
/// `_` (the original's tests name theirs `org_guid`; none of these changes a path).
fn is_guid(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_guids_are_guids() {
        assert!(super::is_guid("1d5a4e4c-2b1f-4c1e-9c1a-0f0e0d0c0b0a"));
        assert!(super::is_guid("space_guid"));
        for bad in [
            "",
            "../../../admin",
            "a/b",
            "a?b",
            "a%2Fb",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(!super::is_guid(bad), "{bad}");
        }
    }
}
