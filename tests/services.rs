//! Services: the catalog both kinds of client read, provisioning records, binding them to an app,
//! and what a bound app finds in `VCAP_SERVICES` once it is restarted.

mod common;

use std::collections::BTreeMap;

use afemu::Emulator;
use common::{EVENT_TIMEOUT, call, fixture};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_services_are_bound_into_vcap_services() {
    let emu = Emulator::builder()
        .configure(|config| {
            config.service_credentials = afemu::config::ServiceCredentials(BTreeMap::from([(
                "mysql".to_owned(),
                json!({"password": "from-the-config", "port": 13306}),
            )]));
        })
        .start()
        .await
        .unwrap();
    let af = emu.client();
    let token = af.token().unwrap().to_owned();

    let (status, catalog) = call(&emu.api_url(), &token, "GET", "/info/services", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        catalog["database"]["mysql"]["5.1"]["tiers"]["free"]["order"],
        1
    );
    let (_, offerings) = call(
        &emu.api_url(),
        &token,
        "GET",
        "/services/v1/offerings",
        None,
    )
    .await;
    assert_eq!(
        offerings["key-value"]["redis"]["core"]["2.2"]["plans"],
        json!(["free"])
    );

    let create = json!({"type": "database", "tier": "free", "vendor": "mysql", "version": "5.1", "name": "mysql-abc"});
    let (status, created) = call(
        &emu.api_url(),
        &token,
        "POST",
        "/services",
        Some(create.clone()),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["name"], "mysql-abc");
    let (status, again) = call(&emu.api_url(), &token, "POST", "/services", Some(create)).await;
    assert_eq!(
        (status, again["code"].as_i64()),
        (400, Some(100)),
        "{again}"
    );
    for (body, status, code) in [
        (json!({"vendor": "oracle"}), 404, 500),
        (json!({"vendor": "mysql", "version": "9.9"}), 404, 500),
        (json!({"vendor": "mysql", "name": "bad name"}), 400, 100),
        (json!({"vendor": 7}), 400, 100),
        (json!("mysql"), 400, 100),
    ] {
        let (got, error) = call(
            &emu.api_url(),
            &token,
            "POST",
            "/services",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (got, error["code"].as_i64()),
            (status, Some(code)),
            "{body} → {error}"
        );
    }
    let (_, listed) = call(&emu.api_url(), &token, "GET", "/services", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (_, info) = call(&emu.api_url(), &token, "GET", "/info", None).await;
    assert_eq!(info["usage"]["services"], 1);

    // Bind it to an app (af bind-service: PUT with the name in `services`, then restart).
    af.create_app(&json!({
        "name": "probe",
        "staging": {"framework": "standalone", "command": "python3 app.py"},
        "uris": ["probe.com"],
        "instances": 1,
        "resources": {"memory": 64},
    }))
    .await
    .unwrap();
    af.upload_dir("probe", &fixture("apps/python-probe"))
        .await
        .unwrap();
    let unknown = af
        .modify("probe", |doc| doc["services"] = json!(["nope"]))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Some(500));
    af.modify("probe", |doc| doc["services"] = json!(["mysql-abc"]))
        .await
        .unwrap();
    af.start("probe", EVENT_TIMEOUT).await.unwrap();
    let seen: Value = serde_json::from_str(&emu.get("probe.com", "/env").await.body).unwrap();
    let vcap: Value = serde_json::from_str(seen["env"]["VCAP_SERVICES"].as_str().unwrap()).unwrap();
    let mysql = &vcap["mysql-5.1"][0];
    assert_eq!(mysql["name"], "mysql-abc");
    assert_eq!(mysql["credentials"]["password"], "from-the-config");
    assert_eq!(mysql["credentials"]["port"], 13306);
    assert_eq!(seen["env"]["VMC_MYSQL"], "127.0.0.1:13306");

    // Deleting the service unbinds it.
    let (status, _) = call(
        &emu.api_url(),
        &token,
        "DELETE",
        "/services/mysql-abc",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(af.app("probe").await.unwrap()["services"], json!([]));
    let (status, missing) = call(
        &emu.api_url(),
        &token,
        "DELETE",
        "/services/mysql-abc",
        None,
    )
    .await;
    assert_eq!((status, missing["code"].as_i64()), (404, Some(500)));
}
