//! The ways an `azure` destination is authorized, and the rows `validate` refuses.

use super::super::{AzureAuth, DestinationKind, parse};
use super::problems;

fn azure(config: &str) -> String {
    format!(
        "destinations:\n- type: azure\n  config: {{storage_account: acct, container: c, path: p, {config}}}\nsource_folder: /s\ncron_schedule: '@daily'\n"
    )
}

fn auth(config: &str) -> AzureAuth {
    let parsed = parse(&azure(config)).unwrap();
    let DestinationKind::Azure(a) = &parsed.destinations[0].kind else {
        panic!("not azure")
    };
    a.credentials.clone()
}

#[test]
fn an_access_key_a_sas_token_or_the_managed_identity_authorizes_requests() {
    assert!(
        matches!(auth("storage_access_key: AZKEYVALUE"), AzureAuth::AccessKey(k) if k.expose() == "AZKEYVALUE")
    );
    assert!(matches!(
        auth("credentials_source: static, sas_token: 'sv=2019-12-12&sig=AZSIG'"),
        AzureAuth::SasToken(t) if t.expose() == "sv=2019-12-12&sig=AZSIG"
    ));
    assert!(matches!(
        auth("credentials_source: managed_identity, client_id: 0000-1111"),
        AzureAuth::ManagedIdentity { client_id: Some(id) } if id == "0000-1111"
    ));
    assert!(matches!(
        auth("credentials_source: managed_identity"),
        AzureAuth::ManagedIdentity { client_id: None }
    ));
}

#[test]
fn bad_azure_credentials_are_rows_of_their_own_without_secrets() {
    let rows: &[(&str, &str)] = &[
        (
            "storage_access_key: AZKEYVALUE, sas_token: 'sv=1&sig=AZSIGVALUE'",
            "azure destination 1: storage_access_key and sas_token are exclusive: set one of them",
        ),
        (
            "credentials_source: managed_identity, storage_access_key: AZKEYVALUE",
            "azure destination 1: storage_access_key cannot stand beside credentials_source: managed_identity",
        ),
        (
            "credentials_source: managed_identity, sas_token: 'sv=1&sig=AZSIGVALUE'",
            "azure destination 1: sas_token cannot stand beside credentials_source: managed_identity",
        ),
        (
            "credentials_source: instance_profile, storage_access_key: AZKEYVALUE",
            "azure destination 1: credentials_source must be static (storage_access_key or sas_token) or managed_identity, not \"instance_profile\"",
        ),
        (
            "sas_token: 'sv=2019-12-12&sp=rwdl'",
            "azure destination 1: sas_token must be a shared access signature's query string (sv=…&sig=…)",
        ),
        (
            "storage_access_key: AZKEYVALUE, client_id: 0000",
            "azure destination 1: client_id is only used with credentials_source: managed_identity",
        ),
        (
            "storage_access_key: AZKEYVALUE, ca_cert: 'not PEM'",
            "azure destination 1: ca_cert must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)",
        ),
        (
            "storage_access_key: AZKEYVALUE, ca_cert: \"-----BEGIN CERTIFICATE-----\\nbm90IGEgY2VydA==\\n-----END CERTIFICATE-----\\n\"",
            "azure destination 1: ca_cert is not a usable certificate: its certificate does not parse",
        ),
        (
            "credentials_source: managed_identity, client_id: \"0000\\n{\\\"forged\\\": 1}\"",
            "azure destination 1: client_id must not contain control characters (line breaks, tabs, escapes): give the identity's client id, a GUID",
        ),
        (
            "credentials_source: static",
            "Missing values for azure: storage_access_key",
        ),
    ];
    for (config, want) in rows {
        let found = problems(&azure(config));
        assert!(
            found.iter().any(|p| p.contains(want)),
            "{config}: {found:#?}"
        );
        for p in &found {
            assert!(
                !p.contains("AZKEYVALUE") && !p.contains("AZSIGVALUE"),
                "{p}"
            );
        }
    }
}
